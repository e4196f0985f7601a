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

__all__ = ["Estimate", "Result", "jsonable", "fmt_num"]


def jsonable(value: Any) -> Any:
    """Recursively convert results, frames and numpy values into JSON-ready Python."""
    if isinstance(value, Result):
        return value.to_dict()
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)
                if not f.metadata.get("internal")}
    if isinstance(value, pd.DataFrame):
        return [{str(k): jsonable(v) for k, v in rec.items()} for rec in value.to_dict("records")]
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
