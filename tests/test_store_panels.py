"""Panels are isolated (issue 13): a panel is what the user imported into it.

Every test uses real SQLite files under tmp_path. The reported scenarios: ingesting into
panel ``w`` added scores to panel ``base``; ``cape ingest ... --panel scratch --replace``
changed a score of ``base`` (30.1 -> 31.1). Both must now leave ``base`` byte-identical.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pandas as pd
import pytest
from sqlalchemy import inspect, select
from sqlalchemy.exc import IntegrityError

import cape
from cape.errors import StoreError
from cape.io import read_results
from cape.panels import Panel, wide
from cape.schema import MODEL_COLUMNS, SCORE_COLUMNS, Dataset
from cape.store import Store, migrations, schema

from conftest import run_cli


# ----------------------------------------------------------------------------- helpers
def _url(path: Path) -> str:
    return f"sqlite:///{path}"


def _changed_long(fixtures: Path, tmp_path: Path) -> Path:
    """long.csv with org/tiny-100m hellaswag 30.1 -> 31.1 (the reported --replace case)."""
    text = (fixtures / "long.csv").read_text()
    assert ",30.1," in text
    path = tmp_path / "long_changed.csv"
    path.write_text(text.replace(",30.1,", ",31.1,"))
    return path


def _view(store: Store, panel: str) -> dict:
    """What a user sees of a panel through the public API, as exact text."""
    wide_df = cape.load_panel(panel, db=store)
    long_df = cape.load_scores(panel, db=store)
    models = cape.load_models(panel, db=store)
    return {"wide": wide_df.to_csv(), "long": long_df.to_csv(), "models": models.to_csv(),
            "frames": (wide_df, long_df, models)}


def _assert_same_view(a: dict, b: dict) -> None:
    for key in ("wide", "long", "models"):
        assert a[key] == b[key], key
    for x, y in zip(a["frames"], b["frames"]):
        pd.testing.assert_frame_equal(x, y)


def _panel_rows(store: Store, panel: str) -> dict:
    """Every stored row that belongs to ``panel`` (panel, its models, their scores)."""
    m, s, p = schema.models, schema.scores, schema.panels
    with store.engine.connect() as conn:
        return {
            "panel": conn.execute(select(p).where(p.c.name == panel)).all(),
            "models": conn.execute(select(m).where(m.c.panel == panel).order_by(m.c.id)).all(),
            "scores": conn.execute(select(s).join(m, m.c.id == s.c.model_id)
                                   .where(m.c.panel == panel).order_by(s.c.id)).all(),
        }


def _value(store: Store, panel: str, model: str, benchmark: str, variant: str) -> float:
    s = cape.load_scores(panel, db=store)
    sel = s[(s["model"] == model) & (s["benchmark"] == benchmark) & (s["variant"] == variant)]
    assert len(sel) == 1, sel
    return float(sel["value"].iloc[0])


# ------------------------------------------------------------- the reported scenarios
def test_ingest_into_w_leaves_base_unchanged(fixtures, tmp_path):
    store = Store(_url(tmp_path / "cape.db"))
    store.ingest(read_results(fixtures / "long.csv").dataset, "base")
    before, rows = _view(store, "base"), _panel_rows(store, "base")
    assert len(before["frames"][1]) == 4

    report = store.ingest(read_results(fixtures / "wide.csv").dataset, "w")
    # w shares two model ids with base, yet they are new to w and nothing else is touched
    assert report.panel_created and report.models_added == 3 and report.scores_added == 9
    assert report.models_updated == 0 and report.scores_replaced == 0

    _assert_same_view(before, _view(store, "base"))
    assert _panel_rows(store, "base") == rows
    assert len(cape.load_scores("base", db=store)) == 4  # no arc_challenge from w
    assert "arc_challenge" not in cape.load_panel("base", db=store).columns
    assert len(cape.load_scores("w", db=store)) == 9  # and w has only its own scores
    assert set(cape.load_scores("w", db=store)["source"]) == {"file:wide.csv"}


def test_replace_in_scratch_leaves_base_at_30_1(fixtures, tmp_path):
    store = Store(_url(tmp_path / "cape.db"))
    store.ingest(read_results(fixtures / "long.csv").dataset, "base")
    before = _view(store, "base")
    changed = _changed_long(fixtures, tmp_path)

    report = store.ingest(read_results(changed).dataset, "scratch", replace=True)
    # a new panel: everything is added, nothing "replaced" (base's values are not its own)
    assert report.panel_created and report.scores_added == 4 and report.scores_replaced == 0
    assert report.replaced == []

    assert _value(store, "base", "org/tiny-100m", "hellaswag", "acc_norm") == 30.1
    assert _value(store, "scratch", "org/tiny-100m", "hellaswag", "acc_norm") == 31.1
    _assert_same_view(before, _view(store, "base"))

    # replacing again inside scratch still only touches scratch
    again = store.ingest(read_results(fixtures / "long.csv").dataset, "scratch", replace=True)
    assert again.scores_replaced == 1 and again.replaced == ["org/tiny-100m hellaswag/acc_norm: 31.1 -> 30.1"]
    _assert_same_view(before, _view(store, "base"))


def test_conflicting_file_into_a_new_panel_is_no_conflict(fixtures, tmp_path):
    """Without --replace: a value differing from another panel's is not a conflict."""
    store = Store(_url(tmp_path / "cape.db"))
    store.ingest(read_results(fixtures / "long.csv").dataset, "base")
    changed = _changed_long(fixtures, tmp_path)
    report = store.ingest(read_results(changed).dataset, "other")
    assert report.scores_added == 4
    assert _value(store, "other", "org/tiny-100m", "hellaswag", "acc_norm") == 31.1
    assert _value(store, "base", "org/tiny-100m", "hellaswag", "acc_norm") == 30.1
    # ...while inside base the same file still is a conflict, refused whole
    with pytest.raises(StoreError, match=r"1 value\(s\) differ from what panel 'base'"):
        store.ingest(read_results(changed).dataset, "base")


