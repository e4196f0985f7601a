"""``cape coupling | gamma | nc | phase | width | eigen``: the paper-A analyses on any panel.

These commands only present: every number comes from :mod:`cape.analysis`.
"""

from __future__ import annotations

from typing import Annotated, Optional

import typer
from rich.table import Table

from .. import analysis  # its analyses are imported when first used (cape.analysis is lazy)
from ..defaults import DEFAULT_BOOTSTRAP, DEFAULT_GUARD, DEFAULT_PERMUTATIONS
from ..errors import CapeError
from ._app import (CiOpt, CleanOpt, CorrOpt, FamilyOpt, JsonOpt, LevelOpt, ResOpt, RunOpt, SeedOpt,
                   ShotsOpt, command_set, out, _emit, _emit_json, _f, _frame, _progress)

commands = command_set()

from ._app import AllOpt, CsvOpt, _emit_csv, _esc, _formats, _note, _print_table, _shown  # noqa: E402  (long tables)

PanelOpt = lambda default: Annotated[str, typer.Option(  # noqa: E731
    "--panel", "-p", help=f"Panel name (see `cape panels`). Default: {default}.")]
PairOpt = Annotated[Optional[str], typer.Option(
    "--pair", help="Two benchmarks as A:B, A on the x-axis (default hellaswag:truthfulqa).")]
GuardOpt = Annotated[float, typer.Option("--guard", help="Drop intervals with |dA| below this many points.")]


@commands.command()
def coupling(
    panel: PanelOpt("paper-base") = "paper-base",
    pair: PairOpt = None,
    family: FamilyOpt = None,
    clean: CleanOpt = False,
    run: RunOpt = None,
    shots: ShotsOpt = None,
    corrected: CorrOpt = False,
    permutations: Annotated[int, typer.Option("--permutations", help="Monte Carlo orderings when a "
                                              "family has more than 9 models (9 or fewer: exact).")] = DEFAULT_PERMUTATIONS,
    resamples: ResOpt = DEFAULT_BOOTSTRAP,
    ci: CiOpt = "bca",
    level: LevelOpt = 0.95,
    seed: SeedOpt = None,
    show_all: AllOpt = False,
    as_json: JsonOpt = False,
    as_csv: CsvOpt = False,
) -> None:
    """Within-family correlation of two benchmarks: r, exact/MC permutation p, bootstrap CI,
    Spearman with its permutation p, partial r given size, FDR; pooled raw and fixed-effects
    r. A family of 3 models gets no bootstrap interval (10 distinct resamples): the table
    says so instead. --csv: the per-family table (the rows of --json's "table")."""
    _formats(as_json, as_csv)
    frame = _frame(panel, clean, corrected, family)
    with _progress("families", as_json or as_csv) as tick:
        res = analysis.family_coupling(frame, pair, n_permutations=permutations, n_bootstrap=resamples,
                                       ci_method=ci, level=level, seed=seed, progress=tick)
    if _emit(res, as_json, command="coupling"):
        return
    if as_csv:
        _emit_csv(res.table)
        return
    t = Table(title=f"Within-family coupling {res.b1} -> {res.b2} in {res.panel}",
              caption=f"p_perm and Spearman p: permutation tests (on ranks for Spearman), exact for n <= 9; "
                      f"CI: {ci} bootstrap over models, {resamples:,} resamples, none below "
                      f"{analysis.coupling.MIN_BOOTSTRAP} models; q: Benjamini-Hochberg over the families tested")
    for c in ("family", "n", "sizes", "r", f"{int(level * 100)}% CI", "p (t)", "p_perm", "floor",
              "spearman", "spearman p", "partial r|size", "q"):
        t.add_column(c, justify="left" if c in ("family", "sizes") else "right")
    rows, note = _shown(res.table, show_all, "families")
    for r in rows.to_dict("records"):
        if r["note"] and not (r["r"] == r["r"]):
            t.add_row(_esc(r["family"]), str(r["n"]), f"{_f(r['params_min'])}-{_f(r['params_max'])}",
                      f"[dim]{_esc(r['note'])}[/dim]", *[""] * 8)
            continue
        no_ci = analysis.coupling.bootstrap_note(r["n"]) if not r["ci_low"] == r["ci_low"] else None
        t.add_row(_esc(r["family"]), str(r["n"]), f"{_f(r['params_min'])}-{_f(r['params_max'])}",
                  f"{r['r']:+.3f}", f"[dim]n = {r['n']}: too few models[/dim]" if no_ci else
                  f"[{r['ci_low']:+.2f}, {r['ci_high']:+.2f}]", f"{r['p_parametric']:.2g}",
                  f"{r['p_perm']:.3g}" + ("" if r["p_method"] == "exact" else "*"), f"{r['p_floor']:.2g}",
                  f"{r['spearman']:+.3f}", f"{r['spearman_p']:.3g}" + ("" if r["spearman_method"] == "exact" else "*"),
                  _f(r["partial_r"]), f"{r['q_fdr']:.3g}")
    _print_table(t, note)
    tested = res.table[res.table["r"].notna()]
    few = sorted(int(n_) for n_ in tested["n"].unique() if analysis.coupling.bootstrap_note(n_))
    for n_ in few:
        out.print(f"  {analysis.coupling.bootstrap_note(n_)}: no interval is shown", highlight=False)
    for e in (res.pooled_raw, res.pooled_fixed_effects):
        out.print("  " + e.describe(), highlight=False)
    if (tested["p_method"] != "exact").any():
        out.print(f"  * Monte Carlo permutation p, Pearson and Spearman ({permutations:,} orderings)",
                  highlight=False)
    for e in res.excluded:
        out.print(f"  left out {e['model']}: {e['reason']}", highlight=False)


