"""The Open LLM Leaderboard v2 table (the ``open-llm-leaderboard/contents`` dataset).

One row per evaluation, exported as Parquet, CSV or JSON records (also the datasets-server
``{"rows": [{"row": {...}}]}`` response). The layout, as the dataset publishes it::

    eval_name, Precision, Type, T, Weight type, Architecture, Model, fullname, Model sha,
    Average ⬆️, Hub License, Hub ❤️, #Params (B), Available on the hub, MoE, Flagged,
    Chat Template, CO₂ cost (kg), IFEval Raw, IFEval, BBH Raw, BBH, MATH Lvl 5 Raw,
    MATH Lvl 5, GPQA Raw, GPQA, MUSR Raw, MUSR, MMLU-PRO Raw, MMLU-PRO, Merged,
    Official Providers, Upload To Hub Date, Submission Date, Generation, Base Model

(older files have ``Not_Merged`` for ``Merged`` and ``Maintainer's Highlight`` for
``Official Providers``). A table is read this way when it has a ``fullname`` column and at
least one of the twelve score columns.

What is read, and how:

* The model id is ``fullname``. ``Model`` is an HTML link for display and is never read.
* ``<X> Raw`` is the lm-eval score as a fraction (stored as percent); ``<X>`` is the
  leaderboard's normalised score, ``(raw - random baseline) / (1 - baseline) * 100``
  clipped at 0 and, for BBH and MuSR, averaged over subtasks: it is not an accuracy. The
  raw score is stored when the row has it; otherwise the normalised one is stored as
  variant ``normalised`` of the same benchmark (never as an accuracy).
* What each column is (lm-eval task, metric -> CAPE benchmark, variant, shots):
  IFEval = ``leaderboard_ifeval``, mean of prompt- and instruction-level strict accuracy ->
  ``ifeval``/``strict_acc_mean``/0; BBH = ``leaderboard_bbh`` acc_norm -> ``bbh``/
  ``acc_norm``/3; MATH Lvl 5 = ``leaderboard_math_hard`` exact_match -> ``math_lvl5``/
  ``exact_match``/4; GPQA = ``leaderboard_gpqa`` (main + extended + diamond) acc_norm ->
  ``gpqa_all``/``acc_norm``/0 (not ``gpqa_diamond``); MUSR = ``leaderboard_musr`` acc_norm
  -> ``musr``/``acc_norm``/0; MMLU-PRO = ``leaderboard_mmlu_pro`` acc -> ``mmlu_pro``/
  ``acc``/5.
* ``#Params (B)`` gives ``params``; 0.0 (the leaderboard's "could not tell") or an empty
  cell leaves it empty with the flag ``params_unknown``.
* ``Type`` gives ``kind``: pretrained and continuously pretrained -> ``base``; chat models
  (RLHF, DPO, IFT) -> ``instruct``; fine-tuned on domain-specific datasets, merges,
  multimodal and other -> left empty (the label does not say whether the model was
  instruction-tuned).
* Flags: ``Flagged`` -> ``leaderboard_flagged``; ``Merged`` (or not ``Not_Merged``) ->
  ``merged``; ``MoE`` -> ``moe``; ``Available on the hub`` false -> ``hub_unavailable``.
* Other metadata is kept on the model rows as extra columns: ``eval_name``, ``precision``,
  ``leaderboard_type``, ``weight_type``, ``architecture``, ``model_sha``, ``licence``,
  ``base_model``, ``chat_template``, ``official_provider``, ``co2_kg``, ``upload_date``,
  ``submission_date``, ``generation``. ``Average ⬆️`` (derived), ``Hub ❤️`` (changes daily)
  and ``T`` (the Type's emoji) are not kept; any other column is reported as skipped.
* A model evaluated more than once (another precision) keeps its first row; the others are
  reported as skipped.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

import pandas as pd

from ..benchmarks import NORMALISED, normalise_key
from ..errors import InputError
from .common import Rows

__all__ = ["V2_TASKS", "V2Task", "is_contents_table", "read_contents", "kind_from_type", "NORMALISED"]


@dataclass(frozen=True)
class V2Task:
    """One benchmark of the leaderboard: its column, what it is in CAPE, and its lm-eval task."""

    column: str  # the normalised column; the raw one is "<column> Raw"
    benchmark: str
    variant: str
    n_shot: int
    task: str

    @property
    def key(self) -> str:
        return normalise_key(self.column)

    @property
    def raw_key(self) -> str:
        return normalise_key(self.column + " Raw")


V2_TASKS: tuple[V2Task, ...] = (
    V2Task("IFEval", "ifeval", "strict_acc_mean", 0, "leaderboard_ifeval"),
    V2Task("BBH", "bbh", "acc_norm", 3, "leaderboard_bbh"),
    V2Task("MATH Lvl 5", "math_lvl5", "exact_match", 4, "leaderboard_math_hard"),
    V2Task("GPQA", "gpqa_all", "acc_norm", 0, "leaderboard_gpqa"),
    V2Task("MUSR", "musr", "acc_norm", 0, "leaderboard_musr"),
    V2Task("MMLU-PRO", "mmlu_pro", "acc", 5, "leaderboard_mmlu_pro"),
)
_SCORE_KEYS = {t.key for t in V2_TASKS} | {t.raw_key for t in V2_TASKS}

# normalised column -> extra model column (text kept as given)
_TEXT_META = {
    "eval_name": "eval_name", "precision": "precision", "type": "leaderboard_type",
    "weight_type": "weight_type", "architecture": "architecture", "model_sha": "model_sha",
    "hub_license": "licence", "base_model": "base_model", "upload_to_hub_date": "upload_date",
    "submission_date": "submission_date",
}
_BOOL_META = {"chat_template": "chat_template", "official_providers": "official_provider",
              "maintainer_s_highlight": "official_provider"}
_NUMBER_META = {"co_cost_kg": "co2_kg", "generation": "generation"}
_FLAG_COLS = ("flagged", "merged", "not_merged", "moe", "available_on_the_hub")
# read for the id or deliberately not kept (see the module docstring)
_IGNORED = {"fullname", "model", "average", "hub", "t", "params_b"}

_HTML = re.compile(r"<\s*/?\s*[a-zA-Z][^>]*>")
_TRUE = {"true", "1", "yes", "t", "y"}
_FALSE = {"false", "0", "no", "f", "n"}


def is_contents_table(columns) -> bool:
    """Whether a table's columns are the leaderboard's v2 layout (``fullname`` and a score column)."""
    keys = {normalise_key(c) for c in columns}
    return "fullname" in keys and bool(keys & _SCORE_KEYS)


def kind_from_type(text) -> str | None:
    """``kind`` from the leaderboard's ``Type`` label; ``None`` where the label does not tell."""
    if text is None or (isinstance(text, float) and math.isnan(text)):
        return None
    label = re.sub(r"[^a-z ]+", " ", str(text).lower()).strip()
    if label.startswith("chat"):
        return "instruct"
    # "pretrained", "continuously pretrained" (also the leaderboard's "continously")
    if label in ("pretrained", "continuously pretrained", "continously pretrained"):
        return "base"
    return None


