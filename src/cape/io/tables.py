"""Tables of results: CSV, TSV, Parquet or JSON records, in wide or long form.

Wide: one row per model, a model column, optional metadata columns, and one column per
benchmark (any alias: ``HellaSwag``, ``hellaswag_10shot``, ``truthfulqa_mc2``; a
``<benchmark>_stderr`` column gives standard errors). Long: one row per score with columns
``model``, ``benchmark`` and ``value`` (or ``score``), optionally ``variant``, ``stderr``,
``n_shot``, ``harness``, ``source``, ``run_date``, ``flags`` and model metadata.

Scores may be fractions or percentages; each column (wide) or benchmark (long) is checked,
and a file whose units cannot be told is refused unless ``units`` is given.

The Open LLM Leaderboard v2 table (``open-llm-leaderboard/contents``: a ``fullname`` column
and score columns such as ``GPQA Raw``) has a fixed layout and is read by
:mod:`cape.io.leaderboard`, whatever the file type; ``units`` does not apply to it.

A model id is text, never markup: a model cell holding HTML (``<a href=...>``) is an error.
"""

from __future__ import annotations

import re
from io import StringIO
from pathlib import Path

import pandas as pd

from ..benchmarks import normalise_key, try_resolve
from ..errors import InputError
from ..units import UNITS, detect_units, parse_param_count, parse_release_date
from .common import Rows, read_json, read_text, to_number
from .leaderboard import is_contents_table, read_contents

__all__ = ["read_table", "TABLE_SUFFIXES", "records_from_json"]

TABLE_SUFFIXES = {".csv": ",", ".tsv": "\t", ".txt": None, ".parquet": None, ".pq": None,
                  ".json": None, ".jsonl": None}

_MODEL_COLS = ("model", "model_id", "model_name", "name", "pretrained")
# normalised column name -> (field, multiplier for counts)
_META: dict[str, tuple[str, int | None]] = {
    "display_name": ("display_name", None),
    "family": ("family", None), "model_family": ("family", None),
    "organisation": ("organisation", None), "organization": ("organisation", None),
    "org": ("organisation", None), "lab": ("organisation", None), "provider": ("organisation", None),
    "kind": ("kind", None), "model_kind": ("kind", None),
    "params": ("params", None), "parameters": ("params", None), "n_params": ("params", None),
    "num_params": ("params", None), "param_count": ("params", None), "size": ("params", None),
    "params_b": ("params", 10**9), "parameters_b": ("params", 10**9), "size_b": ("params", 10**9),
    "model_size_b": ("params", 10**9), "n_b": ("params", 10**9), "params_m": ("params", 10**6),
    "active_params": ("active_params", None), "active_params_b": ("active_params", 10**9),
    "d_model": ("d_model", 1), "hidden_size": ("d_model", 1), "width": ("d_model", 1),
    "n_layers": ("n_layers", 1), "layers": ("n_layers", 1), "num_layers": ("n_layers", 1),
    "n_heads": ("n_heads", 1), "heads": ("n_heads", 1), "num_heads": ("n_heads", 1),
    "tokens": ("tokens", 1), "pretraining_tokens": ("tokens", 1), "tokens_b": ("tokens", 10**9),
    "tokens_t": ("tokens", 10**12), "pretraining_data_size_t": ("tokens", 10**12),
    "flops": ("flops", 1), "training_flops": ("flops", 1), "flops_1e21": ("flops", 10**21),
    "release_date": ("release_date", None), "released": ("release_date", None), "date": ("release_date", None),
    "model_flags": ("model_flags", None), "model_source": ("model_source", None),
    "subset": ("subset", None),
}
# long-form score fields
_LONG = {"benchmark": "benchmark", "task": "benchmark", "value": "value", "score": "value",
         "variant": "variant", "metric": "variant", "stderr": "stderr", "se": "stderr",
         "n_shot": "n_shot", "shots": "n_shot", "num_fewshot": "n_shot", "harness": "harness",
         "source": "source", "flags": "flags", "units": "units", "unit": "units",
         "run_date": "run_date"}
