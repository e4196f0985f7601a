"""Benchmark saturation and rotation (METHODS.md section 9).

The top-k spread of a benchmark is max - min over its k best models. The preprint compares
the spreads of an old and a new benchmark, sigma = spread(old) / spread(new), and says to
rotate when sigma < 0.2. That ratio ignores how noisy a score on a finite item set is. The
sound reading adds the binomial noise floor: a score p on ``items`` questions has standard
error sqrt(p (1 - p) / items), and k models of *equal* true skill would still show a spread
of about E[range of k normals] x SE. A spread at or below that floor means the top models
cannot be told apart on the benchmark. Intervals come from a parametric bootstrap: every
model's score is redrawn as Binomial(items, p) / items, the top k are chosen again (the
selection is part of the noise) and the spread recomputed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np
import pandas as pd

from .. import stats
from ..benchmarks import BENCHMARKS
from ..defaults import ROTATE_BELOW
from ..errors import CapeError
from .data import _benchmark_columns, panel_name, resolve_benchmark
from .frontier import subset_mask
from .results import Estimate, Result, fmt_num

__all__ = ["ROTATE_BELOW", "expected_range", "binomial_se", "top_spread", "Saturation", "saturation"]

# ROTATE_BELOW, the preprint's rotation rule (rotate when spread(old) / spread(new) is below
# it), is set in cape.defaults (`cape --help` shows it).


@lru_cache(maxsize=None)
def expected_range(k: int) -> float:
    """E[max - min] of k independent standard normals (0 for k = 1), by integrating
    1 - Phi(x)^k - (1 - Phi(x))^k over the real line."""
    if k < 2:
        return 0.0
    from scipy import integrate, stats as sps

    val, _ = integrate.quad(lambda x: 1.0 - sps.norm.cdf(x) ** k - sps.norm.sf(x) ** k, -np.inf, np.inf)
    return float(val)


def binomial_se(p_percent, items) -> np.ndarray:
    """Standard error in points of a percentage score on ``items`` questions."""
    p = np.asarray(p_percent, dtype=float) / 100.0
    return 100.0 * np.sqrt(p * (1 - p) / np.asarray(items, dtype=float))


def top_spread(scores: np.ndarray, k: int) -> np.ndarray:
    """max - min of the k largest values along the last axis (NaN-free input)."""
    part = -np.partition(-scores, k - 1, axis=-1)[..., :k]
    return part.max(axis=-1) - part.min(axis=-1)


@dataclass
class Saturation(Result):
    """Top-k spread per benchmark with its noise floor, and the rotation verdicts."""

    panel: str
    subset: str
    top_k: int
    level: float
    table: pd.DataFrame
    old: str
    new: str
    sigma: Estimate
    threshold: float
    paper_rotate: bool | None
    noise_rotate: bool | None
    recommendation: str
    notes: list[str] = field(default_factory=list)

    def summary(self) -> str:
        lines = [f"Saturation in {self.panel} ({self.subset}; top {self.top_k} models per benchmark)"]
        for r in self.table.to_dict("records"):
            floor = (f", noise floor {r['noise_spread']:.1f} (SE {r['se']:.2f} at {r['top_mean']:.1f}% on "
                     f"{r['items']} items)" if math.isfinite(r["noise_spread"]) else ", item count unknown")
            lines.append(f"  {r['benchmark']}: n={r['n']}, spread {fmt_num(r['spread'])} "
                         f"[{fmt_num(r['spread_low'])}, {fmt_num(r['spread_high'])}]{floor}"
                         + (" -> within noise" if r["within_noise"] else ""))
        lines += ["  " + self.sigma.describe(), "  " + self.recommendation]
        return "\n".join(lines + [f"  note: {n}" for n in self.notes])


def saturation(frame: pd.DataFrame, benchmarks=None, *, top_k: int = 5, subset: str = "all",
               old: str = "swe_bench_verified", new: str = "gpqa_diamond",
               threshold: float = ROTATE_BELOW, n_resamples: int = stats.DEFAULT_BOOTSTRAP,
               level: float = 0.95, seed: int | None = None) -> Saturation:
    """Spread of the top ``top_k`` models for each benchmark (all of the panel's by default),
    its binomial noise floor and parametric-bootstrap interval, and sigma = spread(old) /
    spread(new) judged by the preprint's threshold and by the noise floor. ``subset``
    defaults to ``all``: saturation is about the current frontier, new releases included."""
    if top_k < 2:
        raise CapeError(f"top_k must be at least 2 (a spread needs two models), got {top_k}")
    df = frame if "model" in frame.columns else frame.rename_axis("model").reset_index()
    meta = pd.DataFrame({"subset": df["subset"] if "subset" in df.columns else "",
                         "flags": df["flags"] if "flags" in df.columns else ""}, index=df.index)
    df = df[subset_mask(meta, subset).to_numpy()]
    if isinstance(benchmarks, str):
        benchmarks = [b.strip() for b in benchmarks.split(",") if b.strip()]
    names = [resolve_benchmark(frame, b) for b in benchmarks] if benchmarks else _benchmark_columns(frame)
    old_b, new_b = resolve_benchmark(frame, old), resolve_benchmark(frame, new)
    for b in (old_b, new_b):
        if b not in names:
            names.append(b)
    rng = np.random.default_rng(seed)
    rows, sims, notes = [], {}, []
    for b in names:
        s = pd.to_numeric(df[b], errors="coerce")
        ok = s.notna()
        vals = s[ok].to_numpy(dtype=float)
        models = df.loc[ok, "model"].astype(str).to_numpy()
        items = BENCHMARKS[b].items if b in BENCHMARKS else None
        row = {"benchmark": b, "n": int(vals.size), "items": items, "top_models": "", "top_mean": math.nan,
               "spread": math.nan, "spread_low": math.nan, "spread_high": math.nan, "se": math.nan,
               "noise_spread": math.nan, "within_noise": False, "note": ""}
        if vals.size < top_k:
            row["note"] = f"{vals.size} model(s) with a score: the top-{top_k} spread needs {top_k}"
            rows.append(row)
            continue
        order = np.argsort(-vals, kind="stable")[:top_k]
        top = vals[order]
        row.update(top_models=", ".join(models[order]), top_mean=float(top.mean()),
                   spread=float(top_spread(vals, top_k)))
        if items:
            se = float(binomial_se(top.mean(), items))
            draws = rng.binomial(items, np.clip(vals / 100.0, 0, 1), size=(n_resamples, vals.size)) * (100.0 / items)
            sim = top_spread(draws, top_k)
            sims[b] = sim
            lo, hi, _ = stats.interval(sim, np.array([row["spread"]]), level=level, method="percentile")
            row.update(se=se, noise_spread=expected_range(top_k) * se, spread_low=float(lo[0]),
                       spread_high=float(hi[0]))
            row["within_noise"] = bool(row["spread"] <= row["noise_spread"])
        else:
            row["note"] = "item count unknown: no noise floor"
        rows.append(row)
    table = pd.DataFrame(rows)
    t = table.set_index("benchmark")
    so, sn = t.at[old_b, "spread"], t.at[new_b, "spread"]
    with np.errstate(divide="ignore", invalid="ignore"):
        sigma_v = float(so / sn) if sn > 0 else math.nan
    if old_b in sims and new_b in sims and math.isfinite(sigma_v):
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = sims[old_b] / sims[new_b]
        ok = np.isfinite(ratio)
        lo, hi, used = stats.interval(ratio[ok], np.array([sigma_v]), level=level, method="percentile")
        sigma = Estimate("sigma", sigma_v, top_k, f"spread({old_b}) / spread({new_b}), top {top_k}",
                         (float(lo[0]), float(hi[0])), level, "parametric binomial bootstrap (top k re-chosen)",
                         "model", n_resamples, int((~ok).sum()))
    else:
        sigma = Estimate("sigma", sigma_v, top_k, f"spread({old_b}) / spread({new_b}), top {top_k}",
                         note=None if math.isfinite(sigma_v) else "a spread is missing or zero")
    paper = bool(sigma_v < threshold) if math.isfinite(sigma_v) else None
    noise = bool(t.at[old_b, "within_noise"]) if math.isfinite(t.at[old_b, "noise_spread"]) else None
    new_noise = bool(t.at[new_b, "within_noise"]) if math.isfinite(t.at[new_b, "noise_spread"]) else None
    parts = []
    if paper is not None:
        parts.append(f"paper rule (rotate when sigma < {fmt_num(threshold)}): sigma = {sigma_v:.3f} -> "
                     + ("rotate" if paper else "keep"))
    if noise is not None:
        parts.append(f"noise floor: the top-{top_k} spread of {old_b} ({so:.1f}) is "
                     + ("within" if noise else "above") + f" its binomial floor ({t.at[old_b, 'noise_spread']:.1f})"
                     + (" -> its top models cannot be told apart, rotate" if noise else " -> it still separates them"))
    if new_noise and noise:
        parts.append(f"but {new_b} is within its own floor too: it separates them no better")
    elif new_noise:
        parts.append(f"{new_b}, by contrast, is within its own floor ({t.at[new_b, 'spread']:.1f} <= "
                     f"{t.at[new_b, 'noise_spread']:.1f}): rotating to it would not separate them better")
    elif new_noise is False and noise:
        parts.append(f"{new_b} is above its own floor ({t.at[new_b, 'spread']:.1f} > "
                     f"{t.at[new_b, 'noise_spread']:.1f}): it does separate them")
    if paper is not None and noise is not None and paper != noise:
        notes.append("the paper rule and the noise floor disagree")
    return Saturation(panel_name(frame), subset, top_k, level, table, old_b, new_b, sigma, threshold, paper,
                      noise, "; ".join(parts) or "no verdict: a spread is missing", notes)
