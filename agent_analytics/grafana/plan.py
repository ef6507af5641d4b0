"""Decide, for one object at a time, what installing means: create it, update it, leave it
(unchanged), or leave it because someone changed it in Grafana. Pure functions of the desired
state and of what Grafana returned; no HTTP here."""
from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Any

from agent_analytics.grafana.sources import HASH_KEY, MARKER_TAG, canonical, dashboard_hash, duration_seconds

JSON = dict[str, Any]


class Kind(str, Enum):
    CREATE = "create"
    UPDATE = "update"
    UNCHANGED = "unchanged"
    SKIP_EDITED = "skip-edited"  # changed in Grafana by someone: left alone unless --force
    SKIP = "skip"                # cannot or should not be written (reason says why)


@dataclass(frozen=True)
class Decision:
    kind: Kind
    reason: str = ""


def is_subset(want: Any, have: Any) -> bool:
    """True when every key we set has the same value in what Grafana returned; Grafana adds
    defaults of its own (ids, intervalMs, maxDataPoints, ...) which do not count as changes."""
    want, have = canonical(want), canonical(have)
    if isinstance(want, dict):
        return isinstance(have, dict) and all(k in have and is_subset(v, have[k]) for k, v in want.items())
    if isinstance(want, list):
        return isinstance(have, list) and len(want) == len(have) and all(
            is_subset(w, h) for w, h in zip(want, have))
    return want == have


# -- data source ------------------------------------------------------------------------------
def plan_datasource(desired: JSON, live: JSON | None, has_token: bool, update_token: bool) -> Decision:
    """`desired` is the POST body without secureJsonData; Grafana never returns secrets, only
    `secureJsonFields` saying which are set."""
    if live is None:
        return Decision(Kind.CREATE)
    if live.get("type") != desired["type"]:
        return Decision(Kind.SKIP, f"uid {live.get('uid')!r} belongs to a {live.get('type')} data source; "
                                   "pick another with --datasource-uid")
    if live.get("readOnly"):
        # Provisioned from files in this Grafana: it cannot be written through the API, and it
        # already is our data source; change its file to change it.
        return Decision(Kind.UNCHANGED, "provisioned from files in this Grafana (read-only): used as it is")
    changed = [k for k in ("name", "url", "access") if live.get(k) != desired.get(k)]
    if not is_subset(desired.get("jsonData") or {}, live.get("jsonData") or {}):
        changed.append("jsonData")
    token_set = bool((live.get("secureJsonFields") or {}).get("httpHeaderValue1"))
    if has_token and (update_token or not token_set):
        changed.append("query token")
    if changed:
        return Decision(Kind.UPDATE, "changed: " + ", ".join(changed))
    note = ""
    if has_token and token_set:
        note = "query token kept (Grafana does not reveal it; --update-token replaces it)"
    return Decision(Kind.UNCHANGED, note)


# -- folder -----------------------------------------------------------------------------------
def plan_folder(title: str, live: JSON | None) -> Decision:
    if live is None:
        return Decision(Kind.CREATE)
    if live.get("title") != title:
        # Someone renamed our folder: keep their name, the uid is what links everything.
        return Decision(Kind.UNCHANGED, f"titled {live.get('title')!r} in Grafana; left as it is")
    return Decision(Kind.UNCHANGED)


# -- dashboards -------------------------------------------------------------------------------
def plan_dashboard(desired: JSON, live: JSON | None, folder_uid: str, force: bool) -> Decision:
    """`desired` carries the hash of its content under HASH_KEY; `live` is Grafana's
    GET /api/dashboards/uid/<uid> answer ({"dashboard", "meta"}).

    A live dashboard whose content no longer hashes to the hash it carries was saved by someone
    else after we wrote it (Grafana's UI also drops our key when saving): it is left alone
    unless `force`."""
    if live is None:
        return Decision(Kind.CREATE)
    model: JSON = live.get("dashboard") or {}
    meta: JSON = live.get("meta") or {}
    if meta.get("provisioned"):
        return Decision(Kind.SKIP, "provisioned from files in this Grafana; change its file instead")
    live_hash = dashboard_hash(model)
    stored_hash = model.get(HASH_KEY)
    same_folder = (meta.get("folderUid") or "") == folder_uid
    if live_hash == desired[HASH_KEY] and stored_hash == desired[HASH_KEY] and same_folder:
        return Decision(Kind.UNCHANGED)
    untouched = stored_hash is not None and stored_hash == live_hash
    if not untouched:
        why = ("edited in Grafana since it was installed" if MARKER_TAG in (model.get("tags") or [])
               else "exists and was not installed by agent-analytics")
        if not force:
            return Decision(Kind.SKIP_EDITED, f"{why} (version {model.get('version')}); --force overwrites it")
        return Decision(Kind.UPDATE, f"{why}; overwritten (--force)")
    if live_hash != desired[HASH_KEY]:
        return Decision(Kind.UPDATE, "new generated version")
    return Decision(Kind.UPDATE, f"moved to folder {folder_uid}")


# -- alert rules ------------------------------------------------------------------------------
_RULE_FIELDS = ("title", "condition", "noDataState", "execErrState", "folderUID", "ruleGroup")


def _rule_differences(want: JSON, have: JSON) -> list[str]:
    diffs = [k for k in _RULE_FIELDS if want.get(k) != have.get(k)]
    if duration_seconds(want.get("for")) != duration_seconds(have.get("for")):
        diffs.append("for")
    for k in ("labels", "annotations"):
        if (want.get(k) or {}) != (have.get(k) or {}):
            diffs.append(k)
    if bool(want.get("isPaused")) != bool(have.get("isPaused")):
        diffs.append("isPaused")
    if not is_subset(want.get("data") or [], have.get("data") or []):
        diffs.append("queries")
    return diffs


def plan_rule_group(desired: JSON, live: JSON | None, editable: bool, force: bool) -> Decision:
    """`desired` is the PUT body (AlertRuleGroup); `live` Grafana's GET of the same group.

    Rules written without X-Disable-Provenance are locked in Grafana's UI, so a difference is
    our own new version. Editable rules (`editable`) may have been changed by people, and we
    cannot tell their edit from our new version: a differing group is left alone unless `force`."""
    if live is None:
        return Decision(Kind.CREATE)
    if any(r.get("provenance") == "file" for r in live.get("rules") or []):
        # Grafana refuses API writes over file-provisioned rules (provenance mismatch, 409).
        return Decision(Kind.SKIP, "provisioned from files in this Grafana; change its provisioning/alerting "
                                   "file instead")
    diffs: list[str] = []
    if int(live.get("interval") or 0) != int(desired["interval"]):
        diffs.append("interval")
    live_rules = {r.get("uid"): r for r in live.get("rules") or []}
    want_rules = {r["uid"]: r for r in desired["rules"]}
    for uid in sorted(set(want_rules) - set(live_rules)):
        diffs.append(f"rule {uid} added")
    for uid in sorted(set(live_rules) - set(want_rules)):
        diffs.append(f"rule {uid} removed")
    for uid in sorted(set(want_rules) & set(live_rules)):
        d = _rule_differences(want_rules[uid], live_rules[uid])
        if d:
            diffs.append(f"rule {uid}: {', '.join(d)}")
    if not diffs:
        return Decision(Kind.UNCHANGED)
    if editable and not force:
        return Decision(Kind.SKIP_EDITED, "differs from ours and its rules are editable in Grafana ("
                        + "; ".join(diffs) + "); --force overwrites it")
    return Decision(Kind.UPDATE, "; ".join(diffs))
