"""Does paper A's picture hold on another panel? (CLAIMS.md A1-A6, A9)

The preprint's picture: within a model family, the second benchmark (TruthfulQA) falls as
the first (HellaSwag) rises below a critical scale N_c and rises with it above. This module
runs the base-model analyses on any panel and puts their answers side by side:

1. within-family couplings (:func:`family_coupling`) over the families with at least
   ``min_models`` distinct sizes, with Benjamini-Hochberg q across those families;
2. per-family sign changes of the interval coupling (:func:`local_coupling` and
   :func:`family_crossings`), with the direction of each change;
3. N_c by every estimator of :func:`critical_scale` on the whole panel;
4. the curation field h(D) = B2 minus a quadratic in log10 N fitted to the reference
   families pooled (all of the panel's by default), per model and per family;
5. pooled shares (descriptive): interval couplings split at N_c (this panel's
   paper-protocol estimate, and any scale the caller gives), the share of negative
   couplings below minus the share above, with a bootstrap interval that resamples whole
   families; then the same on the families with intervals on both sides of the split only.
   This is not a test of a critical size: old small families against new large ones make
   it positive at almost any split (the breakpoint profile of section 6 shows it per split);
6. the verdict: the pre-specified family-level test of a flip *within* families at N_c
   (:func:`cape.analysis.flip.flip_test`): a conditional logit with families weighted
   equally, the majority flip within families, a step against a smooth trend with the
   breakpoint profile, and vintage strata (release date, else pretraining tokens).

>>> import cape
>>> from cape.analysis.replication import replication
>>> rep = replication(cape.load_panel("paper-base"), n_resamples=500, seed=0)
>>> rep.verdict in ("holds", "does not hold", "undetermined")
True
"""

from __future__ import annotations

import copy
import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from .. import stats
from ..errors import CapeError
from ..units import parse_param_count
from .coupling import FamilyCoupling, family_coupling
from .data import PairData, family_codes, pair_data
from .flip import FlipTest, flip_test, model_vintage
from .gamma import DEFAULT_GUARD, LocalCoupling, local_coupling
from .nc import CriticalScale, critical_scale, family_crossings, quadratic_coefficients
from .results import Estimate, Result, fmt_num, internal

__all__ = ["VERDICTS", "Replication", "replication", "phase_split_test"]

#: The three answers of the replication (:func:`cape.analysis.flip.flip_test`), and of each
#: row of the pooled ``phase`` table (there: "holds" when every value in the interval of
#: (share negative below N_c) - (share negative above) is positive, "does not hold" when
#: none is, "undetermined" otherwise).
VERDICTS = ("holds", "does not hold", "undetermined")
#: q below which a within-family coupling counts as significant (the usual FDR level).
Q_SIGNIFICANT = 0.05

_NC_COLUMNS = ["estimator", "value", "ci_low", "ci_high", "median", "n", "unit", "n_resamples",
               "discarded", "method", "interval", "note"]
_PHASE_COLUMNS = ["split", "source", "families", "n_c", "n_intervals", "n_families", "n_below", "n_above",
                  "negative_below", "negative_above", "share_below", "share_above", "difference",
                  "ci_low", "ci_high", "level", "n_resamples", "discarded", "straddling",
                  "majority_flips", "verdict", "note"]


