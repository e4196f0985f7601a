"""CAPE's data model: what a model row and a score row hold, and the one validator.

Every path into CAPE (a built-in panel, a CSV, an lm-eval folder, a leaderboard JSON) ends
in a :class:`Dataset` of two DataFrames and goes through :meth:`Dataset.validate`. Errors
name the file and row each bad value came from: importers keep that origin in the columns
``_file`` and ``_row``, which :meth:`Dataset.public` drops.

Models
    ``model`` (id), ``display_name``, ``family``, ``organisation`` (lab), ``kind`` (base,
    instruct, frontier), ``params`` and ``active_params`` (integer counts), ``d_model``,
    ``n_layers``, ``n_heads``, ``tokens`` (pretraining tokens), ``flops`` (training FLOPs),
    ``release_date`` (``YYYY``, ``YYYY-MM`` or ``YYYY-MM-DD``) with
    ``release_date_precision``, ``flags`` and ``source``.
Scores
    ``model``, ``benchmark`` (canonical name), ``variant`` (mc1/mc2, acc/acc_norm...),
    ``value`` (percent, 0-100), ``stderr`` (percentage points), ``n_shot``, ``harness``,
    ``source`` (citation or URL), ``run_date`` (when the run that produced the score was
    made, ISO ``YYYY-MM-DDTHH:MM:SS`` in UTC where the file says; orders several runs of one
    score, :func:`cape.panels.runs`) and ``flags``.

Flags are short identifiers joined by ``;`` (``untraceable;instruct_model``); a flag may
carry an argument after a colon (``duplicate_of:Llama-3-8B``). :mod:`cape.flags` lists them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from .benchmarks import BENCHMARKS, UNREGISTERED, UNSPECIFIED, unregistered_name
from .errors import InputError

__all__ = [
    "MODEL_COLUMNS",
    "SCORE_COLUMNS",
    "KINDS",
    "PRECISIONS",
    "Dataset",
    "join_flags",
    "split_flags",
    "to_python",
    "empty_models",
    "empty_scores",
    "normalise_run_date",
]

KINDS = ("base", "instruct", "frontier")
PRECISIONS = ("year", "month", "day")

#: column -> pandas dtype. The order is the order of every table CAPE writes.
MODEL_COLUMNS: dict[str, str] = {
    "model": "string",
    "display_name": "string",
    "family": "string",
    "organisation": "string",
    "kind": "string",
    "params": "Int64",
    "active_params": "Int64",
    "d_model": "Int64",
    "n_layers": "Int64",
    "n_heads": "Int64",
    "tokens": "Int64",
    "flops": "Float64",
    "release_date": "string",
    "release_date_precision": "string",
    "flags": "string",
    "source": "string",
}

SCORE_COLUMNS: dict[str, str] = {
    "model": "string",
    "benchmark": "string",
    "variant": "string",
    "value": "Float64",
    "stderr": "Float64",
    "n_shot": "Int64",
    "harness": "string",
    "source": "string",
    "run_date": "string",
    "flags": "string",
}

#: The identity of a stored score: a second row with the same key and another value is a
#: conflict (in one input, or against what a panel already holds).
SCORE_KEY = ("model", "benchmark", "variant", "source")

#: What one cell of the wide view measures: scores of one model that share this key but come
#: from different sources (two lm-eval runs, a paper and a run) are readings of the same
#: thing, resolved by :func:`cape.panels.runs` (newest run wins, else left out). Shots are
#: part of it: a model's 0-shot and 8-shot gsm8k are two measurements, not a clash.
SCORE_IDENTITY = ("model", "benchmark", "variant", "n_shot")

_ORIGIN = ("_file", "_row", "_field")
_POSITIVE_INTS = ("params", "active_params", "d_model", "n_layers", "n_heads", "tokens")


def to_python(value):
    """A DataFrame cell as a plain Python value: NA and NaN become ``None``, numpy scalars
    become int/float. Used wherever cells leave pandas (SQL parameters, JSON)."""
    if value is None or value is pd.NA:
        return None
    if isinstance(value, float) and math.isnan(value):
        return None
    if hasattr(value, "item"):
        return value.item()
    return value


def split_flags(text: object) -> list[str]:
    """``"a;b"`` -> ``["a", "b"]``; missing -> ``[]``."""
    if text is None or text is pd.NA or (isinstance(text, float) and math.isnan(text)):
        return []
    return [f.strip() for f in str(text).split(";") if f.strip()]


def join_flags(*groups: object) -> str:
    """Union of flag strings or lists, sorted and de-duplicated, joined by ``;``."""
    out: set[str] = set()
    for g in groups:
        out.update(g if isinstance(g, (list, tuple, set)) else split_flags(g))
    return ";".join(sorted(out))


def _typed_fast(series: pd.Series, dtype: str):
    """``series`` as ``dtype`` without a trip through Python objects, where that gives what
    :func:`_typed`'s general path gives; ``None`` where it does not apply."""
    kind = series.dtype
    if dtype == "string":
        if isinstance(kind, pd.StringDtype):
            return series.array if kind == pd.StringDtype() else series.astype(dtype).array
        if isinstance(kind, pd.CategoricalDtype):
            if pd.api.types.infer_dtype(kind.categories, skipna=False) in ("string", "empty"):
                return _take(series, pd.array(kind.categories.to_numpy(dtype=object), dtype=dtype))
            return None
        if kind == object:
            values = series.to_numpy(dtype=object)
            if pd.api.types.infer_dtype(values, skipna=True) == "string":
                isna = pd.isna(values)
                if isna.any():
                    values = values.copy()
                    values[isna] = None
                return pd.array(values, dtype=dtype)
        return None
    if kind != object and not isinstance(kind, (pd.StringDtype, pd.CategoricalDtype)) \
            and pd.api.types.is_numeric_dtype(kind) and not pd.api.types.is_bool_dtype(kind):
        try:
            return series.astype(dtype).array
        except (TypeError, ValueError):
            return None
    return None


