"""The claims audit: claims as data, verdict rules, the built-in audit on the bundled panels,
bad claims files, and the CLI."""

from __future__ import annotations

import json
import re

import pytest

from cape.audit import (ANALYSES, VERDICTS, Claim, Computation, Tolerance, builtin_claims, load_claims,
                        run_audit, verdict)
from cape.errors import CapeError, InputError

from conftest import SHARED, run_cli


@pytest.fixture(scope="module")
def audit():
    return run_audit(seed=0)


def _row(audit, cid):
    return audit.table.set_index("id").loc[cid]


def _claim(values=None, tol=Tolerance(0.1, False), analysis="family_pearson"):
    return Claim("X1", "A", "a claim", "published text", values or {}, tol if values else None, analysis, {})


# ---------------------------------------------------------------- verdict rules
def test_verdict_reproduced():
    v, reason = verdict(_claim({"r": -0.99}), Computation({"r": -0.95}, sound="sound ok", sound_agrees=True))
    assert v == "reproduced" and "r -0.95" in reason and "sound ok" in reason


def test_verdict_fragile_when_sound_variant_disagrees():
    v, reason = verdict(_claim({"r": -0.99}), Computation({"r": -0.95}, sound="the CI spans 0", sound_agrees=False))
    assert v == "reproduced but fragile" and reason.endswith("but the CI spans 0")


def test_verdict_not_reproduced_names_the_numbers():
    v, reason = verdict(_claim({"r": -0.99, "n": 8}), Computation({"r": -0.5, "n": 8}, sound_agrees=False))
    assert v == "not reproduced"
    assert "r: published -0.99, CAPE -0.5 (tolerance 0.1)" in reason and "n:" not in reason


def test_verdict_not_computable_and_not_computed_yet():
    assert verdict(_claim({"r": 1}), Computation(status="not computable", text="no data"))[0] == "not computable"
    v, reason = verdict(_claim(), Computation(status="not computed yet", text="run `cape steer`"))
    assert v == "not computed yet" and "cape steer" in reason
    # a value the analysis did not give
    assert verdict(_claim({"r": 1}), Computation({"s": 1}))[0] == "not computable"
    # a non-finite value is outside any tolerance
    assert verdict(_claim({"r": 1}), Computation({"r": float("nan")}))[0] == "not reproduced"


def test_verdict_qualitative():
    assert verdict(_claim(), Computation(holds=True, text="5 of 6"))[0] == "reproduced"
    assert verdict(_claim(), Computation(holds=True, text="5 of 6", sound_agrees=False, sound="x"))[0] == \
        "reproduced but fragile"
    assert verdict(_claim(), Computation(holds=False, text="1 of 6")) == ("not reproduced", "1 of 6")
    assert verdict(_claim(), Computation(holds=None))[0] == "not computable"


def test_verdict_prediction_status_passes_through():
    assert verdict(_claim(), Computation(status="pending", text="deadline not reached")) == \
        ("pending", "deadline not reached")


def test_tolerance_absolute_and_relative():
    assert Tolerance(0.1, False).allows(1.0, 1.1) and not Tolerance(0.1, False).allows(1.0, 1.11)
    assert Tolerance(0.1, True).allows(3.5e9, 3.85e9) and not Tolerance(0.1, True).allows(3.5e9, 3.86e9)
    assert Tolerance(0.1, True).allows(-5.0, -4.5) and not Tolerance(0.1, True).allows(-5.0, -4.4)
    assert str(Tolerance(0.25, True)) == "25%" and str(Tolerance(0.005, False)) == "0.005"


# ---------------------------------------------------------------- the built-in audit
def test_builtin_claims_cover_the_claims_table():
    ids = [c.id for c in builtin_claims()]
    expected = [f"A{i}" for i in range(1, 19)] + [f"B{i}" for i in range(1, 10)] + [f"B-P{i}" for i in range(1, 8)]
    assert ids == expected
    assert all(c.analysis in ANALYSES for c in builtin_claims())


def test_builtin_claims_match_claims_md():
    path = SHARED / "docs" / "CLAIMS.md"
    if not path.exists():
        pytest.skip("../shared/docs/CLAIMS.md is absent (a user's clone has no ../shared; CI always has it)")
    table_ids = re.findall(r"^\| (A\d+|B\d+) \|", path.read_text(), flags=re.M)
    assert table_ids == [c.id for c in builtin_claims() if not c.id.startswith("B-P")]


def test_audit_recomputes_the_published_figures(audit):
    t = audit.table.set_index("id")
    assert t.loc["A1", "values"]["r"] == pytest.approx(-0.9886, abs=1e-4)
    assert t.loc["A15", "values"]["mape"] == pytest.approx(5.65, abs=0.05)
    assert t.loc["B1", "values"]["slope"] == pytest.approx(0.5131, abs=1e-4)
    assert t.loc["B1", "values"]["intercept"] == pytest.approx(46.38, abs=0.01)
    assert t.loc["B4", "values"]["swing"] == pytest.approx(-15.85, abs=0.01)
    assert t.loc["B6", "values"]["mae"] == pytest.approx(9.20, abs=0.01)
    assert t.loc["B8", "values"]["sigma"] == pytest.approx(0.30, abs=1e-9)
    assert t.loc["A2", "values"]["nc"] == pytest.approx(3.43e9, rel=0.01)


