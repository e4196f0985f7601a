"""Result objects shared by every analysis: an :class:`Estimate` (value, interval, n, method)
and a :class:`Result` base that turns itself into JSON-ready dicts.

The CLI, the report and the dashboard only format these objects; none of them computes.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from ..schema import to_python

__all__ = ["Estimate", "Result", "jsonable", "frame_records", "fmt_num"]


def jsonable(value: Any) -> Any:
    """Recursively convert results, frames and numpy values into JSON-ready Python."""
    if isinstance(value, Result):
        return value.to_dict()
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)
                if not f.metadata.get("internal")}
    if isinstance(value, pd.DataFrame):
        return frame_records(value)
    if isinstance(value, pd.Series):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return [jsonable(v) for v in value.tolist()]
    v = to_python(value)
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v


def frame_records(frame: pd.DataFrame, *, finite: bool = True) -> list[dict]:
    """The rows of a frame as dicts of plain Python values, converted a column at a time (a
    100k-row frame in well under a second): exactly what converting ``frame.to_dict("records")``
    cell by cell gives.

    ``finite=True`` is :func:`jsonable`'s rule (keys as ``str``, NA, NaN and +-inf as ``None``,
    nested values converted); ``finite=False`` is the CLI's ``--json`` rule for a panel's rows
    (keys as they are, each cell through :func:`~cape.schema.to_python`: NA and NaN as
    ``None``, infinities kept)."""
    columns = list(frame.columns)
    if not frame.columns.is_unique:  # to_dict keeps one of each name: the cell-by-cell path says which
        cell = jsonable if finite else to_python
        return [{(str(k) if finite else k): cell(v) for k, v in rec.items()} for rec in frame.to_dict("records")]
    if not columns:
        return [{} for _ in range(len(frame))]
    values = []
    for i in range(len(columns)):
        col = frame.iloc[:, i]
        dtype = col.dtype
        masked = isinstance(col.array, (pd.arrays.IntegerArray, pd.arrays.FloatingArray,
                                        pd.arrays.BooleanArray))
        if masked and dtype.kind in "iub":  # Int64, boolean...: the values, None where NA
            out = col.to_numpy(dtype=dtype.numpy_dtype, na_value=0).tolist()
            for j in np.flatnonzero(col.isna().to_numpy()).tolist():
                out[j] = None
            values.append(out)
        elif isinstance(dtype, np.dtype) and dtype.kind in "iub":
            values.append(col.to_numpy().tolist())
        elif (isinstance(dtype, np.dtype) or masked) and dtype.kind == "f":
            arr = col.to_numpy(dtype=dtype.numpy_dtype, na_value=np.nan) if masked else col.to_numpy()
            out = arr.tolist()
            for j in np.flatnonzero(~np.isfinite(arr) if finite else np.isnan(arr)).tolist():
                out[j] = None
            values.append(out)
        elif isinstance(dtype, pd.StringDtype):  # str values; NA and NaN are the missing ones
            out = col.tolist()
            for j in np.flatnonzero(col.isna().to_numpy()).tolist():
                out[j] = None
            values.append(out)
        else:
            values.append(list(map(jsonable if finite else to_python, col.tolist())))
    keys = [str(k) for k in columns] if finite else columns
    return [dict(zip(keys, row)) for row in zip(*values)]


def fmt_num(v: float | None, digits: int = 3) -> str:
    """A number for people: NaN/None as 'n/a', large counts with a B, M or T suffix."""
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "n/a"
    av = abs(v)
    if av >= 1e15:
        return f"{v:.{digits}g}"
    for unit, scale in (("T", 1e12), ("B", 1e9), ("M", 1e6)):
        if av >= scale:
            return f"{v / scale:.{digits}g}{unit}"
    if av != 0 and (av < 1e-3 or av >= 1e5):
        return f"{v:.{digits}g}"
    return f"{v:.{digits}g}" if av < 1 else f"{v:.{max(digits - 1, 1)}f}".rstrip("0").rstrip(".")


@dataclass
class Estimate:
    """One estimated quantity with its uncertainty.

    ``ci`` is (low, high) at ``level``; ``method`` says how the point estimate was made and
    ``interval`` how the interval was made; ``n`` counts the observations behind it (and
    ``unit`` what they are); ``n_resamples``/``discarded`` describe a bootstrap. ``note``
    explains a missing value: an undefined estimate is NaN *with* a note, never silently.
    """

    name: str
    value: float
    n: int
    method: str
    ci: tuple[float, float] | None = None
    level: float | None = None
    interval: str | None = None
    unit: str = "model"
    n_resamples: int | None = None
    discarded: int | None = None
    median: float | None = None
    note: str | None = None

    @property
    def defined(self) -> bool:
        return self.value is not None and math.isfinite(self.value)

    def describe(self, digits: int = 3) -> str:
        if not self.defined:
            return f"{self.name}: undefined ({self.note or 'no value'})"
        text = f"{self.name} = {fmt_num(self.value, digits)}"
        if self.ci is not None and all(c is not None and math.isfinite(c) for c in self.ci):
            text += (f", {int(round(100 * (self.level or 0.95)))}% CI "
                     f"[{fmt_num(self.ci[0], digits)}, {fmt_num(self.ci[1], digits)}]")
        if self.median is not None and math.isfinite(self.median):
            text += f", bootstrap median {fmt_num(self.median, digits)}"
        extra = [f"n = {self.n} {self.unit}s"]
        if self.n_resamples:
            extra.append(f"{self.n_resamples:,} resamples")
            if self.discarded:
                extra.append(f"{self.discarded:,} discarded")
        text += f" ({self.method}; {', '.join(extra)})"
        if self.note:
            text += f"; {self.note}"
        return text


@dataclass
class Result:
    """Base of every analysis result: ``to_dict()`` for JSON, ``summary()`` for people."""

    def to_dict(self) -> dict:
        return {f.name: jsonable(getattr(self, f.name)) for f in dataclasses.fields(self)
                if not f.metadata.get("internal")}

    def summary(self) -> str:  # pragma: no cover - overridden
        return repr(self)


def internal(**kwargs):
    """A dataclass field kept out of ``to_dict`` (e.g. a raw bootstrap distribution)."""
    return field(metadata={"internal": True}, **kwargs)