def _take(series: pd.Series, categories):
    """A categorical column's values, taken from ``categories`` converted once."""
    return categories.take(series.cat.codes.to_numpy(), allow_fill=True)


def _as_listed(series: pd.Series):
    """``series.tolist()`` as a column (what pandas infers from the plain values), without
    the list where the result is known: numbers stay as they are, a categorical of text
    becomes pandas' default text column."""
    kind = series.dtype
    if kind.kind in "if" and not isinstance(kind, pd.api.extensions.ExtensionDtype):
        return series.to_numpy(copy=True)
    if isinstance(kind, pd.CategoricalDtype) and len(kind.categories) \
            and pd.api.types.infer_dtype(kind.categories, skipna=False) == "string":
        cats = kind.categories.tolist()
        text = pd.Series(cats).dtype  # the dtype pandas gives a list of these values
        if isinstance(text, pd.StringDtype):
            return _take(series, pd.array(cats, dtype=text))
    return series.tolist()


def _typed(frame: pd.DataFrame, columns: dict[str, str], extra: tuple[str, ...] = ()) -> pd.DataFrame:
    frame = frame.reset_index(drop=True)
    data = {}
    for col, dtype in columns.items():
        if col in frame.columns:
            series = frame[col]
            fast = _typed_fast(series, dtype)
            if fast is not None:
                data[col] = fast
            elif dtype == "string":
                series = series.astype("object").where(series.notna(), None)
                series = series.map(lambda v: v if v is None else str(v))
                data[col] = pd.array(series.tolist(), dtype=dtype)
            else:
                values = pd.to_numeric(series.astype("object").where(series.notna(), None))
                data[col] = pd.array(values, dtype=dtype) if len(values) else pd.array([], dtype=dtype)
        else:
            data[col] = pd.array([None], dtype=dtype).take(np.zeros(len(frame), dtype=np.intp))
    for col in extra:
        if col in frame.columns:
            data[col] = _as_listed(frame[col])
    return pd.DataFrame(data, index=range(len(frame)))


def normalise_run_date(values: pd.Series) -> pd.Series:
    """Run dates as ISO text ``YYYY-MM-DDTHH:MM:SS[.ffffff]`` (UTC, no zone suffix); a
    time-zone-aware input is converted to UTC; what does not parse becomes ``NA``."""
    text = values.astype("string")
    out = pd.Series(pd.NA, index=values.index, dtype="string")
    given = text.notna()
    if not given.any():
        return out
    parsed = pd.to_datetime(text[given], format="ISO8601", errors="coerce", utc=True)
    iso = parsed.dt.tz_localize(None).dt.strftime("%Y-%m-%dT%H:%M:%S.%f").str.removesuffix(".000000")
    out[given] = iso.where(parsed.notna()).astype("string")
    return out


def empty_models() -> pd.DataFrame:
    return _typed(pd.DataFrame(), MODEL_COLUMNS)


def empty_scores() -> pd.DataFrame:
    return _typed(pd.DataFrame(), SCORE_COLUMNS)


