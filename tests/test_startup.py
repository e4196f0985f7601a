"""Start-up (issue 18): ``import cape``, ``cape --help`` and ``cape panels`` import no heavy
library, and the quick panel list (:mod:`cape.catalog`) says exactly what loading every
panel says (:meth:`cape.panels.Panel.summary`)."""

from __future__ import annotations

import importlib
import json
import os
import sqlite3
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

import cape
from cape import catalog
from cape.errors import StoreError
from cape.panels import BUILTIN_PANELS, load_builtin

from conftest import FIXTURES, run_cli

#: What neither `import cape` nor `cape --help` may import (the issue's list).
HEAVY = ("scipy", "statsmodels", "pysindy", "plotly", "sqlalchemy", "torch")
_MARK = "CAPE-MODULES:"


def loaded_after(body: str, env: dict | None = None) -> set[str]:
    """The top-level packages a fresh interpreter has imported after running ``body``."""
    code = (f"import sys\n{body}\n"
            f"print({_MARK!r} + ','.join(sorted({{m.split('.')[0] for m in sys.modules}})))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=env or dict(os.environ))
    assert proc.returncode == 0, proc.stderr[-2000:]
    line = [ln for ln in proc.stdout.splitlines() if ln.startswith(_MARK)][-1]
    return set(line[len(_MARK):].split(","))


def run_cli_body(*args: str) -> str:
    """``python -m cape.cli ARGS`` inside the probe (the command's own exit is caught)."""
    return ("import runpy\n"
            f"sys.argv = ['cape', *{list(args)!r}]\n"
            "try:\n"
            "    runpy.run_module('cape.cli', run_name='__main__', alter_sys=True)\n"
            "except SystemExit as exc:\n"
            "    assert not exc.code, exc.code\n")


def _stored_panels(home) -> None:
    """Stored panels with what the summary must count right: duplicate runs of a score, an
    unregistered benchmark (not listed), models without a family (NaN), a model without
    scores, an emptied panel."""
    (home / "in").mkdir(parents=True)
    src = home / "in" / "long.csv"
    src.write_text(
        "model,family,params_b,benchmark,variant,value,stderr,n_shot,source\n"
        "org/a-1b,A,1,hellaswag,acc_norm,30.1,0.45,10,run-1\n"
        "org/a-1b,A,1,hellaswag,acc_norm,31.1,0.45,10,run-2\n"
        "org/a-1b,A,1,my_custom_task,acc,50,,0,run-1\n"
        "org/a-2b,A,2,gsm8k,exact_match,12.5,,5,run-1\n"
        "org/b-2b,,2,truthfulqa,mc2,45.5,1.5,0,run-1\n"
        "org/c-3b,,3,mmlu,acc,45.5,1.5,5,run-1\n", encoding="utf-8")
    cape.ingest(src, panel="mine")
    cape.ingest(FIXTURES / "wide.csv", panel="Wide.panel")
    cape.ingest(FIXTURES / "long.csv", panel="gone")
    cape.delete_models("gone", list(cape.load_models("gone")["model"]))
    meta = home / "in" / "meta.csv"
    meta.write_text("model,family,params\norg/z-9b,Z,9000000000\n", encoding="utf-8")
    cape.set_metadata("mine", meta, add=True)


# ------------------------------------------------------------------ heavy imports
def test_the_probe_sees_heavy_imports():
    """The checks below can fail: the same probe reports SQLAlchemy, pandas and SciPy when
    something imports them."""
    assert "sqlalchemy" in loaded_after("from cape import Store")
    assert "pandas" in loaded_after("import cape\ncape.load_panel('paper-nc')")
    assert "scipy" in loaded_after("import numpy as np\nfrom cape import stats\n"
                                   "stats.parametric_p(np.array([0.5]), 10)")


def test_import_cape_is_light():
    mods = loaded_after("import cape\nassert cape.__version__")
    assert not mods & {*HEAVY, "pandas", "numpy"}, sorted(mods & {*HEAVY, "pandas", "numpy"})


def test_cape_help_is_light():
    mods = loaded_after(run_cli_body("--help"))
    assert "typer" in mods  # the probe really ran the command line
    assert not mods & {*HEAVY, "pandas", "numpy"}, sorted(mods & {*HEAVY, "pandas", "numpy"})


@pytest.mark.parametrize("command", [("nc", "--help"), ("dynamics", "fit", "--help"),
                                     ("frontier", "hfield", "--help"), ("audit", "--help")])
def test_command_help_is_light(command):
    """A command's --help shows defaults that come from analysis modules (cape.defaults)."""
    mods = loaded_after(run_cli_body(*command))
    assert not mods & {*HEAVY, "pandas", "numpy"}, sorted(mods & {*HEAVY, "pandas", "numpy"})


def test_cape_panels_with_a_store_is_light(cape_home):
    _stored_panels(cape_home)
    mods = loaded_after(run_cli_body("panels") + "\n", env=dict(os.environ))
    assert not mods & {*HEAVY, "pandas"}, sorted(mods & {*HEAVY, "pandas"})
    out = run_cli("panels", "--json")
    assert out.returncode == 0, out.stderr
    assert "Wide.panel" in [p["name"] for p in json.loads(out.stdout)]


def test_an_analysis_on_a_builtin_panel_needs_no_store():
    mods = loaded_after(run_cli_body("gamma", "--panel", "paper-nc"))
    assert "pandas" in mods  # it did run the analysis
    assert not mods & {"sqlalchemy", "plotly", "statsmodels", "pysindy", "torch", "scipy"}, \
        sorted(mods & set(HEAVY))


# ----------------------------------------------------------------- lazy package
def test_the_lazy_package_keeps_its_names():
    from cape import Store, ingest, load_panel  # noqa: F401  (the issue's example)
    from cape.store import Store as RealStore

    assert Store is RealStore and ingest is importlib.import_module("cape.api").ingest
    assert load_panel("paper-pythia").shape[0] == 8
    assert set(cape.__all__) <= set(dir(cape))
    for name in cape.__all__:
        assert getattr(cape, name) is not None, name
    namespace: dict = {}
    exec("from cape import *", namespace)
    assert set(cape.__all__) <= set(namespace)
    with pytest.raises(AttributeError, match="no attribute 'not_a_name'"):
        cape.not_a_name  # noqa: B018
    with pytest.raises(ImportError):
        exec("from cape import not_a_name", {})
    # submodules are attributes after a bare `import cape`, as when it imported them eagerly
    mods = loaded_after("import cape\nassert 'cape.api' not in sys.modules\n"
                        "assert callable(cape.api.list_panels) and cape.store.Store.existing")
    assert "sqlalchemy" in mods


def test_the_lazy_analysis_package_keeps_functions_over_submodules():
    """``advise`` and ``replication`` are both submodules and functions: the package
    attribute stays the function, as when the package imported everything eagerly."""
    import cape.analysis as analysis
    import cape.analysis.advise  # noqa: F401  (binds the submodule on the package)
    import cape.analysis.replication  # noqa: F401
    from cape.analysis import advise, replication

    assert callable(advise) and advise.__name__ == "advise"
    assert callable(replication) and replication.__name__ == "replication"
    assert set(analysis.__all__) <= set(dir(analysis))
    for name in analysis.__all__:
        assert getattr(analysis, name) is not None, name


def test_defaults_are_the_analysis_modules_own():
    """One value per setting: each analysis module re-exports cape.defaults' object."""
    from cape import defaults

    seen = set()
    for module, names in defaults.OWNERS.items():
        mod = importlib.import_module(module)
        for name in names:
            assert getattr(mod, name) is getattr(defaults, name), f"{module}.{name}"
            seen.add(name)
    assert seen == set(defaults.__all__) - {"OWNERS"}


def test_stats_without_scipy_at_import_matches_scipy():
    from scipy import stats as sps

    from cape import stats

    assert stats.Z95 == float(sps.norm.ppf(0.975))
    rng = np.random.default_rng(0)
    for shape, axis in (((7,), -1), ((5, 9), 1), ((9, 5), 0), ((3, 4, 6), 1), ((4, 0), 1), ((0, 4), 1)):
        x = rng.integers(0, 4, size=shape).astype(float)  # many ties
        if x.size:
            x.flat[0] = np.nan  # a slice holding NaN ranks as NaN
            x.flat[-1] = np.inf
        expected = sps.rankdata(x, axis=axis)
        got = stats.rank(x, axis=axis)
        assert got.shape == expected.shape and got.dtype == expected.dtype
        assert np.array_equal(got, expected, equal_nan=True), (shape, axis)
    # and a wrong ranking would be seen
    assert not np.array_equal(stats.rank([1.0, 2, 2, 3]), [1.0, 2, 3, 4])


def test_lazy_proxy():
    from cape.cli._app import lazy

    dy = lazy("cape.analysis.dynamics", defaults="cape.defaults")
    assert dy.DEFAULT_DEGREE == 2 and dy._target is None  # from cape.defaults, nothing imported
    assert dy.SCALES == ("standard", "points") and dy._target is not None  # not in defaults: imported
    to_python = lazy("cape.schema", "to_python")
    assert to_python(np.int64(3)) == 3 and type(to_python(np.int64(3))) is int
    with pytest.raises(AttributeError):
        dy.no_such_name  # noqa: B018


# ---------------------------------------------------------------------- catalog
@pytest.mark.parametrize("name", BUILTIN_PANELS)
def test_catalog_builtin_equals_panel_summary(name):
    assert catalog.builtin_summary(name) == load_builtin(name).summary()


def test_catalog_folder_reads_csv_as_pandas_does(tmp_path):
    """The csv-module reading counts what pandas' does, on the cases the shipped panels lack:
    an empty family (missing), a family spelled "nan" (a name), quoted commas and newlines,
    blank lines, an empty and an unregistered benchmark, errata without the errata layer."""
    from cape.panels import Panel, _read_csv
    from cape.schema import Dataset

    files = {
        "panel.json": json.dumps({"title": "odd"}),
        "models.csv": ("model,display_name,family\n"
                       'a,"A, the first",F\n\n'
                       'b,"B\nsecond line",\n'
                       "c,C,nan\n"
                       "d,D,F\n"
                       '"e,1",E,""\n\n'),
        "scores.csv": ("model,benchmark,variant,value\n"
                       "a,hellaswag,acc_norm,1\n"
                       "a,mmlu,acc,2\n\n"
                       "b,,acc,3\n"
                       "c,my_task,acc,4\n"
                       "d,hellaswag,acc_norm,5\n"),
        "errata.csv": "model,benchmark,variant,published,value,layer,source,note\na,mmlu,acc,1,2,published,s,n\n",
    }
    for name, text in files.items():
        (tmp_path / name).write_text(text, encoding="utf-8")

    def by_pandas() -> dict:
        ds = Dataset.from_frames(_read_csv(files["models.csv"]), _read_csv(files["scores.csv"]))
        return Panel(name="odd", models=ds.models, scores=ds.scores, title="odd", builtin=True,
                     errata=_read_csv((tmp_path / "errata.csv").read_text(encoding="utf-8"))).summary()

    got = catalog.folder_summary("odd", tmp_path)
    assert got == by_pandas()
    assert (got["models"], got["families"], got["scores"], got["benchmarks"], got["has_errata"]) == \
        (5, 2, 5, ["hellaswag", "mmlu"], False)
    (tmp_path / "errata.csv").write_text(files["errata.csv"] + "c,mmlu,acc,1,2,errata,s,n\n", encoding="utf-8")
    got = catalog.folder_summary("odd", tmp_path)
    assert got == by_pandas() and got["has_errata"] is True


def test_catalog_stored_equals_panel_summary(cape_home):
    from cape.store import Store

    _stored_panels(cape_home)
    store = Store()
    expected = [store.panel(n).summary() for n in store.panel_names()]
    got = catalog.stored_summaries()
    assert got == expected
    by_name = {s["name"]: s for s in got}
    # the cases are really there (so the equality above is about them)
    assert by_name["mine"]["models"] == 5 and by_name["mine"]["families"] == 2  # A, Z; two NaN
    assert by_name["mine"]["scores"] == 6  # two runs of one score, and the unregistered task
    assert by_name["mine"]["benchmarks"] == ["hellaswag", "truthfulqa", "mmlu", "gsm8k"]
    assert by_name["gone"]["models"] == 0 and by_name["gone"]["benchmarks"] == []
    assert [s["name"] for s in got] == sorted(s["name"] for s in got)
    # read by SQL, not through the Store (which the equality would hide)
    assert catalog._read_stored(cape_home / "cape.db") == expected
    # ... and the same through a Store object, and a URL
    assert catalog.stored_summaries(store) == expected
    assert catalog.stored_summaries(f"sqlite:///{cape_home / 'cape.db'}") == expected


def test_catalog_sees_what_changes(cape_home):
    """The summary follows the data (a stale or constant answer would fail here)."""
    _stored_panels(cape_home)
    before = {s["name"]: s for s in catalog.stored_summaries()}["mine"]
    cape.delete_models("mine", ["org/c-3b"])
    after = {s["name"]: s for s in catalog.stored_summaries()}["mine"]
    assert (after["models"], after["scores"]) == (before["models"] - 1, before["scores"] - 1)
    assert "mmlu" not in after["benchmarks"]


def test_list_panels_frame_is_unchanged(cape_home):
    from cape.store import Store

    _stored_panels(cape_home)
    store = Store()
    rows = [load_builtin(n).summary() for n in BUILTIN_PANELS]
    rows += [store.panel(n).summary() for n in store.panel_names()]
    pd.testing.assert_frame_equal(cape.list_panels(), pd.DataFrame(rows))
    out = run_cli("panels", "--json")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == json.loads(json.dumps(rows))


def test_catalog_missing_store_creates_nothing(cape_home):
    assert catalog.stored_summaries() == []
    assert [s["name"] for s in catalog.summaries()] == list(BUILTIN_PANELS)
    assert not cape_home.exists()


def test_catalog_reads_without_writing(cape_home):
    _stored_panels(cape_home)
    db = cape_home / "cape.db"
    before = (db.read_bytes(), sorted(p.name for p in cape_home.iterdir()))
    catalog.stored_summaries()
    assert (db.read_bytes(), sorted(p.name for p in cape_home.iterdir())) == before


def test_catalog_falls_back_to_the_store(cape_home, monkeypatch):
    """Another schema version or a file that is not a CAPE database: the Store's own answer
    (its migration, or its error), never a guess."""
    _stored_panels(cape_home)
    db = cape_home / "cape.db"
    expected = catalog.stored_summaries()
    with sqlite3.connect(db) as conn:
        conn.execute("UPDATE cape_meta SET value = '99' WHERE key = 'schema_version'")
    conn.close()
    assert catalog._read_stored(db) is None
    with pytest.raises(StoreError, match="newer than this CAPE"):
        catalog.stored_summaries()
    with sqlite3.connect(db) as conn:
        conn.execute("UPDATE cape_meta SET value = '3' WHERE key = 'schema_version'")
        conn.execute("UPDATE cape_meta SET value = 'other' WHERE key = 'application'")
    conn.close()
    with pytest.raises(StoreError, match="is not a CAPE database"):
        catalog.stored_summaries()
    db.write_bytes(b"not a database at all, just bytes" * 100)
    with pytest.raises(StoreError, match="not an SQLite file"):
        cape.list_panels()
    # an in-memory store (no file to read) goes through the Store
    from cape.store import Store

    mem = Store("sqlite://")
    mem.ingest(cape.read_results([FIXTURES / "wide.csv"]).dataset, "m")
    assert catalog.stored_summaries(mem) == [mem.panel("m").summary()] and expected


def test_storeinfo_matches_the_store(cape_home, monkeypatch):
    from cape import storeinfo
    from cape.store import cape_home as store_home, default_url, schema

    assert (storeinfo.SCHEMA_VERSION, storeinfo.APPLICATION) == (schema.SCHEMA_VERSION, schema.APPLICATION)
    assert storeinfo.default_url() == default_url() and storeinfo.cape_home() == store_home()
    monkeypatch.setenv("CAPE_DB_URL", "postgresql://u@h/db")
    assert storeinfo.default_url() == default_url() == "postgresql://u@h/db"
    monkeypatch.delenv("CAPE_DB_URL")
    monkeypatch.delenv("CAPE_HOME")
    assert storeinfo.cape_home() == store_home()


def test_analysis_submodules_are_reachable_as_attributes():
    """``cape.analysis.coupling`` (a submodule) works on a fresh import, as it did when the
    package imported every analysis eagerly; the functions advise/replication keep their
    names; an unknown name is still an AttributeError."""
    code = ("import cape.analysis as a, types; "
            "assert isinstance(a.coupling, types.ModuleType) and a.coupling.MIN_BOOTSTRAP == 4; "
            "assert callable(a.advise) and not isinstance(a.advise, types.ModuleType); "
            "import pytest\n"
            "try:\n    a.no_such_thing\nexcept AttributeError:\n    print('ok')")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "ok"
