#!/usr/bin/env python3
"""Speed of the scaling-dynamics engine (cape.analysis.dynamics).

    python benchmarks/bench_dynamics.py            # human-readable report
    python benchmarks/bench_dynamics.py --json     # a JSON list instead

Targets:

1. leave-one-family-out cross-validation over every family of openllm-v1-base with >= 4
   models (sparse ODE and all baselines, duplicate sizes averaged)            <= 10 s
2. bagging: 1,000 STLSQ refits of the pooled Pythia + Llama-1 fit on paper-nc, batched
   (cape.analysis.dynamics.stlsq) against pysindy's EnsembleOptimizer doing the same
   number of bagged fits one after another (a reference, no limit)

This is not a test: it measures and prints, and always exits 0 unless something raises.
A time is the median of ``--repeat`` runs (the minimum is shown beside it).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_coupling import _fmt_s, _time, machine_info  # noqa: E402

import cape  # noqa: E402
from cape.analysis import dynamics as dy  # noqa: E402

LIMIT_CROSSVAL_S = 10.0


def bench_crossval(repeat: int) -> dict:
    frame = cape.load_panel("openllm-v1-base")
    times, res = _time(lambda: dy.crossval(frame, schemes=["family"], min_models=4, duplicates="mean",
                                           seed=0), repeat)
    med = statistics.median(times)
    return {"target": "1", "what": f"leave-one-family-out, openllm-v1-base, {len(res.families)} families "
                                   f"with >= 4 models, {res.predictions['method'].nunique()} methods",
            "time_s": med, "min_s": min(times), "limit_s": LIMIT_CROSSVAL_S,
            "ratio": LIMIT_CROSSVAL_S / med, "pass": med <= LIMIT_CROSSVAL_S}


def bench_bagging(repeat: int, n_models: int = 1000) -> dict:
    import pysindy as ps

    data = dy.dynamics_data(cape.load_panel("paper-nc"), None, ["Pythia", "Llama-1"])
    ode = dy.fit_ode(data)
    z = ode.scale.to_z(data.values())
    zdot = dy.finite_differences(data) / ode.scale.sd
    th = dy.theta(z, ode.powers)
    W = cape.stats.bootstrap_weights(data.n, n_models, 0)
    times, _ = _time(lambda: dy.stlsq(th, zdot, W, ode.threshold, alpha=ode.alpha), repeat)

    def reference():
        opt = ps.EnsembleOptimizer(ps.STLSQ(threshold=ode.threshold, alpha=ode.alpha), bagging=True,
                                   n_models=n_models, n_subset=data.n, replace=True)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            opt.fit(th, zdot)
        return opt

    ref_times, _ = _time(reference, max(1, repeat // 2))
    med, ref = statistics.median(times), statistics.median(ref_times)
    return {"target": "2", "what": f"bagging, {n_models:,} STLSQ refits (paper-nc pooled fit, "
                                   f"{data.n} points x {ode.n_terms} terms x {data.k} equations)",
            "time_s": med, "min_s": min(times), "baseline_s": ref, "ratio": ref / med,
            "baseline": "pysindy EnsembleOptimizer (one fit after another)"}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--json", action="store_true", help="print a JSON list instead of the report")
    ap.add_argument("--repeat", type=int, default=3, help="runs per target (median reported)")
    a = ap.parse_args(argv)
    t0 = time.perf_counter()
    machine = machine_info()
    records = [bench_crossval(a.repeat), bench_bagging(a.repeat)]
    if a.json:
        machine["kind"] = "machine"
        machine["wall_s"] = time.perf_counter() - t0
        print(json.dumps([machine] + records, indent=2, default=float))
        return 0
    print(f"machine: {machine['cpu']} ({machine['nproc']} cores), python {machine['python']}, "
          f"numpy {machine['numpy']}")
    for r in records:
        line = f"[{r['target']}] {r['what']}: {_fmt_s(r['time_s'])} (min {_fmt_s(r['min_s'])})"
        if "limit_s" in r:
            line += (f"; limit {_fmt_s(r['limit_s'])}, limit / time = {r['ratio']:.1f}x "
                     f"{'PASS' if r['pass'] else 'FAIL'}")
        else:
            line += f"; {r['baseline']}: {_fmt_s(r['baseline_s'])}, ratio {r['ratio']:.1f}x"
        print(line)
    print(f"total {time.perf_counter() - t0:.1f} s")
    return 0


if __name__ == "__main__":
    np.seterr(all="ignore")
    sys.exit(main())
