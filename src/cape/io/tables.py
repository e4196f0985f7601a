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

A wide table is read column by column (:func:`_wide_bulk`): each score column is parsed as
numbers at once, each distinct metadata cell once, and only the cells that may be refused
go through the per-cell functions, in reading order, so the first error is the one a
row-by-row reading meets. Cells of unusual kinds (unhashable JSON values) fall back to the
row-by-row reader (:func:`_wide_rows`), which is also the reference the tests compare with.
"""

from __future__ import annotations

import re
from io import StringIO
from pathlib import Path

import numpy as np
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
        frame = pd.read_csv(StringIO(text), sep=sep, dtype=object, keep_default_na=False,
                            na_values=[""], skip_blank_lines=True)
    except pd.errors.ParserError as exc:
        raise InputError(f"not a valid table: {exc}", file=path) from None
    frame = frame.where(frame.notna(), None)
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


def _model_id(mid, row: int, label: str, model_col) -> str:
    """A model cell as an id; empty cells and HTML markup are errors."""
    model = None if mid is None else str(mid).strip()
    if not model:
        raise InputError("model id is empty", file=label, row=row, field=str(model_col))
    if _HTML.search(model):
        raise InputError("model id is HTML markup, not an id", file=label, row=row, field=str(model_col),
                         hint="an Open LLM Leaderboard table names the model in its 'fullname' column")
    return model


def _meta_cell(target: str, mult, value, where: dict) -> dict:
    """What one metadata cell sets (``{field: value}``); bad values are errors at ``where``."""
    out: dict = {}
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


def _blank(value) -> bool:
    """A metadata cell that says nothing (skipped)."""
    return value is None or (isinstance(value, str) and not value.strip())


def _model_record(rec: dict, norm: dict, model_col, row: int, label: str) -> dict:
    out = {"model": None, "_file": label, "_row": row}
    out["model"] = _model_id(rec[model_col], row, label, model_col)
    for col, value in rec.items():
        spec = _META.get(norm[col])
        if spec is None or _blank(value):
            continue
        out.update(_meta_cell(spec[0], spec[1], value, {"file": label, "row": row, "field": str(col)}))
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
    try:
        models, scores = _wide_bulk(frame, norm, model_col, offset, label, source, units,
                                    bench_cols, stderr_cols, row_source_col)
    except _Slow:  # cells of kinds the bulk reader does not handle: read row by row
        _wide_rows(frame, norm, model_col, offset, label, source, units, bench_cols, stderr_cols,
                   row_source_col, rows)
        return
    rows.add_frames(models, scores)


def _wide_rows(frame, norm, model_col, offset, label, source, units, bench_cols, stderr_cols,
               row_source_col, rows: Rows) -> None:
    """The wide table, one row at a time (the reference for :func:`_wide_bulk`)."""
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


# ------------------------------------------------------------------ wide tables in bulk
class _Slow(Exception):
    """The bulk reader met cells it does not handle; the row-by-row reader takes over."""


def _objects(values: list) -> np.ndarray:
    out = np.empty(len(values), dtype=object)
    out[:] = values
    return out


def _numbers(cells: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Score cells as floats, vectorised: ``(values, present, suspect)``.

    ``present``: a number was read. ``suspect``: :func:`to_number` may refuse the cell or
    read it otherwise (text that is not a number, blank text, NaN, infinity, booleans,
    unusual types); the caller runs :func:`to_number` on exactly those cells.
    """
    n = len(cells)
    values = np.full(n, np.nan)
    present = np.zeros(n, dtype=bool)
    suspect = np.zeros(n, dtype=bool)
    try:
        given = np.asarray(np.not_equal(cells, None), dtype=bool)
    except Exception:  # an element that does not compare with None plainly (pd.NA ...)
        raise _Slow from None
    at = np.flatnonzero(given)
    if not len(at):
        return values, present, suspect
    sub = cells[at]
    kind = pd.api.types.infer_dtype(sub, skipna=False)
    if kind not in ("string", "floating", "integer", "mixed-integer-float"):
        suspect[at] = True
        return values, present, suspect
    try:
        parsed = sub.astype(float)  # float() of each cell, as to_number does
        ok = np.isfinite(parsed)
    except (ValueError, TypeError, OverflowError):
        parsed = np.full(len(sub), np.nan)
        for k, v in enumerate(sub):  # only when some cell is not a number: find which
            try:
                parsed[k] = float(v)
            except (ValueError, TypeError, OverflowError):
                pass
        ok = np.isfinite(parsed)
    values[at[ok]] = parsed[ok]
    present[at[ok]] = True
    suspect[at[~ok]] = True
    return values, present, suspect