@dataclass
class Replication(Result):
    """Paper A's base-model analyses on one panel, and whether its phase picture holds.

    Section tables (one DataFrame each, ready to plot; :attr:`tables` lists them):
    ``couplings`` (the :func:`family_coupling` table), ``crossings`` (per-family sign
    changes, with the direction of each), ``nc`` (one row per N_c estimator), ``h_models``
    and ``h_families`` (the curation field), ``intervals`` (every interval coupling used,
    with its side of each split) and ``phase`` (per split, pooled shares over every family
    and over the families spanning the split, column ``families``: descriptive), and the
    verdict's test: ``flip`` (a :class:`~cape.analysis.flip.FlipTest`, with tables
    ``flip_parts``, ``flip_families`` and ``flip_profile``). ``verdict`` and
    ``verdict_reason`` are the flip test's at the caller's first ``n_c`` when one was
    given, else at this panel's own paper-protocol N_c.
    """

    panel: str
    b1: str
    b2: str
    n_models: int
    families: list[str]
    min_models: int
    guard: float
    level: float
    n_resamples: int
    seed: int | None
    # 1. within-family couplings
    couplings: pd.DataFrame
    coupling_counts: dict
    pooled: list[Estimate]
    # 2. sign changes
    crossings: pd.DataFrame
    crossing_counts: dict
    # 3. N_c
    nc: pd.DataFrame
    nc_estimates: list[Estimate]
    # 4. curation field
    reference: dict
    h_models: pd.DataFrame
    h_families: pd.DataFrame
    # 5. the phase picture
    intervals: pd.DataFrame
    phase: pd.DataFrame
    phase_estimates: list[Estimate]
    verdict: str
    verdict_split: str
    flip: FlipTest | None = None
    verdict_reason: str = ""
    notes: list[str] = field(default_factory=list)
    excluded: list[dict] = field(default_factory=list)
    coupling_result: FamilyCoupling | None = internal(default=None, repr=False)
    local_result: LocalCoupling | None = internal(default=None, repr=False)
    critical_result: CriticalScale | None = internal(default=None, repr=False)
    phase_distributions: dict = internal(default_factory=dict, repr=False)

    @property
    def tables(self) -> dict[str, pd.DataFrame]:
        """Every section's table by name, for a report to plot."""
        out = {"couplings": self.couplings, "crossings": self.crossings, "nc": self.nc,
               "h_models": self.h_models, "h_families": self.h_families,
               "intervals": self.intervals, "phase": self.phase}
        if self.flip is not None:
            out |= {"flip_parts": self.flip.parts, "flip_families": self.flip.families,
                    "flip_profile": self.flip.profile}
        return out

    def summary(self) -> str:
        c, x = self.coupling_counts, self.crossing_counts
        lines = [f"Does paper A's phase picture hold in {self.panel}? ({self.b1} -> {self.b2}; "
                 f"{self.n_models} models in {len(self.families)} families with >= {self.min_models} "
                 f"distinct sizes)",
                 f"1. Within-family couplings: {c['n_tested']} families with r defined; "
                 f"{c['n_negative']} with r < 0, {c['n_positive']} with r > 0; q < {Q_SIGNIFICANT:g} "
                 f"(BH over those families) for {c['n_significant']} "
                 f"({c['n_negative_significant']} negative, {c['n_positive_significant']} positive)."]
        for r in self.couplings.to_dict("records"):
            if np.isfinite(r["r"]):
                lines.append(f"   {r['family']}: n={r['n']}, r={r['r']:+.3f} [{fmt_num(r['ci_low'])}, "
                             f"{fmt_num(r['ci_high'])}], q={fmt_num(r['q_fdr'])}")
        lines += ["   " + e.describe() for e in self.pooled]
        lines.append(f"2. Sign changes of the interval coupling: {x['n_observable']} families have 2+ "
                     f"intervals; {x['n_changing']} change sign inside their own size range "
                     f"({x['n_up']} changes tax -> bonus with size, {x['n_down']} bonus -> tax).")
        for r in self.crossings.to_dict("records"):
            if r["n_intervals"] >= 2:
                lines.append(f"   {r['family']}: {r['verdict']}")
        lines.append("3. N_c by estimator:")
        lines += ["   " + e.describe() for e in self.nc_estimates]
        ref = self.reference
        lines.append(f"4. Curation field h(D) = {self.b2} - ({ref['a']:.4g} x^2 {ref['b']:+.4g} x "
                     f"{ref['c']:+.4g}), x = log10 N, fitted to {ref['n_models']} models of "
                     f"{len(ref['families'])} families pooled ({ref['which']}):")
        if ref.get("note"):
            lines.append(f"   {ref['note']}")
        for r in self.h_families.to_dict("records"):
            if not np.isfinite(r["mean_h"]):
                continue
            ci = (f" [{r['ci_low']:+.2f}, {r['ci_high']:+.2f}]" if np.isfinite(r["ci_low"]) else "")
            lines.append(f"   {r['family']}: mean h = {r['mean_h']:+.2f}{ci} (n = {r['n']})"
                         + (f"; {r['note']}" if isinstance(r["note"], str) else ""))
        lines.append("5. Pooled shares (descriptive, not a test of a critical size; share of negative interval "
                     "couplings below the split minus above):")
        for r in self.phase.to_dict("records"):
            who = "" if r["families"] == "all" else ", families spanning it only"
            if np.isfinite(r["difference"]):
                lines.append(f"   split at {fmt_num(r['n_c'])} ({r['source']}{who}): {r['negative_below']}/"
                             f"{r['n_below']} negative below, {r['negative_above']}/{r['n_above']} above; "
                             f"difference {r['difference']:+.3f}, {int(round(100 * r['level']))}% CI "
                             f"[{r['ci_low']:+.3f}, {r['ci_high']:+.3f}] ({r['n_families']} families "
                             f"resampled, {r['n_resamples']:,} resamples, {r['discarded']:,} discarded): "
                             f"{r['verdict'].upper()}" + (f"; {r['note']}" if r["note"] else ""))
            else:
                lines.append(f"   split at {fmt_num(r['n_c'])} ({r['source']}{who}): {r['verdict'].upper()}; "
                             f"{r['note']}")
        if self.flip is not None:
            lines.append("6. " + self.flip.summary().replace("\n", "\n  "))
            prof = self.flip.profile
            ok = prof[prof["n_families_spanning"] >= 2]
            if len(ok):
                top = ok.nlargest(min(3, len(ok)), "loglik")
                lines.append("   breakpoint profile, best splits: " + "; ".join(
                    f"{fmt_num(r.split)} (loglik {r.loglik:.2f}, beta {r.beta:+.2f}, {r.n_families_spanning} families)"
                    for r in top.itertuples()) + f" (of {len(ok)} splits; the table flip_profile has them all)")
                pooled_pos = int((ok["pooled_difference"] > 0).sum())
                lines.append(f"   the pooled share difference is positive at {pooled_pos} of those {len(ok)} splits")
        lines.append(f"Verdict on the phase picture ({self.verdict_split}): {self.verdict}"
                     + (f" ({self.verdict_reason})" if self.verdict_reason else "") + ".")
        lines += [f"note: {n}" for n in self.notes]
        return "\n".join(lines)


