"""What normalisation produces: one dataclass per fact table (and the table's columns, `COLUMNS`),
the directory rows first seen in a batch, and the per-record rejections. Every fact carries
`source_key`, the content key of its normalised content, time included (content_keys.py)."""
from __future__ import annotations

import time as _time
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from agent_analytics.config import ATTRIBUTION_COLUMNS, DEFAULT_ATTRIBUTION

from .content_keys import canonical_json, content_key
from .values import BadValue, ns_to_datetime

NS_PER_DAY = 86_400 * 1_000_000_000
# Token counts above this in one request or one metric point are not telemetry but a bug.
MAX_TOKENS = 100_000_000
MAX_COST_USD = 100_000.0
MAX_DURATION_MS = 7 * 86_400_000.0


# A fact no attribution dimension applies to (every column NULL: shown as unattributed).
NO_ATTRIBUTION: tuple[str | None, ...] = (None,) * len(ATTRIBUTION_COLUMNS)


@dataclass(frozen=True)
class Context:
    """What validation needs to know about the world: now, how far back data may be, and which
    attribute each attribution dimension is read from (config.ATTRIBUTION, AA_ATTRIBUTION)."""
    now_ns: int
    retention_days: int = 0  # 0: no lower bound beyond the epoch sanity check
    future_tolerance_ns: int = NS_PER_DAY
    attribution: tuple[tuple[str, str], ...] = DEFAULT_ATTRIBUTION
    # The attributes `attribution` reads, and a record's values when it names none of them
    # (worked out once per request: every record looks them up).
    attribution_keys: tuple[str, ...] = field(init=False, repr=False, compare=False)
    unattributed: tuple[None, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "attribution_keys", tuple(key for _, key in self.attribution if key))
        object.__setattr__(self, "unattributed", (None,) * len(self.attribution))

    @classmethod
    def now(cls, retention_days: int = 0,
            attribution: tuple[tuple[str, str], ...] = DEFAULT_ATTRIBUTION) -> "Context":
        return cls(now_ns=_time.time_ns(), retention_days=retention_days, attribution=attribution)

    def check_time(self, ns: int, what: str = "timestamp") -> int:
        if ns <= 0:
            raise BadValue(f"{what} is missing")
        if ns > self.now_ns + self.future_tolerance_ns:
            raise BadValue(f"{what} is more than a day in the future")
        if self.retention_days and ns < self.now_ns - self.retention_days * NS_PER_DAY:
            raise BadValue(f"{what} is older than the retention period ({self.retention_days} days)")
        if ns < 946_684_800 * 1_000_000_000:  # before 2000: a clock or encoding error
            raise BadValue(f"{what} is before the year 2000")
        return ns


@dataclass
class LlmRequest:
    time_ns: int
    source: str
    session_id: str | None
    user_id: str | None
    agent_id: str | None
    provider: str
    model: str
    input_tokens: int          # EXCLUDES cache reads and writes
    output_tokens: int
    cache_read_tokens: int
    cache_write_tokens: int
    reported_cost_usd: Decimal | None
    latency_ms: float | None
    attributes: dict[str, Any]
    source_key: bytes = b""
    attributes_json: str = field(default="", repr=False)
    estimated_cost_usd: Decimal | None = None  # filled by pricing
    cost_basis: str | None = None
    # Of cache_write_tokens, those written for one hour (priced apart from 5-minute writes). Not
    # a column: the attributes keep the agent's own split, and the content key covers them.
    cache_write_1h_tokens: int = 0
    # The agent's own figures contradict each other (more 1-hour cache writes than writes): the
    # request is kept, its tokens as reported, but no list price can be derived (pricing).
    split_inconsistent: bool = False
    # What the agent says of the request beyond its usage (none is in the content key: the
    # attributes it is read from are). query_source: 'main' or 'subagent'; None: not sent.
    ttft_ms: float | None = None
    query_source: str | None = None
    agent_name: str | None = None
    effort: str | None = None
    speed: str | None = None
    # The attribution dimensions' values (config.ATTRIBUTION_COLUMNS, in order; set by normalise
    # from the record's attributes): columns, not part of the content key (the attributes are).
    attribution: tuple[str | None, ...] = NO_ATTRIBUTION
    origin: int = field(default=-1, repr=False, compare=False)  # the record that made it (Batch.origins)

    def __post_init__(self) -> None:
        self.attributes_json = self.attributes_json or canonical_json(self.attributes)
        if not self.source_key:
            self.source_key = content_key(
                "llm_request", self.attributes_json, t=self.time_ns, src=self.source, s=self.session_id, u=self.user_id,
                a=self.agent_id, p=self.provider, m=self.model,
                tok=[self.input_tokens, self.output_tokens, self.cache_read_tokens, self.cache_write_tokens],
                c=self.reported_cost_usd, l=self.latency_ms)


