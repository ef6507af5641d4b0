"""What the receiver makes of every captured fixture stays what it was: the content keys of its
facts (which must never change, or a batch retried across an upgrade is stored twice) and the
rows it writes, as the values handed to the driver's COPY (their repr: the driver's own text for
bytea follows the last connection libpq opened in the process). The digests in
tests/fixtures/ingest_output.json were taken from the receiver before its per-record work was
made cheaper; a change that means to change the rows (a new column, a new attribute read)
rewrites them with `python -m tests.test_ingest_output_stable` and says why in its commit.
Prices are left out (they follow the installed genai-prices' tables: tests/test_ingest_pricing.py)."""
from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import pytest
from agent_analytics.ingest import codec, normalise, store
from agent_analytics.ingest.rows import Batch, Context
from tests.ingest_support import FIXTURES

GOLDEN = Path(__file__).resolve().parent / "fixtures" / "ingest_output.json"
# After every fixture's records: none is too new, and no retention limit applies.
NOW_NS = 1_798_761_600 * 1_000_000_000  # 2027-01-01
# The batch's lists of facts and the table each is written to.
TABLES = (("llm_requests", "llm_requests"), ("llm_errors", "llm_errors"), ("tool_calls", "tool_calls"),
          ("metric_points", "metric_points"), ("enforcement", "agent_enforcement"),
          ("productivity_points", "productivity_points"))


def _fixtures() -> list[Path]:
    return sorted(p for p in FIXTURES.iterdir() if p.suffix in (".pb", ".json"))


def _signal(path: Path) -> str:
    return next(s for s in ("logs", "metrics", "traces") if f"-{s}-" in path.name)


def _batch(path: Path) -> Batch:
    fmt = codec.PROTOBUF if path.suffix == ".pb" else codec.JSON
    signal = _signal(path)
    return normalise.normalise(signal, codec.decode(signal, path.read_bytes(), fmt), Context(now_ns=NOW_NS))


def output(path: Path) -> dict[str, object]:
    """The fixture's facts: how many, the digest of their keys (in the order normalise made them),
    the digest of their rows, and of the rest of the batch (rejections, counts)."""
    batch = _batch(path)
    keys, rows = hashlib.sha256(), hashlib.sha256()
    facts = 0
    for attr, table in TABLES:
        for fact in getattr(batch, attr):
            facts += 1
            keys.update(table.encode() + b" " + fact.source_key + b"\n")
            # Each row as written when its session has sent no metric points and no events before,
            # and when it has sent both (`counted`, `cost_counted`).
            sessions = frozenset({fact.session_id} if fact.session_id else ())
            for with_metrics, with_events in ((frozenset(), frozenset()), (sessions, sessions)):
                rows.update(repr(store._row(table, fact, with_metrics, with_events)).encode())
    rest = repr((batch.received, batch.ignored, batch.internal_errors, batch.rejections,
                 sorted(batch.tally.items(), key=repr), batch.origins, batch.agents, batch.agent_instances,
                 batch.policies, batch.blocking_hooks))
    return {"facts": facts, "keys": keys.hexdigest(), "rows": rows.hexdigest(),
            "batch": hashlib.sha256(rest.encode()).hexdigest()}


@pytest.mark.parametrize("path", _fixtures(), ids=lambda p: p.name)
def test_fixture_output_is_unchanged(path: Path) -> None:
    expected = json.loads(GOLDEN.read_text())[path.name]
    got = output(path)
    assert got["facts"] == expected["facts"]
    assert got["keys"] == expected["keys"], "content keys changed: stored facts would be stored again"
    assert got["rows"] == expected["rows"], "the rows written changed"
    assert got["batch"] == expected["batch"], "rejections, counts or directory rows changed"


def test_every_fixture_is_covered() -> None:
    assert sorted(json.loads(GOLDEN.read_text())) == [p.name for p in _fixtures()]
    assert sum(v["facts"] for v in json.loads(GOLDEN.read_text()).values()) > 100


if __name__ == "__main__":  # rewrite the digests from the code as it is
    GOLDEN.write_text(json.dumps({p.name: output(p) for p in _fixtures()}, indent=1, sort_keys=True) + "\n")
    sys.exit(0)
