"""One evaluation of a Grafana-managed alert rule, as Grafana's alerting runs it, for the parts our
rules use. Each step names the Grafana (or Infinity plugin) source it follows, read at the commits
listed in docs/grafana-install.md:

1. Time range: each query's relativeTimeRange against the evaluation time, absolute
   (pkg/services/ngalert/models/alert_query.go RelativeTimeRange.ToTimeRange: now - from .. now - to).
2. The Infinity backend query (grafana-infinity-datasource pkg/models/macros.go ApplyMacros with
   infinity-libs macros: `${__timeFrom}` / `${__timeTo}` are the range's epoch milliseconds), sent
   to the data source URL with its secure header; the answer framed by the backend parser
   (root_selector, one field per column named by its `text`, numbers as nullable floats).
3. Server-side expressions (pkg/expr): a table with one numeric field and no time field is a set
   of numbers, one per row, labelled by the row's string fields (label: the field's name, value:
   the row's; converter.go isNumberTable / extractNumberSet); reduce of a number keeps it,
   through the mode's mapper (commands.go ReduceCommand.Execute: dropNN drops NaN/Inf/null,
   replaceNN replaces them); math is bosun's expression language (mathexp/parse: || && then
   comparisons then + - then * / % then **, unary ! and - taking the rest, null in -> null out);
   threshold is the math expression it builds (threshold.go createMathExpression). Math over
   labelled sets pairs numbers whose labels are equal, or one side unlabelled, and drops the
   numbers left unpaired (mathexp/exp.go union).
4. The condition's numbers become states (pkg/services/ngalert/eval/eval.go
   evaluateExecutionResult), one per label set (an alert instance each): none -> NoData, null ->
   NoData, 0 -> Normal, anything else (NaN too) -> Alerting.

Anything outside that (series, labels that are subsets of others, other expression types or
macros) raises, so a rule that starts using more than this is not evaluated wrongly in silence."""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Callable

import requests

EXPR_UID = "__expr__"
Number = float | None  # one number of a result; None is Grafana's null
Labels = tuple[tuple[str, str], ...]  # a number's labels, sorted; () for an unlabelled number
Item = tuple[Labels, Number]


class Unsupported(AssertionError):
    """The rule uses something this evaluator does not model."""


@dataclass
class Evaluation:
    state: str                                            # Alerting | Normal | NoData (one instance)
    sets: dict[str, list[Item]] = field(default_factory=dict)  # by refId: labelled numbers
    requests: list[str] = field(default_factory=list)     # the URLs the data source was sent
    instances: dict[Labels, str] = field(default_factory=dict)  # each alert instance's state

    @property
    def values(self) -> dict[str, list[Number]]:
        """The numbers of each refId, without their labels."""
        return {ref: [v for _, v in items] for ref, items in self.sets.items()}

    def labelled(self, ref: str) -> dict[Labels, Number]:
        return dict(self.sets[ref])


# -- 1 and 2: the data source queries ------------------------------------------------------------
def time_range(relative: dict[str, int], now: datetime) -> tuple[datetime, datetime]:
    return now - timedelta(seconds=int(relative.get("from", 0))), now - timedelta(seconds=int(relative.get("to", 0)))


def _ms(t: datetime) -> str:
    return str(int(t.timestamp() * 1000))


def interpolate(url: str, start: datetime, end: datetime) -> str:
    out = url.replace("${__timeFrom}", _ms(start)).replace("${__timeTo}", _ms(end))
    if "$" in out:
        raise Unsupported(f"macro left in {out!r}")
    return out


def infinity_numbers(model: dict[str, Any], answer: Any) -> list[Number]:
    """The backend parser's frame of `answer`, then SSE's reading of it as numbers."""
    return [v for _, v in infinity_items(model, answer)]


def infinity_items(model: dict[str, Any], answer: Any) -> list[Item]:
    """The backend parser's frame of `answer`, then SSE's reading of it as labelled numbers."""
    if model.get("parser") != "backend" or model.get("type") != "json" or model.get("format") != "table":
        raise Unsupported(f"Infinity query {model.get('type')}/{model.get('parser')}/{model.get('format')}")
    rows = answer
    for part in str(model.get("root_selector") or "").split("."):
        if part:
            rows = rows[part]
    columns = model.get("columns") or []
    numeric = [c for c in columns if c["type"] == "number"]
    if len(numeric) != 1 or any(c["type"] not in ("number", "string") for c in columns):
        raise Unsupported("SSE reads a table as numbers only with one numeric field and no time field")
    strings = [c for c in columns if c["type"] == "string"]
    out: list[Item] = []
    for row in rows:
        labels = []
        for c in strings:
            text = row.get(c["selector"])
            if not isinstance(text, str):  # extractNumberSet asserts a string: a null label fails
                raise Unsupported(f"label {c['text']!r} is {text!r}, not a string")
            labels.append((c["text"], text))
        v = row.get(numeric[0]["selector"])
        out.append((tuple(sorted(labels)), None if v is None else float(v)))
    return out


