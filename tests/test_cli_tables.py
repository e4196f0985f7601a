"""Long tables in the terminal (issue 18): a table longer than the screen (1,000 rows into a
pipe or file) shows its first rows and a note; --all prints every row; --csv gives the rows as
CSV (the columns of --json, no markup); --json stays the same text, written fast."""

from __future__ import annotations

import csv
import io
import json
import math

import numpy as np
import pandas as pd
import pytest

from cape.cli import main
from cape.cli import _app
from cape.analysis.results import jsonable
from cape.schema import to_python

NOTE = "showing the first"


def cli(capsys, *args: str) -> tuple[int, str, str]:
    """Run `cape ARGS` in this process (stdout is not a terminal: the pipe rules apply)."""
    capsys.readouterr()
    rc = main(list(args))
    got = capsys.readouterr()
    return rc, got.out, got.err


# ------------------------------------------------------------------ the JSON text, fast
def _old_text(payload) -> str:
    return json.dumps(payload, indent=2, default=to_python, ensure_ascii=False)


def _old_records(frame: pd.DataFrame) -> list[dict]:  # what _records did, cell by cell
    return [{k: to_python(v) for k, v in rec.items()} for rec in frame.to_dict("records")]


def _old_jsonable(frame: pd.DataFrame) -> list[dict]:  # what jsonable(DataFrame) did
    return [{str(k): jsonable(v) for k, v in rec.items()} for rec in frame.to_dict("records")]


