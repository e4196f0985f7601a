"""Model metadata tables: parameter counts and the like for the models of a panel.

A metadata table has a ``model`` column and any of ``params``, ``active_params``,
``d_model``, ``n_layers``, ``n_heads``, ``tokens``, ``flops``, ``release_date``, ``family``,
``organisation``, ``display_name`` and ``kind`` (the aliases and unit columns of a score
table work too: ``params_b``, ``hidden_size``, ``tokens_t``, ``organization``...). It holds
no scores. Files are CSV, TSV, Parquet, JSON records or JSONL, as for :mod:`cape.io.tables`.

Cells are checked like those of an ingested table: parameter counts through
:func:`cape.units.parse_param_count` (``7B``, ``6.7e9``, ``15.7B(2.4B-active)``), dates through
:func:`cape.units.parse_release_date`; every error names the file, row and field. An empty
cell means "leave as it is". :meth:`cape.store.Store.set_metadata` applies the table to a
stored panel in one transaction (``cape models set PANEL FILE``).

>>> from cape.io.metadata import read_metadata                    # doctest: +SKIP
>>> read_metadata("sizes.csv").models[["model", "params"]]         # doctest: +SKIP
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from ..benchmarks import normalise_key
from ..errors import InputError
from ..schema import Dataset
from .tables import _META, _MODEL_COLS, _load, _model_record

__all__ = ["read_metadata", "METADATA_FIELDS", "is_metadata_columns"]

#: The model fields a metadata table may set (``model`` identifies the row).
METADATA_FIELDS = ("params", "active_params", "d_model", "n_layers", "n_heads", "tokens", "flops",
                   "release_date", "family", "organisation", "display_name", "kind")
_COLUMNS = {k: target for k, (target, _m) in _META.items() if target in METADATA_FIELDS}


def is_metadata_columns(columns) -> bool:
    """True when ``columns`` are a model column and metadata columns only (no scores)."""
    norm = [normalise_key(str(c)) for c in columns]
    has_model = any(n in _MODEL_COLS for n in norm)
    rest = [n for n in norm if n not in _MODEL_COLS]
    return has_model and bool(rest) and all(n in _COLUMNS for n in rest)


def read_metadata(path: str | Path, *, label: str | None = None) -> Dataset:
    """Read and check a metadata table; a validated :class:`~cape.schema.Dataset` whose
    ``models`` keep ``_file`` and ``_row`` (for messages) and whose ``scores`` are empty.

    Duplicate rows for one model must agree. A column that is not model metadata (a
    benchmark, say) is an error: scores go in with ``cape ingest``.
    """
    path = Path(path)
    label = label or str(path)
    if not path.exists():
        raise InputError("no such file", file=label)
    if path.is_dir():
        raise InputError("is a folder, not a metadata table", file=label)
    if path.suffix.lower() not in (".csv", ".tsv", ".txt", ".parquet", ".pq", ".json", ".jsonl"):
        raise InputError(f"unsupported file type '{path.suffix or path.name}' for a metadata table "
                         "(use .csv, .tsv, .parquet, .json or .jsonl)", file=label)
    frame, offset = _load(path, None)
    if frame.empty or len(frame.columns) == 0:
        raise InputError("the table has no rows", file=label)
    norm = {c: normalise_key(str(c)) for c in frame.columns}
    model_col = next((c for c in frame.columns if norm[c] in _MODEL_COLS), None)
    if model_col is None:
        raise InputError(f"no model column (expected one of: {', '.join(_MODEL_COLS)}); "
                         f"columns are {', '.join(map(str, frame.columns))}", file=label, field="model")
    for col in frame.columns:
        if col != model_col and norm[col] not in _COLUMNS:
            raise InputError(f"column '{col}' is not model metadata (a metadata table has "
                             f"model and any of {', '.join(METADATA_FIELDS)})", file=label,
                             field=str(col), hint="scores go in with `cape ingest FILE --panel NAME`")
    if len(frame.columns) < 2:
        raise InputError("the table has a model column and nothing else", file=label,
                         hint=f"add any of {', '.join(METADATA_FIELDS)}")
    records = [_model_record(rec, norm, model_col, i + offset, label)
               for i, rec in enumerate(frame.to_dict("records"))]
    ds = Dataset.from_frames(pd.DataFrame.from_records(records), None).validate()
    return ds
