"""Bad input through the real ``cape`` command: one clear line, exit code 2, nothing stored.

Every test runs ``python -m cape.cli`` in a subprocess against a store that already holds a
valid panel ("base", from ``tests/fixtures/long.csv``), feeds it one kind of bad input, and
checks that

* the exit code is 2;
* stderr is exactly one non-empty line starting with ``error: `` (no traceback, and not
  the catch-all "run with --debug" line that marks an unexpected exception);
* the message names the file and, where it applies, the row and the field, and says what
  is wrong in words specific to the problem;
* every row of every table in the store is exactly as it was before.

Row numbers in messages about tables are line numbers in the file (line 1 is the header),
so the second data row is "row 3".

The bad files are built in ``tmp_path``; the store is copied per test from one made once
per module by a real ``cape ingest`` (a subprocess start costs about a second).
"""

from __future__ import annotations

import json
import re
import os
import random
import shutil
import sqlite3
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import create_engine, select

# Test the source tree these tests sit in, whatever copy of cape is installed: the
# subprocesses get it through PYTHONPATH, this process through sys.path.
SRC = Path(__file__).resolve().parents[1] / "src"
if (SRC / "cape" / "__init__.py").is_file() and str(SRC) not in sys.path:
    sys.path.insert(0, str(SRC))

import cape  # noqa: E402
from cape.store import Store  # noqa: E402
from cape.store.schema import TABLES  # noqa: E402

pytestmark = pytest.mark.slow  # real subprocesses; CI runs them

FIXTURES = Path(__file__).resolve().parent / "fixtures"
LONG_CSV = FIXTURES / "long.csv"
LMEVAL_DIR = FIXTURES / "lmeval"
LMEVAL_70M = LMEVAL_DIR / "EleutherAI__pythia-70m" / "results_2024-05-01T10-00-00.123456.json"


# ----------------------------------------------------------------------------- helpers
def run_cape(home: Path, *args, cwd: Path | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "CAPE_HOME": str(home)}
    env.pop("CAPE_DB_URL", None)  # would take precedence over CAPE_HOME
    env.pop("CAPE_DEBUG", None)  # would turn errors into tracebacks
    if (SRC / "cape" / "__init__.py").is_file():
        env["PYTHONPATH"] = os.pathsep.join([str(SRC), *filter(None, [env.get("PYTHONPATH")])])
    return subprocess.run(
        [sys.executable, "-m", "cape.cli", *map(str, args)],
        env=env, capture_output=True, text=True, cwd=cwd, timeout=120,
    )


def error_line(proc: subprocess.CompletedProcess) -> str:
    """The one ``error:`` line of a failed command, after checking its shape."""
    detail = f"rc={proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    assert proc.returncode == 2, detail
    assert "Traceback" not in proc.stderr, detail
    lines = proc.stderr.splitlines()
    assert len(lines) == 1, detail
    line = lines[0]
    assert line.strip(), detail
    assert line.startswith("error: "), detail
    assert len(line) > len("error: ") + 5, detail
    # the catch-all for unexpected exceptions: bad input must get a designed message
    assert "run with --debug" not in line, detail
    return line


def db_url(home: Path) -> str:
    return f"sqlite:///{home}/cape.db"


def dump(home: Path) -> dict[str, list[tuple]]:
    """Every row of every CAPE table, ordered by primary key."""
    engine = create_engine(db_url(home), future=True)
    try:
        with engine.connect() as conn:
            return {t.name: [tuple(r) for r in
                             conn.execute(select(t).order_by(*t.primary_key.columns)).all()]
                    for t in TABLES}
    finally:
        engine.dispose()


def row_counts(home: Path) -> dict[str, int]:
    store = Store(db_url(home), create=False)
    try:
        return store.row_counts()
    finally:
        store.close()


def stored_scores(home: Path, panel: str):
    store = Store(db_url(home), create=False)
    try:
        return store.panel(panel).scores
    finally:
        store.close()


def score_of(scores, model: str, benchmark: str) -> float:
    sel = scores[(scores["model"] == model) & (scores["benchmark"] == benchmark)]
    assert len(sel) == 1, sel
    return float(sel["value"].iloc[0])