def _where(offset: int, label: str, field: str):
    return lambda i: {"file": label, "row": int(i) + offset, "field": field}


def _numbers(series: pd.Series, offset: int, label: str, field: str) -> pd.Series:
    """A column as floats (NaN where empty); text, NaN written out, and infinities are errors."""
    where = _where(offset, label, field)
    raw = series.astype(object)
    empty = raw.isna() | raw.map(lambda v: isinstance(v, str) and not v.strip())
    bools = raw.map(lambda v: isinstance(v, bool))
    if bools.any():
        i = bools.idxmax()
        raise InputError(f"'{raw[i]}' is not a number", **where(i))
    values = pd.to_numeric(raw.where(~empty, None), errors="coerce").astype(float)
    bad = values.isna() & ~empty
    if bad.any():
        i = bad.idxmax()
        raise InputError(f"'{str(raw[i]).strip()}' is not a number", **where(i),
                         hint="leave the cell empty if there is no value")
    inf = ~values.isna() & ~values.map(math.isfinite)
    if inf.any():
        i = inf.idxmax()
        raise InputError(f"{raw[i]} is not a finite number", **where(i))
    return values


def _booleans(series: pd.Series, offset: int, label: str, field: str) -> pd.Series:
    """A true/false column as an object Series of True, False or None (empty)."""
    def one(v):
        if v is None or (isinstance(v, float) and math.isnan(v)):
            return None
        if isinstance(v, bool):
            return v
        text = str(v).strip().lower()
        if text in _TRUE:
            return True
        if text in _FALSE:
            return False
        if text == "":
            return None
        return "?"
    out = series.astype(object).map(one)
    bad = out.map(lambda v: v == "?")
    if bad.any():
        i = bad.idxmax()
        raise InputError(f"'{series[i]}' is not true or false", **_where(offset, label, field)(i))
    return out


