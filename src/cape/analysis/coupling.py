"""Within-family coupling of two benchmarks (METHODS.md section 2).

For every family: n, size range, Pearson r with its parametric and permutation p (exact for
n <= 9), a bootstrap CI over models (none below :data:`MIN_BOOTSTRAP` models: with 3 models
there are only 10 distinct resamples, many with a degenerate r, so the "interval" would be
an artefact; the note says so), Spearman's rho with its permutation p (the same test on
ranks: exact for n <= 9, Monte Carlo above; ``spearman_method``), the partial r given
log10 N, and the Benjamini-Hochberg adjusted p across the families tested. Beside them, the pooled r over
all models (which mixes families) and the pooled family-demeaned (fixed-effects) r.

Families of equal size are processed together as one (F, n) array, sharing their
permutations and bootstrap weights, so a panel of thousands of families costs a few matrix
products per family size.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from .. import stats
from .data import PairData, family_codes, pair_data
from .results import Estimate, Result, fmt_num

__all__ = ["FamilyCoupling", "family_coupling", "MIN_FAMILY", "MIN_BOOTSTRAP", "bootstrap_note"]

#: Fewest models for a within-family r with any degrees of freedom left.
MIN_FAMILY = 3
#: Fewest models for a bootstrap interval of r: n models have C(2n - 1, n) distinct
#: resamples (10 for n = 3, many with a degenerate r of +-1 or none), too few for an interval.
MIN_BOOTSTRAP = 4


def bootstrap_note(n: int) -> str | None:
    """Why a family of ``n`` models gets no bootstrap interval (None when it gets one)."""
    if n >= MIN_BOOTSTRAP:
        return None
    return (f"n = {n}: too few models for a bootstrap interval "
            f"({math.comb(2 * n - 1, n)} distinct resamples)")
#: Families per block in the bootstrap (bounds memory at resamples x block floats).
_BLOCK = 500


def _group_rng(seed, n: int) -> np.random.Generator:
    """A generator per family size, so a family's result depends on the seed and its own
    size only, not on which other families the panel holds."""
    return np.random.default_rng(None if seed is None else [int(seed), n])


@dataclass
class FamilyCoupling(Result):
    """Within-family coupling table plus pooled estimates. ``table`` has one row per family."""

    panel: str
    b1: str
    b2: str
    table: pd.DataFrame
    pooled_raw: Estimate
    pooled_fixed_effects: Estimate
    n_permutations: int
    n_bootstrap: int
    ci_method: str
    level: float
    seed: int | None
    excluded: list[dict] = field(default_factory=list)

    def summary(self) -> str:
        lines = [f"Within-family coupling of {self.b1} -> {self.b2} in {self.panel} "
                 f"({len(self.table)} families)"]
        for r in self.table.to_dict("records"):
            if np.isfinite(r["r"]):
                ci = (f" [{fmt_num(r['ci_low'])}, {fmt_num(r['ci_high'])}]" if np.isfinite(r["ci_low"])
                      else f", {bootstrap_note(r['n']) or 'no bootstrap interval'}")
                lines.append(f"  {r['family']}: n={r['n']}, r={r['r']:+.3f}{ci}, "
                             f"p_perm={r['p_perm']:.3g} ({r['p_method']}), q={fmt_num(r['q_fdr'])}, "
                             f"Spearman {r['spearman']:+.3f} (p={r['spearman_p']:.3g}, {r['spearman_method']})")
            else:
                lines.append(f"  {r['family']}: n={r['n']}, undefined: {r['note']}")
        lines += ["  " + self.pooled_raw.describe(), "  " + self.pooled_fixed_effects.describe()]
        return "\n".join(lines)


_COLUMNS = ["family", "n", "params_min", "params_max", "r", "p_parametric", "p_perm", "p_method",
            "p_floor", "ci_low", "ci_high", "spearman", "spearman_p", "spearman_method", "partial_r",
            "partial_p", "q_fdr", "note"]


def _family_rows(pd_: PairData) -> tuple[list[dict], dict[int, list[tuple[str, np.ndarray]]]]:
    """Rows for families that cannot be tested, and the testable ones grouped by size
    (row indices into ``pd_.frame``, which is sorted by family then size)."""
    f = pd_.frame
    codes, names = family_codes(f["family"])
    agg = f.assign(_code=codes).groupby("_code", sort=True).agg(
        n=("b1", "size"), params_min=("params", "min"), params_max=("params", "max"),
        b1_min=("b1", "min"), b1_max=("b1", "max"), b2_min=("b2", "min"), b2_max=("b2", "max"))
    note = pd.Series(None, index=agg.index, dtype=object)
    note[agg["b2_min"] == agg["b2_max"]] = f"{pd_.b2} is constant in this family: r undefined"
    note[agg["b1_min"] == agg["b1_max"]] = f"{pd_.b1} is constant in this family: r undefined"
    note[agg["n"] < MIN_FAMILY] = f"fewer than {MIN_FAMILY} models: r undefined"
    bad = note.notna()
    rows = [{"family": names[c], "n": int(a.n), "params_min": float(a.params_min),
             "params_max": float(a.params_max), "note": note[c]}
            for c, a in zip(agg.index[bad], agg[bad].itertuples())]
    order = np.argsort(codes, kind="stable")
    starts = np.r_[0, np.cumsum(agg["n"].to_numpy())[:-1]]
    groups: dict[int, list[tuple[str, np.ndarray]]] = {}
    for n in np.unique(agg.loc[~bad, "n"]):
        sel = agg.index[(~bad) & (agg["n"] == n)].to_numpy()
        ix = order[starts[sel][:, None] + np.arange(n)[None, :]]   # (F_n, n) rows, size-sorted
        groups[int(n)] = [(names[c], ix[j]) for j, c in enumerate(sel)]
    return rows, groups


def family_coupling(frame: pd.DataFrame, pair=None, *, n_permutations: int = stats.DEFAULT_PERMUTATIONS,
                    n_bootstrap: int = stats.DEFAULT_BOOTSTRAP, ci_method: str = "bca",
                    level: float = 0.95, seed: int | None = None,
                    progress: stats.Progress | None = None) -> FamilyCoupling:
    """The within-family coupling table of a panel for a benchmark pair (default
    HellaSwag -> TruthfulQA). See the module docstring for the columns."""
    pd_ = pair_data(frame, pair, need_size=True)
    f = pd_.frame
    undefined, groups = _family_rows(pd_)
    frames = [pd.DataFrame(undefined, columns=_COLUMNS)]
    x, b1, b2 = f["x"].to_numpy(), f["b1"].to_numpy(), f["b2"].to_numpy()
    total = sum(len(g) for g in groups.values())
    done = 0
    for n in sorted(groups):
        fams = groups[n]
        idx = np.stack([ix for _, ix in fams])            # (F, n)
        X1, X2, XS = b1[idx], b2[idx], x[idx]
        r = stats.pearson_r(X1, X2, axis=1)
        sp = stats.spearman_r(X1, X2, axis=1)
        pr = stats.partial_r(X1, X2, XS, axis=1)
        rng = _group_rng(seed, n)
        zx, zy = stats._standardise(X1), stats._standardise(X2)
        p_perm, exact, B, floor = stats.permutation_pvalues(zx, zy, n_resamples=n_permutations, rng=rng)
        # Spearman's p: the same permutation test on average ranks (its own generator, so the
        # Pearson p and the bootstrap below draw exactly what they drew before)
        sp_rng = np.random.default_rng(None if seed is None else [int(seed), n, 1])
        sp_p, _, _, _ = stats.permutation_pvalues(stats._standardise(stats.rank(X1, axis=1)),
                                                  stats._standardise(stats.rank(X2, axis=1)),
                                                  n_resamples=n_permutations, rng=sp_rng)
        lo = np.empty(len(fams))
        hi = np.empty(len(fams))
        W = stats.bootstrap_weights(n, n_bootstrap, rng)
        J = stats.jackknife_weights(n)
        for s in range(0, len(fams), _BLOCK):           # blocks of families, not resamples
            blk = slice(s, s + _BLOCK)
            dist = stats.weighted_pearson(W, X1[blk].T, X2[blk].T)
            jk = stats.weighted_pearson(J, X1[blk].T, X2[blk].T)
            lo[blk], hi[blk], used = stats.interval(dist, r[blk], jk, level=level, method=ci_method)
            done += len(fams[blk])
        if n < MIN_BOOTSTRAP:                            # one rule, here: no interval to print
            lo[:], hi[:] = np.nan, np.nan
            if progress is not None:
                progress(done, total)
        method = "exact" if exact else f"Monte Carlo ({B:,})"
        params = f["params"].to_numpy()[idx]
        frames.append(pd.DataFrame({
            "family": [fam for fam, _ in fams], "n": n, "params_min": params.min(axis=1),
            "params_max": params.max(axis=1), "r": r, "p_parametric": stats.parametric_p(r, n),
            "p_perm": p_perm, "p_method": method, "p_floor": floor, "ci_low": lo, "ci_high": hi,
            "spearman": sp, "spearman_p": sp_p, "spearman_method": method, "partial_r": pr,
            "partial_p": stats.parametric_p(pr, n, n_controls=1),
            "note": "; ".join(x for x in (bootstrap_note(n), None if n > MIN_FAMILY else
                                          "partial r given size has no degrees of freedom with 3 models") if x)
                    or None}))
    table = pd.concat([fr for fr in frames if len(fr)] or frames[:1], ignore_index=True).reindex(columns=_COLUMNS)
    order = {fam: i for i, fam in enumerate(pd_.families())}
    table = table.sort_values("family", key=lambda s: s.map(order), kind="stable").reset_index(drop=True)
    table["q_fdr"] = stats.bh_fdr(table["p_perm"].to_numpy(dtype=float))
    table.loc[table["n"] <= MIN_FAMILY, ["partial_r", "partial_p"]] = np.nan
    raw, fe = _pooled(pd_, n_bootstrap, level, ci_method, seed)
    return FamilyCoupling(pd_.panel, pd_.b1, pd_.b2, table, raw, fe, n_permutations, n_bootstrap,
                          ci_method, level, seed, pd_.excluded)


def _pooled(pd_: PairData, n_bootstrap: int, level: float, ci_method: str, seed) -> tuple[Estimate, Estimate]:
    """Raw pooled r (mixes families) and family fixed-effects r (within-family deviations),
    both with a cluster bootstrap over families and a parametric p."""
    f = pd_.frame
    codes, names = family_codes(f["family"])
    n, k = len(f), len(names)
    b1, b2 = f["b1"].to_numpy(), f["b2"].to_numpy()
    d1 = b1 - f.groupby("family", sort=False)["b1"].transform("mean").to_numpy()
    d2 = b2 - f.groupby("family", sort=False)["b2"].transform("mean").to_numpy()
    sizes = np.bincount(codes)
    in_fe = sizes[codes] >= 2
    out = []
    for name, v1, v2, mask, dof_controls in (
            ("pooled r (raw, families mixed)", b1, b2, np.ones(n, bool), 0),
            ("pooled r (family fixed effects)", d1, d2, in_fe, int(len(np.unique(codes[in_fe]))) - 1)):
        m = int(mask.sum())
        if m < MIN_FAMILY:
            out.append(Estimate(name, float("nan"), m, "Pearson", unit="model",
                                note=f"fewer than {MIN_FAMILY} usable models"))
            continue
        r = stats.pearson_r(v1[mask], v2[mask])
        cl = np.unique(codes[mask], return_inverse=True)[1]
        if len(np.unique(cl)) >= 2:
            bs = stats.bootstrap_moments(stats.pearson_moments(v1[mask], v2[mask]), stats.pearson_finish,
                                         n_resamples=n_bootstrap, rng=np.random.default_rng(seed),
                                         clusters=cl)
            lo, hi, used = bs.ci(level, ci_method)
            ci, disc, note_ci = (float(lo[0]), float(hi[0])), bs.discarded, None
        else:
            ci, disc, used, note_ci = None, None, None, "one family: no cluster bootstrap"
        p = float(stats.parametric_p(r, m, n_controls=dof_controls))
        out.append(Estimate(name, float(r), m, f"Pearson; parametric p = {p:.3g}", ci=ci, level=level,
                            interval=None if used is None else f"{used}, resampling families",
                            unit="model", n_resamples=n_bootstrap if ci else None, discarded=disc,
                            note=note_ci or f"{len(np.unique(cl))} families"))
    return out[0], out[1]