def write(path: Path, content: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8")
    return path


@dataclass
class StoreState:
    """A CAPE_HOME with panel "base" stored, and what it held before the test."""

    home: Path
    counts: dict[str, int]
    rows: dict[str, list[tuple]]

    def assert_unchanged(self) -> None:
        assert row_counts(self.home) == self.counts
        assert dump(self.home) == self.rows
        # nothing left behind next to the database (journals, write tests)
        assert sorted(p.name for p in self.home.iterdir()) == ["cape.db"]

    def ingest_error(self, *files, panel: str = "bad", extra: tuple = ()) -> str:
        """Ingest ``files``, expect a one-line error and an unchanged store; the line."""
        line = error_line(run_cape(self.home, "ingest", *files, "--panel", panel, *extra))
        self.assert_unchanged()
        return line


@pytest.fixture(scope="module")
def template_home(tmp_path_factory) -> Path:
    home = tmp_path_factory.mktemp("template") / "home"
    proc = run_cape(home, "ingest", LONG_CSV, "--panel", "base")
    assert proc.returncode == 0, proc.stderr
    return home


@pytest.fixture
def store(template_home: Path, tmp_path: Path) -> StoreState:
    home = tmp_path / "home"
    home.mkdir()
    shutil.copy2(template_home / "cape.db", home / "cape.db")
    counts = row_counts(home)
    # long.csv: 2 models, 4 scores, one panel -- the store is really non-empty
    assert counts["panels"] == 1 and counts["models"] == 2
    assert "panel_models" not in counts and counts["scores"] == 4   # models belong to their panel (schema 2)
    rows = dump(home)
    assert [r[0] for r in rows["panels"]] == ["base"]
    return StoreState(home, counts, rows)


@pytest.fixture
def bad(tmp_path: Path) -> Path:
    folder = tmp_path / "input"
    folder.mkdir()
    return folder


# ------------------------------------------------------------------ 1-3: unreadable files
@pytest.mark.parametrize("name, content", [
    ("empty.csv", b""),
    ("blank.csv", b"  \n\n"),
    ("empty.json", b""),
])
def test_empty_file(store, bad, name, content):
    path = write(bad / name, content)
    line = store.ingest_error(path)
    assert name in line
    assert "the file is empty" in line


def test_not_utf8(store, bad):
    path = write(bad / "latin.csv", b"model,hellaswag\nm1,\xff\xfe45\n")
    line = store.ingest_error(path)
    assert "latin.csv" in line
    assert "not UTF-8" in line
    assert "0xff" in line and "line 2" in line


def test_truncated_json(store, bad):
    text = LMEVAL_70M.read_text(encoding="utf-8")
    path = write(bad / "results_2024-05-01T10-00-00.json", text[: len(text) // 2])
    line = store.ingest_error(path)
    assert "results_2024-05-01T10-00-00.json" in line
    assert "truncated JSON" in line
    assert re.search(r"line \d+ column \d+", line) and "at at" not in line


def test_truncated_json_inside_folder(store, bad):
    folder = bad / "run"
    shutil.copytree(LMEVAL_DIR, folder)
    victim = folder / "EleutherAI__pythia-160m" / "results_2024-05-01T11-00-00.654321.json"
    text = victim.read_text(encoding="utf-8")
    victim.write_text(text[: len(text) // 2], encoding="utf-8")
    line = store.ingest_error(folder)
    # the good file in the folder is not stored either (all or nothing)
    assert "results_2024-05-01T11-00-00.654321.json" in line
    assert "truncated JSON" in line


# --------------------------------------------------------------------- 4-5: table layout
def test_no_model_column(store, bad):
    path = write(bad / "nomodel.csv", "checkpoint,hellaswag\nm1,45\nm2,50\n")
    line = store.ingest_error(path)
    assert "nomodel.csv" in line
    assert "no model column" in line
    assert "checkpoint" in line  # lists the columns it found


def test_wide_table_with_only_an_unknown_benchmark(store, bad):
    path = write(bad / "wide_unknown.csv", "model,winogrand\nm1,45\nm2,50\n")
    line = store.ingest_error(path)
    assert "wide_unknown.csv" in line
    assert "field 'winogrand'" in line
    assert "unknown benchmark 'winogrand'" in line
    assert "did you mean 'winogrande'" in line


def test_long_table_without_value_column(store, bad):
    path = write(bad / "novalue.csv", "model,benchmark,variant\nm1,hellaswag,acc\n")
    line = store.ingest_error(path)
    assert "novalue.csv" in line
    assert "field 'value'" in line
    assert "no value (or score) column" in line


# ------------------------------------------------------------------ 6-8: bad score cells
def test_score_above_100(store, bad):
    path = write(bad / "above.csv", "model,hellaswag\nm1,45\nm2,120\nm3,50\n")
    line = store.ingest_error(path)
    assert "above.csv" in line
    assert "row 3" in line
    assert "field 'hellaswag'" in line
    assert "120" in line and "above 100" in line


def test_score_below_0(store, bad):
    path = write(bad / "below.csv", "model,hellaswag\nm1,45\nm2,-5\nm3,50\n")
    line = store.ingest_error(path)
    assert "below.csv" in line
    assert "row 3" in line
    assert "field 'hellaswag'" in line
    assert "-5" in line and "below 0" in line


@pytest.mark.parametrize("cell, expected", [
    ("NaN", "NaN is not a score"),
    ("nan", "NaN is not a score"),
    ("abc", "'abc' is not a number"),
    ("inf", "not a finite number"),
])
def test_score_cell_that_is_not_a_number_wide(store, bad, cell, expected):
    path = write(bad / "cells.csv", f"model,hellaswag\nm1,45\nm2,{cell}\nm3,50\n")
    line = store.ingest_error(path)
    assert "cells.csv" in line
    assert "row 3" in line
    assert "field 'hellaswag'" in line
    assert expected in line


@pytest.mark.parametrize("cell, expected", [
    ("NaN", "NaN is not a score"),
    ("abc", "'abc' is not a number"),
])
def test_score_cell_that_is_not_a_number_long(store, bad, cell, expected):
    path = write(bad / "cells_long.csv",
                 f"model,benchmark,value\nm1,hellaswag,45\nm2,hellaswag,{cell}\n")
    line = store.ingest_error(path)
    assert "cells_long.csv" in line
    assert "row 3" in line
    assert "field 'value'" in line
    assert expected in line


def test_nan_in_json_records(store, bad):
    path = write(bad / "records.json", '[{"model": "m1", "hellaswag": 45}, '
                                       '{"model": "m2", "hellaswag": NaN}]')
    line = store.ingest_error(path)
    assert "records.json" in line
    assert "row 2" in line  # JSON records count from 1
    assert "field 'hellaswag'" in line
    assert "NaN is not a score" in line


# ------------------------------------------------------------------ 9: parameter counts
@pytest.mark.parametrize("cell", ["-7B", "0", "-7e9"])
def test_parameter_count_not_positive(store, bad, cell):
    path = write(bad / "params.csv", f"model,params,hellaswag\nm1,7B,45\nm2,{cell},50\n")
    line = store.ingest_error(path)
    assert "params.csv" in line
    assert "row 3" in line
    assert "field 'params'" in line
    assert "positive" in line
    assert cell in line


def test_zero_parameter_count_in_json_records(store, bad):
    path = write(bad / "params.json", '[{"model": "m1", "params": 0, "hellaswag": 45}]')
    line = store.ingest_error(path)
    assert "params.json" in line
    assert "field 'params'" in line
    assert "must be positive" in line


# ----------------------------------------------------------------------- 10: duplicates
def test_duplicate_rows_long(store, bad):
    path = write(bad / "dup.csv", "model,benchmark,variant,value\n"
                                  "m1,hellaswag,acc,45\n"
                                  "m2,hellaswag,acc,46\n"
                                  "m1,hellaswag,acc,47\n")
    line = store.ingest_error(path)
    assert "duplicate rows give different values" in line
    assert "'m1'" in line
    assert "dup.csv row 2 = 45" in line
    assert "dup.csv row 4 = 47" in line


def test_duplicate_rows_wide(store, bad):
    path = write(bad / "dupwide.csv", "model,hellaswag\nm1,45\nm2,50\nm1,47\n")
    line = store.ingest_error(path)
    assert "duplicate rows give different values" in line
    assert "dupwide.csv row 2" in line and "dupwide.csv row 4" in line


# ------------------------------------------------------------------ 11: unknown benchmark
def test_unknown_benchmark_wide(store, bad):
    path = write(bad / "typo.csv", "model,hellaswagg\nm1,45\n")
    line = store.ingest_error(path)
    assert "typo.csv" in line
    assert "unknown benchmark 'hellaswagg'" in line
    assert "did you mean 'hellaswag'" in line


def test_unknown_benchmark_long(store, bad):
    path = write(bad / "typo_long.csv",
                 "model,benchmark,value\nm1,hellaswag,45\nm2,hellaswagg,46\n")
    line = store.ingest_error(path)
    assert "typo_long.csv" in line
    assert "row 3" in line
    assert "field 'benchmark'" in line
    assert "unknown benchmark 'hellaswagg'" in line
    assert "did you mean 'hellaswag'" in line


# ------------------------------------------------------------------------- 12: units
def test_column_mixing_fractions_and_percentages(store, bad):
    path = write(bad / "mixed.csv", "model,hellaswag\nm1,0.45\nm2,45.2\nm3,50.1\n")
    line = store.ingest_error(path)
    assert "mixed.csv" in line
    assert "field 'hellaswag'" in line
    assert "mixes fractions and percentages" in line
    assert "0.45 at row 2" in line and "45.2 at row 3" in line
    assert "--units" in line


def test_columns_disagreeing_on_units(store, bad):
    path = write(bad / "ambiguous.csv", "model,hellaswag,winogrande\nm1,0.45,55\nm2,0.5,60\n")
    line = store.ingest_error(path)
    assert "ambiguous.csv" in line
    assert "ambiguous" in line.replace("ambiguous.csv", "")
    assert "hellaswag" in line and "winogrande" in line
    assert "--units" in line


def test_unknown_units_option(store, bad):
    path = write(bad / "ok.csv", "model,hellaswag\nm1,45\n")
    line = store.ingest_error(path, extra=("--units", "kelvin"))
    assert "--units" in line
    assert "'kelvin'" in line
    assert "percent" in line and "fraction" in line


def test_units_fraction_is_accepted_and_scales(store, bad):
    path = write(bad / "fractions.csv", "model,hellaswag\nfrac/m1,0.4512\nfrac/m2,0.5\n")
    proc = run_cape(store.home, "ingest", path, "--panel", "fracs", "--units", "fraction")
    assert proc.returncode == 0, proc.stderr
    scores = stored_scores(store.home, "fracs")
    assert score_of(scores, "frac/m1", "hellaswag") == pytest.approx(45.12)
    assert score_of(scores, "frac/m2", "hellaswag") == pytest.approx(50.0)
    # panel "base" untouched
    assert dump(store.home)["scores"][: store.counts["scores"]] == store.rows["scores"]


# --------------------------------------------------------------- 13, 20: lm-eval files
def test_lmeval_without_results(store, bad):
    doc = json.loads(LMEVAL_70M.read_text(encoding="utf-8"))
    del doc["results"]
    path = write(bad / "results_no_section.json", json.dumps(doc, indent=2))
    line = store.ingest_error(path)
    assert "results_no_section.json" in line
    assert "without a 'results' section" in line


@pytest.mark.parametrize("task, key, value", [
    ("hellaswag", "acc,none", 1.7),
    ("winogrande", "acc,none", -0.2),
])
def test_lmeval_value_outside_0_1(store, bad, task, key, value):
    doc = json.loads(LMEVAL_70M.read_text(encoding="utf-8"))
    doc["results"][task][key] = value
    path = write(bad / "results_out_of_range.json", json.dumps(doc, indent=2))
    line = store.ingest_error(path)
    assert "results_out_of_range.json" in line
    assert f"results.{task}" in line
    assert f"field '{key}'" in line
    assert f"{value} is outside 0-1" in line


def test_lmeval_folder_with_one_bad_file_stores_nothing(store, bad):
    folder = bad / "run"
    shutil.copytree(LMEVAL_DIR, folder)
    victim = folder / "EleutherAI__pythia-160m" / "results_2024-05-01T11-00-00.654321.json"
    doc = json.loads(victim.read_text(encoding="utf-8"))
    task = next(iter(doc["results"]))
    metric = next(k for k in doc["results"][task] if k.startswith("acc,"))
    doc["results"][task][metric] = 1.7
    victim.write_text(json.dumps(doc), encoding="utf-8")
    line = store.ingest_error(folder)
    assert victim.name in line
    assert f"results.{task}" in line and "1.7 is outside 0-1" in line


# ------------------------------------------------------------------- 14: empty folders
@pytest.mark.parametrize("contents", [{}, {"notes.txt": "not results\n"}])
def test_folder_without_result_files(store, bad, contents):
    folder = bad / "nothing_here"
    folder.mkdir()
    for name, text in contents.items():
        write(folder / name, text)
    line = store.ingest_error(folder)
    assert "nothing_here" in line
    assert "no result files" in line


# ------------------------------------------------------------ 15-16: the store itself
def _foreign_sqlite(path: Path) -> None:
    con = sqlite3.connect(path)
    con.execute("CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT)")
    con.execute("INSERT INTO users (name) VALUES ('alice'), ('bob')")
    con.commit()
    con.close()


def _random_bytes(path: Path) -> None:
    data = random.Random(20240501).randbytes(4096)
    assert not data.startswith(b"SQLite format 3")
    path.write_bytes(data)


@pytest.mark.parametrize("make, what", [
    (_foreign_sqlite, "it has tables users"),
    (_random_bytes, "not an SQLite file"),
])
def test_database_that_is_not_cape(tmp_path, make, what):
    home = tmp_path / "foreign"
    home.mkdir()
    db = home / "cape.db"
    make(db)
    before = db.read_bytes()
    line = error_line(run_cape(home, "ingest", LONG_CSV, "--panel", "base"))
    assert str(db) in line
    assert "not a CAPE database" in line
    assert what in line
    assert db.read_bytes() == before
    assert sorted(p.name for p in home.iterdir()) == ["cape.db"]


def test_cape_home_that_cannot_be_written(tmp_path):
    blocker = tmp_path / "file.txt"
    blocker.write_text("a regular file\n", encoding="utf-8")
    home = blocker / "home"
    line = error_line(run_cape(home, "ingest", LONG_CSV, "--panel", "base"))
    assert "cannot write to the CAPE data folder" in line
    assert str(home) in line
    assert blocker.read_text(encoding="utf-8") == "a regular file\n"
    assert blocker.is_file()
    assert list(tmp_path.rglob("cape.db")) == []


# --------------------------------------------------------------------- 17: panel names
@pytest.mark.parametrize("panel", ["paper-base", "paper-pythia"])
def test_ingest_into_builtin_panel(store, panel):
    line = store.ingest_error(LONG_CSV, panel=panel)
    assert f"'{panel}'" in line
    assert "built-in panel and read-only" in line


def test_ingest_into_invalid_panel_name(store, bad):
    path = write(bad / "ok.csv", "model,hellaswag\nm1,45\n")
    line = store.ingest_error(path, panel="bad name!")
    assert "panel name 'bad name!' is not allowed" in line


# ------------------------------------------------------------- 18: conflicts and --replace
def _conflicting_copy(folder: Path) -> Path:
    text = LONG_CSV.read_text(encoding="utf-8")
    assert text.count(",30.1,") == 1
    return write(folder / "long_changed.csv", text.replace(",30.1,", ",31.1,"))


@pytest.mark.parametrize("panel", ["base"])     # in another panel it is no conflict: panels are isolated
def test_conflicting_value_refused(store, bad, panel):
    path = _conflicting_copy(bad)
    line = store.ingest_error(path, panel=panel)
    assert "1 value(s) differ" in line
    assert "org/tiny-100m hellaswag/acc_norm" in line
    assert "stored 30.1, file 31.1" in line
    assert "nothing was written" in line
    assert "--replace" in line


def test_conflicting_value_replaced_with_flag(store, bad):
    path = _conflicting_copy(bad)
    error_line(run_cape(store.home, "ingest", path, "--panel", "base"))
    store.assert_unchanged()
    proc = run_cape(store.home, "ingest", path, "--panel", "base", "--replace")
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    assert row_counts(store.home) == store.counts  # replaced in place, nothing added
    scores = stored_scores(store.home, "base")
    assert score_of(scores, "org/tiny-100m", "hellaswag") == pytest.approx(31.1)
    assert score_of(scores, "org/tiny-400m", "hellaswag") == pytest.approx(40.5)
    assert score_of(scores, "org/tiny-100m", "truthfulqa") == pytest.approx(45.5)


# ---------------------------------------------------------------- 19: unsupported files
@pytest.mark.parametrize("name", ["results.xlsx", "results.xml"])
def test_unsupported_file_type(store, bad, name):
    path = write(bad / name, b"PK\x03\x04 not really a workbook")
    line = store.ingest_error(path)
    assert name in line
    assert "unsupported file type" in line
    assert Path(name).suffix in line


def test_missing_input_file(store, bad):
    line = store.ingest_error(bad / "nowhere.csv")
    assert "nowhere.csv" in line
    assert "no such file or folder" in line


def test_good_file_next_to_bad_file_stores_nothing(store, bad):
    good = write(bad / "good.csv", "model,hellaswag\nnew/model,55\n")
    broken = write(bad / "broken.csv", "model,hellaswag\nnew/other,155\n")
    line = store.ingest_error(good, broken)
    assert "broken.csv" in line and "row 2" in line and "above 100" in line


# ------------------------------------------------------------------ 21: show and export
def test_show_unknown_panel(store):
    line = error_line(run_cape(store.home, "show", "bsae"))
    assert "no panel named 'bsae'" in line
    assert "did you mean 'base'" in line
    store.assert_unchanged()


def test_show_without_a_database_creates_none(tmp_path):
    home = tmp_path / "fresh"
    line = error_line(run_cape(home, "show", "base"))
    assert "no panel named 'base'" in line
    assert not home.exists()


def test_export_unknown_format_writes_nothing(store, tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    target = work / "base.xml"
    line = error_line(run_cape(store.home, "export", "base", "--format", "xml", "-o", target,
                               cwd=work))
    assert "--format" in line and "'xml'" in line
    assert list(work.iterdir()) == []
    # without -o the default name would be base.xml in the current folder
    line = error_line(run_cape(store.home, "export", "base", "--format", "xml", cwd=work))
    assert "'xml'" in line
    assert list(work.iterdir()) == []
    store.assert_unchanged()


def test_export_into_missing_folder_writes_nothing(store, tmp_path):
    target = tmp_path / "nodir" / "base.csv"
    line = error_line(run_cape(store.home, "export", "base", "-o", target))
    assert str(target.parent) in line
    assert "folder does not exist" in line
    assert not target.parent.exists()
    store.assert_unchanged()


def test_export_unknown_panel_writes_nothing(store, tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    line = error_line(run_cape(store.home, "export", "nosuch", "-o", work / "nosuch.csv"))
    assert "no panel named 'nosuch'" in line
    assert list(work.iterdir()) == []
    store.assert_unchanged()


# --------------------------------------------------------------------- the library API
def _lib_cases(folder: Path) -> dict[str, tuple[Path, str, int | None, str | None]]:
    """name -> (path, words in the message, row, field)."""
    text = LMEVAL_70M.read_text(encoding="utf-8")
    (folder / "empty_dir").mkdir()
    return {
        "empty": (write(folder / "empty.csv", b""), "the file is empty", None, None),
        "not_utf8": (write(folder / "latin.csv", b"model,hellaswag\nm1,\xff\xfe45\n"),
                     "not UTF-8", None, None),
        "truncated": (write(folder / "half.json", text[: len(text) // 2]), "JSON", None, None),
        "above_100": (write(folder / "above.csv", "model,hellaswag\nm1,45\nm2,120\n"),
                      "above 100", 3, "hellaswag"),
        "unknown": (write(folder / "typo.csv", "model,hellaswagg\nm1,45\n"),
                    "did you mean 'hellaswag'", None, "hellaswagg"),
        "xlsx": (write(folder / "book.xlsx", b"PK\x03\x04"), "unsupported file type", None, None),
        "no_results": (folder / "empty_dir", "no result files", None, None),
    }


@pytest.mark.parametrize("case", ["empty", "not_utf8", "truncated", "above_100", "unknown",
                                  "xlsx", "no_results"])
def test_library_raises_input_error(bad, case):
    path, words, row, field = _lib_cases(bad)[case]
    with pytest.raises(cape.InputError) as info:
        cape.read_results(path)
    err = info.value
    assert isinstance(err, cape.CapeError)
    message = str(err)
    assert message and "\n" not in message
    assert words in message
    assert err.location.file is not None and Path(err.location.file).name == path.name
    assert message.startswith(str(path))
    if row is not None:
        assert err.location.row == row
    if field is not None:
        assert err.location.field == field


def test_library_error_classes():
    assert issubclass(cape.InputError, cape.CapeError)
    assert issubclass(cape.StoreError, cape.CapeError)
    assert issubclass(cape.CapeError, Exception)


def test_subprocess_runs_this_source_tree(tmp_path):
    env = {**os.environ}
    if (SRC / "cape" / "__init__.py").is_file():
        env["PYTHONPATH"] = os.pathsep.join([str(SRC), *filter(None, [env.get("PYTHONPATH")])])
    proc = subprocess.run([sys.executable, "-c", "import cape.cli; print(cape.cli.__file__)"],
                          env=env, capture_output=True, text=True, cwd=tmp_path, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert Path(proc.stdout.strip()).resolve() == (SRC / "cape" / "cli" / "__init__.py").resolve()
    assert Path(cape.__file__).resolve() == (SRC / "cape" / "__init__.py").resolve()
