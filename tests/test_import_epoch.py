"""Epoch AI Benchmarking Hub CSVs: one file per benchmark, read by hand and by CAPE."""

import csv

import pandas as pd
import pytest

import cape
from cape.analysis import frontier as fr
from cape.errors import InputError
from cape.io import read_results


@pytest.fixture
def epoch(fixtures):
    return fixtures / "epoch"


def by_hand(path):
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def test_two_files_round_trip(epoch):
    files = [epoch / "gpqa_diamond.csv", epoch / "swe_bench_verified.csv"]
    res = read_results(files)
    assert set(res.formats.values()) == {"epoch"}
    scores = res.dataset.scores.set_index(["model", "benchmark"])
    models = res.dataset.models.set_index("model")
    for path, bench, variant in [(files[0], "gpqa_diamond", "acc"), (files[1], "swe_bench_verified", "resolved")]:
        rows = by_hand(path)
        scored = [r for r in rows if r["mean_score"]]
        assert (res.dataset.scores["benchmark"] == bench).sum() == len(scored)
        for r in scored:
            got = scores.loc[(r["Model version"], bench)]
            assert got["value"] == pytest.approx(100 * float(r["mean_score"]))
            assert got["stderr"] == pytest.approx(100 * float(r["stderr"]))
            assert got["variant"] == variant
            assert got["source"] == f"Epoch AI Benchmarking Hub: {path.name}"
            m = models.loc[r["Model version"]]
            assert m["family"] == m["organisation"] == r["Organization"]
            assert m["kind"] == "frontier"
            assert m["release_date"] == r["Release date"] and m["release_date_precision"] == "day"
            if r["Training compute (FLOP)"]:
                assert float(m["flops"]) == pytest.approx(float(r["Training compute (FLOP)"]))
            else:
                assert pd.isna(m["flops"])
    # one model row per model version, however many files name it
    assert models.index.is_unique
    assert any("mistral-large-2411" in line and "no mean_score" in line for line in res.skipped)


def test_frontier_fit_on_ingested_epoch_files(epoch):
    files = [epoch / "gpqa_diamond.csv", epoch / "swe_bench_verified.csv"]
    cape.api.ingest(files, "epoch-test")
    panel = cape.load_panel("epoch-test")
    fit = fr.population_fit(panel, n_bootstrap=200, n_permutations=99, seed=0)
    gpqa = {r["Model version"]: r["Organization"] for r in by_hand(files[0]) if r["mean_score"]}
    swe = {r["Model version"]: r["Organization"] for r in by_hand(files[1]) if r["mean_score"]}
    both = set(gpqa) & set(swe)
    assert fit.n == len(both)
    assert fit.n_labs == len({gpqa[m] for m in both})
    # the models in one file only (Meta's on GPQA, xAI's on SWE-bench) are not in the fit
    assert fit.n_labs < len(set(gpqa.values()) | set(swe.values()))


def test_unknown_benchmark_file_kept_flagged_refused_strict_or_skipped(epoch):
    path = epoch / "frontiermath_tier_4.csv"
    res = read_results(path)
    assert set(res.dataset.scores["benchmark"]) == {"frontiermath_tier_4"} and "frontiermath_tier_4" in res.unregistered
    with pytest.raises(InputError, match="unregistered"):
        read_results(path, strict=True)
    res = read_results([path, epoch / "gpqa_diamond.csv"], skip_unknown=True)
    assert "frontiermath" not in set(res.dataset.scores["benchmark"])
    assert any("frontiermath_tier_4.csv" in line for line in res.skipped)


def test_bad_epoch_rows(epoch, tmp_path):
    text = (epoch / "gpqa_diamond.csv").read_text()
    head, first, *rest = text.splitlines()
    bad = tmp_path / "gpqa_diamond.csv"
    bad.write_text("\n".join([head, first.replace(",0.77,", ",77,", 1), *rest]) + "\n")
    with pytest.raises(InputError, match=r"outside 0-1") as err:
        read_results(bad)
    assert "row 2" in str(err.value) and "mean_score" in str(err.value)
    bad.write_text("\n".join([head, first, first]) + "\n")
    with pytest.raises(InputError, match="appears twice"):
        read_results(bad)


def test_plain_csv_is_still_a_table(fixtures):
    res = read_results(fixtures / "wide.csv")
    assert set(res.formats.values()) == {"table"}
