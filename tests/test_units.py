"""Parsing: parameter counts, dates, score units and the benchmark alias table."""

import pytest

from cape.benchmarks import resolve, suggest, try_resolve
from cape.errors import InputError
from cape.units import detect_units, parse_param_count, parse_release_date


@pytest.mark.parametrize("raw, mult, total, active", [
    (7e7, None, 70_000_000, None),
    ("1.3B", None, 1_300_000_000, None),
    ("125M", None, 125_000_000, None),
    ("0.494", 10**9, 494_000_000, None),
    (6.9, 10**9, 6_900_000_000, None),
    ("15.7B(2.4B-active)", None, 15_700_000_000, 2_400_000_000),
    ("314B-MoE", None, 314_000_000_000, None),
    ("12b", None, 12_000_000_000, None),
])
def test_param_counts_in_every_spelling(raw, mult, total, active):
    pc = parse_param_count(raw, multiplier=mult)
    assert (pc.total, pc.active) == (total, active)


@pytest.mark.parametrize("raw", ["-7B", "0", 0, -5e9, "0B"])
def test_zero_or_negative_param_counts_are_errors(raw):
    with pytest.raises(InputError, match="positive"):
        parse_param_count(raw, file="f.csv", row=3, field="params")


def test_bare_small_param_count_is_ambiguous():
    with pytest.raises(InputError, match="ambiguous"):
        parse_param_count("7", file="f.csv", row=2, field="params")


def test_param_error_names_file_row_field():
    with pytest.raises(InputError) as info:
        parse_param_count("seven", file="f.csv", row=4, field="params")
    assert str(info.value).startswith("f.csv, row 4, field 'params':")


@pytest.mark.parametrize("raw, iso, precision", [
    ("2025", "2025", "year"), ("2024-6", "2024-06", "month"), ("2026-04-16", "2026-04-16", "day"),
    ("2026-04-16T10:00:00", "2026-04-16", "day"), (2024, "2024", "year"),
])
def test_release_dates_keep_precision(raw, iso, precision):
    rd = parse_release_date(raw)
    assert (rd.iso, rd.precision) == (iso, precision)


@pytest.mark.parametrize("raw", ["2024-13", "June 2024", "2024-02-30"])
def test_bad_dates(raw):
    with pytest.raises(InputError):
        parse_release_date(raw)


def test_detect_units():
    assert detect_units({"hs": [(0.3, 2), (0.5, 3)]}) == "fraction"
    assert detect_units({"hs": [(30.0, 2), (50.0, 3)], "gsm": [(0.0, 2), (2.5, 3)]}) == "percent"
    with pytest.raises(InputError, match="mixes fractions and percentages"):
        detect_units({"hs": [(0.45, 2), (45.2, 3)]}, file="x.csv")
    with pytest.raises(InputError, match="ambiguous"):
        detect_units({"hs": [(0.45, 2)], "tqa": [(40.0, 2)]}, file="x.csv")


@pytest.mark.parametrize("name, bench, variant, shots", [
    ("hellaswag", "hellaswag", None, None),
    ("HellaSwag", "hellaswag", None, None),
    ("hellaswag_10shot", "hellaswag", None, 10),
    ("HellaSwag (10-shot)", "hellaswag", None, 10),
    ("hellaswag_acc_norm", "hellaswag", "acc_norm", None),
    ("truthfulqa_mc2", "truthfulqa", "mc2", None),
    ("TruthfulQA_MC1", "truthfulqa", "mc1", None),
    ("truthfulqa:mc", "truthfulqa", None, None),
    ("ARC-Challenge (25-shot)", "arc_challenge", None, 25),
    ("arc:challenge", "arc_challenge", None, None),
    ("GPQA Diamond", "gpqa_diamond", None, None),
    ("SWE-bench Verified", "swe_bench_verified", None, None),
    ("mmlu_5shot", "mmlu", None, 5),
    ("gsm8k", "gsm8k", None, None),
])
def test_alias_table(name, bench, variant, shots):
    found = resolve(name)
    assert (found.benchmark, found.variant, found.n_shot) == (bench, variant, shots)


def test_unknown_benchmark_suggests_closest():
    assert try_resolve("hellaswagg") is None
    assert suggest("hellaswagg") == "hellaswag"
    with pytest.raises(InputError, match="did you mean 'hellaswag'"):
        resolve("hellaswagg", file="f.csv", field_name="hellaswagg")
