#!/usr/bin/env python3
"""Speed at every size, as a user meets it: start-up, ingest, panel loading, large outputs,
the report, and a reproducibility check (issue 18).

    python benchmarks/bench_scale.py                     # every target
    python benchmarks/bench_scale.py --only startup,ingest --sizes 10000
    python benchmarks/bench_scale.py --save after.json --compare before.json

Every timing is a whole process (``python -m cape.cli ...``, a fresh interpreter), the
median of ``--repeat`` runs for the quick ones and one run for the large ones; peak memory
is the process's maximum resident set (``ru_maxrss``). ``PYTHONDONTWRITEBYTECODE`` is
unset for the commands, so they run from compiled bytecode as an installed package does. Set ``PYTHONPATH`` to measure another
checkout (``PYTHONPATH=/tmp/before/src python benchmarks/bench_scale.py --save before.json``).

Targets (limit):

- startup: ``cape --help`` and ``cape panels`` (0.4 s each); ``cape nc`` on ``paper-nc`` and
  ``coupling``/``eigen``/``gamma`` on ``paper-base`` (bundled panels), whole process minus the
  analysis's own compute measured in-process (1.0 s); the heavy modules that ``import cape``
  and ``cape --help`` load (none of scipy, statsmodels, pysindy, plotly, sqlalchemy, torch).
- ingest: a synthetic wide CSV of N models x 20 benchmarks (5,000 families at 100k) into a
  fresh store: 10k in 6 s, 100k in 60 s and 1.5 GB peak.
- load: that 100k panel read back as the wide frame, in-process after imports (5 s); and
  ``cape coupling``/``eigen``/``gamma`` on it, whole process (15 s each).
- output: ``cape show BIG --json`` (100k rows; "in seconds": 10 s) and ``cape gamma --panel
  BIG`` in the terminal (a summarised table; 15 s).
- report: ``cape report --out DIR`` wall time (20 s).
- reproducibility: the permutation p (Pearson and Spearman) and the CI of one 10-model
  family alone, next to a 9-model family and next to another 10-model family (must be equal).

This is not a test: it prints, and exits 0 whether targets pass or not. Other work on the
machine slows it down; the header says how busy the machine was (load average).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HEAVY = ("scipy", "statsmodels", "pysindy", "plotly", "sqlalchemy", "torch")
BENCHES = ["hellaswag", "truthfulqa", "arc_challenge", "arc_easy", "mmlu", "mmlu_pro", "winogrande",
           "gsm8k", "xwinograd", "humaneval", "bbh", "math", "musr", "piqa", "boolq", "openbookqa",
           "lambada", "sciq", "drop", "ifeval"]
PER_FAMILY = 20


def _cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "cape.cli", *args]


def run(args: list[str], env: dict | None = None, stdout=subprocess.DEVNULL) -> tuple[float, float, int, str]:
    """Run a command; (wall seconds, peak RSS in MB, exit code, stderr tail)."""
    t = time.perf_counter()
    proc = subprocess.Popen(args, stdout=stdout, stderr=subprocess.PIPE, env=env)
    err = proc.stderr.read().decode(errors="replace")
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t
    proc.returncode = os.waitstatus_to_exitcode(status)
    return wall, usage.ru_maxrss / 1024, proc.returncode, err.strip()[-300:]


def median_run(args: list[str], repeat: int, env=None) -> dict:
    runs = [run(args, env) for _ in range(repeat)]
    bad = [r for r in runs if r[2] != 0]
    if bad:
        return {"error": bad[0][3]}
    times = [r[0] for r in runs]
    return {"time_s": statistics.median(times), "min_s": min(times), "rss_mb": max(r[1] for r in runs)}


def in_process(code: str, env=None) -> dict:
    """Run ``code`` in a fresh interpreter; it prints one JSON object as its last line."""
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    if r.returncode != 0:
        return {"error": r.stderr.strip()[-300:]}
    return json.loads(r.stdout.strip().splitlines()[-1])


def rec(target: str, what: str, measured: dict, limit: float | None, key: str = "time_s") -> dict:
    out = {"target": target, "what": what, **measured}
    if limit is not None and key in measured:
        out |= {"limit": limit, "pass": measured[key] <= limit}
    return out


# ------------------------------------------------------------------------------ startup
_ANALYSIS_CODE = """
import json, time
from cape import analysis, api
frame = api.load_panel({panel!r})
t = time.perf_counter(); {call}; dt = time.perf_counter() - t
print(json.dumps({{"compute_s": dt}}))
"""
_ANALYSES = {
    "nc": ("nc --panel paper-nc", "paper-nc", "analysis.critical_scale(frame)"),
    "coupling": ("coupling --panel paper-base", "paper-base", "analysis.family_coupling(frame)"),
    "eigen": ("eigen --panel paper-base", "paper-base", "analysis.eigenstructure(frame)"),
    "gamma": ("gamma --panel paper-base", "paper-base",
              "analysis.running_coupling(analysis.local_coupling(frame))"),
}

_IMPORTS_CODE = """
import json, sys
HEAVY = {heavy!r}
{body}
print(json.dumps({{"heavy": sorted({{m.split('.')[0] for m in sys.modules}} & set(HEAVY))}}))
"""


def bench_startup(repeat: int, env) -> list[dict]:
    out = []
    for what, args, limit in (("cape --help", ["--help"], 0.4), ("cape panels", ["panels"], 0.4)):
        out.append(rec("startup", what, median_run(_cmd(*args), repeat, env), limit))
    for name, (cli, panel, call) in _ANALYSES.items():
        whole = median_run(_cmd(*cli.split()), repeat, env)
        comp = [in_process(_ANALYSIS_CODE.format(call=call, panel=panel), env) for _ in range(repeat)]
        if "error" in whole or any("error" in c for c in comp):
            out.append(rec("startup", f"cape {cli}", {"error": whole.get("error") or comp[0].get("error")}, None))
            continue
        compute = statistics.median(c["compute_s"] for c in comp)
        m = whole | {"compute_s": compute, "overhead_s": whole["time_s"] - compute}
        out.append(rec("startup", f"cape {cli} (whole process minus compute)", m, 1.0, key="overhead_s"))
    for what, body in (("import cape", "import cape"),
                       ("cape --help", "from cape.cli import main\ntry:\n    main(['--help'])\nexcept SystemExit:\n    pass")):
        r = in_process(_IMPORTS_CODE.format(heavy=HEAVY, body=body), env)
        m = r | ({"n_heavy": len(r["heavy"])} if "heavy" in r else {})
        out.append(rec("imports", f"heavy modules after {what}", m, 0, key="n_heavy"))
    return out


# ------------------------------------------------------------------------------- ingest
def write_panel_csv(path: Path, n_models: int, seed: int = 0) -> None:
    """A wide CSV: model, family, params and 20 benchmark columns (percent), 20 models per
    family (sizes logspace(8, 11, 20)); a shared latent factor makes the scores correlated."""
    import pandas as pd

    rng = np.random.default_rng(seed)
    n_fam = max(1, n_models // PER_FAMILY)
    m = n_fam * PER_FAMILY
    sizes = np.logspace(8, 11, PER_FAMILY).round().astype(np.int64)
    logn = np.tile(np.log10(sizes), n_fam)
    latent = np.repeat(rng.normal(0, 1.0, n_fam), PER_FAMILY) + 1.2 * (logn - 9.5) + rng.normal(0, 0.5, m)
    loading = rng.uniform(3, 10, len(BENCHES))
    base = rng.uniform(30, 70, len(BENCHES))
    scores = np.clip(base + latent[:, None] * loading + rng.normal(0, 3, (m, len(BENCHES))), 1.5, 99.5).round(3)
    fam = np.repeat(np.array([f"fam{i:05d}" for i in range(n_fam)], dtype=object), PER_FAMILY)
    model = [f"org/fam{i:05d}-{j:02d}" for i in range(n_fam) for j in range(PER_FAMILY)]
    df = pd.DataFrame(scores, columns=BENCHES)
    df.insert(0, "params", np.tile(sizes, n_fam))
    df.insert(0, "family", fam)
    df.insert(0, "model", model)
    df.to_csv(path, index=False)


def bench_ingest(sizes: list[int], home: Path, env) -> list[dict]:
    out = []
    for n in sizes:
        csv = home / f"panel-{n}.csv"
        write_panel_csv(csv, n)
        panel = f"big{n}"
        wall, rss, rc, err = run(_cmd("ingest", str(csv), "--panel", panel, "--json"), env)
        m = {"time_s": wall, "rss_mb": rss} if rc == 0 else {"error": err}
        limit = 6.0 if n <= 10_000 else 60.0
        out.append(rec("ingest", f"cape ingest {n:,} models x {len(BENCHES)} benchmarks", m, limit))
        if rc == 0 and n >= 100_000:
            out.append(rec("ingest", f"peak memory of that ingest (MB)", {"rss_mb": rss}, 1536.0, key="rss_mb"))
    return out


_LOAD_CODE = """
import json, time
t0 = time.perf_counter()
from cape import api
import pandas, numpy
t = time.perf_counter()
frame = api.load_panel({panel!r})
print(json.dumps({{"time_s": time.perf_counter() - t, "imports_s": t - t0, "rows": len(frame)}}))
"""


def bench_load(panel: str, env, repeat: int) -> list[dict]:
    out = []
    loads = [in_process(_LOAD_CODE.format(panel=panel), env) for _ in range(max(1, repeat // 2))]
    if any("error" in x for x in loads):
        out.append(rec("load", f"load panel {panel}", loads[0], None))
    else:
        m = {"time_s": statistics.median(x["time_s"] for x in loads), "rows": loads[0]["rows"]}
        out.append(rec("load", f"api.load_panel({panel!r}) ({m['rows']:,} models), after imports", m, 5.0))
    for cmd in ("coupling", "eigen", "gamma"):
        wall, rss, rc, err = run(_cmd(cmd, "--panel", panel, "--json"), env)
        m = {"time_s": wall, "rss_mb": rss} if rc == 0 else {"error": err}
        out.append(rec("load", f"cape {cmd} --panel {panel} --json (whole process)", m, 15.0))
    return out


def bench_output(panel: str, env) -> list[dict]:
    out = []
    wall, rss, rc, err = run(_cmd("show", panel, "--json"), env)
    out.append(rec("output", f"cape show {panel} --json", {"time_s": wall} if rc == 0 else {"error": err}, 10.0))
    with tempfile.TemporaryFile() as fh:
        wall, rss, rc, err = run(_cmd("gamma", "--panel", panel), env, stdout=fh)
        fh.seek(0)
        lines = len(fh.read().splitlines())
    m = {"time_s": wall, "lines": lines} if rc == 0 else {"error": err}
    out.append(rec("output", f"cape gamma --panel {panel} (terminal table)", m, 15.0))
    return out


def bench_report(env) -> list[dict]:
    with tempfile.TemporaryDirectory() as tmp:
        wall, rss, rc, err = run(_cmd("report", "--out", str(Path(tmp) / "r")), env)
    return [rec("report", "cape report --out DIR (static figures included)",
                {"time_s": wall} if rc == 0 else {"error": err}, 20.0)]


_REPRO_CODE = """
import json
import numpy as np, pandas as pd
from cape.analysis.coupling import family_coupling
rng = np.random.default_rng(5)
def fam(name, n):
    x = rng.normal(size=n)
    return pd.DataFrame({"model": [f"{name}-{i}" for i in range(n)], "family": name,
                         "params": np.logspace(8, 10, n), "hellaswag": 50 + 5 * x + 8 * rng.normal(size=n),
                         "truthfulqa": 40 + 2 * x + 8 * rng.normal(size=n)})