def test_same_model_in_two_panels_keeps_both_scores_and_metadata(tmp_path):
    store = Store(_url(tmp_path / "cape.db"))
    a = tmp_path / "a.csv"
    a.write_text("model,family,params_b,hellaswag,truthfulqa\nacme/m-1b,acme,1.0,50.0,40.0\n")
    b = tmp_path / "b.csv"
    b.write_text("model,family,params_b,hellaswag,truthfulqa\nacme/m-1b,acme-v2,1.2,55.0,42.0\n")
    store.ingest(read_results(a).dataset, "pa")
    store.ingest(read_results(b).dataset, "pb")  # different params: no conflict across panels
    wa = cape.load_panel("pa", db=store).loc["acme/m-1b"]
    wb = cape.load_panel("pb", db=store).loc["acme/m-1b"]
    assert (wa["hellaswag"], wa["truthfulqa"], wa["params"], wa["family"]) == (50.0, 40.0, 1_000_000_000, "acme")
    assert (wb["hellaswag"], wb["truthfulqa"], wb["params"], wb["family"]) == (55.0, 42.0, 1_200_000_000, "acme-v2")
    with store.engine.connect() as conn:
        n = conn.execute(select(schema.models.c.panel).where(schema.models.c.model == "acme/m-1b")).scalars().all()
    assert sorted(n) == ["pa", "pb"]


def test_isolation_is_enforced_by_keys(tmp_path):
    store = Store(_url(tmp_path / "cape.db"))
    m, p = schema.models, schema.panels
    with store.engine.begin() as conn:
        for name in ("pa", "pb"):
            conn.execute(p.insert().values(name=name, title=name, description="", created_at="2026-01-01"))
        conn.execute(m.insert().values(panel="pa", model="x", flags=""))
        conn.execute(m.insert().values(panel="pb", model="x", flags=""))  # same id, other panel: fine
    with pytest.raises(IntegrityError):
        with store.engine.begin() as conn:
            conn.execute(m.insert().values(panel="pa", model="x", flags=""))
    assert "panel_models" not in inspect(store.engine).get_table_names()


def test_replace_and_delete_leave_other_panels_byte_identical(fixtures, tmp_path):
    store = Store(_url(tmp_path / "cape.db"))
    for name in ("base", "scratch", "w"):
        store.ingest(read_results(fixtures / "long.csv").dataset, name)
    store.ingest(read_results(fixtures / "wide.csv").dataset, "w")
    views = {n: _view(store, n) for n in ("base", "w")}
    rows = {n: _panel_rows(store, n) for n in ("base", "w")}

    report = store.ingest(read_results(_changed_long(fixtures, tmp_path)).dataset, "scratch", replace=True)
    assert report.scores_replaced == 1
    removed = store.delete_panel("scratch")
    assert removed == 4 and "scratch" not in store.panel_names()
    for n in ("base", "w"):
        _assert_same_view(views[n], _view(store, n))
        assert _panel_rows(store, n) == rows[n]
    with pytest.raises(cape.CapeError, match="no panel 'scratch'"):
        store.delete_panel("scratch")
    with pytest.raises(cape.CapeError, match="read-only"):
        store.delete_panel("paper-base")