@dataclass
class LlmError:
    time_ns: int
    source: str
    session_id: str | None
    user_id: str | None
    agent_id: str | None
    provider: str
    model: str
    error: str | None
    status_code: int | None
    duration_ms: float | None
    attributes: dict[str, Any]
    source_key: bytes = b""
    attributes_json: str = field(default="", repr=False)
    # 'error': a failed request (the last attempt, for Claude Code); 'retries_exhausted': the
    # agent gave up retrying (Claude Code's api_retries_exhausted, after that attempt's error).
    kind: str = "error"
    attempt: int | None = None
    query_source: str | None = None
    agent_name: str | None = None
    # The attribution dimensions' values (config.ATTRIBUTION_COLUMNS, in order; set by normalise
    # from the record's attributes): columns, not part of the content key (the attributes are).
    attribution: tuple[str | None, ...] = NO_ATTRIBUTION
    origin: int = field(default=-1, repr=False, compare=False)  # the record that made it (Batch.origins)

    def __post_init__(self) -> None:
        if self.kind not in ("error", "retries_exhausted"):
            raise ValueError(f"bad error kind {self.kind!r}")
        self.attributes_json = self.attributes_json or canonical_json(self.attributes)
        if not self.source_key:
            # An error's key as it always was; giving up is a fact of its own kind.
            self.source_key = content_key(
                "llm_error" if self.kind == "error" else "llm_retries_exhausted", self.attributes_json, t=self.time_ns, src=self.source, s=self.session_id, u=self.user_id,
                a=self.agent_id, p=self.provider, m=self.model, e=self.error, sc=self.status_code,
                d=self.duration_ms)


@dataclass
class ToolCall:
    time_ns: int
    source: str
    user_id: str | None
    agent_id: str | None
    agent_instance_id: str | None
    session_id: str | None
    mcp_server_id: str | None
    tool_name: str
    outcome: str               # ok | error | blocked
    duration_ms: float | None
    error_type: str | None
    policy_id: str | None
    policy_name: str | None
    policy_description: str | None
    attributes: dict[str, Any]
    source_key: bytes = b""
    attributes_json: str = field(default="", repr=False)
    # The attribution dimensions' values (config.ATTRIBUTION_COLUMNS, in order; set by normalise
    # from the record's attributes): columns, not part of the content key (the attributes are).
    attribution: tuple[str | None, ...] = NO_ATTRIBUTION
    origin: int = field(default=-1, repr=False, compare=False)  # the record that made it (Batch.origins)

    def __post_init__(self) -> None:
        if self.outcome not in ("ok", "error", "blocked"):
            raise ValueError(f"bad outcome {self.outcome!r}")
        self.attributes_json = self.attributes_json or canonical_json(self.attributes)
        if not self.source_key:
            self.source_key = content_key(
                "tool_call", self.attributes_json, t=self.time_ns, src=self.source, u=self.user_id, a=self.agent_id,
                i=self.agent_instance_id, s=self.session_id, srv=self.mcp_server_id, tool=self.tool_name,
                o=self.outcome, d=self.duration_ms, e=self.error_type, pol=self.policy_id)


@dataclass
class Enforcement:
    """An agent's own enforcement or health event (migration 0012): a permission decision, a
    sandbox outcome, an MCP server connection. `blocked`: the agent's enforcement stopped the tool."""
    time_ns: int
    source: str
    kind: str                  # decision | sandbox | mcp_connection
    user_id: str | None
    agent_id: str | None
    agent_instance_id: str | None
    session_id: str | None
    mcp_server_id: str | None
    tool_name: str | None
    outcome: str               # accept | reject | abort; the sandbox's outcome; connected | failed | disconnected
    decision_source: str | None
    permission_mode: str | None
    error_code: str | None
    blocked: bool
    policy_id: str | None
    policy_name: str | None
    attributes: dict[str, Any]
    source_key: bytes = b""
    attributes_json: str = field(default="", repr=False)
    origin: int = field(default=-1, repr=False, compare=False)  # the record that made it (Batch.origins)

    def __post_init__(self) -> None:
        if self.kind not in ("decision", "sandbox", "mcp_connection"):
            raise ValueError(f"bad kind {self.kind!r}")
        self.attributes_json = self.attributes_json or canonical_json(self.attributes)
        if not self.source_key:
            self.source_key = content_key(
                "enforcement", self.attributes_json, t=self.time_ns, src=self.source, k=self.kind, u=self.user_id,
                a=self.agent_id, i=self.agent_instance_id, s=self.session_id, srv=self.mcp_server_id,
                tool=self.tool_name, o=self.outcome, ds=self.decision_source, pm=self.permission_mode,
                e=self.error_code, b=self.blocked, pol=self.policy_id)


