"""The analyses the claims file can name. Each takes the shared :class:`Context` and the
claim's ``args`` and returns a :class:`~cape.audit.Computation`; every number comes from
the analysis layer (:mod:`cape.analysis`, :mod:`cape.predictions`), nothing is computed
here but comparisons."""

from __future__ import annotations

import math
import pandas as pd

from .. import api
from ..analysis import coupling, eigen, gamma, nc, phase, width
from ..analysis import dynamics as dyn
from ..analysis import frontier as fr
from ..analysis import saturation as sat
from ..analysis.results import fmt_num
from . import Computation, register


class Context:
    """Shared panels and results for one audit run (each computed at most once)."""

    def __init__(self, seed: int | None = 0, n_resamples: int = 10_000, steering: list | None = None):
        self.seed = seed
        self.n = n_resamples
        self.steering_paths = steering
        self._cache: dict = {}

    def steering(self) -> list:
        """Saved steering evaluations (the newest per model): the files or folders given, else
        those recorded in $CAPE_HOME/steering. Reading them needs no torch."""
        from ..steer.evaluate import saved_evaluations

        return self.get(("steering",), lambda: saved_evaluations(self.steering_paths))

    def get(self, key, make):
        if key not in self._cache:
            self._cache[key] = make()
        return self._cache[key]

    def panel(self, name: str, corrected: bool = False, clean: bool = False) -> pd.DataFrame:
        return self.get(("panel", name, corrected, clean),
                        lambda: api.load_panel(name, corrected=corrected, clean=clean))

    def coupling(self, panel: str):
        return self.get(("coupling", panel), lambda: coupling.family_coupling(
            self.panel(panel), n_permutations=self.n, n_bootstrap=self.n, seed=self.seed))

    def nc(self, panel: str):
        return self.get(("nc", panel), lambda: nc.critical_scale(self.panel(panel), n_resamples=self.n, seed=self.seed))

    def fit(self, corrected: bool = False):
        return self.get(("fit", corrected), lambda: fr.population_fit(
            self.panel("paper-frontier", corrected), n_permutations=self.n, n_bootstrap=self.n, seed=self.seed))

    def labs(self, corrected: bool = False):
        return self.get(("labs", corrected), lambda: fr.labs(
            self.panel("paper-frontier", corrected), n_resamples=self.n, seed=self.seed))

    def lab_dynamics(self, corrected: bool = False):
        return self.get(("dyn", corrected), lambda: fr.lab_dynamics(self.panel("paper-frontier", corrected)))


def _f(v, d: int = 4) -> str:
    return fmt_num(v, d)


def _ci(e) -> str:
    if e.ci is None or not all(c is not None and math.isfinite(c) for c in e.ci):
        return ""
    return f" [{_f(e.ci[0], 3)}, {_f(e.ci[1], 3)}]"


@register("not_computable")
def not_computable(ctx, *, reason: str) -> Computation:
    return Computation(status="not computable", text=reason)


def _pm(v, ci) -> str:
    """``+0.021 [-0.035, +0.077]`` (the interval left out when there is none)."""
    if v is None or v != v:
        return "n/a"
    ok = isinstance(ci, (list, tuple)) and len(ci) == 2 and all(c is not None and c == c for c in ci)
    return f"{v:+.3f}" + (f" [{ci[0]:+.3f}, {ci[1]:+.3f}]" if ok else "")


def _above_zero(ci) -> bool | None:
    ok = isinstance(ci, (list, tuple)) and len(ci) == 2 and all(c is not None and c == c for c in ci)
    return bool(ci[0] > 0) if ok else None


