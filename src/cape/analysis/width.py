"""Width normalization (METHODS.md section 6): divide both scores by w = d_model / 512 and
recompute r, beside the null distribution of r for *unrelated* scores divided by the same
widths. Dividing two series by the same increasing w makes them correlate positively
whatever they are, so the observed value only means something against that null.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from .. import stats
from ..errors import CapeError
from .data import pair_data
from .results import Estimate, Result, fmt_num, internal

__all__ = ["WIDTH_UNIT", "WidthNormalization", "width_normalization"]

#: The preprint's width unit: scores are divided by d_model / 512.
WIDTH_UNIT = 512


@dataclass
class WidthNormalization(Result):
    """r before and after dividing by width, and where the latter falls in the null."""

    panel: str
    b1: str
    b2: str
    n: int
    models: list[str]
    r_raw: float
    r_normalised: float
    null_mean: float
    null_interval: tuple[float, float]
    percentile: float
    p_at_least: float
    n_null: int
    level: float
    excluded: list[dict] = field(default_factory=list)
    null: np.ndarray | None = internal(default=None, repr=False)

    def summary(self) -> str:
        lo, hi = self.null_interval
        return (f"Width normalization in {self.panel} ({self.n} models): r({self.b1}, {self.b2}) = "
                f"{self.r_raw:+.3f} raw, {self.r_normalised:+.3f} after dividing by d_model/{WIDTH_UNIT}.\n"
                f"  Null (the same widths, scores shuffled independently, {self.n_null:,} draws): "
                f"mean r = {self.null_mean:+.3f}, {int(100 * self.level)}% of draws in "
                f"[{lo:+.3f}, {hi:+.3f}]; the observed value is at percentile {self.percentile:.1f}, "
                f"and {100 * self.p_at_least:.1f}% of unrelated score pairs reach r >= {self.r_normalised:+.3f}.")


def width_normalization(frame: pd.DataFrame, pair=None, *, n_null: int = stats.DEFAULT_BOOTSTRAP,
                        level: float = 0.95, seed: int | None = None) -> WidthNormalization:
    """Observed r after width normalization and its null: each draw shuffles the two
    benchmarks independently across the models (destroying any relation between them and
    with width) and divides by the models' own widths."""
    pd_ = pair_data(frame, pair, need_size=False)
    f = pd_.frame
    excluded = list(pd_.excluded)
    if "d_model" not in f.columns:
        raise CapeError(f"{pd_.panel} has no d_model column: width normalization needs each "
                        "model's hidden width")
    missing = f["d_model"].isna() | (f["d_model"] <= 0)
    excluded += [{"model": m, "reason": "no d_model"} for m in f.loc[missing, "model"]]
    f = f[~missing]
    n = len(f)
    if n < 3:
        raise CapeError(f"width normalization needs 3+ models with a d_model and both scores; "
                        f"{pd_.panel} has {n}")
    w = f["d_model"].to_numpy() / WIDTH_UNIT
    s1, s2 = f["b1"].to_numpy(), f["b2"].to_numpy()
    if np.ptp(s1) == 0 or np.ptp(s2) == 0:
        raise CapeError(f"one of {pd_.b1}, {pd_.b2} is constant over these models: r is undefined")
    r_raw = stats.pearson_r(s1, s2)
    r_norm = stats.pearson_r(s1 / w, s2 / w)
    rng = np.random.default_rng(seed)
    p1 = np.argsort(rng.random((n_null, n)), axis=1)
    p2 = np.argsort(rng.random((n_null, n)), axis=1)
    null = stats.pearson_r(s1[p1] / w, s2[p2] / w, axis=1)
    alpha = (1 - level) / 2
    lo, hi = np.percentile(null, [100 * alpha, 100 * (1 - alpha)])
    pct = float(100 * ((null < r_norm).sum() + 0.5 * (null == r_norm).sum()) / n_null)
    p_at_least = float(((null >= r_norm).sum() + 1) / (n_null + 1))
    return WidthNormalization(pd_.panel, pd_.b1, pd_.b2, n, list(f["model"]), float(r_raw),
                              float(r_norm), float(null.mean()), (float(lo), float(hi)), pct,
                              p_at_least, n_null, level, excluded, null)