def _ids(frame: pd.DataFrame, col, offset: int, label: str) -> pd.Series:
    ids = frame[col].astype(object).map(lambda v: None if v is None or (isinstance(v, float) and math.isnan(v))
                                        else str(v).strip())
    empty = ids.isna() | (ids == "")
    if empty.any():
        raise InputError("model id (fullname) is empty", **_where(offset, label, str(col))(empty.idxmax()))
    html = ids.map(lambda v: bool(_HTML.search(v)))
    if html.any():
        raise InputError("model id is HTML markup, not an id", **_where(offset, label, str(col))(html.idxmax()),
                         hint="fullname must hold the plain id, such as 'org/model'")
    return ids


def read_contents(frame: pd.DataFrame, *, offset: int, label: str, source: str) -> Rows:
    """Read the leaderboard's v2 table (see the module docstring) into rows with origins.

    ``offset`` is added to a 0-based index to give the row number named in errors (2 for a
    CSV, whose line 1 is the header); ``source`` is recorded on every score.
    """
    frame = frame.reset_index(drop=True)
    cols: dict[str, object] = {}
    for c in frame.columns:
        cols.setdefault(normalise_key(c), c)
    rows = Rows()
    known = _SCORE_KEYS | set(_TEXT_META) | set(_BOOL_META) | set(_NUMBER_META) | set(_FLAG_COLS) | _IGNORED
    for key, col in cols.items():
        if key not in known:
            rows.skipped.append(f"{label}: column '{col}' (not part of the Open LLM Leaderboard v2 layout)")

    ids = _ids(frame, cols["fullname"], offset, label)
    first = ~ids.duplicated(keep="first")
    if not first.all():
        first_row = {mid: int(i) + offset for i, mid in ids[first].items()}
        prec = frame[cols["precision"]] if "precision" in cols else pd.Series([None] * len(frame))
        for i in ids.index[~first]:
            what = f" ({prec[i]})" if pd.notna(prec[i]) else ""
            rows.skipped.append(f"{label}: row {int(i) + offset}: another evaluation of '{ids[i]}'{what}; "
                                f"row {first_row[ids[i]]} is kept")

    # ------------------------------------------------------------------ models
    models = pd.DataFrame({"model": ids, "_file": label, "_row": frame.index + offset})
    models["kind"] = frame[cols["type"]].map(kind_from_type) if "type" in cols else None
    false = pd.Series(False, index=frame.index)
    marks: dict[str, pd.Series] = {}  # flag -> rows that carry it
    if "params_b" in cols:
        col = cols["params_b"]
        billions = _numbers(frame[col], offset, label, str(col))
        negative = billions < 0
        if negative.any():
            raise InputError(f"parameter count must not be negative, got {frame[col][negative.idxmax()]}",
                             **_where(offset, label, str(col))(negative.idxmax()))
        known_size = billions > 0
        models["params"] = pd.array((billions * 1e9).round().where(known_size), dtype="Int64")
        marks["params_unknown"] = ~known_size
    else:
        marks["params_unknown"] = ~false
    bools = {k: _booleans(frame[cols[k]], offset, label, str(cols[k])) for k in _FLAG_COLS if k in cols}
    is_ = lambda k, v: bools[k].map(lambda x: x is v) if k in bools else false  # noqa: E731 (empty: no flag)
    marks["leaderboard_flagged"] = is_("flagged", True)
    marks["merged"] = is_("merged", True) if "merged" in bools else is_("not_merged", False)
    marks["moe"] = is_("moe", True)
    marks["hub_unavailable"] = is_("available_on_the_hub", False)
    flags = pd.Series("", index=frame.index)
    for name in sorted(marks):  # sorted, as join_flags writes them
        flags = flags + marks[name].map({True: name + ";", False: ""})
    models["flags"] = flags.str.rstrip(";")
    for key, target in _TEXT_META.items():
        if key in cols:
            models[target] = frame[cols[key]].map(
                lambda v: None if v is None or (isinstance(v, float) and math.isnan(v)) or not str(v).strip()
                else str(v).strip())
    for key, target in _BOOL_META.items():
        if key in cols and target not in models.columns:
            models[target] = _booleans(frame[cols[key]], offset, label, str(cols[key]))
    for key, target in _NUMBER_META.items():
        if key in cols:
            values = _numbers(frame[cols[key]], offset, label, str(cols[key]))
            if target == "generation":  # a count of merge / fine-tune steps from a base model
                models[target] = [None if math.isnan(v) else int(v) for v in values]
            else:
                models[target] = values.astype(object).where(values.notna(), None)

    # ------------------------------------------------------------------ scores
    parts = []
    for task in V2_TASKS:
        raw = _scores(frame, cols.get(task.raw_key), offset, label, 1.0, "the Raw columns are fractions")
        norm = _scores(frame, cols.get(task.key), offset, label, 100.0, "a normalised score")
        has_raw = raw.notna() if raw is not None else pd.Series(False, index=frame.index)
        found = []
        if raw is not None:
            found.append(pd.DataFrame({"_i": frame.index[has_raw], "value": raw[has_raw] * 100.0,
                                       "variant": task.variant, "_field": str(cols[task.raw_key])}))
        if norm is not None:
            use = norm.notna() & ~has_raw
            found.append(pd.DataFrame({"_i": frame.index[use], "value": norm[use],
                                       "variant": NORMALISED, "_field": str(cols[task.key])}))
        for part in found:
            part["benchmark"], part["n_shot"] = task.benchmark, task.n_shot
            part["harness"] = f"Open LLM Leaderboard v2 (lm-eval {task.task})"
            parts.append(part)
    scores = pd.concat(parts, ignore_index=True)
    scores = scores[first.to_numpy()[scores["_i"].to_numpy(dtype=int)]].sort_values("_i", kind="stable")
    scores["model"] = ids.to_numpy()[scores["_i"].to_numpy(dtype=int)]
    scores["_row"] = scores["_i"].astype(int) + offset
    scores["_file"], scores["source"], scores["stderr"], scores["flags"] = label, source, None, None
    keep = ["model", "benchmark", "variant", "n_shot", "value", "stderr", "harness", "source", "flags",
            "_file", "_row", "_field"]
    rows.scores.extend(scores[keep].to_dict("records"))
    models = models[first.to_numpy()]
    rows.models.extend(models.astype(object).where(models.notna(), None).to_dict("records"))
    return rows


def _scores(frame: pd.DataFrame, col, offset: int, label: str, top: float, what: str) -> pd.Series | None:
    """A score column as floats checked to lie in 0..``top``; ``None`` if the table lacks it."""
    if col is None:
        return None
    values = _numbers(frame[col], offset, label, str(col))
    out = (values < 0) | (values > top)
    if out.any():
        i = out.idxmax()
        raise InputError(f"{values[i]:g} is outside 0-{top:g} ({what})", **_where(offset, label, str(col))(i))
    return values