@register("steering")
def steering(ctx, *, command: str, min_share: float) -> Computation:
    """The steering claim from saved evaluations (``cape steer eval``), one model each.

    Paper protocol: the preprint's count (prompts whose text changed between an unsteered and a
    steered SAMPLE) on the model, which must reach ``min_share`` (the smallest share the
    preprint publishes) for the claim to hold; when the run did not include the preprint's
    protocol, CAPE's own corrected rate (greedy answers judged by TruthfulQA's rule) at the
    best setting takes its place. Sound variant: at the best steered setting (highest MC2 gain;
    chosen on the same questions, so optimistic), the vector's margin over random directions of
    equal norm in MC2 and in the open-ended corrected rate (paired, t 95% intervals): it
    agrees only when every margin's interval lies above zero. What the preprint's protocol
    counts with alpha = 0 (sampling alone) is shown beside it."""
    evs = ctx.steering()
    if not evs:
        return Computation(status="not computed yet",
                           text=f"no saved steering evaluation (none given, none in $CAPE_HOME/steering); run {command}")
    texts, sounds, figures, holds, agrees = [], [], [], [], []
    for ev in evs:
        best = ev.best()
        if best is None:
            continue
        where = f"layer {int(best['layer'])}, alpha {best['alpha']:g} {ev.meta.get('unit', '')}".strip()
        pp = ev.meta.get("paper_protocol")
        conds = {c["condition"]: c for c in (pp or {}).get("conditions", [])}
        if "paper" in conds:
            c = conds["paper"]
            texts.append(f"{ev.model_id}: preprint's protocol {c['changed']}/{c['n']} changed = {c['share']:.0%} "
                         f"[{c['ci_low']:.0%}, {c['ci_high']:.0%}]")
            holds.append(c["share"] >= min_share)
            figures.append(f"changed {c['share']:.0%}")
        elif best.get("corrected") is not None and best.get("corrected") == best.get("corrected"):
            texts.append(f"{ev.model_id}: corrected {int(best['corrected_k'])}/{int(best['corrected_n'])} = "
                         f"{best['corrected']:.0%} at {where} (greedy answers judged by TruthfulQA's rule; the "
                         f"preprint's protocol was not run: cape steer eval --paper-prompts)")
            holds.append(best["corrected"] >= min_share)
            figures.append(f"corrected {best['corrected']:.0%}")
        else:
            texts.append(f"{ev.model_id}: neither the preprint's protocol nor open-ended answers were run")
        parts = [f"{ev.model_id} at {where} ({ev.meta.get('n_questions')} held-out questions): MC2 over random "
                 f"directions {_pm(best.get('margin_mc2'), best.get('margin_mc2_ci'))}"]
        flags = [_above_zero(best.get("margin_mc2_ci"))]
        if best.get("margin_corrected") is not None and best.get("margin_corrected") == best.get("margin_corrected"):
            parts.append(f"corrected over random {_pm(best['margin_corrected'], best.get('margin_corrected_ci'))} "
                         f"(corrected {int(best['corrected_k'])}/{int(best['corrected_n'])}, broken "
                         f"{int(best['broken_k'])}/{int(best['broken_n'])})")
            flags.append(_above_zero(best.get("margin_corrected_ci")))
        if "alpha=0" in conds:
            z = conds["alpha=0"]
            parts.append(f"the preprint's count with alpha = 0: {z['changed']}/{z['n']} changed (sampling alone)")
        if "greedy" in conds:
            g = conds["greedy"]
            parts.append(f"greedy: {g['changed']}/{g['n']} changed")
        sounds.append(", ".join(parts))
        agrees.append(None if None in flags else all(flags))
        m2 = best.get("margin_mc2")
        if m2 is not None and m2 == m2:
            figures[-1:] = [f"{figures[-1]}; MC2 vs random {m2:+.3f}" if figures else f"MC2 vs random {m2:+.3f}"]
    if not texts:
        return Computation(status="not computable", text="the saved evaluations have no steered condition")
    decided = [h for h in holds if h is not None]
    return Computation({}, holds=all(decided) if decided else None,
                       text="; ".join(texts) + f" (the claim needs at least {min_share:.0%})",
                       sound="; ".join(sounds), sound_agrees=None if None in agrees else all(agrees),
                       figure="; ".join(figures))