_INT_FIELDS = ("d_model", "n_layers", "n_heads", "tokens")
_HTML = re.compile(r"<\s*/?\s*[a-zA-Z][^>]*>")
_SUFFIXED = re.compile(r"^([0-9]*\.?[0-9]+(?:e[+-]?\d+)?)\s*([kmbgt])$", re.I)
_SCALE = {"k": 10**3, "m": 10**6, "b": 10**9, "g": 10**9, "t": 10**12}


def records_from_json(doc, path: Path) -> list[dict] | None:
    """A JSON table as a list of records, or ``None`` if the layout is not a table."""
    if isinstance(doc, list) and all(isinstance(r, dict) for r in doc):
        return doc
    if isinstance(doc, dict):
        rows = doc.get("rows")
        if (isinstance(rows, list) and rows and all(isinstance(r, dict) for r in rows)
                and all(isinstance(r.get("row"), dict) for r in rows)):
            return [r["row"] for r in rows]  # a datasets-server /rows response
        lists = [v for v in doc.values() if isinstance(v, list) and v and all(isinstance(r, dict) for r in v)]
        if len(lists) == 1:
            return lists[0]
        if doc and all(isinstance(v, list) for v in doc.values()):
            lengths = {len(v) for v in doc.values()}
            if len(lengths) == 1:  # column orientation {"model": [...], "hellaswag": [...]}
                n = lengths.pop()
                return [{k: v[i] for k, v in doc.items()} for i in range(n)]
    return None


def _load(path: Path, text: str | None) -> tuple[pd.DataFrame, int]:
    """The table as a DataFrame of raw cells, and the number to add to an index for its row."""
    suffix = path.suffix.lower()
    if suffix in (".parquet", ".pq"):
        import pyarrow.parquet as pq

        if path.stat().st_size == 0:
            raise InputError("the file is empty", file=path)
        try:
            table = pq.read_table(path)
        except Exception as exc:  # pyarrow raises several types for broken files
            raise InputError(f"not a readable Parquet file: {exc}", file=path) from None
        frame = pd.DataFrame({name: table.column(name).to_pylist() for name in table.column_names})
        return frame, 1
    text = read_text(path) if text is None else text
    if suffix == ".json":
        doc = read_json(path, text)
        records = records_from_json(doc, path)
        if records is None:
            raise InputError("JSON layout not recognised: expected a list of records, "
                             "lm-eval results or Open LLM Leaderboard results", file=path)
        return pd.DataFrame.from_records(records), 1
    if suffix == ".jsonl":
        import json

        records = []
        for i, line in enumerate(text.splitlines(), start=1):
            if line.strip():
                try:
                    records.append(json.loads(line))
                except json.JSONDecodeError as exc:
                    raise InputError(f"not valid JSON: {exc.msg}", file=path, row=i) from None
        return pd.DataFrame.from_records(records), 1
    sep = TABLE_SUFFIXES.get(suffix) or ("\t" if "\t" in text.splitlines()[0] else ",")
    try:
        frame = pd.read_csv(StringIO(text), sep=sep, dtype=str, keep_default_na=False,
                            na_values=[""], skip_blank_lines=True)
    except pd.errors.ParserError as exc:
        raise InputError(f"not a valid table: {exc}", file=path) from None
    frame = frame.astype(object).where(frame.notna(), None)
    return frame, 2  # line 1 is the header