# ------------------------------------------------------------------------- helpers
def _check_settings(min_models, n_resamples, level, guard) -> None:
    if isinstance(min_models, bool) or not isinstance(min_models, (int, np.integer)) or min_models < 2:
        raise CapeError(f"min_models is a whole number of distinct sizes, at least 2, not {min_models!r}",
                        hint="a within-family r needs 3 sizes; an interval coupling needs 2")
    if isinstance(n_resamples, bool) or not isinstance(n_resamples, (int, np.integer)) or n_resamples < 1:
        raise CapeError(f"n_resamples must be a positive whole number, not {n_resamples!r}")
    if not (isinstance(level, (int, float)) and 0 < level < 1):
        raise CapeError(f"level must be between 0 and 1 (e.g. 0.95), not {level!r}")
    if not (isinstance(guard, (int, float)) and guard >= 0):
        raise CapeError(f"the guard must be a non-negative number of points, not {guard!r}")


def _split_scales(n_c) -> list[float]:
    """The caller's split scales as parameter counts (a number, '3.5B', or a sequence)."""
    if n_c is None:
        return []
    values = [n_c] if isinstance(n_c, (str, int, float, np.integer, np.floating)) else list(n_c)
    out = []
    for v in values:
        try:
            pc = parse_param_count(v)
        except CapeError as exc:
            raise CapeError(f"n_c must be a parameter count such as 3.5e9 or '3.5B': {exc}") from None
        if pc is None:
            raise CapeError(f"n_c must be a parameter count such as 3.5e9 or '3.5B', not {v!r}")
        out.append(float(pc.total))
    return out


def _subframe(frame: pd.DataFrame, models: set[str]) -> pd.DataFrame:
    """Rows of the caller's frame whose model is in ``models`` (attrs kept)."""
    ids = frame["model"] if "model" in frame.columns else pd.Series(frame.index, index=frame.index)
    sub = frame.loc[ids.astype(str).isin(models).to_numpy()].copy()
    sub.attrs = copy.deepcopy(frame.attrs)
    return sub


def _analysed_families(pd_: PairData, min_models: int) -> tuple[list[str], pd.DataFrame]:
    """Families with at least ``min_models`` distinct sizes, and every family's size counts."""
    f = pd_.frame
    sizes = f.groupby("family", sort=False).agg(n=("model", "size"), sizes=("params", "nunique"))
    keep = sizes.index[sizes["sizes"] >= min_models].tolist()
    return keep, sizes


