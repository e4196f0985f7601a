"""lighteval result files written by lighteval itself (other people's runs), read by hand
with ``json.load`` and by CAPE; origins in tests/fixtures/lighteval/README.md."""

import json

import pandas as pd
import pytest
from typer.testing import CliRunner

from cape.cli import app
from cape.errors import InputError
from cape.io import read_results

DOCS = "real_lighteval-docs_gpt2_results.json"
QWEN = "real_lm-reasoning-eval_Qwen3-32B_results_2025-07-11T09-28-07.098405.json"


@pytest.fixture
def lev(fixtures):
    return fixtures / "lighteval"


def _stderr(metrics, name):
    return metrics.get(f"{name}_stderr")


def check_round_trip(path, *, benchmark, variants, flags):
    """Every proportion in the file's one task, checked against the file read by hand."""
    doc = json.loads(path.read_text())
    cfg = doc["config_general"]
    (key,) = [k for k in doc["results"] if k != "all"]
    metrics = doc["results"][key]
    shots = int(key.rsplit("|", 1)[1])
    res = read_results(path)
    assert res.formats[str(path)] == "lighteval"
    scores = res.dataset.scores.set_index("variant")
    assert sorted(scores.index) == sorted(variants)  # "all" is not a benchmark and is not read
    for metric in variants:
        row = scores.loc[metric]
        assert row["model"] == cfg["model_name"]
        assert row["benchmark"] == benchmark
        assert row["value"] == pytest.approx(100 * metrics[metric])
        assert row["stderr"] == pytest.approx(100 * _stderr(metrics, metric))
        assert row["n_shot"] == shots
        assert row["harness"] == f"lighteval {cfg['lighteval_sha'][:7]}"
        assert row["flags"] == flags
    models = res.dataset.models.set_index("model")
    assert list(models.index) == [cfg["model_name"]]
    # no parameter count in a lighteval file (model_size is bytes on disk, when present)
    assert "params" not in models.columns or pd.isna(models.loc[cfg["model_name"], "params"])
    return doc, res


def test_lighteval_docs_example_suite_layout(lev):
    """lighteval's documented example (gpt2, ``lighteval|gsm8k|0``, ``max_samples: 1``)."""
    doc, res = check_round_trip(lev / DOCS, benchmark="gsm8k", variants=["qem", "maj@8"],
                                flags="limited:max_samples=1")
    assert doc["config_general"]["max_samples"] == 1
    assert res.skipped == [] and res.unregistered == {}


def test_qwen3_aime24_run_sampling_metric(lev):
    """A lighteval 0.10.1.dev0 run: ``math_pass@1:1_samples`` on AIME 2024, a task CAPE does not
    register. Before the fix the metric was skipped as 'not a percentage' and the file had no
    scores at all (``no scores found``)."""
    doc, res = check_round_trip(lev / QWEN, benchmark="aime24", variants=["math_pass@1:1_samples"],
                                flags="unregistered")
    assert doc["config_general"]["max_samples"] is None  # a full run: no "limited" flag
    assert "aime24" in res.unregistered
    with pytest.raises(InputError, match="unregistered"):
        read_results(lev / QWEN, strict=True)
    with pytest.raises(InputError, match="no scores found"):  # its one task skipped
        read_results(lev / QWEN, skip_unknown=True)


def test_sampling_metrics_are_proportions_others_still_skipped(lev, tmp_path):
    """The constructed opposite: a sampling metric outside 0-1 is refused, and metrics that are
    not proportions (perplexity, BLEU) are still skipped with a note."""
    doc = json.loads((lev / DOCS).read_text())
    task = doc["results"]["lighteval|gsm8k|0"]
    task.update({"pass@k:k=1&n=1": 0.25, "avg@n:n=4": 0.5, "ppl": 12.5, "bleu": 31.0})
    path = tmp_path / "results_mixed.json"
    path.write_text(json.dumps(doc))
    res = read_results(path)
    got = res.dataset.scores.set_index("variant")["value"]
    assert got["pass@k:k=1&n=1"] == pytest.approx(25.0) and got["avg@n:n=4"] == pytest.approx(50.0)
    assert "ppl" not in got.index and "bleu" not in got.index
    assert sum("not a percentage" in line for line in res.skipped) == 2
    task["maj@8"] = 8.0  # a count where a fraction belongs
    path.write_text(json.dumps(doc))
    with pytest.raises(InputError, match=r"outside 0-1"):
        read_results(path)


def test_cli_ingest_and_show_real_lighteval_files(lev, cape_home):
    runner = CliRunner()
    files = [str(lev / DOCS), str(lev / QWEN)]
    r = runner.invoke(app, ["ingest", *files, "--panel", "lev-real", "--json"])
    assert r.exit_code == 0, r.output
    r = runner.invoke(app, ["show", "lev-real", "--long", "--json"])
    assert r.exit_code == 0, r.output
    shown = {(s["model"], s["benchmark"], s["variant"]): s for s in json.loads(r.output)["scores"]}
    gpt2 = json.loads((lev / DOCS).read_text())["results"]["lighteval|gsm8k|0"]
    qwen = json.loads((lev / QWEN).read_text())["results"]["lighteval|aime24|0"]
    assert shown[("gpt2", "gsm8k", "maj@8")]["value"] == pytest.approx(100 * gpt2["maj@8"])
    assert "limited:max_samples=1" in shown[("gpt2", "gsm8k", "qem")]["flags"]
    got = shown[("Qwen/Qwen3-32B", "aime24", "math_pass@1:1_samples")]
    assert got["value"] == pytest.approx(100 * qwen["math_pass@1:1_samples"])
    assert got["stderr"] == pytest.approx(100 * qwen["math_pass@1:1_samples_stderr"])
    assert got["n_shot"] == 0 and "unregistered" in got["flags"]
    assert len(shown) == 3
    r = runner.invoke(app, ["show", "lev-real"])
    assert r.exit_code == 0 and "Qwen/Qwen3-32B" in r.output and "80.00" in r.output