def _mixed_frame(n: int = 120) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    f = rng.normal(size=n) * 1e3
    f[::7] = np.nan
    f[3], f[5] = np.inf, -np.inf
    return pd.DataFrame({
        "model": [f"org/m{i}" if i % 11 else f'[bold]x[/bold] <b> "q" \\ é %s }},\n      {{ {i}'
                  for i in range(n)],  # a record boundary inside a string is no boundary
        "family": pd.Series([None if i % 5 == 0 else f"fam{i % 3}" for i in range(n)], dtype=object),
        "family_str": pd.Series([None if i % 5 == 0 else "fam" for i in range(n)], dtype="str"),
        "family_na": pd.Series([None if i % 6 == 0 else "f\u00e9,\n" for i in range(n)], dtype="string"),
        "params": rng.integers(1, 10**12, n),
        "n_layers": pd.array([None if i % 3 == 0 else i for i in range(n)], dtype="Int64"),
        "share": pd.array([None if i % 4 == 0 else i / 3 for i in range(n)], dtype="Float64"),
        "value": f,
        "value32": f.astype(np.float32),
        "in_fit": rng.integers(0, 2, n).astype(bool),
        "maybe": pd.array([None if i % 4 == 0 else bool(i % 2) for i in range(n)], dtype="boolean"),
        "cell": pd.Series([[1, np.float64(2.5), None, {"k": np.int64(3)}] if i % 9 == 0 else
                           (np.int64(i) if i % 2 else np.nan) for i in range(n)], dtype=object),
        "kind": pd.Categorical(["base", "instruct"] * (n // 2)),
        "exact": [1.0e16, 1e-7, 0.1, 123456789.0] * (n // 4),
        "nothing": [None] * n,
    })


def test_records_are_the_same_values_as_cell_by_cell():
    frame = _mixed_frame()
    for part in (frame, frame.iloc[:0], frame.iloc[:, :0], frame.iloc[:7]):
        new, old = _app._records(part), _old_records(part)
        assert _old_text(new) == _old_text(old)
        assert _old_text(jsonable(part)) == _old_text(_old_jsonable(part))
    # the two rules differ where they should: --json of a panel keeps inf, jsonable does not
    row = _app._records(frame)[3]
    assert row["value"] == math.inf and jsonable(frame)[3]["value"] is None
    assert _app._records(frame)[0]["value"] is None and _app._records(frame)[0]["n_layers"] is None


@pytest.mark.parametrize("rows", [0, 5, 31, 32, 120])
def test_json_text_is_exactly_json_dumps(rows):
    frame = _mixed_frame().iloc[:rows]
    recs = _app._records(frame)  # a nested value in "cell": written a column at a time
    flat = _app._records(frame.drop(columns="cell"))  # plain values only: json's C encoder
    for payload in (recs, flat, {"panel": "p", "log": ["a"] * 40, "models": recs, "flat": flat},
                    {"outer": {"deep": [recs, {"t": jsonable(frame)}], "xs": [1.5, None, math.inf] * 20}},
                    [1, True, None, "s", 2.5, math.nan] * 10):
        assert _app._json_text(payload) == _old_text(payload)


def test_json_text_handles_rows_with_different_keys():
    rows = ([{"a": 1, "b": 2.0}] * 20 + [{"b": None, "a": "x%s"}] * 20 + [{}] * 5
            + [{"a": {"n": [1, 2]}, "c": []}] * 10)
    assert _app._json_text({"r": rows}) == _old_text({"r": rows})
    odd_keys = [{1: "x", "b": 2, None: 3}] * 40  # keys json converts
    assert _app._json_text(odd_keys) == _old_text(odd_keys)


def test_json_text_catches_a_difference():
    """The comparison above can fail: a float written by str() instead of repr() differs."""
    recs = [{"v": 0.1 + 0.2}] * 40
    assert _app._json_text(recs) == _old_text(recs)
    assert _app._json_text(recs) != _old_text(recs).replace(repr(0.1 + 0.2), "0.3")


# --------------------------------------------------------------------- the limit itself
def test_limit_pipe_terminal_and_environment(monkeypatch):
    monkeypatch.delenv("CAPE_TABLE_ROWS", raising=False)
    assert _app._table_limit() == _app.PIPE_TABLE_ROWS == 1000  # the test's stdout is no terminal
    monkeypatch.setattr(type(_app.out), "is_terminal", property(lambda self: True))
    monkeypatch.setattr(type(_app.out), "size", property(lambda self: type("S", (), {"height": 50})()))
    assert _app._table_limit() == 50 - _app.TERMINAL_MARGIN
    monkeypatch.setattr(type(_app.out), "size", property(lambda self: type("S", (), {"height": 8})()))
    assert _app._table_limit() == _app.MIN_TABLE_ROWS
    monkeypatch.setenv("CAPE_TABLE_ROWS", "7")
    assert _app._table_limit() == 7
    monkeypatch.setenv("CAPE_TABLE_ROWS", "seven")
    with pytest.raises(_app.CapeError, match="CAPE_TABLE_ROWS"):
        _app._table_limit()


def test_shown_slices_only_when_longer(monkeypatch):
    monkeypatch.setenv("CAPE_TABLE_ROWS", "10")
    frame = pd.DataFrame({"x": range(25)})
    rows, note = _app._shown(frame, False, "models")
    assert list(rows["x"]) == list(range(10))
    assert note == ("showing the first 10 of 25 models; --all prints every row, "
                    "--json or --csv gives them all as data")
    rows, note = _app._shown(frame, True, "models")
    assert len(rows) == 25 and note is None
    rows, note = _app._shown(list(range(10)), False)
    assert rows == list(range(10)) and note is None
    assert "--csv" not in _app._shown(list(range(11)), False, csv=False)[1]


# ------------------------------------------------------------------------ the commands
def test_long_table_into_a_pipe_is_cut_with_the_note(capsys, monkeypatch):
    """openllm-v1-base has 1,144 scores: more than the 1,000 a pipe gets."""
    monkeypatch.delenv("CAPE_TABLE_ROWS", raising=False)
    rc, data, _ = cli(capsys, "show", "openllm-v1-base", "--long", "--json")
    scores = json.loads(data)["scores"]
    assert rc == 0 and len(scores) == 1144
    rc, cut, _ = cli(capsys, "show", "openllm-v1-base", "--long")
    assert rc == 0
    assert "showing the first 1,000 of 1,144 scores; --all prints every row, --json or --csv" in cut
    rc, full, _ = cli(capsys, "show", "openllm-v1-base", "--long", "--all")
    assert rc == 0 and NOTE not in full
    assert full.count("\n") - cut.count("\n") >= 144 - 1  # the rows the cut table left out
    # the rows are those of --json, in its order: the last model is in the full table only
    last = scores[-1]["model"]
    assert last not in {s["model"] for s in scores[:1000]}
    assert last in full and last not in cut


def test_short_table_has_no_note(capsys, monkeypatch):
    monkeypatch.delenv("CAPE_TABLE_ROWS", raising=False)
    rc, text, _ = cli(capsys, "show", "paper-pythia")
    assert rc == 0 and "Pythia-" in text and NOTE not in text
    monkeypatch.setenv("CAPE_TABLE_ROWS", "8")  # exactly as many rows as the panel: still whole
    assert NOTE not in cli(capsys, "show", "paper-pythia")[1]
    monkeypatch.setenv("CAPE_TABLE_ROWS", "7")
    assert "showing the first 7 of 8 models" in cli(capsys, "show", "paper-pythia")[1]


@pytest.mark.parametrize("args, noun, n", [
    (("models", "list", "paper-base"), "models", 63),
    (("show", "paper-base"), "models", 63),
    (("gamma",), "intervals", None),
    (("frontier", "hfield"), "models", 39),
])
def test_each_long_table_is_cut_and_all_prints_it(capsys, monkeypatch, args, noun, n):
    monkeypatch.setenv("CAPE_TABLE_ROWS", "5")
    rc, cut, _ = cli(capsys, *args)
    assert rc == 0, cut
    total = n if n is not None else len(json.loads(cli(capsys, *args, "--json")[1])["local"]["intervals"])
    assert f"showing the first 5 of {total:,} {noun}" in cut
    rc, full, _ = cli(capsys, *args, "--all")
    assert rc == 0 and NOTE not in full
    assert full.count("\n") - cut.count("\n") >= total - 5 - 1  # the rows left out, less the note


def _ingest_odd_names(capsys, tmp_path) -> list[str]:
    """A panel whose ids look like markup: rich's [bold] in a model id, HTML's <b> in a family
    (ingest refuses an HTML model id: a leaderboard's link column)."""
    names = ["org/[bold]x[/bold]", "org/a<b", "org/plain,comma", 'org/"quoted"']
    csv_file = tmp_path / "odd.csv"
    pd.DataFrame({"model": names, "family": "<b>odd</b>", "params": ["1B", "2B", "3B", "4B"],
                  "hellaswag": [40.0, 45.5, 50.25, 55.0], "truthfulqa": [41.0, None, 39.0, 38.5]}
                 ).to_csv(csv_file, index=False)
    rc, text, err = cli(capsys, "ingest", str(csv_file), "--panel", "odd", "--units", "percent")
    assert rc == 0, err
    return names


def test_csv_is_parseable_with_the_json_columns_and_no_markup(capsys, tmp_path):
    names = _ingest_odd_names(capsys, tmp_path)
    for args, key in ((("show", "odd"), "models"), (("models", "list", "odd"), "models"),
                      (("show", "odd", "--long"), "scores")):
        rc, data, _ = cli(capsys, *args, "--json")
        records = json.loads(data)[key]
        rc, text, err = cli(capsys, *args, "--csv")
        assert rc == 0, err
        rows = list(csv.reader(io.StringIO(text)))
        assert rows[0] == list(records[0])  # the header: --json's keys, in its order
        assert len(rows) - 1 == len(records)
        assert "\x1b[" not in text and "━" not in text and "│" not in text
        assert set(names) <= {r[0] for r in rows[1:]}  # written literally: [bold] is text
        if "family" in rows[0]:
            assert {r[rows[0].index("family")] for r in rows[1:]} == {"<b>odd</b>"}
    rc, text, _ = cli(capsys, "show", "odd", "--csv")
    frame = pd.read_csv(io.StringIO(text))
    row = frame.set_index("model").loc["org/a<b"]
    assert row["hellaswag"] == 45.5 and pd.isna(row["truthfulqa"])
    # the terminal table writes them literally too
    rc, table, _ = cli(capsys, "show", "odd")
    assert "[bold]x[/bold]" in table and "<b>odd</b>" in table


def test_csv_of_an_analysis_is_its_json_table(capsys):
    rc, data, _ = cli(capsys, "gamma", "--json", "--seed", "0", "--resamples", "50")
    intervals = json.loads(data)["local"]["intervals"]
    rc, text, err = cli(capsys, "gamma", "--csv")
    assert rc == 0, err
    rows = list(csv.DictReader(io.StringIO(text)))
    assert len(rows) == len(intervals) and list(rows[0]) == list(intervals[0])
    assert [r["model_lo"] for r in rows] == [r["model_lo"] for r in intervals]
    assert float(rows[0]["gamma"]) == pytest.approx(intervals[0]["gamma"], rel=1e-12)


def test_json_and_csv_together_is_an_error(capsys):
    rc, _, err = cli(capsys, "show", "paper-pythia", "--json", "--csv")
    assert rc == 2 and "give --json or --csv, not both" in err