def read_table(path: Path, *, units: str | None = None, source: str | None = None,
               skip_unknown: bool = False, text: str | None = None, label: str | None = None) -> Rows:
    """Read one table file into rows with origins. See the module docstring for layouts."""
    label = label or str(path)
    frame, offset = _load(path, text)
    if frame.empty or len(frame.columns) == 0:
        raise InputError("the table has no rows", file=label)
    if is_contents_table(frame.columns):
        return read_contents(frame, offset=offset, label=label, source=source or f"file:{path.name}")
    norm = {c: normalise_key(c) for c in frame.columns}
    model_col = next((c for c in frame.columns if norm[c] in _MODEL_COLS), None)
    if model_col is None:
        raise InputError(f"no model column (expected one of: {', '.join(_MODEL_COLS)}); "
                         f"columns are {', '.join(map(str, frame.columns))}", file=label, field="model")
    long = any(_LONG.get(norm[c]) == "benchmark" for c in frame.columns)
    default_source = source or f"file:{path.name}"
    rows = Rows()
    if long:
        _read_long(frame, norm, model_col, offset, label, default_source, units, skip_unknown, rows)
    else:
        _read_wide(frame, norm, model_col, offset, label, default_source, units, skip_unknown, rows)
    return rows


def _model_record(rec: dict, norm: dict, model_col, row: int, label: str) -> dict:
    out = {"model": None, "_file": label, "_row": row}
    mid = rec[model_col]
    out["model"] = None if mid is None else str(mid).strip()
    if not out["model"]:
        raise InputError("model id is empty", file=label, row=row, field=str(model_col))
    if _HTML.search(out["model"]):
        raise InputError("model id is HTML markup, not an id", file=label, row=row, field=str(model_col),
                         hint="an Open LLM Leaderboard table names the model in its 'fullname' column")
    for col, value in rec.items():
        spec = _META.get(norm[col])
        if spec is None or value is None or (isinstance(value, str) and not value.strip()):
            continue
        target, mult = spec
        where = {"file": label, "row": row, "field": str(col)}
        if target in ("params", "active_params"):
            pc = parse_param_count(value, multiplier=mult, **where)
            if pc is not None:
                out[target] = pc.total
                if pc.active is not None:
                    out["active_params"] = pc.active
        elif target in _INT_FIELDS or target == "flops":
            suffixed = _SUFFIXED.match(value.strip()) if target == "tokens" and isinstance(value, str) else None
            if suffixed:  # a token count written 1T, 300B, 1.4t
                value = float(suffixed.group(1)) * _SCALE[suffixed.group(2).lower()]
            number = to_number(value, **where)
            if number is not None:
                number *= mult or 1
                if number <= 0:
                    raise InputError(f"{target} must be positive, got {value}", **where)
                out[target] = number if target == "flops" else int(round(number))
        elif target == "release_date":
            rd = parse_release_date(value, **where)
            if rd:
                out["release_date"], out["release_date_precision"] = rd.iso, rd.precision
        elif target == "model_flags":
            out["flags"] = str(value)
        elif target == "model_source":
            out["source"] = str(value)
        elif target == "kind":
            out["kind"] = str(value).strip().lower()
        else:
            out[target] = str(value).strip()
    return out


def _convert(scores: list[dict], units: str | None, label: str) -> None:
    """Scale fraction scores to percent, deciding units per benchmark column.

    A row's own ``units`` cell (long form) wins; then ``units``; then detection over the
    rows that say nothing.
    """
    undecided = [s for s in scores if s.get("_units") is None]
    if units is None and undecided:
        groups: dict[str, list] = {}
        for s in undecided:
            groups.setdefault(s["_field"], []).append((s["value"], s["_row"]))
        units = detect_units(groups, file=label)
    for s in scores:
        if (s.pop("_units", None) or units) == "fraction":
            s["value"] *= 100.0
            if s.get("stderr") is not None:
                s["stderr"] *= 100.0


