"""What is arriving: every record the receiver answers, counted by where it came from and what
became of it, in the `ingest_stats` table (migration 0010) and in the transaction that stores
the batch's facts, so that what a sender was told it delivered is what is counted.

Where a record comes from (its key): the source (which normaliser's records it is, or would be:
ingest/sources.py), the signal, the sending service's `service.name` and `service.version`, the
agent instance and the user, read as the normalisers read them. What became of it (its outcome):
- stored: at least one fact it made was new to the database;
- duplicate: every fact it made was stored already (a resent batch, a repeated cumulative point);
- ignored: known to carry nothing the dashboards count (a prompt event, a startup event, an
  unrelated metric or span), so nothing is stored;
- rejected: unusable, with the reason the sender was told, cut to its words before any quoted or
  numeric detail (`reason_label`), so that the reasons stay few.
A resent batch's ignored and rejected records are counted again: nothing of them is stored by
which to recognise them. Records that stored nothing are counted per sender for a bounded number
of senders per request, the rest under OTHER (`MAX_UNSTORED_SENDERS`).
"""
from __future__ import annotations

from collections import Counter
from typing import Any, Iterable, Mapping

import psycopg

from . import sources
from .identity import USER_KEYS, user_id
from .metrics import reason_label
from .values import text

OUTCOMES = ("stored", "duplicate", "ignored", "rejected")
MAX_TEXT = 200  # longest service, version, instance or user kept (they come from the sender)
REASON_WORDS = 12  # enough for every reason the normalisers give ("span start time is more than a day ...")
# Senders (service, version, agent instance, user) of records that stored nothing (duplicate,
# ignored, rejected) kept apart per request; the rest are counted together as OTHER. Such records
# cost an ingest token nothing else, so without a bound one request of 50,000 records, each naming
# another user, would add 50,000 rows. An exporter's batch names one service and instance and, from
# a gateway, at most a few dozen users; 100 keeps every real sender apart and a request's rows few.
# Senders of stored records are not bounded: each such row comes with the facts it counts.
MAX_UNSTORED_SENDERS = 100
OTHER = "(other)"

# (source, signal, service, version, agent_instance, user_id); None where the record names none.
Key = tuple[str, str, str | None, str | None, str | None, str | None]

# The attributes naming a user: those `user_id` reads (identity.USER_KEYS), and `key`'s enduser.id.
_USER_KEYS = frozenset(("enduser.id", *USER_KEYS))
_ANY_INSTANCE_KEYS = frozenset(sources.INSTANCE_KEYS).union(*(a.instance_keys for a in sources.AGENTS))


def service(resource: Mapping[str, Any]) -> tuple[str | None, str | None]:
    """The sending service's name and version (read once per resource)."""
    return text(resource, "service.name"), text(resource, "service.version")


def key(source: str, signal: str, sender: tuple[str | None, str | None], attrs: Mapping[str, Any]) -> Key:
    """Where a record comes from. `sender`: its resource's `service`; `attrs`: its attributes
    over its resource's (at least those naming the user and the instance). The instance is read
    as the source's normaliser reads it (`Agent.instance_keys`)."""
    # This runs for every record: the usual cases (the first instance attribute, an e-mail) are
    # read here as `text` and `user_id` read them.
    keys = sources.instance_keys(source)
    instance = attrs.get(keys[0]) if keys else None
    if type(instance) is not str or not instance:
        instance = text(attrs, *keys)
    email = attrs.get("user.email")
    user = email.strip() if type(email) is str and email else user_id(attrs, "enduser.id")
    return (source, signal, sender[0], sender[1], instance, user)


def identity_attributes(resource: Mapping[str, Any], kvs: Iterable[Any]) -> Mapping[str, Any]:
    """The resource's attributes with the record's own that name a user or an instance over them,
    read without converting the record's other attributes (for records no normaliser reads)."""
    out: dict[str, Any] | None = None
    for kv in kvs:
        if kv.key in _USER_KEYS or kv.key in _ANY_INSTANCE_KEYS:
            if out is None:
                out = dict(resource)
            out[kv.key] = kv.value.string_value or None
    return resource if out is None else out