def test_audit_verdicts_on_bundled_data(audit):
    expected = {"A1": "reproduced", "A2": "reproduced but fragile", "A3": "not reproduced",
                "A10": "reproduced but fragile", "A13": "not reproduced", "A14": "not reproduced",
                "A15": "reproduced but fragile", "A16": "not computable", "A17": "not computed yet",
                "B1": "reproduced but fragile", "B2": "reproduced but fragile", "B4": "reproduced but fragile",
                "B5": "reproduced but fragile", "B6": "reproduced", "B7": "reproduced", "B8": "not reproduced",
                "B9": "not computable"}
    got = {k: _row(audit, k)["verdict"] for k in expected}
    assert got == expected
    for i in range(1, 8):
        assert _row(audit, f"B-P{i}")["verdict"] in ("pass", "fail", "undecided", "pending")
    assert set(audit.table["verdict"]) <= set(VERDICTS) | {"pass", "fail", "undecided", "pending"}
    assert sum(audit.counts.values()) == len(audit.table) == 34


def test_reasons_are_built_from_numbers(audit):
    assert "published 0.143, CAPE 0.3" in _row(audit, "B8")["reason"]
    assert "corrected data" in _row(audit, "B2")["reason"]
    assert "null" in _row(audit, "A10")["reason"]
    reason = _row(audit, "A17")["reason"]
    import re

    import typer

    from cape.cli import app
    steer = next(g for g in typer.main.get_command(app).commands.values() if g.name == "steer")
    named = set(re.findall(r"cape steer (\w+)", reason))
    assert {"extract", "eval"} <= named and named <= set(steer.commands), named


def test_audit_is_reproducible_with_a_seed():
    a = run_audit(seed=3, n_resamples=500, only=["A2", "B1"])
    b = run_audit(seed=3, n_resamples=500, only=["A2", "B1"])
    c = run_audit(seed=4, n_resamples=500, only=["A2", "B1"])
    assert a.table["paper"].tolist() == b.table["paper"].tolist()
    assert a.table["paper"].tolist() != c.table["paper"].tolist()


def test_markdown_table(audit):
    md = audit.to_markdown().splitlines()
    rows = [ln for ln in md if ln.startswith("| ")]
    assert md[0].startswith("| id | claim | published |") and len(rows) == 1 + len(audit.table)
    assert all(ln.startswith("|") for ln in md[:2 + len(audit.table)])
    assert md[2].startswith("| A1 |") and md[2].count("|") == 8


# ---------------------------------------------------------------- claims as data
GOOD = """format: cape-claims/1
claims:
  - id: Z1
    paper: A
    claim: OPT anticorrelates
    published: "r = -0.97"
    values: {r: -0.97}
    tolerance: 0.01
    analysis: family_pearson
    args: {panel: paper-base, family: OPT}
"""


