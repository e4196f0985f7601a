"""Parsing of quantities that arrive in many spellings: parameter counts, dates, score units.

Parameter counts are stored as integers (``7_000_000_000``), never as "7B" strings. Release
dates keep their precision (year, month or day). Scores are percentages 0-100; fractions
are detected per column and converted, and an ambiguous file is refused.
"""

from __future__ import annotations

import datetime as _dt
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from .errors import InputError

__all__ = [
    "ParamCount",
    "parse_param_count",
    "ReleaseDate",
    "parse_release_date",
    "date_range",
    "UNITS",
    "detect_units",
]

_SCALE = {"": 1, "k": 10**3, "m": 10**6, "b": 10**9, "g": 10**9, "t": 10**12}
_COUNT_RE = re.compile(r"^\s*([+-]?[0-9]*\.?[0-9]+(?:e[+-]?\d+)?)\s*([kmbgt]?)\s*$", re.I)
_ACTIVE_RE = re.compile(
    r"^\s*(?P<total>[0-9.]+\s*[kmbgt]?)\s*[\(\[]\s*(?P<active>[0-9.]+\s*[kmbgt]?)\s*[-_ ]?active\s*[\)\]]\s*$",
    re.I,
)
_MOE_RE = re.compile(r"^\s*(?P<total>[0-9.]+\s*[kmbgt]?)\s*[-_ ]?moe\s*$", re.I)

#: An absolute count below this is almost surely in other units (7 meaning 7B): refused
#: unless the column says its unit. The smallest useful LMs have millions of parameters.
MIN_ABSOLUTE_PARAMS = 100_000


@dataclass(frozen=True)
class ParamCount:
    """A parameter count, with the active count for mixture-of-experts models."""

    total: int
    active: int | None = None
    moe: bool = False


def _count(text: str, multiplier: int | None, where: dict) -> int:
    m = _COUNT_RE.match(text)
    if not m:
        raise InputError(f"'{text}' is not a parameter count (write e.g. 7e9, 7B or 125M)", **where)
    number, suffix = float(m.group(1)), m.group(2).lower()
    if suffix:
        value = number * _SCALE[suffix]
    elif multiplier is not None:
        value = number * multiplier
    else:
        value = number
        if value != 0 and abs(value) < MIN_ABSOLUTE_PARAMS:
            raise InputError(
                f"parameter count {text} is ambiguous: write it with a unit (e.g. {text}B) "
                "or name the column params_b (billions) or params_m (millions)",
                **where,
            )
    if not math.isfinite(value):
        raise InputError(f"'{text}' is not a finite parameter count", **where)
    return int(round(value))


def parse_param_count(
    value: object,
    *,
    multiplier: int | None = None,
    file: str | None = None,
    row: str | int | None = None,
    field: str | None = None,
) -> ParamCount | None:
    """Parse a parameter count written in any of the release's spellings.

    ``multiplier`` is the column's unit when it has one (1e9 for a ``params_b`` column).
    Accepts absolute counts (``7e7``), suffixed strings (``"1.3B"``, ``"125M"``), MoE strings
    (``"15.7B(2.4B-active)"``, ``"314B-MoE"``). Missing values give ``None``. Zero or negative
    counts are an error.

    >>> parse_param_count("15.7B(2.4B-active)")
    ParamCount(total=15700000000, active=2400000000, moe=True)
    >>> parse_param_count(6.9, multiplier=10**9).total
    6900000000
    """
    where = {"file": file, "row": row, "field": field}
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    if isinstance(value, bool):
        raise InputError(f"'{value}' is not a parameter count", **where)
    if isinstance(value, (int, float)):
        text = repr(value)
    else:
        text = str(value).strip()
        if text == "":
            return None
    active = None
    moe = False
    m = _ACTIVE_RE.match(text)
    if m:
        total = _count(m.group("total"), multiplier, where)
        active = _count(m.group("active"), multiplier, where)
        moe = True
    else:
        m = _MOE_RE.match(text)
        if m:
            total = _count(m.group("total"), multiplier, where)
            moe = True
        else:
            if isinstance(value, (int, float)) and float(value) <= 0:
                total = int(value)
            else:
                total = _count(text, multiplier, where)
    if total <= 0:
        raise InputError(f"parameter count must be positive, got {text}", **where)
    if active is not None and not 0 < active <= total:
        raise InputError(f"active parameters {active} must be between 1 and the total {total}", **where)
    return ParamCount(total, active, moe)


@dataclass(frozen=True)
class ReleaseDate:
    """A release date as precise as its source: ``"2025"``, ``"2024-06"`` or ``"2026-04-16"``."""

    iso: str
    precision: str  # "year" | "month" | "day"


