"""What the preprint's released internal-coupling files show (claims A7, A8, A16): degenerate
per-layer values and values shared across models, checked on constructed records (both
ways) and on the release itself; the audit rows carry the finding and CAPE's own measurement."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from cape.analysis.released import check_records, released_internals
from cape.audit import run_audit

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"


def test_degenerate_and_shared_values_are_found_and_only_they():
    recs = [{"file": "flat.json", "model": "a", "net": 0.97862647, "per_layer": [0.97862646, 0.97862647, 0.97862646]},
            {"file": "moves.json", "model": "b", "net": 0.5, "per_layer": [0.2, 0.5, 0.8]},
            {"file": "twin.json", "model": "c", "net": 0.978626471, "early": 0.9, "mid": 0.9, "late": 0.9},
            {"file": "edge.json", "model": "d", "net": 0.1, "per_layer": [0.1, 0.1 + 2e-6]},
            {"file": "none.json", "model": "e", "net": 0.3}]
    t = check_records(recs).set_index("file")
    assert t["degenerate"].to_dict() == {"flat.json": True, "moves.json": False, "twin.json": True,
                                         "edge.json": False, "none.json": False}
    assert t.loc["moves.json", "spread"] == pytest.approx(0.6)
    assert t.loc["flat.json", "same_net_as"] == ["twin.json"] and t.loc["moves.json", "same_net_as"] == []
    assert t.loc["none.json", "spread_over"] == "no per-layer values"


def test_the_release_as_bundled():
    rel = released_internals()
    t = rel.table.set_index("file")
    assert t.loc["layer_pythia-1b_tl.json", "degenerate"] and t.loc["layer_pythia-1b_tl.json", "spread"] < 1e-6
    assert not t.loc["opt30b_internal_nc2.json", "degenerate"]
    assert "layer_pythia-6.9b_tl.json" in t.loc["layer_pythia-1b_tl.json", "same_net_as"]
    assert len(rel.qwen) == 10 and "9 of 12 files" in rel.summary()


def test_bundled_extract_matches_shared():
    if not (SHARED / "data" / "cape-paper").is_dir():
        pytest.skip("../shared/data/cape-paper (the preprint's release) is not here")
    r = subprocess.run([sys.executable, str(ROOT / "tools" / "build_released_internals.py"), "--shared", str(SHARED),
                        "--check"], capture_output=True, text=True)
    assert r.returncode == 0 and "matches" in r.stdout, r.stdout + r.stderr


def test_audit_rows_carry_the_findings_and_cape_s_own_measurement(tmp_path):
    rows = run_audit(only=["A7", "A8", "A16"], replication=None).table.set_index("id")
    assert (rows["verdict"] == "not computable").all()
    assert "0.83 for 8 of 10 models" in rows.loc["A7", "reason"] and "0.025 at Qwen2.5-1.5B" in rows.loc["A7", "reason"]
    assert "0.8707" in rows.loc["A8", "reason"]
    heads = rows.loc["A16", "reason"]
    assert "9 report 0 competing units and 9 of those are degenerate" in heads and "292 (meta-llama/Llama-2-70b-hf)" \
        in heads
    assert all("no local measurement recorded" in r for r in rows["reason"])
    from cape.steer.internals import InternalCoupling

    table = pd.DataFrame({"layer": [0, 1], "raw_cos": [0.95, 0.97], "centred_cos": [0.02, -0.2],
                          "null_low": [-0.1, -0.1], "null_high": [0.1, 0.1], "outside_null": [False, True]})
    InternalCoupling("tiny/model", table, {}).record()
    rows = run_audit(only=["A16"], replication=None).table.set_index("id")
    assert "CAPE on tiny/model (cape steer internals): raw cosine 0.950 to 0.970, centred -0.200 to +0.020, " \
           "outside the null band at 1 of 2 layers" in rows.loc["A16", "reason"]
    doc = json.loads(next((Path(__import__("os").environ["CAPE_HOME"]) / "internals").glob("*.json")).read_text())
    assert doc["kind"] == "cape-internal-coupling"
