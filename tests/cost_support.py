"""The published list prices and the captured Claude Code fixtures the cost tests price and
send through the receiver (tests/fixtures/otlp), and the query API as they read it."""
from __future__ import annotations

import json
from datetime import datetime, timezone
from decimal import Decimal

from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest

from tests.harness_support import LLM_TOKEN
from tests.ingest_support import FIXTURES, logs_fixture, post, set_value

UTC = timezone.utc
M = Decimal(1_000_000)
# Anthropic's list prices per million tokens: input, output, cache read, 5-minute write, 1-hour
# write; Sonnet 4.5 above 200K input tokens in one request (long context) has its own.
SONNET_45 = (Decimal(3), Decimal(15), Decimal("0.30"), Decimal("3.75"), Decimal(6))
SONNET_45_LONG = (Decimal(6), Decimal("22.50"), Decimal("0.60"), Decimal("7.50"), Decimal(12))
HAIKU_45 = (Decimal(1), Decimal(5), Decimal("0.10"), Decimal("1.25"), Decimal(2))

CACHE = "claude-code-2.1.332-long-context-cache-5m-1h"
ONE_M = "claude-code-2.1.332-long-context-1m-model"


def list_price(rates: tuple[Decimal, ...], inp: int, out: int, read: int, write_5m: int, write_1h: int) -> Decimal:
    return sum((n * r for n, r in zip((inp, out, read, write_5m, write_1h), rates)), Decimal(0)) / M


def sonnet(inp: int, out: int, read: int, write_5m: int, write_1h: int) -> Decimal:
    """One Sonnet 4.5 request: the long-context rates when ITS input (cache included) passes 200K."""
    rates = SONNET_45_LONG if inp + read + write_5m + write_1h > 200_000 else SONNET_45
    return list_price(rates, inp, out, read, write_5m, write_1h)


def ledger(name: str) -> list[dict]:
    return [json.loads(line) for line in (FIXTURES / f"{name}.ledger.jsonl").read_text().splitlines() if line]


def query(client, metric: str, start: datetime, end: datetime, **params) -> dict:
    resp = client.get(f"/api/v1/query/{metric}", headers={"Authorization": f"Bearer {LLM_TOKEN}"},
                      query_string={"from": int(start.timestamp() * 1000), "to": int(end.timestamp() * 1000),
                                    "tz": "UTC", **params})
    assert resp.status_code == 200, resp.get_json()
    return resp.get_json()


def post_all(client, name: str, kinds: tuple[str, ...] = ("logs", "metrics")) -> None:
    for path in sorted(FIXTURES.glob(f"{name}-*.pb")):
        kind = "logs" if "-logs-" in path.name else "metrics"
        if kind in kinds:
            assert post(client, f"/v1/{kind}", path.read_bytes()).status_code == 200, path.name


def event_times(name: str) -> list[datetime]:
    out = []
    for path in sorted(FIXTURES.glob(f"{name}-logs-*.pb")):
        for rl in logs_fixture(path.name).resource_logs:
            for sl in rl.scope_logs:
                out += [datetime.fromtimestamp(r.time_unix_nano / 1e9, UTC) for r in sl.log_records]
    return out


def api_requests(events: list[tuple[datetime, str, str, int, int]]) -> bytes:
    """Claude Code api_request events: (time, session, model, input tokens, output tokens)."""
    req = ExportLogsServiceRequest()
    rl = req.resource_logs.add()
    kv = rl.resource.attributes.add()
    kv.key, kv.value.string_value = "service.name", "claude-code"
    sl = rl.scope_logs.add()
    for i, (t, session, model, inp, out) in enumerate(events):
        rec = sl.log_records.add()
        rec.time_unix_nano = int(t.timestamp() * 1e9)
        rec.body.string_value = "claude_code.api_request"
        for k, v in (("event.name", "api_request"), ("session.id", session), ("user.email", "ann@example.com"),
                     ("model", model), ("input_tokens", inp), ("output_tokens", out), ("cache_read_tokens", 0),
                     ("cache_creation_tokens", 0), ("event.sequence", i)):
            a = rec.attributes.add()
            a.key = k
            set_value(a.value, v)
    return req.SerializeToString()