def _own_internals(ctx) -> str:
    """CAPE's own internal-coupling measurements recorded in $CAPE_HOME/internals, one clause each."""
    from ..steer.internals import saved_internals

    parts = []
    for res in ctx.get(("internals",), saved_internals):
        t = res.table
        text = (f"CAPE on {res.model_id} (cape steer internals): raw cosine {t['raw_cos'].min():.3f} to "
                f"{t['raw_cos'].max():.3f}, centred {t['centred_cos'].min():+.3f} to {t['centred_cos'].max():+.3f}, "
                f"outside the null band at {int(t['outside_null'].sum())} of {len(t)} layers")
        hc = res.meta.get("heads")
        if hc:
            text += (f", competing heads {hc['paper']['k']} of {hc['n_heads']} by the preprint's definition and "
                     f"{hc['sound']['k']} against the null ({hc['sound']['expected_by_chance']:.1f} expected by chance)")
        parts.append(text)
    return "; ".join(parts) if parts else ("no local measurement recorded (cape steer internals --model PATH "
                                           "measures raw and centred cosines against a null)")


@register("released_internals")
def released_internals_check(ctx, *, claim: str) -> Computation:
    """Claims on internal coupling (A7 Qwen generations, A8 Gemma-4, A16 competing heads): the
    release gives final numbers and no activations, so the published values cannot be
    recomputed; the row says what the released files show (:mod:`cape.analysis.released`)
    and CAPE's own measurement on a local model where one was recorded."""
    from ..analysis.released import DEGENERATE_SPREAD, released_internals

    rel = ctx.get(("released",), released_internals)
    t = rel.table
    n_deg = int(t["degenerate"].sum())
    deg = f"{n_deg} of {len(t)} released layer files have per-layer couplings that spread by less than " \
          f"{DEGENERATE_SPREAD:g} across layers (an uncentred cosine dominated by the residual stream's shared mean)"
    shared = t[t["same_net_as"].map(len) > 0]
    if claim == "qwen":
        q = rel.qwen
        counts = q["net"].round(3).value_counts()
        top, k = counts.index[0], int(counts.iloc[0])
        low = q.loc[q["net"].idxmin()]
        text = (f"qwen_generation.json gives one net value per model and no activations: {top:g} for {k} of {len(q)} "
                f"models from {q['params_B'].min():g}B to {q['params_B'].max():g}B, {low['net']:g} at {low['model']}; "
                f"one value across a {q['params_B'].max() / q['params_B'].min():.0f}-fold range of sizes is what a "
                f"saturated measure gives; {deg}")
        figure = f"{k}/{len(q)} models at {top:g}"
    elif claim == "gemma":
        g = rel.gemma4
        base = (g.get("comparison_to_base") or {})
        pairs = [v for v in g.get("pairs", {}).values() if isinstance(v, (int, float))]
        text = (f"gemma4_results.json ({g.get('model')}): the published 0.871 is its comparison_to_base "
                f"({base.get('base_HS_TQA')}); the file's own {len(pairs)} pair couplings lie between "
                f"{min(pairs):.3f} and {max(pairs):.3f}, with no per-layer values or activations; {deg}")
        figure = f"pairs {min(pairs):.2f}-{max(pairs):.2f}"
    elif claim == "heads":
        zero = t[t["competing"] == 0]
        nonzero = t[t["competing"].fillna(0) > 0]
        text = (f"no per-model table of 40 models was released; of the {len(t)} released files, {len(zero)} report 0 "
                f"competing units and {int(zero['degenerate'].sum())} of those are degenerate (couplings near "
                f"{zero['net'].min():.3f}-{zero['net'].max():.3f} at every layer: a cosine below -0.5 cannot occur, so "
                f"0 is what the measure gives by construction); the {len(nonzero)} files that vary across layers "
                + ("report " + ", ".join(f"{int(r.competing)} ({r.model})" for r in nonzero.itertuples())
                   + " competing units" if len(nonzero) else "report none")
                + f"; {len(shared)} files share their net value with another model's to 1e-6")
        figure = f"{len(zero)}/{len(t)} files report 0"
    else:
        raise ValueError(f"unknown released-internals claim {claim!r}")
    return Computation(status="not computable", text=f"{text}; {_own_internals(ctx)}", figure=figure)