def _origin(frame: pd.DataFrame, idx) -> dict:
    out = {}
    for key, col in (("file", "_file"), ("row", "_row")):
        v = frame.at[idx, col] if col in frame.columns else None
        out[key] = None if v is None or v is pd.NA or (isinstance(v, float) and math.isnan(v)) else v
    return out


def _fail(frame: pd.DataFrame, mask, field: str, message, field_from: str | None = None) -> None:
    """Raise an InputError for the first row where ``mask`` holds."""
    mask = pd.Series(mask, index=frame.index).fillna(False).astype(bool)
    if not mask.any():
        return
    idx = mask.idxmax()
    row = frame.loc[idx]
    name = field
    if field_from is not None:
        orig = row["_field"] if "_field" in frame.columns else None
        v = orig if isinstance(orig, str) and orig else row[field_from]
        name = None if v is pd.NA or v is None else str(v)
    raise InputError(message(row), field=name, **_origin(frame, idx))


def _distinct_given(grp: pd.DataFrame, col: str, mid) -> list:
    """The distinct given values of ``col`` among one model id's rows ``grp``, in order;
    more than one is an error naming the id, the values, the rows, the file and the field."""
    vals = [v for v in grp[col].tolist() if v is not None and v is not pd.NA
            and not (isinstance(v, float) and math.isnan(v))]
    distinct = list(dict.fromkeys(vals))
    if len(distinct) > 1:
        rows = ", ".join(f"row {r}" for r in grp["_row"].tolist())
        raise InputError(f"model '{mid}' has conflicting {col} values {distinct} ({rows})",
                         file=grp["_file"].iloc[0], field=col)
    return distinct