@commands.command()
def gamma(
    panel: PanelOpt("paper-base") = "paper-base",
    pair: PairOpt = None,
    family: FamilyOpt = None,
    clean: CleanOpt = False,
    run: RunOpt = None,
    shots: ShotsOpt = None,
    corrected: CorrOpt = False,
    guard: GuardOpt = DEFAULT_GUARD,
    unit: Annotated[str, typer.Option("--unit", help="Bootstrap unit of the running coupling: "
                                      "family or interval.")] = "family",
    resamples: ResOpt = DEFAULT_BOOTSTRAP,
    level: LevelOpt = 0.95,
    seed: SeedOpt = None,
    show_all: AllOpt = False,
    as_json: JsonOpt = False,
    as_csv: CsvOpt = False,
) -> None:
    """Local coupling gamma = dB/dA between consecutive sizes of each family, with phase
    labels, and the running coupling gamma(N) = A log10 N + B with its zero crossing.
    --csv: the intervals (the rows of --json's "local" "intervals"), without the running fit."""
    _formats(as_json, as_csv)
    frame = _frame(panel, clean, corrected, family)
    lc = analysis.local_coupling(frame, pair, guard=guard)
    if as_csv:
        _emit_csv(lc.intervals)
        return
    rc, rc_error = None, None
    with _progress("bootstrap", as_json) as tick:
        try:
            rc = analysis.running_coupling(lc, unit=unit, n_resamples=resamples, level=level, seed=seed,
                                           progress=tick)
        except CapeError as exc:  # shown beside the intervals, which stand on their own
            rc_error = str(exc)
    if as_json:
        _emit_json({"command": "gamma", "local": lc.to_dict(),
                    "running": rc.to_dict() if rc else None, "running_error": rc_error})
        return
    t = Table(title=f"Local coupling d{lc.b2}/d{lc.b1} in {lc.panel} (guard |d{lc.b1}| >= {guard} pp)")
    for c in ("family", "interval", "at", f"d{lc.b1}", f"d{lc.b2}", "gamma", "phase"):
        t.add_column(c, justify="left" if c in ("family", "interval", "phase") else "right")
    rows, note = _shown(lc.intervals, show_all, "intervals")
    for r in rows.to_dict("records"):
        t.add_row(_esc(r["family"]), _esc(f"{r['model_lo']} -> {r['model_hi']}"), _f(r["params_mid"]),
                  f"{r['d_b1']:+.2f}", f"{r['d_b2']:+.2f}", f"{r['gamma']:+.3f}", r["phase"])
    _print_table(t, note)
    dropped, note = _shown(lc.dropped, show_all, "dropped intervals", csv=False)
    for r in dropped.to_dict("records"):
        out.print(f"  dropped {r['family']} {r['model_lo']} -> {r['model_hi']}: d{lc.b1} = {r['d_b1']:+.2f} "
                  f"pp ({r['reason']})", highlight=False, markup=False)
    _note(note)
    out.print(rc.summary() if rc else f"Running coupling: {rc_error}", highlight=False)