@dataclass
class MetricPoint:
    """One sum data point. Cumulative points are turned into deltas by the store, which knows
    the series' previous value; `series_key` identifies the series for that."""
    time_ns: int
    start_time_ns: int | None
    source: str
    session_id: str | None
    user_id: str | None
    agent_id: str | None
    provider: str
    model: str
    metric: str                # tokens | cost; a productivity point's: lines_added, commits, ... (migration 0015)
    token_type: str            # '' | input | output | cache_read | cache_write
    value: float
    cumulative: bool
    series_key: bytes
    source_key: bytes = b""
    estimated_cost_usd: Decimal | None = None
    priced: bool = False       # pricing found the model (for token points)
    # A productivity point's attributes (Batch.productivity_points; '' where its metric has none):
    # an edit decision's language, tool and who decided, active time's kind (cli | user).
    language: str = ""
    tool_name: str = ""
    decided_by: str = ""
    activity: str = ""
    # Breakdowns the point's attributes carry (part of its series, hence of its key already).
    query_source: str | None = None
    agent_name: str | None = None
    effort: str | None = None
    # The attribution dimensions' values (config.ATTRIBUTION_COLUMNS, in order; set by normalise
    # from the record's attributes): columns, not part of the content key (the attributes are).
    attribution: tuple[str | None, ...] = NO_ATTRIBUTION
    origin: int = field(default=-1, repr=False, compare=False)  # the record that made it (Batch.origins)

    def __post_init__(self) -> None:
        if not self.source_key:
            # A delta point is its own content; a cumulative point is identified by its series
            # and time, since its stored value (the difference) depends on what came before.
            self.source_key = content_key(
                "metric_point", series=self.series_key.hex(), t=self.time_ns,
                st=None if self.cumulative else self.start_time_ns,
                v=None if self.cumulative else self.value)


# Each fact table's columns as the receiver writes them (ingest/store.py), in the order of its rows;
# the attribution columns, where a table has them, last (read from the fact's `attribution`).
COLUMNS: dict[str, tuple[str, ...]] = {
    "llm_requests": ("time", "source_key", "source", "session_id", "user_id", "agent_id", "provider", "model",
                     "input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens",
                     "reported_cost_usd", "estimated_cost_usd", "cost_basis", "latency_ms", "attributes", "counted",
                     "ttft_ms", "query_source", "agent_name", "effort", "speed",
                     *ATTRIBUTION_COLUMNS),
    "llm_errors": ("time", "source_key", "source", "session_id", "user_id", "agent_id", "provider", "model",
                   "error", "status_code", "duration_ms", "attributes", "kind", "attempt", "query_source", "agent_name",
                   *ATTRIBUTION_COLUMNS),
    "tool_calls": ("time", "source_key", "source", "user_id", "agent_id", "agent_instance_id", "session_id",
                   "mcp_server_id", "tool_name", "outcome", "duration_ms", "error_type", "policy_id",
                   "policy_name", "policy_description", "attributes", *ATTRIBUTION_COLUMNS),
    "metric_points": ("time", "start_time", "source_key", "source", "session_id", "user_id", "agent_id",
                      "provider", "model", "metric", "token_type", "value", "estimated_cost_usd", "cost_counted",
                      "query_source", "agent_name", "effort",
                      *ATTRIBUTION_COLUMNS),
    "agent_enforcement": ("time", "source_key", "source", "kind", "user_id", "agent_id", "agent_instance_id",
                          "session_id", "mcp_server_id", "tool_name", "outcome", "decision_source",
                          "permission_mode", "error_code", "blocked", "policy_id", "policy_name", "attributes"),
    "productivity_points": ("time", "start_time", "source_key", "source", "session_id", "user_id", "agent_id", "model",
                            "metric", "language", "tool_name", "decided_by", "activity", "value",
                            *ATTRIBUTION_COLUMNS),
}


@dataclass(frozen=True)
class Rejection:
    index: int                 # position of the record in the request (logs, points or spans)
    reason: str


