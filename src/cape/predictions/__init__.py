"""Falsifiable predictions kept as data, and their evaluation against scores.

A prediction file (YAML or JSON) holds a list of predictions. Each names the models it is
about (``scope``: released after a date, optionally one lab), a ``deadline`` (a date, or a
number of qualifying releases), named ``statistics`` computed on the qualifying models,
and ``pass`` / ``fail`` rules over those statistics::

    format: cape-predictions/1
    defaults:
      scope: {released_after: 2026-05}
    predictions:
      - id: P1
        title: SWE-bench saturates
        deadline: 2026-12
        statistics:
          swe: {kind: spread, benchmark: swe_bench_verified, top: 5}
          gpqa: {kind: spread, benchmark: gpqa_diamond, top: 5}
        pass: {all: ["swe < 2", "gpqa > 5"]}
        fail: {any: ["swe > 5"]}

Statistic kinds:

``spread``   max - min of the ``top`` best qualifying scores on ``benchmark``
``pearson``  r between benchmarks ``x`` and ``y`` over qualifying models with both
``h``        each qualifying model's residual from the population line of ``y`` on ``x``
             (default GPQA Diamond on SWE-bench Verified) fitted on the dated models
             released before the scope's date (post-cutoff-flagged models excluded): the
             preprint's frozen fit. A scope without a date fits all published models.
``count``    the number of qualifying models (with ``benchmark`` if given)

A condition is ``NAME OP NUMBER`` or ``NAME.FIELD OP NUMBER`` with OP one of < <= > >=.
Every statistic has the fields ``value`` (the default) and ``n``; ``h`` has ``min``,
``max`` and ``mean`` instead of a value. ``pass`` and ``fail`` are ``{all: [...]}`` or
``{any: [...]}``.

Status, evaluated as of a date (default: today):

``PASS`` / ``FAIL``  the deadline has been reached and the rule holds (FAIL is checked first)
``UNDECIDED``        the deadline has been reached, every statistic is defined, neither rule holds
``PENDING``          the deadline has not been reached, or a statistic a rule needs is
                     undefined or incomplete (too few qualifying models, a qualifying
                     release without the scores, or no qualifying model at all: absence
                     from the data is not evidence); ``provisional`` says what the rules
                     say on today's data
"""

from __future__ import annotations

import datetime as _dt
import math
import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np
import pandas as pd

from .. import stats
from ..analysis.data import panel_name, resolve_benchmark
from ..analysis.saturation import top_spread
from ..analysis.frontier import FRONTIER_PAIR, Line, subset_mask
from ..analysis.results import Result, fmt_num
from ..benchmarks import try_resolve
from ..errors import CapeError, InputError
from ..yamlfile import load_yaml
from ..units import date_range

__all__ = ["FORMAT", "Prediction", "load_predictions", "builtin_predictions", "evaluate_predictions",
           "PredictionStatus", "PredictionReport", "combine_frames"]

FORMAT = "cape-predictions/1"
KINDS = {"spread": ("benchmark", "top"), "pearson": ("x", "y"), "h": (), "count": ()}
OPTIONAL = {"spread": (), "pearson": (), "h": ("x", "y"), "count": ("benchmark",)}
FIELDS = {"spread": ("value", "n"), "pearson": ("value", "n"), "h": ("min", "max", "mean", "n"),
          "count": ("value", "n")}
_COND = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_]*)(?:\.([A-Za-z_]+))?\s*(<=|>=|<|>)\s*([-+]?\d+(?:\.\d+)?)\s*$")
STATUSES = ("PASS", "FAIL", "UNDECIDED", "PENDING")


# ------------------------------------------------------------------------------ loading
@dataclass
class Condition:
    stat: str
    field: str
    op: str
    threshold: float
    text: str

    def holds(self, value: float) -> bool | None:
        if value is None or not math.isfinite(value):
            return None
        return {"<": value < self.threshold, "<=": value <= self.threshold,
                ">": value > self.threshold, ">=": value >= self.threshold}[self.op]


