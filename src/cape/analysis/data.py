"""Getting analysis-ready data out of a panel frame: resolve the benchmark pair, keep the
models that have both scores and a size, and say exactly which were left out and why.

Every analysis takes the wide frame of :func:`cape.load_panel` (index = model; columns
``family``, ``params`` and one per benchmark) or any DataFrame shaped the same way.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from ..benchmarks import BENCHMARKS, suggest, try_resolve
from ..errors import CapeError

__all__ = ["DEFAULT_PAIR", "parse_pair", "resolve_benchmark", "PairData", "pair_data",
           "panel_name", "family_codes"]

#: The preprints' pair: reasoning (HellaSwag) first, truthfulness (TruthfulQA) second.
DEFAULT_PAIR = ("hellaswag", "truthfulqa")


def panel_name(frame: pd.DataFrame) -> str:
    return str(frame.attrs.get("cape", {}).get("panel", "the panel"))


def _benchmark_columns(frame: pd.DataFrame) -> list[str]:
    info = frame.attrs.get("cape", {})
    if info.get("benchmarks"):
        return [b for b in info["benchmarks"] if b in frame.columns]
    return [c for c in frame.columns if c in BENCHMARKS]


def resolve_benchmark(frame: pd.DataFrame, name: str) -> str:
    """The frame's column for a benchmark name or alias, or a clear error."""
    cols = _benchmark_columns(frame)
    if name in frame.columns:
        return name
    hit = try_resolve(name)
    if hit is not None and hit.benchmark in frame.columns:
        return hit.benchmark
    if hit is None:
        close = suggest(name)
        raise CapeError(f"unknown benchmark '{name}'",
                        hint=f"did you mean '{close}'?" if close else "see `cape benchmarks`")
    left_out = frame.attrs.get("cape", {}).get("left_out") or {}
    if hit.benchmark in left_out:  # an unresolved conflict between runs (cape.panels.runs)
        raise CapeError(f"{hit.benchmark} is left out: {left_out[hit.benchmark]}",
                        hint="pick one run (--run DATE or run=...), or remove one source")
    raise CapeError(f"benchmark '{hit.benchmark}' is not in {panel_name(frame)} "
                    f"(it has: {', '.join(cols) or 'no benchmarks'})")


def parse_pair(pair: str | Sequence[str] | None) -> tuple[str, str]:
    """``"hellaswag:truthfulqa"`` or a 2-sequence -> (B1, B2). B1 is the x-axis."""
    if pair is None:
        return DEFAULT_PAIR
    if isinstance(pair, str):
        parts = [p.strip() for p in pair.split(":")]
    else:
        parts = [str(p).strip() for p in pair]
    if len(parts) != 2 or not all(parts):
        raise CapeError(f"a pair is two benchmarks as A:B (e.g. hellaswag:truthfulqa), not '{pair}'")
    if parts[0] == parts[1]:
        raise CapeError(f"the pair names the same benchmark twice ('{parts[0]}')")
    return parts[0], parts[1]


@dataclass
class PairData:
    """Models usable for a pair: one row each, sorted by family then size.

    ``frame`` columns: model, family, params, x (= log10 params), b1, b2 (scores, percent),
    and d_model when the panel has it. ``excluded`` lists every model left out and why.
    """

    panel: str
    b1: str
    b2: str
    frame: pd.DataFrame
    excluded: list[dict] = field(default_factory=list)

    @property
    def n(self) -> int:
        return len(self.frame)

    def families(self) -> list[str]:
        return [str(f) for f in pd.unique(self.frame["family"])]


def pair_data(frame: pd.DataFrame, pair=None, *, need_size: bool = True) -> PairData:
    """Resolve ``pair`` against the frame and keep the models with both scores (and a size
    when ``need_size``). A model without a family is its own family (named after itself)."""
    if not isinstance(frame, pd.DataFrame):
        raise CapeError("an analysis takes a panel DataFrame (see cape.load_panel)")
    a, b = parse_pair(pair)
    b1, b2 = resolve_benchmark(frame, a), resolve_benchmark(frame, b)
    if b1 == b2:
        raise CapeError(f"'{a}' and '{b}' are the same benchmark ({b1})")
    df = frame.copy()
    if "model" not in df.columns:
        df = df.rename_axis("model").reset_index()
    for col, fill in (("family", None), ("params", np.nan)):
        if col not in df.columns:
            df[col] = fill
    df["family"] = df["family"].astype("string").fillna(df["model"].astype("string"))
    params = pd.to_numeric(df["params"], errors="coerce").astype(float)
    s1 = pd.to_numeric(df[b1], errors="coerce").astype(float)
    s2 = pd.to_numeric(df[b2], errors="coerce").astype(float)
    checks = [(f"no {b1} score", s1.isna()), (f"no {b2} score", s2.isna())]
    if need_size:
        checks.append(("no parameter count", params.isna() | (params <= 0)))
    excluded = []
    bad = pd.Series(False, index=df.index)
    for reason, mask in checks:                     # each model listed once, first reason
        excluded += [{"model": str(m), "reason": reason} for m in df.loc[mask & ~bad, "model"]]
        bad |= mask
    out = pd.DataFrame({
        "model": df["model"].astype(str), "family": df["family"].astype(str),
        "params": params, "x": np.log10(params.where(params > 0)),
        "b1": s1, "b2": s2,
    })
    if "d_model" in df.columns:
        out["d_model"] = pd.to_numeric(df["d_model"], errors="coerce").astype(float)
    out = out[~bad.to_numpy()].sort_values(["family", "params", "model"], kind="stable")
    return PairData(panel_name(frame), b1, b2, out.reset_index(drop=True), excluded)


def family_codes(families: pd.Series) -> tuple[np.ndarray, list[str]]:
    """Integer code per row and the family names, in order of first appearance."""
    codes, uniques = pd.factorize(pd.Series(families).astype(str), sort=False)
    return codes.astype(np.int64), [str(u) for u in uniques]