def _read_wide(frame, norm, model_col, offset, label, source, units, skip_unknown, rows: Rows):
    bench_cols: dict = {}
    stderr_cols: dict = {}
    row_source_col = next((c for c in frame.columns if norm[c] == "source"), None)
    for col in frame.columns:
        key = norm[col]
        if col == model_col or key in _META or key == "source":
            continue
        if key.endswith("_stderr") or key.endswith("_se"):
            base = key.rsplit("_", 1)[0]
            found = try_resolve(base)
            if found is not None:
                stderr_cols[(found.benchmark, found.variant)] = col
                continue
        found = rows.benchmark(str(col), skip_unknown=skip_unknown, label=label,
                               what=f"column '{col}'", field=str(col))
        if found is not None:
            bench_cols[col] = found
    if not bench_cols:
        from .metadata import is_metadata_columns

        if is_metadata_columns(frame.columns):
            raise InputError("this is a model metadata table (model and "
                             f"{', '.join(str(c) for c in frame.columns if c != model_col)}), "
                             "not scores: it has no benchmark columns", file=label,
                             hint="apply it to a panel with `cape models set PANEL FILE`")
        raise InputError("no benchmark columns found", file=label,
                         hint="a wide table needs a model column and one column per benchmark")
    scores = []
    for i, rec in enumerate(frame.to_dict("records")):
        row = i + offset
        rows.models.append(_model_record(rec, norm, model_col, row, label))
        src = rec.get(row_source_col) if row_source_col else None
        for col, found in bench_cols.items():
            value = to_number(rec[col], file=label, row=row, field=str(col))
            if value is None:
                continue
            se_col = stderr_cols.get((found.benchmark, found.variant))
            se = to_number(rec[se_col], file=label, row=row, field=str(se_col)) if se_col else None
            scores.append({"model": rows.models[-1]["model"], "benchmark": found.benchmark,
                           "variant": found.variant, "n_shot": found.n_shot, "value": value,
                           "stderr": se, "source": str(src).strip() if src else source,
                           "_file": label, "_row": row, "_field": str(col)})
    _convert(scores, units, label)
    rows.scores.extend(scores)


def _read_long(frame, norm, model_col, offset, label, source, units, skip_unknown, rows: Rows):
    cols = {_LONG[norm[c]]: c for c in frame.columns if norm[c] in _LONG}
    if "value" not in cols:
        raise InputError("long table has a benchmark column but no value (or score) column",
                         file=label, field="value")
    scores = []
    for i, rec in enumerate(frame.to_dict("records")):
        row = i + offset
        model = _model_record(rec, norm, model_col, row, label)
        rows.models.append(model)
        raw_bench = rec[cols["benchmark"]]
        if raw_bench is None or not str(raw_bench).strip():
            raise InputError("benchmark is empty", file=label, row=row, field=str(cols["benchmark"]))
        found = rows.benchmark(str(raw_bench), skip_unknown=skip_unknown, label=label,
                               what=f"row {row} benchmark '{raw_bench}'", row=row,
                               field=str(cols["benchmark"]))
        if found is None:
            continue
        value = to_number(rec[cols["value"]], file=label, row=row, field=str(cols["value"]))
        if value is None:
            raise InputError("value is empty", file=label, row=row, field=str(cols["value"]))
        get = lambda k: rec.get(cols[k]) if k in cols else None  # noqa: E731
        variant = get("variant")
        variant = str(variant).strip() if variant not in (None, "") else found.variant
        shots = get("n_shot")
        shots = to_number(shots, file=label, row=row, field=str(cols.get("n_shot")))
        se = to_number(get("stderr"), file=label, row=row, field=str(cols.get("stderr")))
        src = get("source")
        row_units = get("units")
        if row_units is not None and str(row_units).strip():
            row_units = str(row_units).strip().lower()
            if row_units not in UNITS:
                raise InputError(f"units '{row_units}' is not one of {', '.join(UNITS)}",
                                 file=label, row=row, field=str(cols["units"]))
        else:
            row_units = None
        scores.append({
            "model": model["model"], "benchmark": found.benchmark, "variant": variant,
            "n_shot": int(shots) if shots is not None else found.n_shot, "value": value,
            "stderr": se, "harness": get("harness"), "source": str(src).strip() if src else source,
            "flags": get("flags"), "run_date": get("run_date"), "_file": label, "_row": row,
            "_field": found.benchmark, "_units": row_units,
        })
    _convert(scores, units, label)
    rows.scores.extend(scores)