@dataclass
class Rule:
    mode: str  # "all" | "any"
    conditions: list[Condition]

    @property
    def text(self) -> str:
        return f" {'and' if self.mode == 'all' else 'or'} ".join(c.text for c in self.conditions)


@dataclass
class Prediction:
    """One prediction, validated. ``deadline`` is a date or ``None`` with ``releases`` set."""

    id: str
    title: str
    statistics: dict[str, dict]
    pass_rule: Rule
    fail_rule: Rule
    released_after: _dt.date | None
    lab: str | None
    deadline: _dt.date | None
    releases: int | None
    deadline_text: str
    scope_text: str
    source: str = ""
    origin: str = ""


def _date_end(value, where) -> tuple[_dt.date, str]:
    if isinstance(value, _dt.datetime):
        value = value.date()
    if isinstance(value, _dt.date):
        return value, value.isoformat()
    try:
        rng = date_range(str(value))
    except CapeError:
        rng = None
    if rng is None:
        raise where(f"'{value}' is not a date (write YYYY, YYYY-MM or YYYY-MM-DD)")
    return rng[1], str(value)


def _check_scope(scope, fail) -> None:
    if not isinstance(scope, dict):
        raise fail((), "scope is a mapping: {released_after: YYYY-MM, lab: NAME}")
    for k in scope:
        if k not in ("released_after", "lab"):
            raise fail((k,), f"unknown scope field '{k}' (released_after, lab)")


def _parse_prediction(p: dict, defaults: dict, path: tuple, err) -> Prediction:
    def e(sub, msg):
        return err(path + sub, msg)

    if not isinstance(p, dict):
        raise e((), "a prediction is a mapping with id, title, deadline, statistics, pass and fail")
    known = {"id", "title", "scope", "deadline", "statistics", "pass", "fail", "source", "note"}
    for k in p:
        if k not in known:
            raise e((k,), f"unknown field '{k}' (known: {', '.join(sorted(known))})")
    for k in ("id", "deadline", "statistics", "pass", "fail"):
        if k not in p:
            raise e((), f"missing field '{k}'")
    pid = str(p["id"])
    own = p.get("scope") or {}
    _check_scope(own, lambda sub, m: e(("scope",) + sub, m))
    scope = {**(defaults.get("scope") or {}), **own}
    after = None
    if scope.get("released_after") is not None:
        where = ("scope", "released_after")
        fail = (lambda m: e(where, m)) if "released_after" in own else (lambda m: err(("defaults",) + where, m))
        after, _ = _date_end(scope["released_after"], fail)
    lab = str(scope["lab"]) if scope.get("lab") is not None else None
    dl = p["deadline"]
    deadline = releases = None
    if isinstance(dl, dict):
        n_rel = dl.get("releases")
        if set(dl) != {"releases"} or isinstance(n_rel, bool) or not isinstance(n_rel, int) or n_rel < 1:
            raise e(("deadline",), "a deadline is a date (YYYY-MM) or {releases: N} with N >= 1")
        releases = int(dl["releases"])
        deadline_text = f"the next {releases} qualifying release(s)"
    else:
        deadline, txt = _date_end(dl, lambda m: e(("deadline",), m))
        deadline_text = txt if txt == deadline.isoformat() else f"{txt} (through {deadline.isoformat()})"
    stats_ = p["statistics"]
    if not isinstance(stats_, dict) or not stats_:
        raise e(("statistics",), "statistics is a non-empty mapping NAME: {kind: ..., ...}")
    for name, spec in stats_.items():
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", str(name)):
            raise e(("statistics", name), f"'{name}' is not a valid statistic name (letters, digits, _)")
        if not isinstance(spec, dict) or "kind" not in spec:
            raise e(("statistics", name), "a statistic is {kind: spread|pearson|h|count, ...}")
        kind = spec["kind"]
        if not isinstance(kind, str) or kind not in KINDS:
            raise e(("statistics", name, "kind"), f"unknown kind '{kind}' (one of: {', '.join(KINDS)})")
        for k in KINDS[kind]:
            if k not in spec:
                raise e(("statistics", name), f"a {kind} statistic needs '{k}'")
        for k in spec:
            if k != "kind" and k not in KINDS[kind] + OPTIONAL[kind]:
                raise e(("statistics", name, k), f"unknown field '{k}' for a {kind} statistic")
        for k in ("benchmark", "x", "y"):
            if k in spec and try_resolve(str(spec[k])) is None:
                raise e(("statistics", name, k), f"unknown benchmark '{spec[k]}' (see `cape benchmarks`)")
        top = spec.get("top")
        if kind == "spread" and (isinstance(top, bool) or not isinstance(top, int) or top < 2):
            raise e(("statistics", name, "top"), f"top must be an integer >= 2, got {spec['top']!r}")
    rules = []
    for key in ("pass", "fail"):
        r = p[key]
        if not isinstance(r, dict) or len(r) != 1 or next(iter(r)) not in ("all", "any"):
            raise e((key,), f"{key} is {{all: [conditions]}} or {{any: [conditions]}}")
        mode = next(iter(r))
        items = r[mode]
        if isinstance(items, str):
            items = [items]
        if not isinstance(items, list) or not items:
            raise e((key, mode), "a rule lists at least one condition such as \"r > 0.6\"")
        conds = []
        for i, c in enumerate(items):
            m = _COND.match(str(c))
            if not m:
                raise e((key, mode, i), f"'{c}' is not a condition (write NAME OP NUMBER, e.g. \"r.n >= 8\")")
            name, fld, op, num = m.groups()
            if name not in stats_:
                raise e((key, mode, i), f"'{name}' is not one of this prediction's statistics "
                                        f"({', '.join(stats_)})")
            kind = stats_[name]["kind"]
            fld = fld or "value"
            if fld not in FIELDS[kind]:
                raise e((key, mode, i), f"a {kind} statistic has no field '{fld}' (fields: "
                                        f"{', '.join(FIELDS[kind])})")
            conds.append(Condition(name, fld, op, float(num), str(c).strip()))
        rules.append(Rule(mode, conds))
    scope_text = ", ".join(
        ([f"released after {after.isoformat()}"] if after else ["all releases"]) + ([f"lab {lab}"] if lab else []))
    return Prediction(pid, str(p.get("title", pid)), {k: dict(v) for k, v in stats_.items()}, rules[0], rules[1],
                      after, lab, deadline, releases, deadline_text, scope_text, str(p.get("source", "")))