@commands.command()
def nc(
    panel: PanelOpt("paper-nc") = "paper-nc",
    pair: PairOpt = None,
    family: FamilyOpt = None,
    clean: CleanOpt = False,
    run: RunOpt = None,
    shots: ShotsOpt = None,
    corrected: CorrOpt = False,
    resamples: ResOpt = DEFAULT_BOOTSTRAP,
    level: LevelOpt = 0.95,
    guard: GuardOpt = DEFAULT_GUARD,
    seed: SeedOpt = None,
    show_all: AllOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """The critical scale N_c five ways: (a) the paper protocol (quadratic vertex of B on
    log10 N, model bootstrap, a > 0 and vertex in 1e7-1e12), (b) family bootstrap, (c) running-
    coupling zero crossing, (d) per-family sign changes, (e) leave one family out. Estimates
    outside the panel's sizes are marked as extrapolated; a leave-one-family-out estimate
    outside its own interval, the full-data interval or its sizes is flagged."""
    frame = _frame(panel, clean, corrected, family)
    with _progress("N_c", as_json) as tick:
        res = analysis.critical_scale(frame, pair, n_resamples=resamples, level=level, guard=guard,
                                      seed=seed, progress=tick)
    if _emit(res, as_json, command="nc"):
        return
    t = Table(title=f"Critical scale N_c in {res.panel} ({res.b2} on log10 N)")
    for c in ("estimator", "N_c", "median", f"{int(level * 100)}% CI", "n", "resamples", "discarded", "note"):
        t.add_column(c, justify="left" if c in ("estimator", "note") else "right", overflow="fold")
    for e in res.estimates:
        ci = f"[{_f(e.ci[0])}, {_f(e.ci[1])}]" if e.ci else ""
        t.add_row(e.name, _f(e.value), _f(e.median), ci, f"{e.n} {e.unit}s",
                  f"{e.n_resamples:,}" if e.n_resamples else "", f"{e.discarded:,}" if e.discarded is not None else "",
                  e.note or "")
    out.print(t)
    c = res.coefficients
    out.print(f"  full-data quadratic: {res.b2} = {c['a']:.4g} x^2 {c['b']:+.4g} x {c['c']:+.4g} "
              f"(x = log10 N), {len(res.models)} models", highlight=False)
    t2 = Table(title="(d) per-family sign changes of the interval coupling")
    for col in ("family", "intervals", "gamma range", "verdict", "own-fit crossing"):
        t2.add_column(col)
    rows, note = _shown(res.per_family, show_all, "families", csv=False)
    for r in rows.to_dict("records"):
        t2.add_row(_esc(r["family"]), str(r["n_intervals"]), f"{r['gamma_min']:+.2f} .. {r['gamma_max']:+.2f}",
                   r["verdict"], (_f(r["fit_crossing"]) + (" (in range)" if r["fit_in_range"] else " (outside)"))
                   if r["fit_crossing"] == r["fit_crossing"] else "")
    _print_table(t2, note)
    t3 = Table(title="(e) paper protocol leaving one family out")
    for col in ("left out", "n", "N_c", "median", "CI", "discarded", "where the estimate lies"):
        t3.add_column(col, justify="left" if col in ("left out", "where the estimate lies") else "right",
                      overflow="fold")
    rows, note = _shown(res.leave_one_family_out, show_all, "families", csv=False)
    for r in rows.to_dict("records"):
        t3.add_row(_esc(r["left_out"]), str(r["n"]), _f(r["nc"]), _f(r["median"]),
                   f"[{_f(r['ci_low'])}, {_f(r['ci_high'])}]", f"{r['discarded']:,}",
                   f"[yellow]{r['flags']}[/yellow]" if r["flags"] else
                   ("inside its interval, the full-data interval and its sizes" if r["nc"] == r["nc"]
                    else (r["note"] or "")))
    _print_table(t3, note)
    for n_ in res.notes:
        out.print(f"  note: {n_}", highlight=False)


@commands.command()
def phase(
    params: Annotated[float, typer.Option("--params", help="Parameter count, e.g. 7e9.")],
    hellaswag: Annotated[Optional[float], typer.Option("--hellaswag", help="HellaSwag score (percent).")] = None,
    truthfulqa: Annotated[Optional[float], typer.Option("--truthfulqa", help="TruthfulQA score (percent).")] = None,
    score: Annotated[Optional[list[str]], typer.Option("--score", help="Scores for another pair as "
                                                       "BENCH=VALUE (repeat for both).")] = None,
    model_family: Annotated[Optional[str], typer.Option("--model-family", help="The model's family, if in "
                                                        "the panel.")] = None,
    panel: PanelOpt("paper-base") = "paper-base",
    pair: PairOpt = None,
    reference: Annotated[Optional[str], typer.Option("--reference", help="Comma-separated families whose "
                                                     "curve defines h(D) = 0 (default: all).")] = None,
    isocline_k: Annotated[Optional[float], typer.Option("--isocline-k", help="Evaluate this k instead of "
                                                        "the fitted one.")] = None,
    clean: CleanOpt = False,
    run: RunOpt = None,
    shots: ShotsOpt = None,
    corrected: CorrOpt = False,
    resamples: ResOpt = DEFAULT_BOOTSTRAP,
    level: LevelOpt = 0.95,
    seed: SeedOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Place one model: gamma_hat at its size, P(tax / transition / bonus) from the predictive
    distribution (line bootstrap plus the scatter of interval couplings about the line, by
    family) beside the line-only probabilities of the paper protocol, the predictive
    interval's leave-one-family-out coverage, the fitted isocline, the curation field h(D),
    its nearest models, and an explanation.

    The size-based phase uses only --params; the scores enter only the isocline and h(D)."""
    from ..analysis.data import parse_pair

    b1, b2 = parse_pair(pair)
    given = {}
    for item in score or []:
        if "=" not in item:
            raise CapeError(f"--score takes BENCH=VALUE, not '{item}'")
        k, v = item.split("=", 1)
        try:
            given[k.strip()] = float(v)
        except ValueError:
            raise CapeError(f"--score {k.strip()}: '{v}' is not a number") from None
    if hellaswag is not None:
        given["hellaswag"] = hellaswag
    if truthfulqa is not None:
        given["truthfulqa"] = truthfulqa
    if pair is None and given and set(given) - {"hellaswag", "truthfulqa"} and len(given) == 2:
        b1, b2 = list(given)
    missing = [b for b in (b1, b2) if b not in given]
    if missing:
        raise CapeError(f"give the model's {' and '.join(missing)} score "
                        f"(--{missing[0]} VALUE or --score {missing[0]}=VALUE)")
    frame = _frame(panel, clean, corrected)
    res = analysis.phase_of_model(frame, params, given[b1], given[b2], pair=(b1, b2), family=model_family,
                                  reference_families=reference.split(",") if reference else None,
                                  isocline_k=isocline_k, n_resamples=resamples, level=level, seed=seed)
    if _emit(res, as_json, command="phase"):
        return
    out.print(res.explanation, highlight=False)


@commands.command()
def width(
    panel: PanelOpt("paper-pythia") = "paper-pythia",
    pair: PairOpt = None,
    family: FamilyOpt = None,
    clean: CleanOpt = False,
    run: RunOpt = None,
    shots: ShotsOpt = None,
    corrected: CorrOpt = False,
    draws: Annotated[int, typer.Option("--draws", help="Null draws.")] = DEFAULT_BOOTSTRAP,
    level: LevelOpt = 0.95,
    seed: SeedOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """r after dividing scores by d_model/512, next to the null of unrelated scores divided
    by the same widths (which correlate positively by construction)."""
    frame = _frame(panel, clean, corrected, family)
    res = analysis.width_normalization(frame, pair, n_null=draws, level=level, seed=seed)
    if _emit(res, as_json, command="width"):
        return
    out.print(res.summary(), highlight=False)
    for e in res.excluded:
        out.print(f"  left out {e['model']}: {e['reason']}", highlight=False)


@commands.command()
def eigen(
    panel: PanelOpt("paper-base") = "paper-base",
    benchmarks: Annotated[Optional[str], typer.Option("--benchmarks", "-b", help="Comma-separated "
                                                      "benchmarks (default: all in the panel).")] = None,
    matrix: Annotated[str, typer.Option("--matrix", help="correlation or covariance.")] = "correlation",
    family: FamilyOpt = None,
    phase_: Annotated[Optional[str], typer.Option("--phase", help="tax (below N_c) or bonus (at or above "
                                                  "N_c); N_c from --nc or the paper protocol on this panel.")] = None,
    nc_value: Annotated[Optional[float], typer.Option("--nc", help="N_c in parameters for --phase.")] = None,
    pair: PairOpt = None,
    clean: CleanOpt = False,
    run: RunOpt = None,
    shots: ShotsOpt = None,
    corrected: CorrOpt = False,
    resamples: Annotated[Optional[int], typer.Option("--resamples", help="Bootstrap resamples "
                                                     "(default 10,000; fewer for very large panels).")] = None,
    level: LevelOpt = 0.95,
    seed: SeedOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Eigenvalues, loadings and d_eff (participation ratio, bootstrap CI) of the benchmark
    correlation or covariance matrix over a panel, some families, or a phase."""
    frame = _frame(panel, clean, corrected)
    with _progress("bootstrap", as_json) as tick:
        res = analysis.eigenstructure(frame, benchmarks, matrix=matrix, family=family, phase=phase_,
                                      nc=nc_value, pair=pair, n_resamples=resamples, level=level,
                                      seed=seed, progress=tick)
    if _emit(res, as_json, command="eigen"):
        return
    out.print(res.summary(), highlight=False)
    t = Table(title="loadings")
    t.add_column("benchmark")
    for c in res.loadings.columns:
        t.add_column(c, justify="right")
    for b, row in res.loadings.iterrows():
        t.add_row(b, *[f"{v:+.3f}" for v in row])
    out.print(t)
    for e in res.excluded:
        out.print(f"  left out {e['model']}: {e['reason']}", highlight=False)