@register("family_pearson")
def family_pearson(ctx, *, panel: str, family: str) -> Computation:
    t = ctx.coupling(panel).table
    row = t[t["family"] == family]
    if row.empty:
        return Computation(status="not computable", text=f"{panel} has no family {family} with both scores")
    r = row.iloc[0]
    text = (f"r = {_f(r['r'])} (n = {int(r['n'])} models), parametric p = {_f(r['p_parametric'], 2)}, "
            f"{r['p_method']} permutation p = {_f(r['p_perm'], 2)} (floor {_f(r['p_floor'], 2)})")
    agrees = bool(r["ci_high"] < 0 or r["ci_low"] > 0) and bool(r["p_perm"] < 0.05)
    sound = (f"BCa CI [{_f(r['ci_low'], 3)}, {_f(r['ci_high'], 3)}], exact permutation p {_f(r['p_perm'], 2)}; "
             f"a p below the floor {_f(r['p_floor'], 2)} cannot come from a permutation test on these data")
    return Computation({"r": float(r["r"]), "p_perm": float(r["p_perm"])}, text=text, sound=sound,
                       sound_agrees=agrees)


@register("critical_scale")
def critical_scale(ctx, *, panel: str) -> Computation:
    res = ctx.nc(panel)
    p, fb, rc = res.paper, res.family_bootstrap, res.running
    text = f"paper protocol N_c = {_f(p.value, 3)}{_ci(p)} ({p.n} {p.unit}s, {p.discarded or 0} resamples discarded)"
    lo, hi = (p.ci or (math.nan, math.nan))
    parts = [f"family bootstrap{_ci(fb)}"]
    agrees = True
    if rc is not None and rc.defined:
        inside = bool(lo <= rc.value <= hi)
        agrees = agrees and inside
        parts.append(f"running-coupling zero {_f(rc.value, 3)} ({'inside' if inside else 'outside'} the paper CI)")
    crossing = res.per_family["sign_changes"].gt(0).sum() if "sign_changes" in res.per_family else 0
    parts.append(f"{crossing} of {len(res.per_family)} families change sign in their own range")
    return Computation({"nc": float(p.value), "ci_low": float(lo), "ci_high": float(hi)}, text=text,
                       sound="; ".join(parts), sound_agrees=agrees)


@register("running_coupling")
def running(ctx, *, panel: str) -> Computation:
    rc = ctx.get(("running", panel), lambda: gamma.running_coupling(ctx.panel(panel), n_resamples=ctx.n,
                                                                      seed=ctx.seed))
    text = (f"gamma(N) = {_f(rc.A.value, 3)} log10 N {rc.B.value:+.3f} on {panel} ({rc.n_intervals} intervals, "
            f"{rc.n_families} families, R^2 = {rc.r_squared:.3f})")
    sound = f"slope CI{_ci(rc.A)} resampling {rc.resampling}; zero crossing {_f(rc.crossing.value, 3)}{_ci(rc.crossing)}"
    return Computation({"slope": float(rc.A.value), "intercept": float(rc.B.value)}, text=text, sound=sound)