def test_adding_a_claim_is_adding_a_row(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text(GOOD)
    res = run_audit(load_claims(f), seed=0, n_resamples=300)
    row = res.table.iloc[0]
    assert row["id"] == "Z1" and row["verdict"] == "reproduced" and row["values"]["r"] == pytest.approx(-0.97, abs=0.01)


@pytest.mark.parametrize("edit, where, words", [
    (("analysis: family_pearson", "analysis: no_such_thing"), ":9, field 'claims[0].analysis'", ["unknown analysis"]),
    (("    tolerance: 0.01\n", ""), ":3, field 'claims[0]'", ["no tolerance"]),
    (("tolerance: 0.01", "tolerance: lots"), ":8, field 'claims[0].tolerance'", ["percentage"]),
    (("tolerance: 0.01", "tolerance: -1"), ":8", [">= 0"]),
    (("values: {r: -0.97}", "values: {r: minus one}"), ":7, field 'claims[0].values.r'", ["number"]),
    (("    claim: OPT anticorrelates\n", ""), "field 'claims[0].claim'", ["required"]),
    (("    paper: A\n", "    paper: A\n    colour: red\n"), ":5, field 'claims[0].colour'", ["unknown field"]),
    (("format: cape-claims/1", "format: cape-claims/9"), ":1, field 'format'", ["unknown format"]),
])
def test_bad_claims_file(tmp_path, edit, where, words):
    f = tmp_path / "bad.yaml"
    f.write_text(GOOD.replace(*edit))
    with pytest.raises(InputError) as info:
        load_claims(f)
    msg = str(info.value)
    assert msg.startswith(str(f)) and where in msg, msg
    for w in words:
        assert w in msg, msg


def test_bad_claims_file_structure(tmp_path):
    f = tmp_path / "dup.yaml"
    f.write_text(GOOD + GOOD.split("claims:\n", 1)[1])
    with pytest.raises(InputError, match="duplicate claim id 'Z1'"):
        load_claims(f)
    with pytest.raises(InputError, match="non-empty list"):
        load_claims(text="format: cape-claims/1\nclaims: []\n", name="empty.yaml")
    with pytest.raises(InputError, match="mapping with a 'claims' list"):
        load_claims(text="- 1\n", name="list.yaml")
    with pytest.raises(CapeError, match="cannot read claims file"):
        load_claims(tmp_path / "missing.yaml")


def test_an_analysis_that_fails_is_not_computable(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text(GOOD.replace("family: OPT", "family: NoSuchFamily"))
    row = run_audit(load_claims(f), seed=0, n_resamples=200).table.iloc[0]
    assert row["verdict"] == "not computable" and "NoSuchFamily" in row["reason"]
    f.write_text(GOOD.replace("panel: paper-base", "panel: no-such-panel"))
    row = run_audit(load_claims(f), seed=0, n_resamples=200).table.iloc[0]
    assert row["verdict"] == "not computable" and "no-such-panel" in row["reason"]


def test_only_unknown_claim():
    with pytest.raises(CapeError, match="no claim Q9"):
        run_audit(only=["Q9"])


# ---------------------------------------------------------------- CLI
@pytest.mark.slow
def test_cli_audit_markdown_json_and_output(tmp_path):
    p = run_cli("audit", "--markdown", "--resamples", "500")
    assert p.returncode == 0, p.stderr
    lines = [ln for ln in p.stdout.splitlines() if ln.startswith("| ")]
    assert lines[0].startswith("| id | claim") and len(lines) == 1 + 34
    p = run_cli("audit", "--json", "--only", "A1,B8", "--resamples", "500")
    data = json.loads(p.stdout)
    assert [r["id"] for r in data["table"]] == ["A1", "B8"] and data["command"] == "audit"
    assert data["table"][1]["verdict"] == "not reproduced"
    out = tmp_path / "audit.md"
    p = run_cli("audit", "--only", "A1", "--resamples", "300", "-o", str(out))
    assert p.returncode == 0 and "reproduced" in p.stdout and out.read_text().startswith("| id |")


@pytest.mark.slow
def test_cli_audit_bad_input(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(GOOD.replace("analysis: family_pearson", "analysis: nope"))
    for args, word in ((("--claims", str(bad)), "unknown analysis 'nope'"), (("--only", "Q9"), "no claim Q9"),
                       (("--only", "A1", "-o", str(tmp_path / "no" / "dir" / "x.md")), "cannot write")):
        p = run_cli("audit", *args)
        assert p.returncode == 2 and p.stderr.startswith("error:") and word in p.stderr, p.stderr
        assert len(p.stderr.strip().splitlines()) == 1 and "Traceback" not in p.stderr


def test_replication_section(audit):
    rep = audit.replication
    assert rep is not None and rep.panel == "openllm-v1-base"
    assert rep.verdict in ("holds", "does not hold", "undetermined")
    assert f"Independent replication on openllm-v1-base (a flip within families at 3.5B): {rep.verdict} (" \
        in audit.summary() and rep.verdict_reason in audit.summary()
    # the verdict is the family-level flip test, at the claimed N_c, compared with the claimed
    # interval, with N_c's own bootstrap (the paper protocol on paper-nc) propagated
    a2 = next(c for c in builtin_claims() if c.id == "A2")
    assert rep.verdict == rep.flip.verdict and rep.flip.n_c == a2.values["nc"]
    assert rep.flip.claimed == (a2.values["ci_low"], a2.values["ci_high"]) and rep.flip.propagated
    assert "6. Within-family flip at N_c = 3.5B" in audit.to_markdown()
    md = audit.to_markdown()
    assert "## Independent replication (openllm-v1-base)" in md and rep.summary().splitlines()[0] in md
    # split at the preprint's N_c, taken from the claims data (A2's published value), not typed in code
    a2 = next(c for c in builtin_claims() if c.id == "A2")
    assert any(abs(v - a2.values["nc"]) < 1 for v in rep.phase["n_c"]), rep.phase["n_c"].tolist()
    assert run_audit(only=["A1"], n_resamples=200, replication=None).replication is None


def test_a_claim_on_an_empty_or_unusable_panel_is_not_computable(tmp_path):
    import cape

    csv = tmp_path / "tiny.csv"
    csv.write_text("model,family,params,hellaswag\nm1,F,1e9,40\n")
    cape.ingest(str(csv), panel="tiny")
    f = tmp_path / "c.yaml"
    f.write_text(GOOD.replace("panel: paper-base", "panel: tiny").replace("family: OPT", "family: F"))
    row = run_audit(load_claims(f), seed=0, n_resamples=200, replication=None).table.iloc[0]
    assert row["verdict"] == "not computable"
    assert "truthfulqa" in row["reason"] and "tiny" in row["reason"], row["reason"]
    # the replication section on a panel with too little data: a clear error, not a crash
    with pytest.raises(CapeError, match="truthfulqa' is not in tiny"):
        run_audit(only=["A1"], n_resamples=200, replication="tiny")