def test_failed_ingest_writes_nothing_in_any_panel(fixtures, tmp_path):
    db = tmp_path / "cape.db"
    store = Store(_url(db))
    store.ingest(read_results(fixtures / "long.csv").dataset, "base")
    store.ingest(read_results(fixtures / "wide.csv").dataset, "w")
    raw = db.read_bytes()
    # a conflict inside w (hellaswag 30.1 -> 31.1 from the same source) refuses the whole file
    path = tmp_path / "wide.csv"
    path.write_text((fixtures / "wide.csv").read_text().replace("0.301", "0.311")
                    + "org/new-2b,tiny,2B,0.6,0.4,0.3\n")
    with pytest.raises(StoreError, match="nothing was written"):
        store.ingest(read_results(path).dataset, "w")
    assert db.read_bytes() == raw


# ------------------------------------------------------------------------- migration
V1_DDL = """
CREATE TABLE cape_meta ("key" VARCHAR(64) NOT NULL, value TEXT NOT NULL, PRIMARY KEY ("key"));
CREATE TABLE panels (name VARCHAR(200) NOT NULL, title TEXT NOT NULL, description TEXT NOT NULL,
    created_at VARCHAR(32) NOT NULL, PRIMARY KEY (name));
CREATE TABLE models (id INTEGER NOT NULL, model VARCHAR(512) NOT NULL, display_name TEXT,
    family VARCHAR(200), organisation VARCHAR(200), kind VARCHAR(16), params BIGINT,
    active_params BIGINT, d_model INTEGER, n_layers INTEGER, n_heads INTEGER, tokens BIGINT,
    flops FLOAT, release_date VARCHAR(10), release_date_precision VARCHAR(5), flags TEXT NOT NULL,
    source TEXT, PRIMARY KEY (id), UNIQUE (model));
CREATE TABLE panel_models (panel VARCHAR(200) NOT NULL, model_id INTEGER NOT NULL, subset VARCHAR(64),
    PRIMARY KEY (panel, model_id), FOREIGN KEY(panel) REFERENCES panels (name),
    FOREIGN KEY(model_id) REFERENCES models (id));
CREATE TABLE scores (id INTEGER NOT NULL, model_id INTEGER NOT NULL, benchmark VARCHAR(64) NOT NULL,
    variant VARCHAR(128) NOT NULL, value FLOAT NOT NULL, stderr FLOAT, n_shot INTEGER, harness TEXT,
    source VARCHAR(1000) NOT NULL, flags TEXT NOT NULL, PRIMARY KEY (id),
    CONSTRAINT uq_score_identity UNIQUE (model_id, benchmark, variant, source),
    FOREIGN KEY(model_id) REFERENCES models (id));
INSERT INTO cape_meta VALUES ('application', 'cape'), ('schema_version', '1');
"""

_PANELS = [("base", "Base", "", "2026-11-30T20:31:54+00:00"), ("w", "w", "wide", "2026-11-30T20:31:56+00:00"),
           ("scratch", "scratch", "", "2026-11-30T20:31:59+00:00"), ("empty", "empty", "", "2026-12-01T00:00:00+00:00")]
# (id, model, display_name, family, organisation, kind, params, active_params, d_model, n_layers,
#  n_heads, tokens, flops, release_date, release_date_precision, flags, source)
_MODELS = [
    (1, "org/tiny-100m", None, "tiny", None, None, 100000000, None, None, None, None, None, None, None, None, "", None),
    (2, "org/tiny-400m", "Tiny 400M", "tiny", "Org", "base", 400000000, None, 1024, 24, 16,
     300000000000, 7.2e20, "2024-05", "month", "", "card"),
    (3, "org/tiny-1b", None, "tiny", None, None, 1000000000, None, None, None, None, None, None, None, None,
     "dup_suspect", None),
    (4, "org/lonely", None, "x", None, None, 5, None, None, None, None, None, None, None, None, "", None),
]
_MEMBERS = [("base", 1, None), ("base", 2, "small"), ("w", 1, None), ("w", 2, None), ("w", 3, "big"),
            ("scratch", 1, None), ("scratch", 2, None)]