def _crossing_table(lc: LocalCoupling) -> tuple[pd.DataFrame, list[str]]:
    """:func:`family_crossings` plus the direction of each sign change: 'up' is tax -> bonus
    as size grows (what the preprint predicts), 'down' is bonus -> tax. Zero couplings are
    skipped, as family_crossings skips them."""
    cr = family_crossings(lc)
    iv = lc.intervals
    nz = iv[np.sign(iv["gamma"].to_numpy()) != 0]
    s = np.sign(nz["gamma"].to_numpy())
    prev = nz.groupby("family", sort=False)["gamma"].shift().to_numpy()
    sp = np.sign(prev)
    up = (sp < 0) & (s > 0)
    down = (sp > 0) & (s < 0)
    d = pd.DataFrame({"family": nz["family"].to_numpy(), "up": up, "down": down}).groupby(
        "family", sort=False)[["up", "down"]].sum()
    dirs = pd.DataFrame({"family": nz["family"].to_numpy(),
                         "dir": np.select([up, down], ["up", "down"], "")})
    dirs = dirs[dirs["dir"] != ""].groupby("family", sort=False)["dir"].agg(list)
    cr["directions"] = [dirs.get(f, []) for f in cr["family"]]
    cr["changes_up"] = cr["family"].map(d["up"]).fillna(0).astype(int)
    cr["changes_down"] = cr["family"].map(d["down"]).fillna(0).astype(int)
    return cr


def _nc_row(e: Estimate) -> dict:
    ci = e.ci if e.ci is not None else (math.nan, math.nan)
    return {"estimator": e.name, "value": e.value, "ci_low": ci[0], "ci_high": ci[1],
            "median": e.median if e.median is not None else math.nan, "n": e.n, "unit": e.unit,
            "n_resamples": e.n_resamples, "discarded": e.discarded, "method": e.method,
            "interval": e.interval, "note": e.note}


def _curation_field(pd_: PairData, reference_families: Sequence[str] | None,
                    level: float) -> tuple[dict, pd.DataFrame, pd.DataFrame]:
    """h(D) of every model against the quadratic in log10 N fitted to the reference
    families pooled (coefficients from :func:`quadratic_coefficients`), and a per-family mean
    with a t interval over the family's models."""
    f = pd_.frame
    all_fams = pd_.families()
    if reference_families is None:
        ref, which = all_fams, "every family of the panel"
    else:
        ref = [str(r).strip() for r in reference_families]
        unknown = sorted(set(ref) - set(all_fams))
        if unknown:
            raise CapeError(f"reference families not in {pd_.panel}: {', '.join(unknown)}",
                            hint=f"it has: {', '.join(all_fams)}")
        ref = list(dict.fromkeys(ref))
        which = "the families given by the caller"
    rf = f[f["family"].isin(ref)]
    note = None
    if rf["x"].nunique() < 3:
        note = (f"the reference curve needs 3+ distinct sizes among the reference families; they have "
                f"{rf['x'].nunique()}: h(D) is undefined")
        a = b = c = math.nan
    else:
        a, b, c = quadratic_coefficients(rf["x"].to_numpy(), rf["b2"].to_numpy())
    x = f["x"].to_numpy()
    curve = np.polyval([a, b, c], x)
    h = f["b2"].to_numpy() - curve
    models = pd.DataFrame({"model": f["model"].to_numpy(), "family": f["family"].to_numpy(),
                           "params": f["params"].to_numpy(), pd_.b2: f["b2"].to_numpy(),
                           "reference_curve": curve, "h": h,
                           "in_reference": f["family"].isin(ref).to_numpy()})
    g = models.groupby("family", sort=False)["h"]
    fam = pd.DataFrame({"n": g.size(), "mean_h": g.mean(), "sd_h": g.std(ddof=1)})
    n = fam["n"].to_numpy()
    from scipy import stats as sps

    with np.errstate(invalid="ignore", divide="ignore"):
        sem = fam["sd_h"].to_numpy() / np.sqrt(n)
        lo, hi = sps.t.interval(level, np.maximum(n - 1, 1), loc=fam["mean_h"].to_numpy(), scale=sem)
    one = n < 2
    flat = sem == 0                                   # every model exactly on its family mean
    fam["ci_low"] = np.where(one, np.nan, np.where(flat, fam["mean_h"], lo))
    fam["ci_high"] = np.where(one, np.nan, np.where(flat, fam["mean_h"], hi))
    fam["note"] = [note if note else "one model: no interval" if o else None for o in one]
    fam = fam.reset_index().rename(columns={"index": "family"})
    fam["in_reference"] = fam["family"].isin(ref)
    reference = {"families": ref, "which": which, "n_models": int(len(rf)),
                 "a": float(a), "b": float(b), "c": float(c),
                 "vertex": float(10 ** (-b / (2 * a))) if a > 0 else math.nan, "note": note,
                 "interval": f"t interval over a family's models, level {level:g}; the reference "
                             "curve's own uncertainty is not included"}
    return reference, models, fam