@register("family_sign_changes")
def family_sign_changes(ctx, *, panel: str, interval: list, guard: float = gamma.DEFAULT_GUARD,
                        clean: bool = True) -> Computation:
    """"The coupling changes sign within families at N_c (tax below, bonus above)", tested
    against the claimed ``interval`` [low, high] of N_c (data, from the claims file) on the
    ``clean`` panel with the |dA| ``guard`` (points): :func:`cape.analysis.nc.sign_change_test`
    counts the direction and place of each change and the families that contradict it."""
    try:
        lo, hi = (float(v) for v in interval)           # YAML 1.1 reads 2.9e9 as text
    except (TypeError, ValueError):
        return Computation(status="not computable", text=f"the claimed interval {interval!r} is not two sizes")
    frame = ctx.panel(panel, clean=bool(clean))
    lc = ctx.get(("local", panel, bool(clean), float(guard)),
                 lambda: gamma.local_coupling(frame, guard=float(guard)))
    t = nc.sign_change_test(lc, (lo, hi))
    rows = t.table.set_index("family")
    box = f"[{_f(lo, 3)}, {_f(hi, 3)}]"

    def listing(status):
        fams = rows.index[rows["status"] == status]
        return "; ".join(f"{f_} ({rows.at[f_, 'detail']})" for f_ in fams) or "none"

    setting = (f"{'clean' if clean else 'uncleaned'} {panel}, |d{t.b1}| >= {_f(t.guard, 3)} pp"
               + (f" ({len(t.dropped)} interval(s) dropped: " + ", ".join(
                   f"{r.model_lo} -> {r.model_hi} d{t.b1} {r.d_b1:+.2f}" for r in t.dropped.itertuples()) + ")"
                  if len(t.dropped) else ", no interval dropped"))
    text = (f"{len(t.supporting)} of {len(t.able)} families that can show it change tax -> bonus inside {box}: "
            f"{listing('supports')}. Contradicting ({len(t.contradicting)}): {listing('contradicts')}. "
            f"No change in the interval: {listing('no change in the interval')}. "
            f"Cannot show it: {', '.join(rows.index[rows['status'] == 'cannot show it']) or 'none'}. "
            f"On the {setting}; holds when most families that can show it support it and "
            "contradicting families are a minority")
    figure = (f"{len(t.supporting)} of {len(t.able)} families flip tax -> bonus in {box}; "
              f"{len(t.contradicting)} contradict")
    brief = (f"supporting: {', '.join(t.supporting) or 'none'}; "
             f"contradicting: {', '.join(t.contradicting) or 'none'}")
    return Computation(holds=t.holds, text=text, figure=figure, brief=brief)


@register("families_below")
def families_below(ctx, *, panel: str, families: list, threshold: float, replication: str | None = None) -> Computation:
    t = ctx.coupling(panel).table.set_index("family")
    got = {f: (float(t.loc[f, "r"]) if f in t.index else math.nan) for f in families}
    missing = [f for f, v in got.items() if not math.isfinite(v)]
    if missing:
        return Computation(status="not computable", text=f"{panel} has no {', '.join(missing)}")
    holds = bool(all(v < threshold for v in got.values()))
    text = "; ".join(f"{f} r = {_f(v, 3)} (q = {_f(t.loc[f, 'q_fdr'], 2)})" for f, v in got.items())
    above = [f for f, v in got.items() if not v < threshold]
    comp = Computation(holds=holds, text=text,
                       figure=f"{len(got) - len(above)} of {len(got)} families r < {_f(threshold, 3)}",
                       brief=", ".join(f"{f} {_f(v, 3)}" for f, v in got.items()))
    if replication:
        rt = ctx.coupling(replication).table.set_index("family")
        rep = {f: float(rt.loc[f, "r"]) for f in families if f in rt.index}
        comp.sound = f"on {replication}: " + "; ".join(f"{f} r = {_f(v, 3)}" for f, v in rep.items())
        comp.sound_agrees = bool(rep) and all(v < threshold for v in rep.values())
    return comp


@register("family_crossings")
def family_crossings(ctx, *, panel: str, families: list) -> Computation:
    pf = ctx.nc(panel).per_family.set_index("family") if panel == "paper-nc" else \
        ctx.get(("crossings", panel), lambda: nc.family_crossings(gamma.local_coupling(ctx.panel(panel)))).set_index("family")
    vals = {}
    for f in families:
        if f in pf.index:
            c = pf.loc[f, "fit_crossing"]
            vals[f] = float(c) if c == c else math.nan
    text = "own-fit gamma zero crossings: " + "; ".join(f"{f} {_f(v, 3)}" for f, v in vals.items())
    finite = [v for v in vals.values() if math.isfinite(v) and v > 0]
    sound = (f"{len(finite)} of {len(families)} families have a crossing; in range: "
             + ", ".join(f for f in vals if f in pf.index and bool(pf.loc[f, "fit_in_range"])))
    return Computation({f: v for f, v in vals.items()}, text=text, sound=sound,
                       sound_agrees=bool(len(finite) == len(families)))