@dataclass
class Batch:
    """The result of normalising one request."""
    signal: str
    received: int = 0
    ignored: int = 0
    llm_requests: list[LlmRequest] = field(default_factory=list)
    llm_errors: list[LlmError] = field(default_factory=list)
    tool_calls: list[ToolCall] = field(default_factory=list)
    metric_points: list[MetricPoint] = field(default_factory=list)
    enforcement: list[Enforcement] = field(default_factory=list)
    # Lines of code, commits, pull requests, edit decisions, active time: stored apart from the
    # token and cost points, whose presence decides which of a session's figures count.
    productivity_points: list[MetricPoint] = field(default_factory=list)
    rejections: list[Rejection] = field(default_factory=list)
    internal_errors: int = 0  # records our own code failed on (rejected too; counted apart, alerted on)
    # Where the records came from (ingest/stats.py): the ignored and rejected ones counted by
    # (key, outcome, reason), and the key of each record that made facts (their `origin`).
    tally: dict[tuple[Any, str, str], int] = field(default_factory=dict)
    origins: list[Any] = field(default_factory=list)
    # Directory rows first seen here (inserted if absent, never overwriting curated values).
    agents: dict[str, str] = field(default_factory=dict)                        # id -> name
    agent_instances: dict[str, tuple[str | None, str | None]] = field(default_factory=dict)
    policies: dict[str, tuple[str, str | None]] = field(default_factory=dict)   # id -> (name, description)
    # Claude Code's blocking PreToolUse hook runs not yet matched with the rejection they caused:
    # (session, prompt id) -> hook name (normalise_enforcement.py).
    blocking_hooks: dict[tuple[str | None, str | None], str] = field(default_factory=dict)

    def reject(self, index: int, reason: str, key: Any = None) -> None:
        self.rejections.append(Rejection(index, reason))
        if key is not None:
            self.count(key, "rejected", reason)

    def count(self, key: Any, outcome: str, reason: str = "") -> None:
        """One more ignored or rejected record from `key` (ingest/stats.py)."""
        k = (key, outcome, reason)
        self.tally[k] = self.tally.get(k, 0) + 1

    def mark(self) -> tuple[int, ...]:
        """Where the facts and directory rows stand now: what `since` and `undo` start from.
        (Handlers only add, and dicts keep insertion order: new directory keys come last.)"""
        return (len(self.llm_requests), len(self.llm_errors), len(self.tool_calls), len(self.metric_points),
                len(self.enforcement), len(self.productivity_points), len(self.agents), len(self.agent_instances),
                len(self.policies))

    def since(self, mark: tuple[int, ...]) -> tuple[list, list]:
        """The facts, and the directory rows as (key, value), added after `mark`."""
        # (This runs for every record, which adds a fact or two: each list is looked at once.)
        facts: list = []
        if len(self.llm_requests) > mark[0]:
            facts += self.llm_requests[mark[0]:]
        if len(self.llm_errors) > mark[1]:
            facts += self.llm_errors[mark[1]:]
        if len(self.tool_calls) > mark[2]:
            facts += self.tool_calls[mark[2]:]
        if len(self.metric_points) > mark[3]:
            facts += self.metric_points[mark[3]:]
        if len(self.enforcement) > mark[4]:
            facts += self.enforcement[mark[4]:]
        if len(self.productivity_points) > mark[5]:
            facts += self.productivity_points[mark[5]:]
        rows: list = []
        if len(self.agents) > mark[6]:
            rows += list(self.agents.items())[mark[6]:]
        if len(self.agent_instances) > mark[7]:
            rows += list(self.agent_instances.items())[mark[7]:]
        if len(self.policies) > mark[8]:
            rows += list(self.policies.items())[mark[8]:]
        return facts, rows

    def undo(self, mark: tuple[int, ...]) -> None:
        """Take back whatever was added after `mark`."""
        lists: tuple[list[Any], ...] = (self.llm_requests, self.llm_errors, self.tool_calls, self.metric_points,
                                        self.enforcement, self.productivity_points)
        for lst, n in zip(lists, mark):
            del lst[n:]
        dicts: tuple[dict[str, Any], ...] = (self.agents, self.agent_instances, self.policies)
        for d, n in zip(dicts, mark[6:]):
            for key in list(d)[n:]:
                del d[key]

    @property
    def facts(self) -> int:
        return (len(self.llm_requests) + len(self.llm_errors) + len(self.tool_calls) + len(self.metric_points)
                + len(self.enforcement) + len(self.productivity_points))


def to_datetime(ns: int | None):
    return None if ns is None else ns_to_datetime(ns)