A, B, C = fam("A", 10), fam("B", 9), fam("C", 10)
out = {}
for label, parts in (("alone", [A]), ("with a 9-model family", [A, B]), ("with a 10-model family", [C, A])):
    t = family_coupling(pd.concat(parts, ignore_index=True), seed=0).table.set_index("family")
    out[label] = [float(t.loc["A", c]) for c in ("p_perm", "spearman_p", "ci_low", "ci_high")]
print(json.dumps(out))
"""


def bench_repro(env) -> list[dict]:
    r = in_process(_REPRO_CODE, env)
    if "error" in r:
        return [rec("repro", "family A's p", r, None)]
    vals = list(r.values())
    same = all(v == vals[0] for v in vals)
    return [{"target": "repro", "what": "10-model family A (seed 0): [p_perm, spearman_p, ci_low, ci_high]",
             **r, "pass": same}]


# -------------------------------------------------------------------------------- main
def _fmt(r: dict) -> str:
    if "error" in r:
        return f"ERROR {r['error']}"
    if r["target"] == "imports":
        return f"{', '.join(r['heavy']) or 'none'}  {'PASS' if r.get('pass') else 'FAIL'}"
    if r["target"] == "repro":
        vals = "; ".join(f"{k}: {', '.join(f'{x:.4g}' for x in v)}" for k, v in r.items()
                         if isinstance(v, list))
        return f"{vals}  {'PASS (equal)' if r['pass'] else 'FAIL (differ)'}"
    if "overhead_s" in r:
        s = f"{r['overhead_s']:.2f} s beyond compute (whole {r['time_s']:.2f} s, compute {r['compute_s']:.3f} s)"
        v = r["overhead_s"]
    elif "time_s" in r:
        s = f"{r['time_s']:.2f} s"
        s += f", peak {r['rss_mb']:.0f} MB" if "rss_mb" in r else ""
        s += f", {r['lines']:,} lines" if "lines" in r else ""
        v = r["time_s"]
    else:
        s, v = f"{r['rss_mb']:.0f} MB", r["rss_mb"]
    if "limit" in r:
        s += f"; limit {r['limit']:g}, limit / measured = {r['limit'] / max(v, 1e-9):.2f}x {'PASS' if r['pass'] else 'FAIL'}"
    return s


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--only", default="startup,ingest,load,output,report,repro",
                    help="comma-separated: startup, ingest, load, output, report, repro")
    ap.add_argument("--sizes", default="10000,100000", help="models in the ingest panels")
    ap.add_argument("--repeat", type=int, default=5, help="runs of the quick commands (median)")
    ap.add_argument("--json", action="store_true", help="print the records as JSON")
    ap.add_argument("--save", help="also write the records to this JSON file")
    ap.add_argument("--compare", help="a JSON file saved by --save (e.g. before the change): print it beside")
    a = ap.parse_args(argv)
    only = set(a.only.split(","))
    sizes = [int(s) for s in a.sizes.split(",") if s]
    records: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="cape-scale-") as tmp:
        home = Path(tmp)
        env = os.environ | {"CAPE_HOME": str(home), "COLUMNS": "120"}
        env.pop("CAPE_DB_URL", None)
        # an installed package has its bytecode compiled (pip does it); a development shell
        # with PYTHONDONTWRITEBYTECODE=1 would recompile CAPE's modules on every start
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        started = time.perf_counter()
        if "startup" in only:
            records += bench_startup(a.repeat, env)
        if "ingest" in only or "load" in only or "output" in only:
            records += bench_ingest(sizes, home, env) if "ingest" in only else []
            if "ingest" not in only:
                records += [r | {"hidden": True} for r in bench_ingest(sizes[-1:], home, env)]
            big = f"big{sizes[-1]}"
            if "load" in only:
                records += bench_load(big, env, a.repeat)
            if "output" in only:
                records += bench_output(big, env)
        if "report" in only:
            records += bench_report(env)
        if "repro" in only:
            records += bench_repro(env)
    head = {"kind": "machine", "nproc": os.cpu_count(), "loadavg": os.getloadavg(),
            "python": sys.version.split()[0], "wall_s": time.perf_counter() - started,
            "pythonpath": os.environ.get("PYTHONPATH", "")}
    if a.save:
        Path(a.save).write_text(json.dumps([head] + records, indent=2, default=float))
    if a.json:
        print(json.dumps([head] + records, indent=2, default=float))
        return 0
    before = {}
    if a.compare:
        before = {r["what"]: r for r in json.loads(Path(a.compare).read_text())[1:]}
    print(f"machine: {head['nproc']} cores, load average {', '.join(f'{x:.1f}' for x in head['loadavg'])} "
          f"at the end, python {head['python']}; run took {head['wall_s']:.0f} s")
    for r in records:
        if r.get("hidden"):
            continue
        print(f"[{r['target']}] {r['what']}: {_fmt(r)}")
        if r["what"] in before:
            print(f"    before: {_fmt(before[r['what']])}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