@register("curation_field")
def curation_field(ctx, *, panel: str, family: str, reference: list) -> Computation:
    """h(D) = TQA - the quadratic in log10 N of the reference families (phase.py's field)."""
    frame = ctx.panel(panel)
    h = ctx.get(("hD", panel, family, tuple(reference)), lambda: phase.curation_field(frame, reference, family))
    if h.empty:
        return Computation(status="not computable", text=f"{panel} has no {family} models with sizes")
    text = f"{family} h(D) " + ", ".join(f"{m} {v:+.1f}" for m, v in zip(h["model"], h["h"])) + \
        f" against the quadratic of {', '.join(reference)}"
    return Computation({"min": float(h["h"].min()), "max": float(h["h"].max())}, text=text)


@register("width_normalization")
def width_norm(ctx, *, panel: str) -> Computation:
    w = ctx.get(("width", panel), lambda: width.width_normalization(ctx.panel(panel), n_null=ctx.n, seed=ctx.seed))
    text = f"r {w.r_raw:+.3f} -> {w.r_normalised:+.3f} after dividing by d_model/512 (n = {w.n})"
    lo, hi = w.null_interval
    inside = bool(lo <= w.r_normalised <= hi)
    sound = (f"unrelated scores divided the same way give r {w.null_mean:+.2f} on average "
             f"({int(w.level * 100)}% of the null in [{lo:+.2f}, {hi:+.2f}]; P(null >= observed) = {_f(w.p_at_least, 2)})")
    return Computation({"r_raw": w.r_raw, "r_normalised": w.r_normalised}, text=text, sound=sound,
                       sound_agrees=not inside)


@register("d_eff")
def d_eff(ctx, *, base: str, frontier: str, matrix: str = "correlation") -> Computation:
    vals, parts = {}, []
    for key, panel, kw in (("tax", base, {"phase": "tax"}), ("bonus", base, {"phase": "bonus"}),
                           ("frontier", frontier, {})):
        e = ctx.get(("eig", panel, key), lambda p=panel, k=kw: eigen.eigenstructure(
            ctx.panel(p), matrix=matrix, n_resamples=ctx.n, seed=ctx.seed, **k))
        vals[key] = float(e.d_eff.value)
        parts.append(f"{key} {e.d_eff.value:.3f}{_ci(e.d_eff)} (n = {e.n_models}, {len(e.benchmarks)} benchmarks)")
    return Computation(vals, text="d_eff (participation ratio, " + matrix + "): " + "; ".join(parts))


@register("isocline")
def isocline(ctx, *, panel: str) -> Computation:
    iso = ctx.get(("iso", panel), lambda: phase.fit_isocline(ctx.panel(panel)))
    text = f"fitted k = {iso.k:.3f}, in-sample accuracy {iso.accuracy:.2f} on {iso.n} labelled models"
    sound = f"leave-one-family-out accuracy {iso.accuracy_lofo:.2f} ({iso.n_families} families)"
    return Computation({"k": iso.k, "accuracy": iso.accuracy}, text=text, sound=sound,
                       sound_agrees=bool(iso.accuracy_lofo >= iso.accuracy - 0.05))


@register("interval_gamma")
def interval_gamma(ctx, *, panel: str, family: str) -> Computation:
    lc = ctx.get(("local", panel), lambda: gamma.local_coupling(ctx.panel(panel)))
    iv = lc.intervals[lc.intervals["family"] == family]
    if iv.empty:
        dropped = lc.dropped[lc.dropped["family"] == family] if "family" in lc.dropped else lc.dropped.iloc[0:0]
        why = f" ({len(dropped)} interval(s) below the guard)" if len(dropped) else ""
        return Computation(status="not computable", text=f"{panel} has no {family} interval{why}")
    g = iv.iloc[0]
    text = (f"{g['model_lo']} -> {g['model_hi']}: gamma = {g['gamma']:+.3f} "
            f"(dB1 {g['d_b1']:+.1f}, dB2 {g['d_b2']:+.1f} points; {g['phase']})")
    return Computation({"gamma": float(g["gamma"])}, text=text,
                       sound="one interval of two models: no uncertainty can be given from the panel")


