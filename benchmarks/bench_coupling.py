#!/usr/bin/env python3
"""Speed targets of the coupling engine, each against a plain-Python-loop baseline.

    python benchmarks/bench_coupling.py            # human-readable report
    python benchmarks/bench_coupling.py --json     # a JSON list instead

Targets:

1. the 10,000-resample N_c bootstrap of the paper protocol        <= 0.2 s
2. an exact permutation test of Pearson r at n = 9 (9! orderings)  <= 0.5 s (cold and warm)
3. a synthetic panel of 100,000 models in 5,000 families with 20 benchmarks through the
   within-family coupling table and the eigenstructure            <= 10 s in total

This is not a test: it measures and prints, and always exits 0 unless something raises.
A CAPE time is the median of its runs (the minimum is shown beside it). Baselines are
straightforward Python loops over resamples / orderings / families; they are run on a
subset and extrapolated linearly, and the output says which subset and by what factor.
The baselines do no more work than CAPE does (usually less: e.g. no BCa, no Spearman), so
the ratios are if anything understated. Building the synthetic panel is not timed.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import os
import platform
import statistics
import sys
import time
import warnings

import numpy as np
import pandas as pd
import scipy
from scipy import stats as sps

import cape
from cape import stats
from cape.analysis.coupling import family_coupling
from cape.analysis.eigen import eigenstructure
from cape.analysis.nc import quadratic_vertex

# ------------------------------------------------------------------------------ helpers


def _now() -> float:
    return time.perf_counter()


def _time(fn, repeat: int, before=None) -> tuple[list[float], object]:
    """Run ``fn`` ``repeat`` times (``before`` untimed before each run); wall times and the
    last result."""
    times, out = [], None
    for _ in range(repeat):
        if before is not None:
            before()
        t = _now()
        out = fn()
        times.append(_now() - t)
    return times, out


def _fmt_s(s: float | None) -> str:
    if s is None or not math.isfinite(s):
        return "n/a"
    if s < 1e-3:
        return f"{s * 1e6:.0f} us"
    if s < 1:
        return f"{s * 1e3:.1f} ms"
    return f"{s:.2f} s"


def _baseline(measured_s: float, done: int, total: int, unit: str, how: str) -> dict:
    factor = total / done
    return {"how": how, "measured_s": measured_s, "done": done, "total": total, "unit": unit,
            "factor": factor, "time_s": measured_s * factor,
            "note": (f"{done:,} of {total:,} {unit} in {_fmt_s(measured_s)}, x{factor:,.4g}"
                     if done < total else f"all {total:,} {unit}")}


def machine_info() -> dict:
    try:
        affinity = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        affinity = None
    blas = None
    try:
        cfg = np.show_config(mode="dicts")
        b = cfg["Build Dependencies"]["blas"]
        blas = f"{b.get('name')} {b.get('version')}"
    except Exception:  # older numpy, or a layout we do not know
        pass
    threads = {k: os.environ[k] for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
               if k in os.environ}
    cpu = platform.processor() or ""
    try:
        with open("/proc/cpuinfo") as fh:
            cpu = next((ln.split(":", 1)[1].strip() for ln in fh if ln.startswith("model name")), cpu)
    except OSError:
        pass
    return {"nproc": affinity or os.cpu_count(), "cpu_count": os.cpu_count(), "cpu": cpu,
            "python": platform.python_version(), "platform": platform.platform(),
            "numpy": np.__version__, "scipy": scipy.__version__, "pandas": pd.__version__,
            "cape": getattr(cape, "__version__", "?"), "blas": blas, "thread_env": threads,
            "loadavg_start": _loadavg()}


def _loadavg() -> list[float] | None:
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except OSError:
        return None


def _cpu_snapshot() -> tuple[float, float, float] | None:
    """(busy CPU seconds of the whole machine, this process's CPU seconds, wall time), to
    tell afterwards how much of the CPU other processes took during the run (Linux only)."""
    try:
        with open("/proc/stat") as fh:
            f = [int(v) for v in fh.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    busy = sum(f[:8]) - f[3] - f[4]  # user nice system [idle iowait] irq softirq steal
    me = os.times()
    return busy / os.sysconf("SC_CLK_TCK"), me.user + me.system, _now()


def _others_share(start, end, ncpu: int) -> float | None:
    """Fraction of the machine's CPU capacity used by other processes between snapshots."""
    if start is None or end is None:
        return None
    wall = end[2] - start[2]
    other = (end[0] - start[0]) - (end[1] - start[1])
    return max(0.0, other) / (wall * ncpu) if wall > 0 else None


def _record(tid: str, name: str, cape_times: list[float] | None, target_s: float | None,
            baseline: dict | None, *, cape_s: float | None = None, extra: dict | None = None,
            judged: bool = True) -> dict:
    if cape_s is None:
        cape_s = statistics.median(cape_times)
    ratio = baseline["time_s"] / cape_s if baseline and cape_s > 0 else None
    ok = None if (target_s is None or not judged) else bool(cape_s <= target_s)
    return {"kind": "target", "id": tid, "name": name, "cape_s": cape_s,
            "cape_runs_s": cape_times, "cape_min_s": min(cape_times) if cape_times else None,
            "target_s": target_s, "pass": ok, "baseline": baseline,
            "baseline_s": baseline["time_s"] if baseline else None, "ratio": ratio, **(extra or {})}


# ------------------------------------------------------------------------- target 1: N_c


def bench_nc(repeat: int, baseline_resamples: int) -> list[dict]:
    df = cape.load_panel("paper-nc")
    sub = df[["params", "truthfulqa"]].apply(pd.to_numeric, errors="coerce").dropna()
    x = np.log10(sub["params"].to_numpy(float))
    y = sub["truthfulqa"].to_numpy(float)
    B = 10_000

    first = _now()
    quadratic_vertex(x, y, n_resamples=B, seed=0)
    first = _now() - first
    times, res = _time(lambda: quadratic_vertex(x, y, n_resamples=B, seed=0), repeat)

    # baseline: one np.polyfit per resample, the preprint's acceptance rule
    rng = np.random.default_rng(0)
    n = x.size
    kept = []
    done = min(baseline_resamples, B)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # RankWarning when a resample draws < 3 sizes
        t = _now()
        for _ in range(done):
            idx = rng.integers(0, n, n)
            a, b, _c = np.polyfit(x[idx], y[idx], 2)
            if a > 0:
                xv = -b / (2 * a)
                if 7 < xv < 12:
                    kept.append(xv)
        lo, hi = np.percentile(kept, [2.5, 97.5]) if kept else (np.nan, np.nan)
        measured = _now() - t
        a, b, _c = np.polyfit(x, y, 2)
    base = _baseline(measured, done, B, "resamples",
                     "Python for-loop: rng.integers + np.polyfit(x[idx], y[idx], 2) per resample, "
                     "keep a > 0 and 7 < -b/2a < 12")
    est = res.estimate
    check = (f"N_c = {10 ** (-b / (2 * a)) / 1e9:.3g}B by np.polyfit vs {est.value / 1e9:.3g}B by CAPE; "
             f"CAPE CI [{est.ci[0] / 1e9:.3g}B, {est.ci[1] / 1e9:.3g}B], {est.discarded:,} of {B:,} discarded; "
             f"baseline subset CI [{10 ** lo / 1e9:.3g}B, {10 ** hi / 1e9:.3g}B]"
             if est.ci else f"N_c: CAPE {est.value:.4g}, np.polyfit {10 ** (-b / (2 * a)):.4g}")
    return [_record("1", f"N_c bootstrap, paper protocol ({B:,} resamples, {n} models of paper-nc)",
                    times, 0.2, base, extra={"cape_first_call_s": first, "check": check})]


# ------------------------------------------------------- target 2: exact permutation test


def _pearson_py(a: list[float], b: list[float]) -> float:
    """Pearson r in plain Python, from scratch."""
    n = len(a)
    ma, mb = sum(a) / n, sum(b) / n
    sab = saa = sbb = 0.0
    for u, v in zip(a, b):
        du, dv = u - ma, v - mb
        sab += du * dv
        saa += du * du
        sbb += dv * dv
    return sab / math.sqrt(saa * sbb)


def bench_permutation(repeat: int, baseline_orderings: int) -> list[dict]:
    n = 9
    total = math.factorial(n)
    rng = np.random.default_rng(9)
    x = rng.normal(size=n)
    y = 0.5 * x + rng.normal(size=n)
    cache = getattr(stats.exact_permutations, "cache_clear", None)
    if cache is None:
        print("note: stats.exact_permutations has no cache_clear(); 'cold' equals 'warm'", file=sys.stderr)
        cache = lambda: None  # noqa: E731
    cold, res = _time(lambda: stats.permutation_test_r(x, y), repeat, before=cache)
    stats.permutation_test_r(x, y)  # the table is cached now
    warm, _ = _time(lambda: stats.permutation_test_r(x, y), repeat)

    done = min(baseline_orderings, total)
    obs = abs(np.corrcoef(x, y)[0, 1])
    # baseline A: itertools.permutations, np.corrcoef per ordering
    t = _now()
    hits = 0
    for p in itertools.islice(itertools.permutations(range(n)), done):
        if abs(np.corrcoef(x[list(p)], y)[0, 1]) >= obs - 1e-12:
            hits += 1
    base_np = _baseline(_now() - t, done, total, "orderings",
                        "Python loop over itertools.permutations, np.corrcoef per ordering")
    # baseline B: the same with a plain-Python Pearson (lists, no numpy)
    xs, ys = x.tolist(), y.tolist()
    done_py = min(baseline_orderings * 4, total)
    t = _now()
    hits_py = 0
    for p in itertools.islice(itertools.permutations(range(n)), done_py):
        if abs(_pearson_py([xs[i] for i in p], ys)) >= obs - 1e-12:
            hits_py += 1
    base_py = _baseline(_now() - t, done_py, total, "orderings",
                        "Python loop over itertools.permutations, plain-Python Pearson per ordering")
    extra = {"check": f"r = {res.statistic:+.4f} (np.corrcoef {np.corrcoef(x, y)[0, 1]:+.4f}), "
                      f"p = {res.pvalue:.4g}, exact = {res.exact}, orderings = {res.n_resamples:,}",
             "other_baselines": [base_py]}
    name = f"exact permutation test of r, n = {n} ({total:,} orderings)"
    return [_record("2a", name + ", cold (permutation table rebuilt)", cold, 0.5, base_np, extra=extra),
            _record("2b", name + ", warm (permutation table cached)", warm, 0.5, base_np,
                    extra={"other_baselines": [base_py]})]


# ------------------------------------------------------------ target 3: synthetic panel

N_FAMILIES, PER_FAMILY, N_BENCH = 5_000, 20, 20


def synthetic_panel(n_families: int = N_FAMILIES, seed: int = 0) -> tuple[pd.DataFrame, list[str]]:
    """n_families x 20 models (sizes logspace(8, 11, 20)) x 20 benchmarks: a shared latent
    factor (family offset + a size trend + model noise) times a loading, plus noise."""
    rng = np.random.default_rng(seed)
    sizes = np.logspace(8, 11, PER_FAMILY)
    m = n_families * PER_FAMILY
    names = ["hellaswag", "truthfulqa"] + [f"bench_{j:02d}" for j in range(3, N_BENCH + 1)]
    logn = np.tile(np.log10(sizes), n_families)
    fam_effect = np.repeat(rng.normal(0, 1.0, n_families), PER_FAMILY)
    latent = fam_effect + 1.2 * (logn - 9.5) + rng.normal(0, 0.5, m)
    loading = rng.uniform(3, 10, N_BENCH)
    base = rng.uniform(30, 70, N_BENCH)
    scores = base + latent[:, None] * loading + rng.normal(0, 3, (m, N_BENCH))
    fam = np.repeat(np.array([f"fam{i:05d}" for i in range(n_families)], dtype=object), PER_FAMILY)
    model = [f"fam{i:05d}-{j:02d}" for i in range(n_families) for j in range(PER_FAMILY)]
    df = pd.DataFrame(scores, columns=names, index=pd.Index(model, name="model"))
    df.insert(0, "params", np.tile(sizes, n_families))
    df.insert(0, "family", fam)
    df.attrs["cape"] = {"panel": "synthetic", "benchmarks": list(names)}
    return df, names


def _family_loop(b1: np.ndarray, b2: np.ndarray, n_perm: int, n_boot: int, rng) -> tuple:
    """One family, the obvious way: scipy's r and p, a permutation loop and a bootstrap loop."""
    r, p_par = sps.pearsonr(b1, b2)
    hits = 0
    for _ in range(n_perm):
        if abs(np.corrcoef(rng.permutation(b1), b2)[0, 1]) >= abs(r) - 1e-12:
            hits += 1
    p_perm = (hits + 1) / (n_perm + 1)
    n = b1.size
    dist = np.empty(n_boot)
    with np.errstate(invalid="ignore", divide="ignore"):
        for i in range(n_boot):
            idx = rng.integers(0, n, n)
            dist[i] = np.corrcoef(b1[idx], b2[idx])[0, 1]
    lo, hi = np.nanpercentile(dist, [2.5, 97.5])
    return r, p_par, p_perm, lo, hi


def bench_panel(panel_repeat: int, baseline_families: int, baseline_resamples: int,
                n_families: int) -> tuple[list[dict], dict]:
    t = _now()
    df, names = synthetic_panel(n_families)
    build_s = _now() - t

    fc_times, eig_times, fc, es = [], [], None, None
    for _ in range(panel_repeat):
        t = _now()
        fc = family_coupling(df, seed=0)
        fc_times.append(_now() - t)
        t = _now()
        es = eigenstructure(df, names, seed=0)
        eig_times.append(_now() - t)
    totals = [a + b for a, b in zip(fc_times, eig_times)]
    n_boot, n_perm = fc.n_bootstrap, fc.n_permutations
    B_eig = es.d_eff.n_resamples

    # baseline, table: loop over a few families
    fams = list(dict.fromkeys(df["family"]))[:baseline_families]
    rng = np.random.default_rng(0)
    rs = []
    t = _now()
    for f in fams:
        sub = df[df["family"] == f].sort_values("params")
        out = _family_loop(sub["hellaswag"].to_numpy(float), sub["truthfulqa"].to_numpy(float),
                           n_perm, n_boot, rng)
        rs.append(out[0])
    base_fc = _baseline(_now() - t, len(fams), n_families, "families",
                        f"Python loop over families: scipy.stats.pearsonr, {n_perm:,}-permutation loop and "
                        f"{n_boot:,}-resample bootstrap loop (np.corrcoef each), percentile CI")
    table_r = fc.table.set_index("family").loc[fams, "r"].to_numpy(float)

    # baseline, eigenstructure: loop over a few resamples of all models
    X = df[names].to_numpy(float)
    n = X.shape[0]
    done = min(baseline_resamples, B_eig)
    lam = np.linalg.eigvalsh(np.corrcoef(X, rowvar=False))
    d_full = lam.sum() ** 2 / (lam ** 2).sum()
    vals = []
    t = _now()
    for _ in range(done):
        idx = rng.integers(0, n, n)
        lam_b = np.linalg.eigvalsh(np.corrcoef(X[idx], rowvar=False))
        vals.append(lam_b.sum() ** 2 / (lam_b ** 2).sum())
    base_eig = _baseline(_now() - t, done, B_eig, "resamples",
                         f"Python loop over resamples: X[idx] of all {n:,} models, np.corrcoef, eigvalsh")

    base_total = {"how": "sum of the two extrapolated baselines", "time_s": base_fc["time_s"] + base_eig["time_s"],
                  "note": "family-table baseline + eigenstructure baseline"}
    scale = (f"{n:,} models in {n_families:,} families x {PER_FAMILY}, {len(names)} benchmarks")
    info = {"panel_build_s": build_s, "panel": scale}
    recs = [
        _record("3a", f"within-family table, hellaswag -> truthfulqa ({n_perm:,} MC permutations, "
                      f"{n_boot:,} bootstrap resamples per family)", fc_times, None, base_fc,
                extra={"check": f"{len(fc.table):,} families; r of the first {len(fams)} families: max |CAPE - scipy| = "
                                f"{np.max(np.abs(table_r - np.array(rs))):.1e}; p_method = {fc.table['p_method'].iloc[0]}"}),
        _record("3b", f"eigenstructure of {len(names)} benchmarks ({B_eig:,} bootstrap resamples)",
                eig_times, None, base_eig,
                extra={"check": f"d_eff = {es.d_eff.value:.4f} (np.corrcoef + eigvalsh {d_full:.4f}); "
                                f"res.d_eff.n_resamples = {B_eig:,}"}),
        _record("3", f"synthetic panel ({scale}): table + eigenstructure", totals, 10.0, base_total,
                extra={"cape_parts_s": {"family_coupling": statistics.median(fc_times),
                                        "eigenstructure": statistics.median(eig_times)}}),
    ]
    if n_families != N_FAMILIES:
        for r in recs:
            r["nonstandard"] = f"{n_families:,} families instead of {N_FAMILIES:,}: not the issue's target"
    return recs, info


# -------------------------------------------------------------------------------- output


def _print_report(machine: dict, records: list[dict], total_s: float) -> None:
    m = machine
    print("CAPE coupling-engine speed targets")
    print(f"machine: nproc {m['nproc']} ({m['cpu']}), Python {m['python']}, numpy {m['numpy']}, "
          f"scipy {m['scipy']}, pandas {m['pandas']}, BLAS {m['blas'] or '?'}"
          + (f", {m['thread_env']}" if m["thread_env"] else ""))
    print(f"         {m['platform']}; load average at start {m['loadavg_start']}, at end {m.get('loadavg_end')}")
    share = m.get("other_processes_cpu_share")
    if share is not None:
        print(f"         other processes used {share:.0%} of the machine's CPU during the run"
              + ("  <- warning: timings are inflated, run again on a quiet machine" if share > 0.1 else ""))
    if "panel_build_s" in m:
        print(f"         synthetic panel ({m['panel']}) built in {_fmt_s(m['panel_build_s'])} (not timed)")
    print()
    for r in records:
        head = f"[{r['id']}] {r['name']}"
        print(head)
        runs = r["cape_runs_s"]
        how = (f"median of {len(runs)} runs, min {_fmt_s(r['cape_min_s'])}" if len(runs) > 1 else "1 run")
        if "cape_first_call_s" in r:
            how += f"; first call {_fmt_s(r['cape_first_call_s'])}"
        if "cape_parts_s" in r:
            how = " + ".join(f"{k} {_fmt_s(v)}" for k, v in r["cape_parts_s"].items()) + f"; {how}"
        print(f"    CAPE      {_fmt_s(r['cape_s']):>10}   ({how})")
        b = r["baseline"]
        if b:
            print(f"    baseline  {_fmt_s(b['time_s']):>10}   ({b['how']}; {b['note']})")
        for ob in r.get("other_baselines", []):
            print(f"    baseline' {_fmt_s(ob['time_s']):>10}   ({ob['how']}; {ob['note']}; "
                  f"ratio {ob['time_s'] / r['cape_s']:,.0f}x)")
        if r["ratio"] is not None:
            print(f"    ratio     {r['ratio']:>9,.0f}x   (baseline / CAPE)")
        if r["target_s"] is not None:
            verdict = "PASS" if r["pass"] else "FAIL"
            print(f"    target    <= {_fmt_s(r['target_s'])}: {verdict}"
                  + (f"  ({r['nonstandard']})" if r.get("nonstandard") else ""))
        else:
            print("    target    (part of the total below)")
        if r.get("check"):
            print(f"    check     {r['check']}")
        print()
    judged = [r for r in records if r["pass"] is not None]
    print(f"summary: {sum(r['pass'] for r in judged)} of {len(judged)} targets pass "
          f"({', '.join(r['id'] + ' ' + ('PASS' if r['pass'] else 'FAIL') for r in judged)}); "
          f"benchmark wall time {total_s:.1f} s")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--json", action="store_true", help="print a JSON list instead of the report")
    ap.add_argument("--repeat", type=int, default=5, help="CAPE runs for targets 1 and 2 (median reported)")
    ap.add_argument("--panel-repeat", type=int, default=1, help="CAPE runs for target 3 (each takes seconds)")
    ap.add_argument("--families", type=int, default=N_FAMILIES,
                    help="families in the synthetic panel (the target is for 5,000)")
    ap.add_argument("--only", default="1,2,3", help="comma-separated targets to run, e.g. 1,2")
    a = ap.parse_args(argv)
    todo = {s.strip() for s in a.only.split(",")}

    t0 = _now()
    machine = machine_info()
    snap = _cpu_snapshot()
    records: list[dict] = []
    if "1" in todo:
        records += bench_nc(a.repeat, baseline_resamples=500)
    if "2" in todo:
        records += bench_permutation(a.repeat, baseline_orderings=10_000)
    if "3" in todo:
        recs, info = bench_panel(a.panel_repeat, baseline_families=2, baseline_resamples=5,
                                 n_families=a.families)
        records += recs
        machine.update(info)
    machine["loadavg_end"] = _loadavg()
    machine["other_processes_cpu_share"] = _others_share(snap, _cpu_snapshot(), machine["nproc"])
    total_s = _now() - t0
    if a.json:
        machine["kind"] = "machine"
        machine["wall_s"] = total_s
        print(json.dumps([machine] + records, indent=2, default=float))
    else:
        _print_report(machine, records, total_s)
    return 0


if __name__ == "__main__":
    sys.exit(main())