# (id, model_id, benchmark, variant, value, stderr, n_shot, harness, source, flags): the v1
# state after the reported leak (base shows w's file and scratch's --replace)
_SCORES = [
    (1, 1, "hellaswag", "acc_norm", 31.1, 0.45, 10, None, "my-eval-run-1", ""),
    (2, 1, "truthfulqa", "mc2", 45.5, 1.5, 0, "lm-eval 0.4.2", "my-eval-run-1", ""),
    (3, 2, "hellaswag", "acc_norm", 40.5, 0.49, 10, None, "my-eval-run-1", ""),
    (4, 2, "truthfulqa", "mc2", 43.1, 1.5, 0, None, "my-eval-run-1", "contaminated"),
    (5, 1, "hellaswag", "unspecified", 30.099999999999998, None, None, None, "file:wide.csv", ""),
    (6, 1, "arc_challenge", "unspecified", 21.0, None, 25, None, "file:wide.csv", ""),
    (7, 2, "arc_challenge", "unspecified", 24.5, None, 25, None, "file:wide.csv", ""),
    (8, 3, "hellaswag", "unspecified", 49.8, None, None, None, "file:wide.csv", ""),
    (9, 3, "truthfulqa", "mc2", 40.2, None, None, None, "file:wide.csv", ""),
    (10, 3, "arc_challenge", "unspecified", 28.999999999999996, None, 25, None, "file:wide.csv", ""),
    (11, 4, "hellaswag", "acc_norm", 1.0, None, None, None, "orphan", ""),
]


def _make_v1(path: Path) -> Path:
    with sqlite3.connect(path) as conn:
        conn.executescript(V1_DDL)
        conn.executemany("INSERT INTO panels VALUES (?, ?, ?, ?)", _PANELS)
        conn.executemany(f"INSERT INTO models VALUES ({', '.join('?' * 17)})", _MODELS)
        conn.executemany("INSERT INTO panel_models VALUES (?, ?, ?)", _MEMBERS)
        conn.executemany(f"INSERT INTO scores VALUES ({', '.join('?' * 10)})", _SCORES)
    conn.close()
    return path


def _v1_panel(path: Path, name: str) -> Panel:
    """A panel as the version-1 code read it (its queries, in raw SQL): the expected view."""
    mcols = ", ".join(f"m.{c}" for c in MODEL_COLUMNS)
    v1_score_columns = [c for c in SCORE_COLUMNS if c != "run_date"]  # run_date: version 3
    scols = ", ".join(f"s.{c}" for c in v1_score_columns if c != "model")
    with sqlite3.connect(path) as conn:
        prow = conn.execute("SELECT title, description, created_at FROM panels WHERE name = ?", (name,)).fetchone()
        mrows = conn.execute(f"SELECT {mcols}, pm.subset FROM models m JOIN panel_models pm "
                             "ON pm.model_id = m.id WHERE pm.panel = ? ORDER BY m.id", (name,)).fetchall()
        srows = conn.execute(f"SELECT m.model, {scols} FROM scores s JOIN models m ON m.id = s.model_id "
                             "JOIN panel_models pm ON pm.model_id = s.model_id AND pm.panel = ? "
                             "ORDER BY s.id", (name,)).fetchall()
    conn.close()
    models = pd.DataFrame(mrows, columns=[*MODEL_COLUMNS, "subset"])
    scores = pd.DataFrame(srows, columns=v1_score_columns)
    ds = Dataset.from_frames(models, scores if len(scores) else None)
    ds.models["flags"] = ds.models["flags"].fillna("")
    ds.scores["flags"] = ds.scores["flags"].fillna("")
    return Panel(name=name, models=ds.models, scores=ds.scores, title=prow[0], description=prow[1],
                 builtin=False, meta={"created_at": prow[2]})