def phase_split_test(intervals: pd.DataFrame, n_c: float, *, n_resamples: int = stats.DEFAULT_BOOTSTRAP,
                     level: float = 0.95, seed: int | None = None, source: str = "",
                     name: str | None = None) -> tuple[dict, Estimate, np.ndarray]:
    """Split interval couplings (a :class:`LocalCoupling` ``intervals`` table) at ``n_c`` by
    their geometric-mean size, and compare the share of negative couplings below with the
    share above. The interval of the difference comes from a percentile bootstrap that draws
    whole families with replacement (:func:`cape.stats.bootstrap_weights` with clusters);
    a resample with no interval on one side is discarded and counted.

    Returns (a row of the ``phase`` table, the difference as an :class:`Estimate`, the
    bootstrap distribution of the difference)."""
    label = name or f"N_c = {fmt_num(n_c)}"
    g = intervals["gamma"].to_numpy(dtype=float)
    mid = intervals["params_mid"].to_numpy(dtype=float)
    codes, names = family_codes(intervals["family"])
    below = mid < n_c
    above = ~below
    neg = g < 0
    straddle = int(((intervals["params_lo"].to_numpy() < n_c) & (intervals["params_hi"].to_numpy() > n_c)).sum())
    nb, na = int(below.sum()), int(above.sum())
    kb, ka = int((neg & below).sum()), int((neg & above).sum())
    row = {"split": label, "source": source, "n_c": float(n_c), "n_intervals": int(len(g)),
           "n_families": len(names), "n_below": nb, "n_above": na, "negative_below": kb,
           "negative_above": ka, "share_below": kb / nb if nb else math.nan,
           "share_above": ka / na if na else math.nan, "difference": math.nan,
           "ci_low": math.nan, "ci_high": math.nan, "level": level, "n_resamples": n_resamples,
           "discarded": 0, "straddling": straddle, "majority_flips": False,
           "verdict": "undetermined", "note": None}
    est_name = f"share negative below - above ({label})"
    method = "difference of shares of interval couplings < 0 (split by geometric-mean size)"
    if not math.isfinite(n_c) or n_c <= 0:
        row["note"] = "no N_c to split at"
        return row, Estimate(est_name, math.nan, len(g), method, unit="interval", note=row["note"]), np.empty(0)
    if nb == 0 and na == 0:
        row["note"] = "no interval couplings at all (every interval was dropped or no family has 2 sizes)"
        return row, Estimate(est_name, math.nan, 0, method, unit="interval", note=row["note"]), np.empty(0)
    if nb == 0 or na == 0:
        row["note"] = f"no interval couplings {'below' if nb == 0 else 'above'} {fmt_num(n_c)}: nothing to compare"
        return row, Estimate(est_name, math.nan, len(g), method, unit="interval", note=row["note"]), np.empty(0)
    diff = kb / nb - ka / na
    W = stats.bootstrap_weights(len(g), n_resamples, np.random.default_rng(seed), clusters=codes)
    wb, wa = W @ below, W @ above
    with np.errstate(invalid="ignore", divide="ignore"):
        dist = (W @ (neg & below)) / wb - (W @ (neg & above)) / wa
    ok = (wb > 0) & (wa > 0)
    dist = dist[ok]
    discarded = int((~ok).sum())
    notes = []
    if len(names) < 2:
        notes.append("one family: resampling families cannot show any spread")
    if dist.size:
        lo, hi, _ = stats.interval(dist[:, None], np.array([diff]), level=level, method="percentile")
        lo, hi = float(lo[0]), float(hi[0])
        verdict = "holds" if lo > 0 else "does not hold" if hi <= 0 else "undetermined"
    else:
        lo = hi = math.nan
        verdict = "undetermined"
        notes.append(f"every one of the {n_resamples:,} resamples lacked intervals on one side")
    flips = bool(kb / nb > 0.5 and ka / na < 0.5)
    if verdict == "holds" and not flips:
        notes.append("more tax-signed couplings below than above, but the majority sign does not flip "
                     f"(below {100 * kb / nb:.0f}% negative, above {100 * ka / na:.0f}%)")
    if straddle:
        notes.append(f"{straddle} interval(s) straddle {fmt_num(n_c)} and were placed by their midpoint")
    row |= {"difference": float(diff), "ci_low": lo, "ci_high": hi, "discarded": discarded,
            "majority_flips": flips, "verdict": verdict, "note": "; ".join(notes) or None}
    est = Estimate(est_name, float(diff), len(g), method, ci=(lo, hi) if dist.size else None, level=level,
                   interval=f"percentile bootstrap resampling {len(names)} families", unit="interval",
                   n_resamples=n_resamples, discarded=discarded,
                   median=float(np.median(dist)) if dist.size else None, note=row["note"])
    return row, est, dist


