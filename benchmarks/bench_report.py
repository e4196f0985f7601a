#!/usr/bin/env python3
"""Speed of the shareable report (``cape report``) on the bundled panels.

    python benchmarks/bench_report.py            # human-readable report
    python benchmarks/bench_report.py --json     # a JSON list instead

Targets:

1. ``cape report --out DIR`` as a user runs it (a fresh process: imports, the claims audit
   and its replication, every analysis with 10,000-resample bootstraps, every figure, the
   HTML page, and a PNG and an SVG of each figure through a headless Chromium)   <= 20 s
   (issue 18; it was 60 s before). The static export runs in one browser session that
   starts with the report and renders each figure while the next is drawn, so its stages
   overlap: ``static export`` is its own span, ``static export wait`` what the report
   waited for it at the end.
2. the same with ``--no-static`` (no browser), for reference

This is not a test: it measures and prints, and always exits 0 unless something raises.
A time is the median of ``--repeat`` runs (the minimum is shown beside it); the stages
inside one run come from the command's own ``--json`` timings.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_coupling import _fmt_s, machine_info  # noqa: E402

LIMIT_REPORT_S = 20.0          # issue 18 (the target before it: 60 s)


def _run(args: list[str]) -> tuple[float, dict]:
    with tempfile.TemporaryDirectory() as tmp:
        t = time.perf_counter()
        r = subprocess.run([sys.executable, "-m", "cape.cli", "report", "--out", str(Path(tmp) / "report"),
                            "--json", *args], capture_output=True, text=True)
        wall = time.perf_counter() - t
    if r.returncode != 0:
        raise RuntimeError(f"cape report failed: {r.stderr.strip()}")
    return wall, json.loads(r.stdout)


def bench(target: str, args: list[str], repeat: int, limit: float | None) -> dict:
    runs = [_run(args) for _ in range(repeat)]
    times = [w for w, _ in runs]
    med = statistics.median(times)
    last = runs[-1][1]
    rec = {"target": target, "what": "cape report " + " ".join(["--out DIR", *args]).strip(),
           "time_s": med, "min_s": min(times), "figures": len(last["figures"]),
           "static": last["static_note"], "stages_s": last["timings"],
           # start-up and the claims audit (with its replication), which run before the report
           "before_report_s": runs[-1][0] - last["timings"]["total"]}
    if limit is not None:
        rec |= {"limit_s": limit, "ratio": limit / med, "pass": med <= limit}
    return rec


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--json", action="store_true", help="print a JSON list instead of the report")
    ap.add_argument("--repeat", type=int, default=3, help="runs per target (median reported)")
    a = ap.parse_args(argv)
    t0 = time.perf_counter()
    machine = machine_info()
    records = [bench("1", [], a.repeat, LIMIT_REPORT_S), bench("2", ["--no-static"], a.repeat, None)]
    if a.json:
        machine["kind"] = "machine"
        machine["wall_s"] = time.perf_counter() - t0
        print(json.dumps([machine] + records, indent=2, default=float))
        return 0
    print(f"machine: {machine['cpu']} ({machine['nproc']} cores), python {machine['python']}, "
          f"numpy {machine['numpy']}")
    for r in records:
        line = f"[{r['target']}] {r['what']}: {_fmt_s(r['time_s'])} (min {_fmt_s(r['min_s'])}), {r['figures']} figures"
        if "limit_s" in r:
            line += (f"; limit {_fmt_s(r['limit_s'])}, limit / time = {r['ratio']:.1f}x "
                     f"{'PASS' if r['pass'] else 'FAIL'}")
        print(line)
        print(f"    stages of the last run: start-up and audit {_fmt_s(r['before_report_s'])}, then "
              + ", ".join(f"{k} {_fmt_s(v)}" for k, v in r["stages_s"].items()) + f"; {r['static']}")
    print(f"total {time.perf_counter() - t0:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