@register("dynamics_protocol")
def dynamics_protocol(ctx, *, panel: str) -> Computation:
    pp = ctx.get(("pp", panel), lambda: dyn.paper_protocol(ctx.panel(panel)))
    t = pp.table
    poly, ode = t.iloc[0], t.iloc[1]
    text = (f"degree-{pp.degree} polynomial, {' + '.join(pp.train)} ({pp.n_train} models) -> {pp.test}: "
            f"MAPE {pp.paper_mape:.2f}% over {len(pp.models)} models")
    sound = (f"on {', '.join(pp.models[1:])}: polynomial {poly['mape_common']:.2f}%, sparse ODE "
             f"{ode['mape_common']:.2f}% ({ode['method']}); see `cape dynamics crossval`")
    return Computation({"mape": pp.paper_mape}, text=text, sound=sound,
                       sound_agrees=bool(ode["mape_common"] <= poly["mape_common"]))


@register("frontier_fit")
def frontier_fit(ctx) -> Computation:
    f, c = ctx.fit(), ctx.fit(corrected=True)
    text = (f"GPQA = {f.slope.value:.4f} SWE + {f.intercept.value:.2f}, r = {f.r.value:.4f}, "
            f"p = {_f(f.p_parametric, 2)}, n = {f.n}, {f.n_labs} labs")
    lab = f.r_by_lab
    agrees = bool(lab.ci is not None and lab.ci[0] > 0)
    sound = (f"r CI over models{_ci(f.r)}, over labs{_ci(lab)}; corrected data r = {c.r.value:.3f}, "
             f"slope {c.slope.value:.3f}")
    return Computation({"r": f.r.value, "slope": f.slope.value, "intercept": f.intercept.value, "n": float(f.n)},
                       text=text, sound=sound, sound_agrees=agrees)


@register("lab_slopes")
def lab_slopes(ctx, *, labs: list) -> Computation:
    L, C = ctx.labs(), ctx.labs(corrected=True)
    t = L.table.set_index("lab")
    vals = {lab: float(t.loc[lab, "slope"]) for lab in labs if lab in t.index}
    vals["ratio"] = float(L.slope_ratio.value)
    text = "; ".join(f"{k} {v:.3f}" for k, v in vals.items() if k != "ratio") + \
        f"; largest/smallest {L.slope_ratio.value:.2f}{_ci(L.slope_ratio)}"
    lo, hi = L.slope_ratio.ci or (math.nan, math.nan)
    inside = bool(lo <= C.slope_ratio.value <= hi)
    sound = (f"corrected data: largest/smallest {C.slope_ratio.value:.2f}{_ci(C.slope_ratio)}, "
             f"{'inside' if inside else 'outside'} the published data's interval")
    return Computation(vals, text=text, sound=sound, sound_agrees=bool(inside))


@register("lab_correlations")
def lab_correlations(ctx, *, min_models: int, threshold: float) -> Computation:
    t = ctx.labs().table
    big = t[t["n"] >= min_models]
    holds = bool(len(big)) and bool((big["r"] > threshold).all())
    text = "; ".join(f"{r.lab} r = {r.r:.3f} (n = {r.n})" for r in big.itertuples())
    sound = "; ".join(f"{r.lab} CI [{r.r_low:.2f}, {r.r_high:.2f}]" for r in big.itertuples())
    low = big[~(big["r"] > threshold)]
    brief = (f"not above {_f(threshold, 3)}: " + ", ".join(f"{r.lab} r = {r.r:.3f} (n = {r.n})" for r in low.itertuples())
             if len(low) else f"all {len(big)} labs with >= {min_models} models above {_f(threshold, 3)}")
    return Computation(holds=holds, text=text, sound="Fisher-z intervals: " + sound,
                       sound_agrees=bool((big["r_low"] > threshold).all()),
                       figure=f"{len(big) - len(low)} of {len(big)} labs r > {_f(threshold, 3)}", brief=brief)