def test_migration_from_v1_preserves_every_panel_view(tmp_path):
    db = _make_v1(tmp_path / "cape.db")
    names = [p[0] for p in _PANELS]
    expected = {n: _v1_panel(db, n) for n in names}
    # the fixture really has the leak the migration must carry over, and a model in 3 panels
    assert len(expected["base"].scores) == 7 and len(expected["w"].scores) == 10
    assert expected["base"].scores["value"].iloc[0] == 31.1

    store = Store(_url(db))
    with store.engine.connect() as conn:
        assert migrations.current_version(conn) == schema.SCHEMA_VERSION == 3
    assert store.panel_names() == sorted(names)
    for n in names:
        got = store.panel(n)
        pd.testing.assert_frame_equal(got.models, expected[n].models)
        pd.testing.assert_frame_equal(got.scores, expected[n].scores)
        assert (got.title, got.description, got.meta["created_at"]) == (
            expected[n].title, expected[n].description, expected[n].meta["created_at"])
        if len(expected[n].scores):
            pd.testing.assert_frame_equal(cape.load_panel(n, db=store), wide(expected[n]))
            pd.testing.assert_frame_equal(cape.load_scores(n, db=store), expected[n].scores)
    got = store.panel("base").models.set_index("model")
    assert got.loc["org/tiny-400m", "subset"] == "small" and got.loc["org/tiny-400m", "d_model"] == 1024
    # one model row per (panel, model): 7 memberships; base 7 + w 10 + scratch 7 scores
    # (the orphan model 4, in no panel and shown nowhere, is not carried over)
    counts = store.row_counts()
    assert counts["models"] == len(_MEMBERS) and counts["scores"] == 7 + 10 + 7
    assert "panel_models" not in inspect(store.engine).get_table_names()

    # after the migration, the panels no longer leak
    before = _view(store, "base")
    ch = tmp_path / "ch.csv"
    ch.write_text("model,benchmark,variant,value,source\norg/tiny-100m,hellaswag,acc_norm,99.0,my-eval-run-1\n")
    report = store.ingest(read_results(ch).dataset, "scratch", replace=True)
    assert report.scores_replaced == 1
    _assert_same_view(before, _view(store, "base"))
    assert _value(store, "w", "org/tiny-100m", "hellaswag", "acc_norm") == 31.1


def test_failed_migration_leaves_the_v1_file_untouched(tmp_path, monkeypatch):
    db = _make_v1(tmp_path / "cape.db")
    raw = db.read_bytes()
    real = migrations._insert

    def failing(conn, table, frame):
        if table.name == "scores":
            raise RuntimeError("disk on fire")
        real(conn, table, frame)

    monkeypatch.setattr(migrations, "_insert", failing)
    with pytest.raises(RuntimeError, match="disk on fire"):
        Store(_url(db))
    assert db.read_bytes() == raw  # the DROP/CREATE TABLEs were rolled back too
    monkeypatch.setattr(migrations, "_insert", real)
    store = Store(_url(db))
    assert len(store.panel("w").scores) == 10


def test_new_database_matches_the_schema_module(tmp_path):
    """A database built by the migration steps has exactly the tables of ``schema``."""
    store = Store(_url(tmp_path / "cape.db"))
    insp = inspect(store.engine)
    assert sorted(insp.get_table_names()) == sorted(t.name for t in schema.TABLES)
    for t in schema.TABLES:
        assert [c["name"] for c in insp.get_columns(t.name)] == [c.name for c in t.columns], t.name
        declared = {tuple(c.name for c in u.columns) for u in t.constraints
                    if u.__class__.__name__ == "UniqueConstraint"}
        declared |= {(c.name,) for c in t.columns if c.unique}
        assert {tuple(u["column_names"]) for u in insp.get_unique_constraints(t.name)} == declared, t.name


# ------------------------------------------------------------------------------- CLI
def _show(home: Path, panel: str, *extra: str) -> str:
    proc = run_cli("show", panel, "--json", *extra, home=home)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


@pytest.mark.slow  # 8 real subprocesses
def test_cli_ingest_into_other_panels_leaves_base_unchanged(fixtures, tmp_path):
    home = tmp_path / "home"
    proc = run_cli("ingest", str(fixtures / "long.csv"), "--panel", "base", home=home)
    assert proc.returncode == 0, proc.stderr
    wide_before, long_before = _show(home, "base"), _show(home, "base", "--long")

    proc = run_cli("ingest", str(fixtures / "wide.csv"), "--panel", "w", home=home)
    assert proc.returncode == 0, proc.stderr
    assert "panel w (new)" in proc.stdout and "added 9 scores, 3 models" in proc.stdout
    changed = _changed_long(fixtures, tmp_path)
    proc = run_cli("ingest", str(changed), "--panel", "scratch", "--replace", "--json", home=home)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["panel"] == "scratch" and report["scores_added"] == 4 and report["scores_replaced"] == 0

    assert _show(home, "base") == wide_before
    assert _show(home, "base", "--long") == long_before
    base = {r["model"]: r for r in json.loads(wide_before)["models"]}
    assert base["org/tiny-100m"]["hellaswag"] == 30.1
    scratch = {r["model"]: r for r in json.loads(_show(home, "scratch"))["models"]}
    assert scratch["org/tiny-100m"]["hellaswag"] == 31.1