def _reduced_pairs(values: np.ndarray, present: np.ndarray, rows: np.ndarray) -> list[tuple]:
    """The few ``(value, row)`` pairs of one column that decide :func:`detect_units` exactly
    as all of them would: the largest value, the smallest non-zero magnitude and the first
    value in (0, 1] and above 1 (named in its error), in row order."""
    at = np.flatnonzero(present)
    v = values[at]
    pick = {int(np.argmax(v))}
    nonzero = np.flatnonzero(v != 0)
    if len(nonzero):
        pick.add(int(nonzero[np.argmin(np.abs(v[nonzero]))]))
    for mask in ((v > 0) & (v <= 1), v > 1):
        hit = np.flatnonzero(mask)
        if len(hit):
            pick.add(int(hit[0]))
    return [(float(v[k]), int(rows[at[k]])) for k in sorted(pick)]


def _wide_bulk(frame, norm, model_col, offset, label, source, units, bench_cols, stderr_cols,
               row_source_col) -> tuple[pd.DataFrame, pd.DataFrame]:
    """A wide table as a models and a scores DataFrame, column by column.

    Gives the same records, in the same order, and raises the same first error as
    :func:`_wide_rows`: every cell that may be refused is collected with its place (row,
    then position in the row as the row reader meets it) and checked by the row reader's
    own functions in that order. Raises :class:`_Slow` for cells it does not handle.
    """
    n = len(frame)
    row_no = np.arange(offset, offset + n, dtype=np.int64)
    columns = list(frame.columns)
    checks: list[tuple] = []  # (row index, position in the row, what)

    # model ids (position 0)
    id_cells = frame[model_col].to_numpy(dtype=object)
    ids = _objects([None if v is None else str(v).strip() for v in id_cells])
    bad = (ids == None) | (ids == "")  # noqa: E711
    bad |= pd.Series(ids, dtype=object).str.contains(_HTML, na=False).to_numpy(dtype=bool)
    checks += [(i, 0, ("model",)) for i in np.flatnonzero(bad)]

    # metadata columns (position 1 + column index): each distinct cell parsed once
    meta: dict[str, np.ndarray] = {}
    for j, col in enumerate(columns):
        spec = _META.get(norm[col])
        if spec is None:
            continue
        cells = frame[col].to_numpy(dtype=object)
        lookup: dict = {}
        try:
            codes = np.fromiter((lookup.setdefault((type(v), v), len(lookup)) for v in cells),
                                dtype=np.int64, count=n)
        except TypeError:  # unhashable cells (lists in JSON records)
            raise _Slow from None
        results: list = []
        for _, v in lookup:
            if _blank(v):
                results.append({})
                continue
            try:
                results.append(_meta_cell(spec[0], spec[1], v, {"file": label, "row": None, "field": str(col)}))
            except Exception:
                results.append(None)  # refused: the row reader raises it, naming the row
        failed = np.array([r is None for r in results])
        checks += [(i, 1 + j, ("meta", col, spec)) for i in np.flatnonzero(failed[codes])]
        for target in dict.fromkeys(k for r in results if r for k in r):
            got = _objects([r.get(target) if r else None for r in results])[codes]
            has = np.array([bool(r) and target in r for r in results], dtype=bool)[codes]
            if has.any():
                column = meta.setdefault(target, np.full(n, None, dtype=object))
                column[has] = got[has]

    # score cells (position 1 + len(columns) + 2 * bench index, + 1 for its stderr)
    nb = len(bench_cols)
    base = 1 + len(columns)
    V = np.full((n, nb), np.nan)
    P = np.zeros((n, nb), dtype=bool)
    SE = np.full((n, nb), np.nan)
    se_cache: dict = {}
    se_of: dict[int, object] = {}
    for b, (col, found) in enumerate(bench_cols.items()):
        v, pres, sus = _numbers(frame[col].to_numpy(dtype=object))
        V[:, b], P[:, b] = v, pres
        checks += [(i, base + 2 * b, ("value", b, col)) for i in np.flatnonzero(sus)]
        se_col = stderr_cols.get((found.benchmark, found.variant))
        if se_col is None:
            continue
        se_of[b] = se_col
        if se_col not in se_cache:
            se_cache[se_col] = _numbers(frame[se_col].to_numpy(dtype=object))
        se, se_pres, se_sus = se_cache[se_col]
        SE[:, b] = np.where(se_pres, se, np.nan)
        checks += [(i, base + 2 * b + 1, ("stderr", b, se_col)) for i in np.flatnonzero(se_sus & (pres | sus))]

    # the cells that may be refused, in the order the row reader meets them
    for i, _, what in sorted(checks, key=lambda c: (c[0], c[1])):
        row = int(row_no[i])
        if what[0] == "model":
            _model_id(id_cells[i], row, label, model_col)
        elif what[0] == "meta":
            _, col, spec = what
            _meta_cell(spec[0], spec[1], frame[col].iat[i], {"file": label, "row": row, "field": str(col)})
        elif what[0] == "value":
            _, b, col = what
            x = to_number(frame[col].iat[i], file=label, row=row, field=str(col))
            P[i, b] = x is not None
            V[i, b] = np.nan if x is None else x
        elif P[i, what[1]]:
            _, b, se_col = what
            x = to_number(frame[se_col].iat[i], file=label, row=row, field=str(se_col))
            SE[i, b] = np.nan if x is None else x

    # units, decided per column over the values read (as _convert does)
    names = [str(c) for c in bench_cols]
    if units is None and P.any():
        first = np.where(P.any(axis=0), P.argmax(axis=0), n)
        order = sorted((b for b in range(nb) if first[b] < n), key=lambda b: (first[b], b))
        units = detect_units({names[b]: _reduced_pairs(V[:, b], P[:, b], row_no) for b in order}, file=label)
    if units == "fraction":
        V *= 100.0
        SE *= 100.0

    # one row per score, row by row and column by column
    flat = np.flatnonzero(P.ravel())
    r, b = np.divmod(flat, nb)
    found = list(bench_cols.values())

    def cat(per_bench: list) -> pd.Categorical:
        cats = list(dict.fromkeys(x for x in per_bench if x is not None))
        code = np.array([-1 if x is None else cats.index(x) for x in per_bench], dtype=np.int32)
        return pd.Categorical.from_codes(code[b], categories=cats)

    shots = np.array([f.n_shot if f.n_shot is not None else 0 for f in found], dtype=np.int64)
    no_shots = np.array([f.n_shot is None for f in found], dtype=bool)
    if row_source_col:
        src_cells = frame[row_source_col].to_numpy(dtype=object)
        src = pd.Categorical([str(v).strip() if v else source for v in src_cells])
        src = src.take(r) if len(r) else pd.Categorical([], categories=src.categories)
    else:
        src = pd.Categorical.from_codes(np.zeros(len(r), dtype=np.int8), categories=[source])
    id_codes, id_names = pd.factorize(ids)
    scores = pd.DataFrame({
        "model": pd.Categorical.from_codes(id_codes[r], categories=id_names),
        "benchmark": cat([f.benchmark for f in found]),
        "variant": cat([f.variant for f in found]),
        "n_shot": pd.arrays.IntegerArray(shots[b], no_shots[b]),
        "value": V.ravel()[flat],
        "stderr": SE.ravel()[flat],
        "source": src,
        "_file": pd.Categorical.from_codes(np.zeros(len(r), dtype=np.int8), categories=[label]),
        "_row": row_no[r],
        "_field": cat(names),
    })
    models = pd.DataFrame({"model": ids, "_file": label, "_row": row_no, **meta})
    return models, scores