@dataclass
class Dataset:
    """Models and their scores, in CAPE's schema. Build one, then call :meth:`validate`.

    Extra per-panel columns on ``models`` (such as ``subset``) are kept.
    """

    models: pd.DataFrame = field(default_factory=empty_models)
    scores: pd.DataFrame = field(default_factory=empty_scores)

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_frames(cls, models: pd.DataFrame | None, scores: pd.DataFrame | None) -> "Dataset":
        models = models if models is not None else pd.DataFrame(columns=["model"])
        scores = scores if scores is not None else pd.DataFrame(columns=["model"])
        extra_m = tuple(c for c in models.columns if c not in MODEL_COLUMNS)
        extra_s = tuple(c for c in scores.columns if c in _ORIGIN)
        return cls(_typed(models, MODEL_COLUMNS, extra_m), _typed(scores, SCORE_COLUMNS, extra_s))

    def public(self) -> "Dataset":
        """The same data without the origin columns used for error messages."""
        return Dataset(
            self.models.drop(columns=[c for c in _ORIGIN if c in self.models.columns]),
            self.scores.drop(columns=[c for c in _ORIGIN if c in self.scores.columns]),
        )

    def __len__(self) -> int:
        return len(self.models)

    # ------------------------------------------------------------------ validation
    def validate(self) -> "Dataset":
        """Check every rule of the schema; return a de-duplicated, typed copy.

        Raises :class:`~cape.errors.InputError` naming the file, row and field of the first
        problem (for conflicting duplicates, every conflicting row).
        """
        models = self.models.copy()
        scores = self.scores.copy()
        for col in _ORIGIN:
            if col not in models.columns:
                models[col] = None
            if col not in scores.columns:
                scores[col] = None

        self._check_models(models)
        self._check_scores(scores)
        scores = self._dedupe_scores(scores)
        models = self._merge_models(models, scores)
        scores["variant"] = scores["variant"].fillna(UNSPECIFIED)
        scores["flags"] = scores["flags"].fillna("")
        models["flags"] = models["flags"].fillna("")
        return Dataset(models.reset_index(drop=True), scores.reset_index(drop=True))

    @staticmethod
    def _check_models(models: pd.DataFrame) -> None:
        ids = models["model"].astype("string").str.strip()
        _fail(models, ids.isna() | (ids == ""), "model", lambda r: "model id is empty")
        kind = models["kind"]
        _fail(models, kind.notna() & ~kind.isin(KINDS), "kind",
              lambda r: f"kind '{r['kind']}' is not one of {', '.join(KINDS)}")
        for col in _POSITIVE_INTS:
            v = models[col]
            _fail(models, (v <= 0).fillna(False), col,
                  lambda r, col=col: f"{col} must be positive, got {r[col]}")
        flops = models["flops"].astype("Float64")
        bad = flops.notna() & ~(np.isfinite(flops.fillna(1.0).to_numpy(dtype=float)) & (flops.fillna(1.0) > 0))
        _fail(models, bad, "flops", lambda r: f"flops must be a positive number, got {r['flops']}")
        date, prec = models["release_date"], models["release_date_precision"]
        _fail(models, date.isna() != prec.isna(), "release_date",
              lambda r: "release_date and release_date_precision go together")
        _fail(models, prec.notna() & ~prec.isin(PRECISIONS), "release_date_precision",
              lambda r: f"release_date_precision '{r['release_date_precision']}' is not one of "
                        f"{', '.join(PRECISIONS)}")
        _fail(models, (models["active_params"] > models["params"]).fillna(False), "active_params",
              lambda r: f"active_params {r['active_params']} exceeds params {r['params']}")

    @staticmethod
    def _check_scores(scores: pd.DataFrame) -> None:
        ids = scores["model"].astype("string").str.strip()
        _fail(scores, ids.isna() | (ids == ""), "model", lambda r: "model id is empty")
        bench = scores["benchmark"]
        # each distinct flags text and benchmark name is looked at once
        if "flags" in scores:
            codes, uniques = pd.factorize(scores["flags"].fillna("").astype(str))
            flagged = np.array([UNREGISTERED in u.split(";") for u in uniques] + [False])[codes]
        else:
            flagged = np.zeros(len(scores), dtype=bool)
        codes, uniques = pd.factorize(bench.astype("string"))
        own = np.array([unregistered_name(b) == b for b in uniques] + [False])[codes]
        known = bench.isin(list(BENCHMARKS)) | pd.Series(flagged & own, index=scores.index)
        _fail(scores, bench.isna() | ~known, "benchmark",
              lambda r: f"unknown benchmark '{r['benchmark']}'")
        value = scores["value"].astype("Float64")
        arr = value.to_numpy(dtype=float, na_value=np.nan)
        _fail(scores, pd.Series(~np.isfinite(arr), index=scores.index), "benchmark",
              lambda r: f"score for {r['benchmark']} is missing or not a number", field_from="benchmark")
        _fail(scores, pd.Series(arr < 0, index=scores.index), "benchmark",
              lambda r: f"score {r['value']:g} for {r['benchmark']} is below 0", field_from="benchmark")
        _fail(scores, pd.Series(arr > 100, index=scores.index), "benchmark",
              lambda r: f"score {r['value']:g} for {r['benchmark']} is above 100 (scores are percentages)",
              field_from="benchmark")
        se = scores["stderr"].astype("Float64").to_numpy(dtype=float, na_value=np.nan)
        bad_se = ~np.isnan(se) & ~(np.isfinite(se) & (se >= 0))
        _fail(scores, pd.Series(bad_se, index=scores.index), "stderr",
              lambda r: f"stderr {r['stderr']} for {r['benchmark']} must be a non-negative number")
        _fail(scores, (scores["n_shot"] < 0).fillna(False), "n_shot",
              lambda r: f"n_shot must be >= 0, got {r['n_shot']}")
        given = scores["run_date"].notna()
        stamp = normalise_run_date(scores["run_date"])
        _fail(scores, given & stamp.isna(), "run_date",
              lambda r: f"run_date '{r['run_date']}' is not a date or time (use ISO 8601, "
                        "e.g. 2024-05-01T12:00:00)")
        scores["run_date"] = stamp

    @staticmethod
    def _dedupe_scores(scores: pd.DataFrame) -> pd.DataFrame:
        """One row per (model, benchmark, variant, source); rows that repeat a key with
        another value are an error listing every row of the first such key."""
        if scores.empty:
            return scores
        key = list(SCORE_KEY)
        filled = pd.DataFrame({c: scores[c].fillna("") for c in key})
        repeat = filled.duplicated(keep=False).to_numpy()
        if not repeat.any():
            return scores
        # repeated keys only: group, compare each value with its key's first
        at = np.flatnonzero(repeat)
        sub = filled.iloc[at]
        group = sub.groupby(key, sort=False, dropna=False).ngroup().to_numpy()
        values = scores["value"].iloc[at].astype(float).to_numpy()
        first_at = np.unique(group, return_index=True)[1]      # each key's first row
        differs = ~(np.abs(values - values[first_at[group]]) <= 1e-9)
        if differs.any():
            # the first key (by first appearance, the order groupby gives) whose values differ
            g = group[differs].min()
            idx = at[group == g]
            k = tuple(filled.iloc[idx[0]].tolist())
            vals = values[group == g]
            rows = [f"{scores['_file'].iloc[i]} row {scores['_row'].iloc[i]} = {vals[j]:g}"
                    for j, i in enumerate(idx)]
            raise InputError(
                f"duplicate rows give different values for model '{k[0]}', {k[1]} "
                f"({k[2] or UNSPECIFIED}), source '{k[3]}': " + "; ".join(rows),
                field=str(scores["_field"].iloc[idx[0]] or k[1]),
                hint="keep one row per model, benchmark, variant and source",
            )
        return scores.iloc[np.flatnonzero(~filled.duplicated(keep="first").to_numpy())]

    @staticmethod
    def _merge_models(models: pd.DataFrame, scores: pd.DataFrame) -> pd.DataFrame:
        """One row per model id; conflicting metadata for one id is an error.

        Models that only appear in ``scores`` get a bare row (id only).
        """
        ids = scores["model"].drop_duplicates()
        known = pd.Series(models["model"].dropna().to_numpy(dtype=object), dtype=object)
        missing = ids[~pd.Series(ids.to_numpy(dtype=object), dtype=object).isin(known).to_numpy()].tolist()
        if missing:
            bare = Dataset.from_frames(pd.DataFrame({"model": missing}), None).models
            for col in models.columns:
                if col not in bare.columns:
                    bare[col] = None
            models = pd.concat([models, bare[models.columns]], ignore_index=True) if len(models) else bare
        if models["model"].is_unique:
            return models
        meta_cols = [c for c in models.columns if c not in ("model", "flags", *_ORIGIN)]
        try:
            return Dataset._merge_repeated(models, meta_cols)
        except _Unhashable:
            pass
        out = []
        for mid, grp in models.groupby("model", sort=False):
            merged = grp.iloc[0].copy()
            for col in meta_cols:
                distinct = _distinct_given(grp, col, mid)
                merged[col] = distinct[0] if distinct else merged[col]
            merged["flags"] = join_flags(*grp["flags"].tolist())
            out.append(merged)
        return pd.DataFrame(out).reset_index(drop=True).astype(models.dtypes.to_dict())

    @staticmethod
    def _merge_repeated(models: pd.DataFrame, meta_cols: list[str]) -> pd.DataFrame:
        """:meth:`_merge_models` for a table whose ids repeat, column by column: the first
        row of each id, each field its first given value, flags joined. Conflicts are
        reported by the per-id code, run on the first id that has one."""
        grouped = models.groupby("model", sort=False)
        firsts = ~models["model"].duplicated().to_numpy()
        ids = models["model"].iloc[np.flatnonzero(firsts)]  # in order of first appearance
        conflict = np.zeros(len(ids), dtype=bool)
        for col in meta_cols:
            try:
                distinct = grouped[col].nunique(dropna=True).reindex(ids).to_numpy()
            except TypeError:
                raise _Unhashable from None
            conflict |= distinct > 1
        if conflict.any():
            mid = ids.iloc[int(np.argmax(conflict))]
            grp = models[(models["model"] == mid).to_numpy(dtype=bool)]
            for col in meta_cols:
                _distinct_given(grp, col, mid)
        out = models.iloc[np.flatnonzero(firsts)].reset_index(drop=True)
        if meta_cols:
            given = grouped[meta_cols].first().reindex(ids)  # the first value that is not missing
            for col in meta_cols:
                values = given[col].to_numpy(dtype=object)
                fill = ~pd.isna(values) & pd.isna(out[col].to_numpy(dtype=object))
                if fill.any():
                    column = out[col].astype(object)
                    column[fill] = values[fill]
                    out[col] = column
        # flags: the union of each id's flags, each distinct text split once
        flags = models["flags"].astype(object).where(models["flags"].notna(), None)
        pairs = pd.DataFrame({"model": models["model"], "flags": flags}).drop_duplicates()
        one = ~pairs["model"].duplicated(keep=False).to_numpy()
        joined = {}
        for text in pairs["flags"][one].unique():
            joined[text] = join_flags(text)
        merged = pairs[one].set_index("model")["flags"].map(lambda t: joined[t]).to_dict()
        for mid, grp in pairs[~one].groupby("model", sort=False):  # ids whose rows differ in flags
            merged[mid] = join_flags(*grp["flags"].tolist())
        out["flags"] = out["model"].map(merged).to_numpy(dtype=object)
        for col in out.columns:  # as a frame built from rows would infer them
            if out[col].dtype == object:
                out[col] = pd.Series(out[col].tolist(), index=out.index)
        return out.reset_index(drop=True).astype(models.dtypes.to_dict())


class _Unhashable(Exception):
    """A metadata column holds values that cannot be compared in bulk."""