# ------------------------------------------------------------------------- analysis
def replication(frame: pd.DataFrame, pair=None, *, n_c: float | str | Sequence[float | str] | None = None,
                min_models: int = 3, n_resamples: int = stats.DEFAULT_BOOTSTRAP, level: float = 0.95,
                seed: int | None = None, guard: float = DEFAULT_GUARD,
                reference_families: Sequence[str] | None = None,
                claimed: tuple[float | str, float | str] | None = None,
                n_c_draws: Sequence[float] | np.ndarray | None = None,
                progress: stats.Progress | None = None) -> Replication:
    """Run paper A's base-model analyses on ``frame`` and test its phase picture.

    ``n_c``: scale(s) to split the interval couplings at, besides this panel's own
    paper-protocol N_c (always tested); a number of parameters, a string such as '3.5B', or
    a sequence of them. None: only the panel's own estimate. ``min_models``: the fewest
    distinct sizes a family needs to enter sections 1, 2 and 5. ``reference_families``: the
    families whose pooled quadratic defines h(D) = 0 (None: all of the panel's). ``guard``:
    the |dB1| guard of the interval couplings, in points. ``claimed``: the published
    interval of N_c (low, high), which the breakpoint of the flip test is compared with.
    ``n_c_draws``: draws of N_c (e.g. the preprint protocol's bootstrap), so that the flip
    test propagates N_c's uncertainty. The same ``seed`` gives the same result."""
    _check_settings(min_models, n_resamples, level, guard)
    if not isinstance(frame, pd.DataFrame):
        raise CapeError("replication takes a panel DataFrame (see cape.load_panel)")
    splits = _split_scales(n_c)
    claimed_iv = None
    if claimed is not None:
        try:
            claimed_iv = tuple(_split_scales(list(claimed)))
        except TypeError:
            claimed_iv = ()
        if len(claimed_iv) != 2 or not claimed_iv[0] <= claimed_iv[1]:
            raise CapeError(f"claimed must be an interval of two sizes (low, high), not {claimed!r}")
    if frame.empty:
        raise CapeError("the panel frame is empty: no models to analyse",
                        hint="load one with cape.load_panel('openllm-v1-base')")
    pd_ = pair_data(frame, pair, need_size=True)
    if pd_.n == 0:
        raise CapeError(f"no model of {pd_.panel} has {pd_.b1}, {pd_.b2} and a parameter count "
                        f"({len(pd_.excluded)} left out, e.g. {pd_.excluded[0]['model']}: "
                        f"{pd_.excluded[0]['reason']})" if pd_.excluded else
                        f"no model of {pd_.panel} has {pd_.b1}, {pd_.b2} and a parameter count")
    fams, sizes = _analysed_families(pd_, min_models)
    if not fams:
        best = sizes["sizes"].max()
        raise CapeError(f"no family of {pd_.panel} has {min_models} or more distinct sizes with "
                        f"{pd_.b1}, {pd_.b2} and a parameter count (the most is {best}, in "
                        f"{sizes['sizes'].idxmax()})", hint="lower min_models or use a panel with families")
    total_steps = 3 + 1 + max(1, len(splits) + 1) + 1
    step = [0]

    def tick():
        step[0] += 1
        if progress is not None:
            progress(step[0], total_steps)

    notes: list[str] = []
    kept_models = set(pd_.frame.loc[pd_.frame["family"].isin(fams), "model"])
    small = sizes[sizes["sizes"] < min_models]
    if len(small):
        notes.append(f"{len(small)} famil{'y' if len(small) == 1 else 'ies'} with fewer than {min_models} "
                     f"distinct sizes ({int(small['n'].sum())} models) are left out of sections 1, 2 and 5; "
                     "sections 3 and 4 use every model")
    dup = sizes.loc[fams][sizes.loc[fams, "n"] > sizes.loc[fams, "sizes"]]
    if len(dup):
        notes.append("families with two models of one size (duplicates or variants): " +
                     ", ".join(f"{f} ({int(r.n)} models, {int(r.sizes)} sizes)" for f, r in dup.iterrows()))
    if pd_.excluded:
        notes.append(f"{len(pd_.excluded)} model(s) without {pd_.b1}, {pd_.b2} or a size left out")
    sub = _subframe(frame, kept_models)

    # 1. within-family couplings
    fc = family_coupling(sub, pair, n_bootstrap=n_resamples, level=level, seed=seed)
    tick()
    t = fc.table
    r, q = t["r"].to_numpy(dtype=float), t["q_fdr"].to_numpy(dtype=float)
    sig = q < Q_SIGNIFICANT
    coupling_counts = {
        "n_families": int(len(t)), "n_tested": int(np.isfinite(r).sum()),
        "n_negative": int((r < 0).sum()), "n_positive": int((r > 0).sum()),
        "n_significant": int(sig.sum()), "n_negative_significant": int((sig & (r < 0)).sum()),
        "n_positive_significant": int((sig & (r > 0)).sum()), "q_threshold": Q_SIGNIFICANT}

    # 2. sign changes within families
    lc = local_coupling(sub, pair, guard=guard)
    cr = _crossing_table(lc)
    obs = cr["n_intervals"] >= 2
    changing = cr["sign_changes"] > 0
    crossing_counts = {
        "n_families": int(len(cr)), "n_observable": int(obs.sum()), "n_changing": int(changing.sum()),
        "n_up": int(cr["changes_up"].sum()), "n_down": int(cr["changes_down"].sum()),
        "n_families_up_only": int((changing & (cr["changes_down"] == 0)).sum()),
        "crossings": {fam: list(c) for fam, c in zip(cr.loc[changing, "family"], cr.loc[changing, "crossings"])},
        "n_intervals": int(len(lc.intervals)), "n_dropped": int(len(lc.dropped))}
    if len(lc.dropped):
        notes.append(f"{len(lc.dropped)} interval(s) dropped by the |d{pd_.b1}| < {guard:g} pp guard "
                     "or for equal sizes: " + ", ".join(f"{a} -> {b}" for a, b in
                                                       zip(lc.dropped["model_lo"], lc.dropped["model_hi"])))
    tick()

    # 3. N_c on the whole panel
    up = [c for cl, dl in zip(cr["crossings"], cr["directions"]) for c, d in zip(cl, dl) if d == "up"]
    n_down = int(cr["changes_down"].sum())
    nc_d = Estimate(
        "N_c (d) per-family sign changes tax -> bonus: median crossing",
        float(np.median(up)) if up else math.nan, len(up),
        "median of the in-range tax -> bonus sign changes of the families' interval couplings",
        unit="crossing",
        note=(f"range {fmt_num(min(up))} to {fmt_num(max(up))}" if up else
              "no family changes sign from tax to bonus inside its own range")
        + (f"; {n_down} bonus -> tax change(s) not counted" if n_down else ""))
    cs = None
    try:
        with np.errstate(over="ignore"):     # a flat running coupling puts N_c at 10^inf: recorded, not warned
            cs = critical_scale(frame, pair, n_resamples=n_resamples, level=level, guard=guard, seed=seed)
        nc_est = [dataclasses.replace(e) for e in cs.estimates]
        if cs.running is None:
            nc_est = nc_est + [Estimate("N_c (c) zero crossing of the running coupling", math.nan, 0,
                                        "10^(-B/A)", unit="interval", note="not computed")]
        own_nc = cs.paper.value
        nc_est.append(nc_d)
        lofo = cs.leave_one_family_out["nc"].to_numpy(dtype=float)
        ok = np.isfinite(lofo)
        nc_est.append(Estimate(
            "N_c (e) paper protocol, leave one family out: median fit", float(np.median(lofo[ok]))
            if ok.any() else math.nan, int(ok.sum()), "median of the full-data vertices without each family",
            unit="fit", note=(f"range {fmt_num(lofo[ok].min())} to {fmt_num(lofo[ok].max())} over "
                              f"{int(ok.sum())} families left out" if ok.any() else "no fit without a family")))
    except CapeError as exc:
        own_nc = math.nan
        nc_est = [Estimate("N_c (a, b, c, e) critical_scale", math.nan, pd_.n, "critical_scale",
                           note=f"failed on this panel: {exc}"), nc_d]
        notes.append(f"N_c estimators failed on this panel: {exc}")
    for e in nc_est:
        if not e.defined and e.note is None:
            e.note = "undefined on this panel"
    nc_table = pd.DataFrame([_nc_row(e) for e in nc_est], columns=_NC_COLUMNS)
    tick()

    # 4. curation field
    reference, h_models, h_families = _curation_field(pd_, reference_families, level)
    tick()

    # 5. the phase picture
    tests = [(own_nc, "this panel's paper-protocol N_c (full-data quadratic vertex)", "own")]
    tests += [(v, "given by the caller", "given") for v in splits]
    rows, ests, dists = [], [], {}
    iv = lc.intervals
    side = {}
    spanning_rows = []
    for v, source, kind in tests:
        label = f"{'own' if kind == 'own' else 'given'} N_c = {fmt_num(v)}"
        row, est, dist = phase_split_test(iv, v, n_resamples=n_resamples, level=level, seed=seed,
                                          source=source, name=label)
        if kind == "own" and cs is not None and cs.paper.note:
            row["note"] = "; ".join(filter(None, [row["note"], f"the paper-protocol fit: {cs.paper.note}"]))
            est.note = row["note"]
        rows.append(row | {"families": "all"})
        ests.append(est)
        dists[label] = dist
        below = iv["params_mid"].to_numpy() < v
        side[label] = np.where(below, "below", "above") if math.isfinite(v) else ""
        # the same test on the families with intervals on both sides only: a family-composition
        # difference between small and large models cannot drive it
        both = iv.assign(_b=below).groupby("family", sort=False)["_b"].transform(lambda b: b.any() and not b.all())
        span_label = f"{label}, families spanning it"
        row, est, dist = phase_split_test(iv[both.to_numpy(dtype=bool)], v, n_resamples=n_resamples, level=level,
                                          seed=seed, source=source, name=span_label)
        spanning_rows.append(row | {"families": "spanning"})
        ests.append(est)
        dists[span_label] = dist
        tick()
    rows += spanning_rows
    phase = pd.DataFrame(rows, columns=_PHASE_COLUMNS)
    intervals = iv[["family", "model_lo", "model_hi", "params_lo", "params_hi", "params_mid", "x_mid",
                    "d_b1", "d_b2", "gamma", "phase"]].copy()
    intervals["negative"] = intervals["gamma"] < 0
    for label, s in side.items():
        intervals[f"side ({label})"] = s
    head = rows[1] if splits else rows[0]

    # 6. the verdict: the within-family flip test at the headline split
    vint, vsrc, vnote = model_vintage(sub)
    if vnote:
        notes.append(vnote)
    flip = None
    if math.isfinite(head["n_c"]) and head["n_c"] > 0:
        flip = flip_test(iv, head["n_c"], claimed=claimed_iv, n_c_draws=n_c_draws, vintage=vint,
                         vintage_source=vsrc, n_resamples=n_resamples, level=level, seed=seed)
        verdict, reason = flip.verdict, flip.reason
    else:
        verdict, reason = "undetermined", "no N_c to test a flip at"
    tick()
    return Replication(
        pd_.panel, pd_.b1, pd_.b2, len(kept_models), fams, int(min_models), float(guard), float(level),
        int(n_resamples), seed, t, coupling_counts, [fc.pooled_raw, fc.pooled_fixed_effects],
        cr, crossing_counts, nc_table, nc_est, reference, h_models, h_families, intervals, phase, ests,
        verdict, head["split"], flip, reason, notes, list(pd_.excluded), fc, lc, cs, dists)