def load_predictions(path: str | Path | None = None, *, text: str | None = None,
                     name: str | None = None) -> list[Prediction]:
    """Read and check a prediction file (YAML or JSON). Errors name the file, the line and
    the field (``file.yaml:12, field 'predictions[1].pass.all[0]'``). Nothing is evaluated
    until the whole file is valid."""
    label = name or (str(path) if path is not None else "<predictions>")
    data, err = load_yaml(path, text=text, label=label, what="prediction file")

    if not isinstance(data, dict) or "predictions" not in data:
        raise err((), "a prediction file is a mapping with a 'predictions' list")
    fmt = data.get("format", FORMAT)
    if fmt != FORMAT:
        raise err(("format",), f"unknown format '{fmt}' (this CAPE reads {FORMAT})")
    defaults = data.get("defaults") or {}
    if not isinstance(defaults, dict):
        raise err(("defaults",), "defaults is a mapping (e.g. {scope: {released_after: 2026-05}})")
    for k in defaults:
        if k != "scope":
            raise err(("defaults", k), f"unknown default '{k}' (only scope)")
    _check_scope(defaults.get("scope") or {}, lambda sub, m: err(("defaults", "scope") + sub, m))
    preds = data["predictions"]
    if not isinstance(preds, list) or not preds:
        raise err(("predictions",), "predictions is a non-empty list")
    out, seen = [], set()
    for i, p in enumerate(preds):
        pred = _parse_prediction(p, defaults, ("predictions", i), err)
        if pred.id in seen:
            raise err(("predictions", i, "id"), f"duplicate prediction id '{pred.id}'")
        seen.add(pred.id)
        pred.origin = label
        if not pred.source:
            pred.source = str(data.get("source", ""))
        out.append(pred)
    return out