@register("lab_swing")
def lab_swing(ctx, *, lab: str) -> Computation:
    def row(corrected):
        t = ctx.lab_dynamics(corrected).labs
        t = t[t["lab"] == lab]
        return None if t.empty else t.iloc[0]
    r, c = row(False), row(True)
    if r is None:
        return Computation(status="not computable", text=f"no dated releases of {lab}")
    text = f"{lab} h {r['h_first']:+.2f} ({r['first']}) -> {r['h_last']:+.2f} ({r['last']}), swing {r['swing']:+.2f}"
    sound = f"corrected data: swing {c['swing']:+.2f}" if c is not None else "no corrected data"
    return Computation({"first": r["h_first"], "last": r["h_last"], "swing": r["swing"]}, text=text, sound=sound,
                       sound_agrees=bool(c is not None and abs(c["swing"]) > fr.JUMP))


@register("lab_mean_h")
def lab_mean_h(ctx, *, labs: list) -> Computation:
    t = ctx.labs().table.set_index("lab")
    vals = {lab: float(t.loc[lab, "mean_h_core"]) for lab in labs if lab in t.index}
    text = "core mean h: " + "; ".join(f"{k} {v:+.2f}" for k, v in vals.items())
    sig = [lab for lab in vals if t.loc[lab, "mean_h_low"] > 0 or t.loc[lab, "mean_h_high"] < 0]
    sound = (f"t intervals of mean h (all models) exclude 0 for {len(sig)} of {len(vals)} labs"
             + (f" ({', '.join(sig)})" if sig else ""))
    return Computation(vals, text=text, sound=sound, sound_agrees=bool(len(sig) == len(vals)))


@register("leave_one_lab_out")
def leave_one_lab_out(ctx) -> Computation:
    L, C = ctx.labs(), ctx.labs(corrected=True)
    text = f"mean over labs {L.lolo_mae.value:.2f} (n = {L.lolo_mae.n} labs)"
    sound = f"pooled over models {L.lolo_mae_pooled.value:.2f}; corrected data {C.lolo_mae.value:.2f}"
    return Computation({"mae": L.lolo_mae.value}, text=text, sound=sound)


@register("post_cutoff")
def post_cutoff(ctx) -> Computation:
    f = ctx.fit()
    nr = f.new_releases
    text = (f"{int(nr['inside_paper'].sum())} of {len(nr)} inside the paper's +-{f.paper_halfwidth:.2f} "
            f"(1.96 x residual SD, n denominator)")
    sound = f"{int(nr['inside'].sum())} of {len(nr)} inside the proper 95% prediction interval (t, leverage)"
    return Computation({"inside": float(nr["inside_paper"].sum()), "n": float(len(nr)),
                        "halfwidth": f.paper_halfwidth}, text=text, sound=sound,
                       sound_agrees=bool(nr["inside"].all()))


@register("saturation_sigma")
def saturation_sigma(ctx, *, subset: str = "published", top_k: int = 5) -> Computation:
    s = ctx.get(("sat", subset, top_k), lambda: sat.saturation(ctx.panel("paper-frontier"), subset=subset,
                                                               top_k=top_k, n_resamples=ctx.n, seed=ctx.seed))
    text = f"sigma = {s.sigma.value:.3f}{_ci(s.sigma)} (top {top_k}, {subset})"
    within = s.table[s.table["within_noise"]]["benchmark"].tolist()
    sound = (f"spreads within the binomial noise floor: {', '.join(within) or 'none'}; {s.recommendation}")
    return Computation({"sigma": s.sigma.value}, text=text, sound=sound, sound_agrees=bool(not within))


@register("prediction")
def prediction(ctx, *, id: str) -> Computation:
    from ..predictions import evaluate_predictions

    rep = ctx.get(("pred",), lambda: evaluate_predictions(ctx.panel("paper-frontier")))
    st = next((p for p in rep.predictions if p.id == id), None)
    if st is None:
        return Computation(status="not computable", text=f"no prediction {id}")
    return Computation(status=st.status.lower(), text=f"{st.status} as of {rep.as_of}: {st.reason}")
