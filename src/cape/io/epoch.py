"""Epoch AI Benchmarking Hub CSVs (``benchmark_data.zip`` from epoch.ai/benchmarks).

One file per benchmark; the file's name is the benchmark (``gpqa_diamond.csv``,
``swe_bench_verified.csv``). The bundle's mirrors of other boards (``hella_swag_external.csv``,
``swe_bench_bash.csv``) name their score column per file, and ``epoch_capabilities_index.csv``
is an index: these are not read (refused, or skipped with a note under ``skip_unknown``).
Columns used:

``Model version``
    the model id (``claude-3-7-sonnet-20250219_32K``; one id per API version and setting).
``mean_score`` (else ``Best score (across scorers)``)
    a fraction, stored as a percentage; ``stderr`` (a fraction) likewise.
``Organization``
    the lab: both ``family`` and ``organisation`` (a frontier panel's family is its lab).
``Release date``, ``Training compute (FLOP)``, ``Name``/``Display name``
    release date, training FLOPs and display name of the model.

``Started at`` becomes the score's ``run_date``. A model version listed twice (Epoch re-ran
it) keeps its newest run by ``Started at``; the older rows are noted as skipped (two runs without distinct start times are refused).
Every model is ``kind`` frontier. The benchmark comes from the file name through
:data:`EPOCH_FILES`, else the registry's aliases; a benchmark CAPE does not register
(``frontiermath_tier_4``, ``otis_mock_aime_2024_2025``) is refused, or skipped with a note
under ``skip_unknown``, like every other unknown benchmark. Several files are read into one
dataset: a model's metadata must agree between them (the first file's is kept).
"""

from __future__ import annotations

import re
from io import StringIO
from pathlib import Path

import pandas as pd

from ..errors import InputError
from ..units import parse_release_date
from .common import Rows, read_text, to_number

__all__ = ["is_epoch_csv", "read_epoch", "EPOCH_FILES"]

MODEL_COL = "Model version"
SCORE_COLS = ("mean_score", "Best score (across scorers)")
#: Epoch file stem -> (CAPE benchmark, variant). The variant names the metric Epoch's own
#: run reports: GPQA Diamond accuracy, SWE-bench Verified issues resolved, MATH Level 5
#: answer accuracy.
EPOCH_FILES: dict[str, tuple[str, str]] = {
    "gpqa_diamond": ("gpqa_diamond", "acc"),
    "swe_bench_verified": ("swe_bench_verified", "resolved"),
    "math_level_5": ("math_lvl5", "exact_match"),
    "mmlu_pro": ("mmlu_pro", "acc"),
}
_COPY = re.compile(r"\s*\(\d+\)$")  # "gpqa_diamond (1).csv", as browsers save a second copy


def _header(text: str) -> list[str]:
    first = text.splitlines()[0] if text.strip() else ""
    return [c.strip().strip('"') for c in first.split(",")]


def is_epoch_csv(path: Path, text: str | None = None) -> bool:
    """A CSV whose header has ``Model version`` and ``mean_score`` (or Epoch's best score), or
    another file of Epoch's bundle (``Model version`` with ``Release date``, or a name ending in
    ``_external``), which :func:`read_epoch` refuses by name."""
    if path.suffix.lower() != ".csv":
        return False
    try:
        text = read_text(path) if text is None else text
    except InputError:
        return False
    cols = _header(text)
    return MODEL_COL in cols and (any(c in cols for c in SCORE_COLS) or _stem(path)[1]
                                  or "Release date" in cols)


def _stem(path: Path) -> tuple[str, bool]:
    stem = _COPY.sub("", path.stem).strip().lower()
    external = stem.endswith("_external")
    return (stem[: -len("_external")] if external else stem), external


def _older_runs(frame: pd.DataFrame, score_col: str) -> dict[int, str]:
    """Rows (file line -> its ``Started at``) that an Epoch file's newer run of the same model
    version supersedes. Epoch's own files list a re-run beside the first run
    (``swe_bench_verified.csv``: ``claude-opus-4-6`` run on 2026-02-10 and 2026-02-18); the
    newest run by ``Started at`` is kept. Runs without distinct start times are left for the
    caller to refuse."""
    if "Started at" not in frame.columns:
        return {}
    model = frame[MODEL_COL].fillna("").astype(str).str.strip()
    scored = pd.to_numeric(frame[score_col], errors="coerce").notna() & (model != "")
    started = pd.to_datetime(frame["Started at"], utc=True, errors="coerce", format="ISO8601")
    dup = scored & model.duplicated(keep=False)
    if not dup.any():
        return {}
    runs = pd.DataFrame({"model": model[dup], "started": started[dup]})
    newest = runs.groupby("model")["started"].transform("max")
    n_newest = (runs["started"] == newest).groupby(runs["model"]).transform("sum")
    clear = runs["started"].notna().groupby(runs["model"]).transform("all") & (n_newest == 1)
    drop = runs[clear & (runs["started"] < newest)]
    return {int(i) + 2: str(frame.at[i, "Started at"]) for i in drop.index}


