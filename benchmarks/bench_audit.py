#!/usr/bin/env python3
"""Speed of the claims audit (``cape audit``) on the bundled panels.

    python benchmarks/bench_audit.py            # human-readable report
    python benchmarks/bench_audit.py --json     # a JSON list instead

Target: ``cape audit`` (every claim with 10,000-resample bootstraps, plus the independent
replication on openllm-v1-base) as a user runs it, in a fresh process        <= 15 s

This is not a test: it measures and prints, and always exits 0 unless something raises.
The time is the median of ``--repeat`` runs (the minimum is shown beside it).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_coupling import _fmt_s, machine_info  # noqa: E402

LIMIT_S = 15.0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--json", action="store_true", help="print a JSON list instead of the report")
    ap.add_argument("--repeat", type=int, default=3, help="runs (median reported)")
    a = ap.parse_args(argv)
    times = []
    for _ in range(a.repeat):
        t = time.perf_counter()
        p = subprocess.run([sys.executable, "-m", "cape.cli", "audit", "--json"], capture_output=True, text=True)
        times.append(time.perf_counter() - t)
        if p.returncode != 0:
            raise SystemExit(f"cape audit failed: {p.stderr.strip()}")
    n = len(json.loads(p.stdout)["table"])
    med = statistics.median(times)
    rec = {"target": "audit", "what": f"cape audit --json ({n} claims + replication), fresh process",
           "time_s": med, "min_s": min(times), "limit_s": LIMIT_S, "ratio": LIMIT_S / med, "pass": med <= LIMIT_S}
    if a.json:
        print(json.dumps([machine_info() | {"kind": "machine"}, rec], indent=2, default=float))
        return 0
    m = machine_info()
    print(f"machine: {m['cpu']} ({m['nproc']} cores), python {m['python']}")
    print(f"{rec['what']}: {_fmt_s(med)} (min {_fmt_s(min(times))}); limit {_fmt_s(LIMIT_S)}, "
          f"limit / time = {rec['ratio']:.1f}x {'PASS' if rec['pass'] else 'FAIL'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
