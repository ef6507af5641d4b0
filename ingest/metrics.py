"""The receiver's own Prometheus metrics, on the app's registry (never the global one)."""
from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Histogram

# Labels that name LLM providers and models: `GET /metrics` sums them away for a token without
# the llm-analytics permission, which guards model names everywhere else.
LLM_LABELS = frozenset({"provider", "model"})


@dataclass
class IngestMetrics:
    received: Counter
    stored: Counter
    duplicates: Counter
    rejected: Counter
    internal_errors: Counter
    ignored: Counter
    unpriced: Counter
    requests: Counter
    batch_seconds: Histogram

    @classmethod
    def create(cls, registry: CollectorRegistry, signals: tuple[str, ...] = ()) -> "IngestMetrics":
        metrics = cls(
            received=Counter("aa_ingest_records_received", "OTLP records (log records, data points, spans) received",
                             ["signal"], registry=registry),
            stored=Counter("aa_ingest_rows_stored", "Fact rows new to the database", ["signal", "table"],
                           registry=registry),
            duplicates=Counter("aa_ingest_rows_duplicate", "Fact rows already stored (retries, duplicates)",
                               ["signal"], registry=registry),
            rejected=Counter("aa_ingest_records_rejected", "Records rejected, by reason",
                             ["signal", "reason"], registry=registry),
            internal_errors=Counter("aa_ingest_internal_errors", "Records rejected because normalising them failed"
                                    " in our own code (a bug: see the receiver's log)", ["signal"], registry=registry),
            ignored=Counter("aa_ingest_records_ignored", "Records not about LLM requests or tool calls",
                            ["signal"], registry=registry),
            unpriced=Counter("aa_ingest_unpriced", "Requests and token points whose model has no list price",
                             ["kind", "provider", "model"], registry=registry),
            requests=Counter("aa_ingest_requests", "Export requests answered, by status", ["signal", "status"],
                             registry=registry),
            batch_seconds=Histogram("aa_ingest_batch_seconds", "Time to decode, normalise and store one request",
                                    ["signal"], registry=registry,
                                    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)),
        )
        for signal in signals:
            # Shown at 0 from the start: `increase()` sees a series' first failure only if the
            # series existed before it (the internal-errors alert fires at the first one).
            metrics.internal_errors.labels(signal)
        return metrics


def reason_label(reason: str, max_words: int = 6) -> str:
    """A bounded label from a rejection message: its words (at most `max_words`) before any
    quoted or numeric detail."""
    words = []
    for word in reason.split():
        if any(c.isdigit() for c in word) or word[:1] in "'\"(":
            break
        words.append(word)
    return " ".join(words[:max_words]) or "invalid"