def _started(value) -> str | None:
    """An Epoch run's ``Started at`` as the score's run date (None when empty or not a time)."""
    if value is None or not str(value).strip():
        return None
    when = pd.to_datetime(str(value).strip(), utc=True, errors="coerce", format="ISO8601")
    return None if pd.isna(when) else when.tz_localize(None).isoformat()


def read_epoch(path: Path, *, label: str, source: str | None, skip_unknown: bool,
               text: str | None = None) -> Rows:
    """Rows from one Epoch AI Benchmarking Hub CSV (see the module docstring)."""
    text = read_text(path) if text is None else text
    try:
        frame = pd.read_csv(StringIO(text), dtype=str, keep_default_na=False, na_values=[""])
    except pd.errors.ParserError as exc:
        raise InputError(f"not a valid table: {exc}", file=label) from None
    frame = frame.astype(object).where(frame.notna(), None)
    stem, external = _stem(path)
    rows = Rows()
    if not any(c in frame.columns for c in SCORE_COLS):
        # Epoch's mirrors of other boards (hella_swag_external.csv: "Overall accuracy",
        # mmlu_external.csv: "EM", swe_bench_bash.csv: "% Resolved", metr_time_horizons:
        # minutes) name their score column per file, mix shots and sources and list one model
        # several times; epoch_capabilities_index.csv is an index, not a benchmark.
        msg = (f"Epoch file '{path.name}' is not read: no mean_score column (a mirror of "
               "another board, or the capabilities index)")
        if skip_unknown:
            rows.skipped.append(f"{label}: {msg}")
            return rows
        raise InputError(msg, file=label, field="header",
                         hint="skip it with --skip-unknown; its score column differs per file")
    if stem in EPOCH_FILES:
        bench, variant = EPOCH_FILES[stem]
    else:
        found = rows.benchmark(stem, skip_unknown=skip_unknown, label=label,
                               what=f"Epoch benchmark file '{path.name}'", field="file name")
        if found is None:
            return rows
        bench, variant = found.benchmark, found.variant or "mean_score"
    score_col = next(c for c in SCORE_COLS if c in frame.columns)
    harness = "Epoch AI Benchmarking Hub" + (" (external results)" if external else "")
    src = source or f"Epoch AI Benchmarking Hub: {path.name}"
    older = _older_runs(frame, score_col)
    seen: set[str] = set()
    for i, rec in enumerate(frame.to_dict("records"), start=2):  # line 1 is the header
        model = (rec.get(MODEL_COL) or "").strip()
        if not model:
            raise InputError("empty model id", file=label, row=i, field=MODEL_COL)
        if i in older:
            rows.skipped.append(f"{label}: row {i} '{model}' is an older run ({older[i]}); the newest is kept")
            continue
        where = {"file": label, "row": i}
        value = to_number(rec.get(score_col), field=score_col, **where)
        if value is None:
            rows.skipped.append(f"{label}: row {i} '{model}' has no {score_col}")
            continue
        if not 0 <= value <= 1:
            raise InputError(f"{value} is outside 0-1 (Epoch scores are fractions)",
                             field=score_col, **where)
        if model in seen:
            raise InputError(f"model '{model}' appears twice in the file", field=MODEL_COL,
                             hint="keep one run per model version", **where)
        seen.add(model)
        se = to_number(rec.get("stderr"), field="stderr", **where) if "stderr" in frame.columns else None
        org = (rec.get("Organization") or "").strip() or None
        meta = {"model": model, "kind": "frontier", "_file": label, "_row": i}
        if org:
            meta["family"] = meta["organisation"] = org
        name = rec.get("Display name") or rec.get("Name")
        if name and str(name).strip():
            meta["display_name"] = str(name).strip()
        date = parse_release_date(rec.get("Release date"), field="Release date", **where)
        if date is not None:
            meta["release_date"], meta["release_date_precision"] = date.iso, date.precision
        flops = to_number(rec.get("Training compute (FLOP)"), field="Training compute (FLOP)", **where)
        if flops is not None and flops > 0:
            meta["flops"] = flops
        rows.models.append(meta)
        rows.scores.append({
            "model": model, "benchmark": bench, "variant": variant, "value": value * 100.0,
            "stderr": None if se is None or se < 0 else se * 100.0, "n_shot": None,
            "harness": harness, "source": src, "_file": label, "_row": i, "_field": score_col,
            "run_date": _started(rec.get("Started at")),
        })
    return rows