def builtin_predictions() -> list[Prediction]:
    """Paper B's seven predictions, shipped with the package (``paper-b.yaml``)."""
    f = resources.files("cape.predictions").joinpath("data", "paper-b.yaml")
    return load_predictions(text=f.read_text(encoding="utf-8"), name="paper-b.yaml (built-in)")


# ------------------------------------------------------------------------------ data
def combine_frames(frames: list[pd.DataFrame]) -> pd.DataFrame:
    """Stack wide panel frames (index = model); a model in a later frame replaces the
    earlier row's scores where the later one has them."""
    if not frames:
        raise CapeError("no panels to evaluate against")
    frames = [f.set_index("model") if "model" in f.columns else f for f in frames]
    if len(frames) == 1:
        return frames[0]
    out = frames[0].copy()
    for f in frames[1:]:
        out = f.combine_first(out) if len(out) else f.copy()
    names = [panel_name(f) for f in frames]
    bench = []
    for f in frames:
        bench += [b for b in f.attrs.get("cape", {}).get("benchmarks", []) if b not in bench]
    out.attrs["cape"] = {"panel": " + ".join(names), "benchmarks": bench}
    return out


# ------------------------------------------------------------------------------ evaluation
@dataclass
class PredictionStatus:
    id: str
    title: str
    status: str
    provisional: str
    reason: str
    deadline: str
    deadline_reached: bool
    scope: str
    pass_rule: str
    fail_rule: str
    evidence: dict
    qualifying: list[str]
    excluded: list[dict]
    source: str
    origin: str


@dataclass
class PredictionReport(Result):
    panel: str
    as_of: str
    predictions: list[PredictionStatus]

    @property
    def table(self) -> pd.DataFrame:
        return pd.DataFrame([{"id": p.id, "title": p.title, "status": p.status, "provisional": p.provisional,
                              "deadline": p.deadline, "reason": p.reason} for p in self.predictions])

    def summary(self) -> str:
        lines = [f"Predictions against {self.panel}, as of {self.as_of}"]
        for p in self.predictions:
            lines.append(f"  {p.id} {p.title}: {p.status}"
                         + (f" (provisional: {p.provisional})" if p.status == "PENDING" and p.provisional
                            else "") + f" - {p.reason}")
        return "\n".join(lines)


def _describe_stat(name, ev) -> str:
    if ev["kind"] == "h":
        if not ev["n"]:
            return f"{name}: no qualifying models"
        return (f"{name}: n = {ev['n']}, min {fmt_num(ev['min'])}, max {fmt_num(ev['max'])} "
                f"({', '.join(f'{m} {v:+.1f}' for m, v in zip(ev['models'], ev['values']))})")
    return f"{name} = {fmt_num(ev['value'])} (n = {ev['n']})" + (f"; {ev['note']}" if ev.get("note") else "")


