"""The store: a real SQLite file, schema versions and migrations, all-or-nothing ingest."""

import sqlite3

import pandas as pd
import pytest
from sqlalchemy import select

import cape
from cape.errors import StoreError
from cape.io import read_results
from cape.store import Store, migrations, schema


def dump(store: Store) -> dict:
    with store.engine.connect() as conn:
        return {t.name: conn.execute(select(t).order_by(*t.primary_key.columns)).all()
                for t in schema.TABLES}


def test_new_database_is_versioned(cape_home):
    store = Store()
    assert (cape_home / "cape.db").is_file()
    with store.engine.connect() as conn:
        assert migrations.current_version(conn) == schema.SCHEMA_VERSION
        app = conn.execute(select(schema.cape_meta.c.value).where(schema.cape_meta.c.key == "application")).scalar()
    assert app == "cape"


def test_pending_migration_is_applied_once(cape_home):
    Store().close()
    calls = []

    def add_notes(conn):
        calls.append(1)
        conn.exec_driver_sql("ALTER TABLE panels ADD COLUMN notes TEXT")

    nxt = schema.SCHEMA_VERSION + 1
    steps = migrations.MIGRATIONS + (migrations.Migration(nxt, "panel notes", add_notes),)
    store = Store()
    with store.engine.begin() as conn:
        assert migrations.upgrade(conn, steps) == [nxt]
        assert migrations.upgrade(conn, steps) == []
        assert migrations.current_version(conn) == nxt
        cols = [r[1] for r in conn.exec_driver_sql("PRAGMA table_info(panels)")]
    assert "notes" in cols and calls == [1]


def test_newer_database_is_refused(cape_home):
    store = Store()
    with store.engine.begin() as conn:
        conn.execute(schema.cape_meta.update().where(schema.cape_meta.c.key == "schema_version").values(value="99"))
    store.close()
    with pytest.raises(StoreError, match="newer than this CAPE"):
        Store()


def test_builtin_panels_need_no_database(cape_home):
    cape.load_panel("paper-base")
    cape.list_panels()
    assert not cape_home.exists()


def test_ingest_is_idempotent(fixtures):
    store = Store()
    data = read_results(fixtures / "lmeval").dataset
    first = store.ingest(data, "mine")
    assert first.panel_created and first.scores_added == 22 and first.models_added == 2
    before = dump(store)
    again = store.ingest(read_results(fixtures / "lmeval").dataset, "mine")
    assert not again.changed and again.scores_unchanged == 22
    assert dump(store) == before


def test_conflict_is_refused_whole_and_replace_overwrites(fixtures, tmp_path):
    store = Store()
    store.ingest(read_results(fixtures / "long.csv").dataset, "mine")
    before = dump(store)
    changed = (fixtures / "long.csv").read_text().replace("40.5,0.49", "41.5,0.49").replace("43.1,1.5", "44.1,1.5")
    extra = changed + "org/tiny-2b,tiny,2,hellaswag,acc_norm,55.0,0.5,10,my-eval-run-1\n"
    path = tmp_path / "long.csv"
    path.write_text(extra)
    with pytest.raises(StoreError) as info:
        store.ingest(read_results(path).dataset, "mine")
    msg = str(info.value)
    assert "2 value(s) differ" in msg and "stored 40.5, file 41.5" in msg and "--replace" in msg
    assert dump(store) == before  # the new model and score were not written either
    report = store.ingest(read_results(path).dataset, "mine", replace=True)
    assert report.scores_replaced == 2 and report.scores_added == 1
    s = store.panel("mine").scores.set_index(["model", "benchmark"])
    assert s.loc[("org/tiny-400m", "hellaswag"), "value"] == 41.5


def test_dry_run_writes_nothing(fixtures):
    store = Store()
    before = dump(store)
    report = store.ingest(read_results(fixtures / "wide.csv").dataset, "mine", dry_run=True)
    assert report.scores_added == 9 and report.dry_run
    assert dump(store) == before


def test_builtin_panel_names_are_read_only(fixtures):
    with pytest.raises(cape.CapeError, match="read-only"):
        Store().ingest(read_results(fixtures / "wide.csv").dataset, "paper-base")


@pytest.mark.parametrize("fmt", ["csv", "parquet", "json"])
def test_lmeval_folder_round_trip(fixtures, tmp_path, fmt):
    """Ingest an lm-eval folder, export it, ingest the export elsewhere: same values."""
    cape.ingest(fixtures / "lmeval", "mine")
    original = cape.load_scores("mine").sort_values(["model", "benchmark", "variant"]).reset_index(drop=True)
    out = tmp_path / f"mine.{fmt}"
    n = cape.export_panel("mine", out)
    assert n == len(original) == 22
    other = Store(f"sqlite:///{tmp_path / 'other.db'}")
    cape.ingest(out, "copy", db=other)
    back = cape.load_scores("copy", db=other).sort_values(["model", "benchmark", "variant"]).reset_index(drop=True)
    pd.testing.assert_frame_equal(original, back, check_dtype=False)
    models = cape.load_models("copy", db=other).set_index("model")
    assert models.loc["EleutherAI/pythia-70m", "params"] == 70426624
    # and re-ingesting the export into the original panel changes nothing
    before = dump(Store())
    _, report = cape.ingest(out, "mine")
    assert not report.changed and dump(Store()) == before


def test_foreign_sqlite_database_is_refused(cape_home):
    cape_home.mkdir(parents=True)
    db = cape_home / "cape.db"
    with sqlite3.connect(db) as conn:
        conn.execute("CREATE TABLE users (id INTEGER)")
    raw = db.read_bytes()
    with pytest.raises(StoreError, match="not a CAPE database"):
        Store()
    assert db.read_bytes() == raw


def test_store_accepts_any_sqlalchemy_url(tmp_path, fixtures, monkeypatch):
    url = f"sqlite:///{tmp_path / 'team.db'}"
    monkeypatch.setenv("CAPE_DB_URL", url)
    cape.ingest(fixtures / "wide.csv", "team")
    assert (tmp_path / "team.db").is_file()
    assert "team" in set(cape.list_panels()["name"])


def test_conflict_message_names_the_input_file(fixtures, tmp_path):
    cape.ingest(fixtures / "long.csv", "mine")
    path = tmp_path / "rerun.csv"
    path.write_text((fixtures / "long.csv").read_text().replace("40.5,0.49", "41.5,0.49"))
    with pytest.raises(StoreError, match=r"stored 40\.5, file 41\.5 \(in .*rerun\.csv\)"):
        cape.ingest(path, "mine")


@pytest.mark.parametrize("name", ["abc\n", "abc\nxyz", "", "-abc", "a b"])
def test_panel_name_must_match_whole(fixtures, name):
    """The whole name must be letters, digits, '.', '_' and '-' (a regex ending in '$' with
    re.match would let "abc\\n" through); nothing is written for a refused name."""
    store = Store()
    with pytest.raises(cape.CapeError, match="is not allowed"):
        store.ingest(read_results(fixtures / "wide.csv").dataset, panel=name)
    assert store.panel_names() == []
    assert store.ingest(read_results(fixtures / "wide.csv").dataset, panel="abc").changed