def _clean(value: str | None) -> str:
    """A key part as stored: '' for none, cut, without what PostgreSQL text cannot hold."""
    if not value:
        return ""
    value = value[:MAX_TEXT]
    if "\x00" in value:
        value = value.replace("\x00", "")
    return value.encode("utf-8", "replace").decode("utf-8")


_UPSERT = (
    "INSERT INTO ingest_stats AS s (bucket, source, signal, service, version, agent_instance, user_id, outcome,"
    " reason, records, last_seen)"
    " SELECT date_trunc('hour', now()), k.*, now()"
    " FROM unnest(%s::text[], %s::text[], %s::text[], %s::text[], %s::text[], %s::text[], %s::text[], %s::text[],"
    " %s::bigint[]) AS k"
    # In key order, the whole key (reason too: the sort is not stable): two receivers updating
    # the same rows wait for each other, never deadlock.
    " ORDER BY 1, 2, 3, 4, 5, 6, 7, 8, 9"
    " ON CONFLICT (bucket, source, signal, service, version, agent_instance, user_id, outcome, reason)"
    " DO UPDATE SET records = s.records + excluded.records, last_seen = greatest(s.last_seen, excluded.last_seen)")


def rows(tally: Mapping[tuple[Key, str, str], int], origins: list[Key], new: set[int] | None) -> list[tuple]:
    """The batch's counts, one row per key, outcome and reason, in key order. `tally`: the
    ignored and rejected records; `origins`: the key of each record that made facts, `new` the
    indexes of those whose facts were new (None: all of them)."""
    # Grouped before anything is done per key: a batch has hundreds of records and few keys.
    made: Counter[tuple[Key, str, str]] = Counter()
    if new is None:
        for k, n in Counter(origins).items():
            made[(k, "stored", "")] = n
    else:
        for i, k in enumerate(origins):
            made[(k, "stored" if i in new else "duplicate", "")] += 1
    counts: Counter[tuple[str, ...]] = Counter()
    for group in (tally, made):
        for (k, outcome, reason), n in group.items():
            counts[(*map(_clean, k), outcome, reason_label(reason, REASON_WORDS) if reason else "")] += n
    return sorted((*row, n) for row, n in _fold(counts).items())


def _fold(counts: Counter[tuple[str, ...]]) -> Counter[tuple[str, ...]]:
    """`counts` with the records that stored nothing of all but MAX_UNSTORED_SENDERS senders
    under OTHER: as many records, fewer rows. Senders that stored records in the batch keep
    theirs, then those of the most records."""
    storing = {row[2:6] for row in counts if row[6] == "stored"}
    unstored: Counter[tuple[str, ...]] = Counter()
    for row, n in counts.items():
        if row[6] != "stored" and row[2:6] not in storing:
            unstored[row[2:6]] += n
    if len(unstored) <= MAX_UNSTORED_SENDERS:
        return counts
    kept = storing | {s for s, _ in sorted(unstored.items(), key=lambda kv: (-kv[1], kv[0]))[:MAX_UNSTORED_SENDERS]}
    out: Counter[tuple[str, ...]] = Counter()
    for row, n in counts.items():
        if row[6] != "stored" and row[2:6] not in kept:
            row = (*row[:2], OTHER, OTHER, OTHER, OTHER, *row[6:])
        out[row] += n
    return out


def write(conn: psycopg.Connection, tally: Mapping[tuple[Key, str, str], int], origins: list[Key],
          new: set[int] | None) -> None:
    """Add the batch's counts to the hour's rows: one statement."""
    out = rows(tally, origins, new)
    if out:
        conn.execute(_UPSERT, [list(column) for column in zip(*out)])