def _statistic(spec: dict, q: pd.DataFrame, frame: pd.DataFrame, fit_frame: pd.DataFrame) -> dict:
    kind = spec["kind"]
    ev = {"kind": kind, "value": math.nan, "n": 0, "models": [], "note": ""}
    if kind == "count":
        if spec.get("benchmark"):
            b = _column(frame, spec["benchmark"])
            sub = q[q[b].notna()] if b else q.iloc[:0]
        else:
            sub = q
        ev.update(value=float(len(sub)), n=len(sub), models=sub["model"].tolist())
        return ev
    if kind == "spread":
        b = _column(frame, spec["benchmark"])
        sub = q[q[b].notna()] if b else q.iloc[:0]
        ev["n"] = len(sub)
        k = int(spec["top"])
        if len(sub) < k:
            ev["note"] = f"{len(sub)} qualifying model(s) with {spec['benchmark']}; the spread needs {k}"
            ev["models"] = sub["model"].tolist()
            return ev
        top = sub.sort_values(b, ascending=False, kind="stable").head(k)
        ev.update(value=float(top_spread(sub[b].to_numpy(dtype=float), k)), models=top["model"].tolist(),
                  scores=[float(v) for v in top[b]])
        return ev
    if kind == "pearson":
        bx, by = _column(frame, spec["x"]), _column(frame, spec["y"])
        sub = q[q[bx].notna() & q[by].notna()] if bx and by else q.iloc[:0]
        ev.update(n=len(sub), models=sub["model"].tolist())
        if len(sub) < 3:
            ev["note"] = f"{len(sub)} qualifying model(s) with both {spec['x']} and {spec['y']}; r needs 3"
        elif np.ptp(sub[bx]) == 0 or np.ptp(sub[by]) == 0:
            ev["note"] = "one benchmark is constant over the qualifying models: r undefined"
        else:
            ev["value"] = float(stats.pearson_r(sub[bx].to_numpy(dtype=float), sub[by].to_numpy(dtype=float)))
        return ev
    # h: residual from the line fitted outside the scope
    bx = _column(frame, spec.get("x", FRONTIER_PAIR[0]))
    by = _column(frame, spec.get("y", FRONTIER_PAIR[1]))
    ev.update(min=math.nan, max=math.nan, mean=math.nan, values=[])
    if not (bx and by):
        ev["note"] = "the panel lacks the benchmarks of the h line"
        return ev
    fit = fit_frame[fit_frame[bx].notna() & fit_frame[by].notna()]
    if len(fit) < 3 or np.ptp(fit[bx]) == 0:
        ev["note"] = f"the reference line needs 3+ models outside the scope; {len(fit)} found"
        return ev
    line = Line.fit(fit[bx].astype(float), fit[by].astype(float))
    sub = q[q[bx].notna() & q[by].notna()]
    h = line.residual(sub[bx].astype(float), sub[by].astype(float))
    ev.update(n=len(sub), models=sub["model"].tolist(), values=[float(v) for v in h],
              line={"slope": line.slope, "intercept": line.intercept, "n": line.n, "r": line.r})
    if len(sub):
        ev.update(min=float(h.min()), max=float(h.max()), mean=float(h.mean()))
    if len(sub) < len(q):
        missing = [str(m) for m in q["model"] if m not in set(sub["model"])]
        ev["note"] = f"{', '.join(missing)} lack(s) {bx} or {by}: h is incomplete"
    return ev


def _column(frame: pd.DataFrame, name: str) -> str | None:
    try:
        return resolve_benchmark(frame, name)
    except CapeError:
        return None