_DATE_RE = re.compile(r"^(\d{4})(?:-(\d{1,2})(?:-(\d{1,2}))?)?$")


def date_range(value: object) -> tuple[_dt.date, _dt.date] | None:
    """The first and last day a release date can mean: ``"2025"`` -> (2025-01-01,
    2025-12-31), ``"2024-06"`` -> (2024-06-01, 2024-06-30), a day -> (day, day).
    ``None`` for a missing date; :func:`parse_release_date`'s error for a malformed one."""
    import calendar

    rd = parse_release_date(value)
    if rd is None:
        return None
    parts = [int(p) for p in rd.iso.split("-")]
    if rd.precision == "day":
        d = _dt.date(*parts)
        return d, d
    if rd.precision == "month":
        y, m = parts
        return _dt.date(y, m, 1), _dt.date(y, m, calendar.monthrange(y, m)[1])
    return _dt.date(parts[0], 1, 1), _dt.date(parts[0], 12, 31)


def parse_release_date(value: object, *, file: str | None = None, row: str | int | None = None,
                       field: str | None = None) -> ReleaseDate | None:
    """Parse ``YYYY``, ``YYYY-MM`` or ``YYYY-MM-DD`` (a trailing time is ignored).

    >>> parse_release_date("2024-6")
    ReleaseDate(iso='2024-06', precision='month')
    """
    import datetime as _dt

    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    text = str(value).strip()
    if not text:
        return None
    text = text.split("T")[0].split(" ")[0]
    m = _DATE_RE.match(text)
    if not m:
        raise InputError(f"'{value}' is not a date (write YYYY, YYYY-MM or YYYY-MM-DD)",
                         file=file, row=row, field=field)
    year, month, day = m.group(1), m.group(2), m.group(3)
    try:
        _dt.date(int(year), 1, 1)          # year 0 does not exist
        if day is not None:
            d = _dt.date(int(year), int(month), int(day))
            return ReleaseDate(d.isoformat(), "day")
        if month is not None:
            _dt.date(int(year), int(month), 1)
            return ReleaseDate(f"{int(year):04d}-{int(month):02d}", "month")
    except ValueError as exc:
        raise InputError(f"'{value}' is not a valid date ({exc})", file=file, row=row,
                         field=field) from None
    return ReleaseDate(f"{int(year):04d}", "year")


# ---------------------------------------------------------------------------------------
# Score units
# ---------------------------------------------------------------------------------------

UNITS = ("percent", "fraction")


def _classify(values: Sequence[float]) -> str:
    """'fraction' if every value is within [0, 1]; 'percent' if no value is strictly
    between 0 and 1 exclusive of the large ones, i.e. every non-zero value is > 1;
    otherwise 'mixed' (values <= 1 next to values > 1 cannot be told apart)."""
    nonzero = [v for v in values if v != 0]
    if not nonzero or max(values) <= 1:
        return "fraction"
    if min(abs(v) for v in nonzero) > 1:
        return "percent"
    return "mixed"


def detect_units(
    columns: Mapping[str, Sequence[tuple[float, str | int]]],
    *,
    file: str | None = None,
) -> str:
    """Decide whether a file's scores are fractions (0-1) or percentages (0-100).

    ``columns`` maps a column (or benchmark) name to its ``(value, row)`` pairs. Each column
    is classified on its own; a column mixing values <= 1 with values > 1 is refused, and so
    is a file whose columns disagree. Pass ``--units`` to decide explicitly.
    """
    kinds: dict[str, str] = {}
    for name, pairs in columns.items():
        values = [v for v, _ in pairs]
        if not values:
            continue
        kind = _classify(values)
        if kind == "mixed":
            small = next(((v, r) for v, r in pairs if 0 < v <= 1), None)
            large = next(((v, r) for v, r in pairs if v > 1), None)
            raise InputError(
                f"column mixes fractions and percentages: {small[0]} at row {small[1]} "
                f"and {large[0]} at row {large[1]}",
                file=file, field=name,
                hint="pass --units percent or --units fraction",
            )
        kinds[name] = kind
    found = set(kinds.values())
    if len(found) > 1:
        frac = sorted(k for k, v in kinds.items() if v == "fraction")
        pct = sorted(k for k, v in kinds.items() if v == "percent")
        raise InputError(
            f"units are ambiguous: columns {', '.join(frac)} look like fractions (all <= 1) "
            f"but {', '.join(pct)} look like percentages",
            file=file,
            hint="pass --units percent or --units fraction",
        )
    return found.pop() if found else "percent"
