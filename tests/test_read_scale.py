"""Reading a stored panel back (issue 18): ``Store.panel`` reads each table in one query and
builds typed columns in bulk, and ``cape.panels.wide``/``runs``/``clean`` work on integer
codes. These tests hold the fast paths to what went in and to the straightforward pandas
formulation they replace: same frames, same dtypes, same order, same resolved runs.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import cape.store as store_module
from cape import api
from cape.panels import Panel, clean, runs, wide
from cape.schema import MODEL_COLUMNS, SCORE_COLUMNS, Dataset
from cape.store import Store

#: Model ids in an order that no sort would give back (insertion order is the panel's order).
MODELS = ["org/zeta-7b", "org/alpha-1b", "org/mid-3b", "org/beta-0.5b", "org/omega-70b"]


def _dataset() -> Dataset:
    """Every column of both tables filled, with missing values where a wrong dtype would
    show (an Int64 column with NA reads back as float64 if typed by inference; a text
    column of digits reads back as numbers), scores interleaved across models, and several
    runs of one score."""
    models = pd.DataFrame({
        "model": MODELS,
        "display_name": ["Zeta 7B", "123", None, "Beta", "Omega"],          # "123" stays text
        "family": ["zeta", "alpha", None, "alpha", "omega"],
        "organisation": ["org", None, "org", "org", None],
        "kind": ["base", "base", None, "instruct", "base"],
        "params": [7_000_000_000, 1_000_000_000, None, 500_000_000, 70_000_000_000],
        "active_params": [None, None, None, 400_000_000, None],
        "d_model": [4096, None, 2560, 1024, 8192],
        "n_layers": [32, 24, None, 16, 80],
        "n_heads": [32, 16, 20, None, 64],
        "tokens": [2_000_000_000_000, None, None, 1_000_000_000_000, 15_000_000_000_000],
        "flops": [8.4e22, None, 1.5e21, None, 6.3e24],
        "release_date": ["2024-05", None, "2023", "2024-01-15", None],
        "release_date_precision": ["month", None, "year", "day", None],
        "flags": ["instruct_model;untraceable", "", None, "moe", ""],
        "source": ["paper", None, "hub", "hub", "paper"],
        "subset": ["core", None, "core", "extra", None],
    })
    rows = []
    # interleaved: one benchmark for every model, then the next (not grouped by model)
    for bench, variant in (("hellaswag", "acc_norm"), ("truthfulqa", "mc2"), ("gsm8k", "exact_match")):
        for i, m in enumerate(MODELS):
            if (i, bench) == (0, "hellaswag"):
                continue                                             # zeta's comes from two runs
            rows.append({"model": m, "benchmark": bench, "variant": variant,
                         "value": 30.0 + 7.25 * i + len(bench) / 3, "stderr": None if i % 2 else 0.5 + i / 7,
                         "n_shot": None if bench == "truthfulqa" else (5 if bench == "gsm8k" else 10),
                         "harness": None if i == 2 else "lm-eval 0.4.2", "source": f"file:{bench}.json",
                         "run_date": None, "flags": "estimated" if i == 3 else ""})
    # several runs of zeta's hellaswag: dated, newest wins; alpha's truthfulqa twice, undated, same
    # value (both current); mid's gsm8k twice, undated, different values (a conflict)
    rows += [
        {"model": MODELS[0], "benchmark": "hellaswag", "variant": "acc_norm", "value": 61.5, "stderr": None,
         "n_shot": 10, "harness": "lm-eval 0.4.5", "source": "lm-eval:zeta/results_2024-06-01T10-00-00.json",
         "run_date": "2024-06-01T10:00:00", "flags": ""},
        {"model": MODELS[0], "benchmark": "hellaswag", "variant": "acc_norm", "value": 59.0, "stderr": None,
         "n_shot": 10, "harness": "lm-eval 0.4.5", "source": "lm-eval:zeta/results_2024-05-01T10-00-00.json",
         "run_date": "2024-05-01T10:00:00+02:00", "flags": ""},
        {"model": MODELS[1], "benchmark": "truthfulqa", "variant": "mc2",
         "value": [r for r in rows if r["model"] == MODELS[1] and r["benchmark"] == "truthfulqa"][0]["value"],
         "stderr": None, "n_shot": None, "harness": None, "source": "paper", "run_date": None, "flags": ""},
        {"model": MODELS[2], "benchmark": "gsm8k", "variant": "exact_match", "value": 12.5, "stderr": None,
         "n_shot": 5, "harness": None, "source": "paper", "run_date": None, "flags": ""},
        {"model": MODELS[4], "benchmark": "arc_challenge", "variant": "acc", "value": 44.0, "stderr": 1.25,
         "n_shot": 25, "harness": None, "source": "paper", "run_date": None, "flags": "mc2_labelled_mc1"},
    ]
    return Dataset.from_frames(models, pd.DataFrame(rows)).validate().public()


@pytest.fixture
def ingested(tmp_path):
    ds = _dataset()
    store = Store(f"sqlite:///{tmp_path / 'read.db'}")
    store.ingest(ds, panel="mine")
    return store, ds


def _same(read: Panel, ds: Dataset) -> None:
    pd.testing.assert_frame_equal(read.models, ds.models, check_exact=True)
    pd.testing.assert_frame_equal(read.scores, ds.scores, check_exact=True)
    assert {c: str(t) for c, t in read.models.dtypes.items() if c in MODEL_COLUMNS} == MODEL_COLUMNS
    assert {c: str(t) for c, t in read.scores.dtypes.items()} == SCORE_COLUMNS


def test_a_stored_panel_reads_back_as_it_went_in(ingested):
    store, ds = ingested
    read = store.panel("mine")
    _same(read, ds)
    assert list(read.models["model"]) == MODELS                       # insertion order, not sorted
    assert [None if pd.isna(v) else v for v in read.models["subset"]] == ["core", None, "core", "extra", None]
    assert read.models.loc[0, "flags"] == "instruct_model;untraceable" and read.models.loc[2, "flags"] == ""
    assert read.models["display_name"].iloc[1] == "123"
    zeta = read.scores[(read.scores["model"] == MODELS[0]) & (read.scores["benchmark"] == "hellaswag")]
    assert zeta["run_date"].dropna().tolist() == ["2024-06-01T10:00:00", "2024-05-01T08:00:00"]


def test_the_comparison_fails_on_a_wrong_order_or_dtype(ingested):
    """The check above can fail: the same data sorted, or typed by inference, is caught."""
    store, ds = ingested
    read = store.panel("mine")
    resorted = Panel("mine", read.models.sort_values("model").reset_index(drop=True), read.scores)
    with pytest.raises(AssertionError):
        _same(resorted, ds)
    shuffled = Panel("mine", read.models, read.scores.sort_values(["model", "benchmark"]).reset_index(drop=True))
    with pytest.raises(AssertionError):
        _same(shuffled, ds)
    inferred = Panel("mine", read.models.astype({"params": "float64"}), read.scores)
    with pytest.raises(AssertionError):
        _same(inferred, ds)
    inferred = Panel("mine", read.models, read.scores.astype({"n_shot": "float64"}))
    with pytest.raises(AssertionError):
        _same(inferred, ds)


def test_the_cell_by_cell_fallback_reads_the_same(ingested, monkeypatch):
    """Values Arrow will not convert send the read through the old cell-by-cell typing."""
    store, ds = ingested

    def refuse(*args, **kwargs):
        raise TypeError("not for Arrow")

    monkeypatch.setattr(store_module, "_arrow_columns", refuse)
    _same(store.panel("mine"), ds)


def test_batches_other_panels_and_an_empty_panel(tmp_path, monkeypatch):
    """Small batches, a panel beside a larger one (read through the model_id index), the
    larger one (a table scan), the whole store, and a panel whose models were all removed."""
    monkeypatch.setattr(store_module, "_BATCH", 7)
    ds = _dataset()
    rng = np.random.default_rng(0)
    n = 60
    big = Dataset.from_frames(
        pd.DataFrame({"model": [f"org/m{i:03d}" for i in rng.permutation(n)], "family": "f", "params": 10**9,
                      "subset": None}),
        pd.DataFrame({"model": [f"org/m{i:03d}" for i in range(n)] * 2,
                      "benchmark": ["hellaswag"] * n + ["truthfulqa"] * n, "variant": "unspecified",
                      "value": rng.uniform(0, 100, 2 * n).round(3), "source": "x"})).validate().public()
    only = Store(f"sqlite:///{tmp_path / 'only.db'}")
    only.ingest(big, panel="big")
    _same(only.panel("big"), big)                                     # the whole store
    two = Store(f"sqlite:///{tmp_path / 'two.db'}")
    two.ingest(ds, panel="small")
    two.ingest(big, panel="big")
    _same(two.panel("small"), ds)
    _same(two.panel("big"), big)
    two.delete_models("small", MODELS)
    empty = two.panel("small")
    assert empty.models.empty and empty.scores.empty
    assert {c: str(t) for c, t in empty.scores.dtypes.items()} == SCORE_COLUMNS
    assert list(empty.models.columns) == [*MODEL_COLUMNS, "subset"]


def test_several_runs_resolve_as_from_the_dataset(ingested):
    store, ds = ingested
    direct = Panel("mine", ds.models, ds.scores)
    frame = api.load_panel("mine", db=store)
    expected = wide(direct)
    pd.testing.assert_frame_equal(frame, expected, check_exact=True)
    assert frame.attrs == expected.attrs
    assert frame.loc[MODELS[0], "hellaswag"] == 61.5                  # the newest run
    assert "gsm8k" in frame.attrs["cape"]["left_out"]                 # mid's two undated values
    history = runs(store.panel("mine").scores)
    status = history.set_index(["model", "benchmark", "source"])["status"]
    assert status[(MODELS[0], "hellaswag", "lm-eval:zeta/results_2024-05-01T10-00-00.json")] == "older run"
    assert status[(MODELS[1], "truthfulqa", "paper")] == "current"
    assert status[(MODELS[2], "gsm8k", "paper")] == "conflict"
    assert history["run_date"].dtype == "string" and history["status"].dtype == object
    pd.testing.assert_frame_equal(history, runs(ds.scores), check_exact=True)
    picked = api.load_panel("mine", run="2024-05-01", db=store)
    assert picked.loc[MODELS[0], "hellaswag"] == 59.0


# ------------------------------------------------------- the straightforward formulation
def _wide_reference(panel: Panel, variant_columns: bool = False) -> pd.DataFrame:
    """The pivot as written before issue 18 (sort, drop duplicates, pivot, join), for the
    default shots: the vectorised ``wide`` must give exactly this table."""
    from cape.benchmarks import BENCHMARKS, OTHER_SCALE_VARIANTS, variant_rank

    resolved = runs(panel.scores)
    bad = set(resolved.loc[resolved["status"] == "conflict", "benchmark"])
    dedup = resolved[resolved["current"] & ~resolved["benchmark"].isin(list(bad))]
    target = {}
    for bench, rows in dedup.dropna(subset=["n_shot"]).groupby("benchmark"):
        counts = rows.drop_duplicates(["model", "n_shot"])["n_shot"].astype(int).value_counts()
        target[str(bench)] = int(min(counts[counts == counts.max()].index))
    hit = (dedup["n_shot"].astype("Float64") == dedup["benchmark"].map(target).astype("Float64")).fillna(False)
    dedup = dedup.assign(_rank=[variant_rank(b, v) for b, v in zip(dedup["benchmark"], dedup["variant"])],
                         _shot=(~hit.astype(bool)).astype(int),
                         _n=dedup["n_shot"].astype("Float64").fillna(10**6))
    if variant_columns:
        dedup = dedup.assign(column=dedup["benchmark"] + ":" + dedup["variant"])
        dedup = dedup.sort_values(["model", "column", "_shot", "_n"], kind="stable")
    else:
        dedup = dedup.sort_values(["model", "benchmark", "_rank", "_shot", "_n"], kind="stable")
        other = dedup["variant"].isin(OTHER_SCALE_VARIANTS)
        dedup = dedup.assign(column=dedup["benchmark"].where(~other, dedup["benchmark"] + ":" + dedup["variant"]))
    dedup = dedup.drop_duplicates(["model", "column"])
    order = {b: i for i, b in enumerate(BENCHMARKS)}
    cols = sorted(dedup["column"].unique(), key=lambda c: (order.get(c.split(":")[0], 999), c))
    table = dedup.pivot(index="model", columns="column", values="value")
    meta = [c for c in panel.models.columns if c != "model"]
    out = panel.models.set_index("model")[meta].join(table.reindex(columns=cols))
    out = out.reindex(panel.models["model"])
    out.columns.name = None
    return out


def _messy(seed: int) -> Panel:
    """Random readings: several runs per score, dated and not, equal and different values,
    shot counts, preferred and other variants, a normalised variant, flags clean acts on."""
    rng = np.random.default_rng(seed)
    variants = {"hellaswag": ["acc_norm", "acc", "normalised", "unspecified"], "truthfulqa": ["mc2", "mc1"],
                "gsm8k": ["exact_match", "unspecified"], "mmlu": ["acc"]}
    models = [f"org/m{i:02d}" for i in rng.permutation(30)]
    rows = []
    for m in models:
        for bench, vs in variants.items():
            for _ in range(rng.integers(0, 3)):
                kind = rng.integers(0, 3)
                rows.append({
                    "model": m, "benchmark": bench, "variant": str(rng.choice(vs)),
                    "value": float(rng.choice([40.0, 41.5])) if rng.random() < 0.6 else round(rng.uniform(0, 100), 3),
                    "n_shot": rng.choice([None, 0, 5]) if bench == "gsm8k" else None,
                    "source": (f"lm-eval:{m}/results_2024-05-0{rng.integers(1, 4)}T10-00-00.json" if kind == 0
                               else f"paper{rng.integers(0, 3)}"),
                    "run_date": f"2024-06-0{rng.integers(1, 4)}" if kind == 1 else None,
                    "flags": str(rng.choice(["", "", "", "limited", "mc2_labelled_mc1", "estimated"]))})
    scores = pd.DataFrame(rows).drop_duplicates(["model", "benchmark", "variant", "source"])
    meta = pd.DataFrame({"model": models, "family": [f"fam{i % 4}" for i in range(30)],
                         "params": [10**9 + i for i in range(30)],
                         "flags": rng.choice(["", "", "", "instruct_model", "family_mislabelled:famX",
                                              "b_flag;a_flag"], size=30)})
    ds = Dataset.from_frames(meta, scores).validate().public()
    return Panel("messy", ds.models, ds.scores)


@pytest.mark.parametrize("seed", range(6))
def test_wide_equals_the_straightforward_pivot(seed):
    panel = _messy(seed)
    for p in (panel, clean(panel)):
        for variant_columns in (False, True):
            got = wide(p, variant_columns=variant_columns)
            pd.testing.assert_frame_equal(got, _wide_reference(p, variant_columns), check_exact=True)


def test_clean_acts_per_row_as_its_flags_say():
    panel = _messy(3)
    cleaned = clean(panel)
    flagged = panel.models.set_index("model")["flags"]
    dropped = set(flagged[flagged == "instruct_model"].index)
    assert set(cleaned.models["model"]).isdisjoint(dropped)
    assert not cleaned.scores["model"].isin(dropped).any()
    assert (cleaned.models.loc[cleaned.models["model"].isin(flagged[flagged.str.startswith("family_")].index),
                               "family"] == "famX").all()
    assert "a_flag;b_flag" in set(cleaned.models["flags"])           # joined sorted, as join_flags
    assert not cleaned.scores["flags"].str.contains("limited|mc2_labelled_mc1").any()
    limited = panel.scores[panel.scores["flags"] == "limited"]
    kept = limited[~limited["model"].isin(dropped)]
    assert sum(line.startswith("dropped the ") for line in cleaned.log) == len(kept)
    assert [line for line in cleaned.log if line.startswith("dropped org/")] == [
        f"dropped {m} (instruct_model)" for m in panel.models["model"] if m in dropped]