def _evaluate(pred: Prediction, frame: pd.DataFrame, as_of: _dt.date) -> PredictionStatus:
    df = frame if "model" in frame.columns else frame.rename_axis("model").reset_index()
    df = df.copy()
    for c in ("release_date", "family", "flags", "subset"):
        if c not in df.columns:
            df[c] = None
    ranges = [date_range(d) if isinstance(d, str) and d else None for d in df["release_date"]]
    lo = pd.Series([r[0] if r else None for r in ranges], index=df.index, dtype=object)
    hi = pd.Series([r[1] if r else None for r in ranges], index=df.index, dtype=object)
    excluded = []
    in_scope = pd.Series(True, index=df.index)
    fit_mask = subset_mask(df.assign(flags=df["flags"].fillna(""), subset=df["subset"].fillna("")), "published")
    if pred.lab is not None:
        in_scope &= df["family"].astype(str) == pred.lab
    if pred.released_after is not None:
        after = pred.released_after
        undated = lo.isna()
        ambiguous = ~undated & (lo.map(lambda d: d is not None and d <= after)) & (
            hi.map(lambda d: d is not None and d > after))
        later = ~undated & lo.map(lambda d: d is not None and d > after)
        for m in df.loc[in_scope & undated, "model"]:
            excluded.append({"model": str(m), "reason": "no release date"})
        for m, d in zip(df.loc[in_scope & ambiguous, "model"], df.loc[in_scope & ambiguous, "release_date"]):
            excluded.append({"model": str(m), "reason": f"release date {d} too coarse to place against "
                                                        f"{after.isoformat()}"})
        fit_mask &= ~(later | ambiguous) & ~undated
        in_scope &= later
    future = lo.map(lambda d: d is not None and d > as_of)
    in_scope &= ~future
    q = df[in_scope].assign(_lo=lo[in_scope]).sort_values("_lo", kind="stable")
    deadline_reached = True
    if pred.releases is not None:
        if len(q) > pred.releases:
            q = q.head(pred.releases)
        deadline_reached = len(q) >= pred.releases
    else:
        deadline_reached = as_of > pred.deadline
    evidence = {name: _statistic(spec, q, frame, df[fit_mask]) for name, spec in pred.statistics.items()}

    def rule_value(rule: Rule):
        vals = []
        for c in rule.conditions:
            ev = evidence[c.stat]
            v = ev["n"] if c.field == "n" else ev.get(c.field, math.nan)
            vals.append(c.holds(float(v) if v is not None else math.nan))
        if rule.mode == "all":
            return False if any(v is False for v in vals) else (True if all(v is True for v in vals) else None)
        return True if any(v is True for v in vals) else (False if all(v is False for v in vals) else None)

    pv, fv = rule_value(pred.pass_rule), rule_value(pred.fail_rule)
    used = {c.stat for c in pred.pass_rule.conditions + pred.fail_rule.conditions}
    undefined = [n for n, ev in evidence.items() if ev.get("note") and n in used]
    if q.empty:  # nothing qualifies: absence from the data is not evidence either way
        now = "PENDING"
    elif fv is True:
        now = "FAIL"
    elif pv is None or fv is None or undefined:  # a statistic the rules need is not (fully) there
        now = "PENDING"
    elif pv is True:
        now = "PASS"
    else:
        now = "UNDECIDED"
    facts = "; ".join(_describe_stat(n, ev) for n, ev in evidence.items())
    if not deadline_reached:
        status, provisional = "PENDING", now
        if pred.releases is not None:
            reason = f"{len(q)} of {pred.releases} qualifying release(s) so far; {facts}"
        else:
            reason = f"deadline {pred.deadline.isoformat()} not reached; {facts}"
    else:
        status, provisional = now, ""
        if now == "PENDING":
            passed = ("the deadline has passed" if pred.deadline is None
                      else f"the deadline {pred.deadline.isoformat()} has passed")
            lack = ("no model qualifies" if q.empty else
                    f"too few qualifying models for {', '.join(undefined) or 'a statistic'}")
            reason = (f"{passed} but {lack}; ingest scores of releases ({pred.scope_text}) to decide it; {facts}")
        elif now == "FAIL":
            reason = f"fail rule holds ({pred.fail_rule.text}); {facts}"
        elif now == "PASS":
            reason = f"pass rule holds ({pred.pass_rule.text}); {facts}"
        else:
            reason = f"between the bands: neither '{pred.pass_rule.text}' nor '{pred.fail_rule.text}'; {facts}"
    return PredictionStatus(pred.id, pred.title, status, provisional, reason, pred.deadline_text,
                            deadline_reached, pred.scope_text, pred.pass_rule.text, pred.fail_rule.text, evidence,
                            q["model"].astype(str).tolist(), excluded, pred.source, pred.origin)


def evaluate_predictions(frame: pd.DataFrame, predictions: list[Prediction] | None = None, *,
                         as_of: _dt.date | str | None = None) -> PredictionReport:
    """Evaluate ``predictions`` (default: paper B's seven) on a wide panel frame (see
    :func:`combine_frames` to evaluate several panels together) as of ``as_of``."""
    preds = builtin_predictions() if predictions is None else predictions
    if as_of is None:
        day = _dt.date.today()
    elif isinstance(as_of, _dt.date):
        day = as_of
    else:
        try:
            day = _dt.date.fromisoformat(str(as_of))
        except ValueError:
            raise CapeError(f"--as-of takes a date YYYY-MM-DD, not '{as_of}'") from None
    return PredictionReport(panel_name(frame), day.isoformat(), [_evaluate(p, frame, day) for p in preds])