# -- 3: server-side expressions --------------------------------------------------------------------
_TOKEN = re.compile(r"\s*(\$\{[A-Za-z0-9_]+\}|\$[A-Za-z0-9_]+|\d+(?:\.\d*)?(?:[eE][+-]?\d+)?|\|\||&&|==|!=|>=|<=|\*\*|[-+*/%><!()])")


def _tokens(expression: str) -> list[str]:
    pos, out = 0, []
    while pos < len(expression.rstrip()):
        m = _TOKEN.match(expression, pos)
        if not m:
            raise Unsupported(f"math expression {expression!r} at {pos}")
        out.append(m.group(1))
        pos = m.end()
    return out


def _binary(op: str, a: float, b: float) -> float:
    if op in ("&&", "||"):
        return float((a != 0 and b != 0) if op == "&&" else (a != 0 or b != 0))
    if op in ("==", "!=", ">", ">=", "<", "<="):
        return float({"==": a == b, "!=": a != b, ">": a > b, ">=": a >= b, "<": a < b, "<=": a <= b}[op])
    if op == "+":
        return a + b
    if op == "-":
        return a - b
    if op == "*":
        return a * b
    if op == "/":
        return a / b if b else (math.nan if a == 0 else math.copysign(math.inf, a))
    if op == "%":
        return math.fmod(a, b) if b else math.nan
    return a ** b


_LEVELS = [("||",), ("&&",), ("==", "!=", ">", ">=", "<", "<="), ("+", "-"), ("*", "/", "%"), ("**",)]


def evaluate_math(expression: str, variables: dict[str, list[Number]]) -> list[Number]:
    """An expression over single unlabelled numbers; a variable with no number (no data) makes
    the result no data."""
    return _math(expression, variables)


def evaluate_labelled_math(expression: str, sets: dict[str, list[Item]]) -> list[Item]:
    """An expression over labelled sets: per label set, each variable's number with those labels
    (or its one unlabelled number); a label set some variable lacks is dropped (union)."""
    names = [t.strip("${}") for t in _tokens(expression) if t.startswith("$")]
    label_sets: list[Labels] = []
    for name in names:
        for labels, _ in sets[name]:
            if labels and labels not in label_sets:
                label_sets.append(labels)
    keys = {tuple(k for k, _ in labels) for labels in label_sets}
    if len(keys) > 1:
        raise Unsupported(f"label sets of different keys in {expression!r}: {sorted(keys)}")
    if not label_sets:
        return [((), v) for v in _math(expression, {n: [v for _, v in sets[n]] for n in names})]
    out: list[Item] = []
    for labels in label_sets:
        chosen: dict[str, list[Number]] = {}
        for name in names:
            items = sets[name]
            if len(items) == 1 and items[0][0] == ():
                chosen[name] = [items[0][1]]
            else:
                chosen[name] = [v for lab, v in items if lab == labels]
        if any(not v for v in chosen.values()):
            continue  # unpaired: dropped from the union
        out += [(labels, v) for v in _math(expression, chosen)]
    return out


def _math(expression: str, variables: dict[str, list[Number]]) -> list[Number]:
    tokens = _tokens(expression)
    pos = 0
    nodata = False

    def lift(op: str, a: Number, b: Number) -> Number:
        return None if a is None or b is None else _binary(op, a, b)

    def level(i: int) -> Number:
        nonlocal pos
        if i == len(_LEVELS):
            return factor()
        left = level(i + 1)
        while pos < len(tokens) and tokens[pos] in _LEVELS[i]:
            op = tokens[pos]
            pos += 1
            left = lift(op, left, level(i + 1))
        return left

    def factor() -> Number:
        nonlocal pos, nodata
        tok = tokens[pos]
        pos += 1
        if tok == "(":
            v = level(0)
            if tokens[pos] != ")":
                raise Unsupported(f"unbalanced parentheses in {expression!r}")
            pos += 1
            return v
        if tok in ("!", "-"):  # bosun: F -> "!" O | "-" O
            v = level(0)
            return None if v is None else (float(v == 0) if tok == "!" else -v)
        if tok.startswith("$"):
            name = tok.strip("${}")
            values = variables[name]
            if not values:
                nodata = True
                return None
            if len(values) != 1:
                raise Unsupported(f"${name} holds {len(values)} numbers (labelled sets are not modelled)")
            return values[0]
        return float(tok)

    result = level(0)
    if pos != len(tokens):
        raise Unsupported(f"trailing tokens in {expression!r}")
    return [] if nodata else [result]


def _not_a_number(v: Number) -> bool:
    return v is None or math.isnan(v) or math.isinf(v)


def reduce(model: dict[str, Any], values: list[Number]) -> list[Number]:
    return [v for _, v in reduce_items(model, [((), v) for v in values])]


