"""migrate resets TimescaleDB's jobs while a running service's jobs may run: the scheduler's
concurrent update of a job row is met again by a new attempt, any other failure is not retried."""
from __future__ import annotations

import psycopg
import pytest

from agent_analytics.sql import migrate as m


class _Conn:
    """Answers each execute with the next outcome: an exception to raise, or None."""

    def __init__(self, *outcomes: Exception | None) -> None:
        self.outcomes = list(outcomes)
        self.statements: list[str] = []

    def execute(self, statement: str, params: tuple = ()) -> None:
        self.statements.append(statement)
        outcome = self.outcomes.pop(0)
        if outcome is not None:
            raise outcome


def test_a_job_row_updated_meanwhile_is_met_by_another_attempt(monkeypatch) -> None:
    monkeypatch.setattr(m.time, "sleep", lambda s: None)
    conn = _Conn(psycopg.errors.InternalError_("tuple concurrently deleted"),
                 psycopg.errors.InternalError_("tuple concurrently updated"), None)
    m._apply_policies(conn, 395, 7)  # type: ignore[arg-type]
    assert len(conn.statements) == 3 and all("aa_apply_policies" in s for s in conn.statements)


def test_other_internal_errors_are_not_retried(monkeypatch) -> None:
    monkeypatch.setattr(m.time, "sleep", lambda s: None)
    conn = _Conn(psycopg.errors.InternalError_("cache lookup failed for relation 1234"), None)
    with pytest.raises(psycopg.errors.InternalError_):
        m._apply_policies(conn, 395, 7)  # type: ignore[arg-type]
    assert len(conn.statements) == 1


def test_a_lasting_race_is_reported(monkeypatch) -> None:
    monkeypatch.setattr(m.time, "sleep", lambda s: None)
    conn = _Conn(*[psycopg.errors.InternalError_("tuple concurrently deleted")] * 10)
    with pytest.raises(psycopg.errors.InternalError_):
        m._apply_policies(conn, 395, 7)  # type: ignore[arg-type]