def reduce_items(model: dict[str, Any], items: list[Item]) -> list[Item]:
    if model.get("reducer") not in ("last", "mean", "sum", "min", "max", "count"):
        raise Unsupported(f"reducer {model.get('reducer')}")
    settings = model.get("settings") or {}
    mode = settings.get("mode", "")
    out: list[Item] = []
    for labels, v in items:  # numbers: the reducer is a no-op, the mode's mapper is not
        if mode == "dropNN":
            if _not_a_number(v):
                continue
        elif mode == "replaceNN":
            if _not_a_number(v):
                v = float(settings["replaceWithValue"])
        elif mode not in ("", "strict"):
            raise Unsupported(f"reduce mode {mode}")
        out.append((labels, v))
    return out


_THRESHOLDS: dict[str, Callable[[list[float]], str]] = {
    "gt": lambda p: "${X} > %f" % p[0], "lt": lambda p: "${X} < %f" % p[0],
    "within_range": lambda p: "${X} > %f && ${X} < %f" % (p[0], p[1]),
    "outside_range": lambda p: "${X} < %f || ${X} > %f" % (p[0], p[1]),
}


def threshold_expression(model: dict[str, Any]) -> str:
    conditions = model.get("conditions") or []
    if len(conditions) != 1 or conditions[0].get("unloadEvaluator"):
        raise Unsupported("threshold with more than one condition or recovery threshold")
    ev = conditions[0]["evaluator"]
    exp = _THRESHOLDS[ev["type"]]([float(p) for p in ev["params"]]).replace("${X}", "${" + model["expression"] + "}")
    return f"!({exp})" if model.get("invert") else exp


# -- the whole rule --------------------------------------------------------------------------------
def evaluate(rule: dict[str, Any], now: datetime, datasource_url: str, headers: dict[str, str]) -> Evaluation:
    ev = Evaluation(state="")
    expressions = []
    for q in rule["data"]:
        ref, model = q["refId"], q["model"]
        if q["datasourceUid"] == EXPR_UID:
            expressions.append(q)
            continue
        start, end = time_range(q["relativeTimeRange"], now)
        url = datasource_url.rstrip("/") + interpolate(model["url"], start, end)
        ev.requests.append(url)
        resp = requests.get(url, headers=headers, timeout=30)
        if resp.status_code != 200:
            raise AssertionError(f"{url}: {resp.status_code} {resp.text[:300]}")
        ev.sets[ref] = infinity_items(model, resp.json())
    while expressions:  # in dependency order, as Grafana orders the nodes
        ready = [q for q in expressions if set(_needs(q["model"])) <= set(ev.sets)]
        if not ready:
            raise Unsupported(f"expressions {[q['refId'] for q in expressions]} depend on what is not there")
        for q in ready:
            model = q["model"]
            kind = model["type"]
            if kind == "reduce":
                ev.sets[q["refId"]] = reduce_items(model, ev.sets[model["expression"]])
            elif kind == "math":
                ev.sets[q["refId"]] = evaluate_labelled_math(model["expression"], ev.sets)
            elif kind == "threshold":
                ev.sets[q["refId"]] = evaluate_labelled_math(threshold_expression(model), ev.sets)
            else:
                raise Unsupported(f"expression type {kind}")
            expressions.remove(q)
    result = ev.sets[rule["condition"]]
    ev.instances = {labels: "NoData" if v is None else "Normal" if v == 0 else "Alerting" for labels, v in result}
    if not result:
        ev.state = "NoData"
    elif len(result) == 1:
        ev.state = next(iter(ev.instances.values()))
    else:
        ev.state = "several instances"
    return ev


def _needs(model: dict[str, Any]) -> list[str]:
    if model["type"] == "math":
        return [t.strip("${}") for t in _tokens(model["expression"]) if t.startswith("$")]
    return [model["expression"]]


def alert_state(rule: dict[str, Any], ev: Evaluation) -> str:
    """The state the rule's instance takes (before its pending period): NoData per noDataState
    (ngalert/state: OK -> Normal, Alerting -> Alerting, NoData -> NoData)."""
    if ev.state != "NoData":
        return ev.state
    return {"OK": "Normal", "Alerting": "Alerting", "NoData": "NoData", "KeepLast": "KeepLast"}[rule["noDataState"]]


_LABEL = re.compile(r"\{\{ \$labels\.([A-Za-z0-9_]+) \}\}")
_PRINTF = re.compile(r'\{\{ printf "(%\.\d+f)" \$values\.([A-Za-z0-9_]+)\.Value \}\}')


def render(template: str, labels: Labels, ev: Evaluation) -> str:
    """An annotation as Grafana's templating renders it for the instance with `labels`, for the
    two forms our rules use: `{{ $labels.name }}` and `{{ printf "%.Nf" $values.REF.Value }}`
    (the instance's number of that refId; pkg/services/ngalert/state/template)."""
    named = dict(labels)
    out = _LABEL.sub(lambda m: named[m.group(1)], template)

    def value(m: re.Match) -> str:
        v = dict(ev.sets[m.group(2)]).get(labels)
        if v is None:
            raise Unsupported(f"no number of {m.group(2)} for {labels}")
        return m.group(1) % v

    out = _PRINTF.sub(value, out)
    if "{{" in out:
        raise Unsupported(f"template form left in {out!r}")
    return out
