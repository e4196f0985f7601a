"""Project hygiene: README's set-up commands, CI, and no published figure typed into code."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def readme_commands() -> list[str]:
    text = (ROOT / "README.md").read_text()
    block = text.split("## Set-up", 1)[1].split("\n## ", 1)[0]
    return [line.strip() for line in re.findall(r"```(?:bash|sh)?\n(.*?)```", block, re.S)]


def test_readme_has_exactly_two_setup_commands():
    cmds = readme_commands()
    assert len(cmds) == 2 and all("\n" not in c for c in cmds)
    assert "torch==2.13.0" not in cmds[0]  # the main job needs no torch


def test_ci_runs_the_readme_test_command():
    ci = (ROOT / ".ci" / "run").read_text()
    assert readme_commands()[1] in ci.splitlines()


def test_setup_pins_torch_before_anything_else():
    lines = [l for l in (ROOT / "scripts" / "setup-dev.sh").read_text().splitlines()
             if l.startswith("python3 -m pip install")]
    assert "torch==2.13.0" in lines[0]


def test_no_published_figure_is_typed_into_src():
    pattern = re.compile(r"(0\.629|5\.886|0\.513|46\.4[^0-9]|3\.49|0\.989|13\.4[^0-9]|0\.187|16\.2[^0-9])")
    hits = []
    for path in (ROOT / "src").rglob("*.py"):
        for n, line in enumerate(path.read_text().splitlines(), 1):
            code = line.split("#", 1)[0]
            if pattern.search(code):
                hits.append(f"{path.name}:{n}: {line.strip()}")
    assert not hits, hits


def test_every_api_function_is_exported_from_cape():
    """`import cape` gives the whole Python API (cape.api), each name once, the same object."""
    import cape
    import cape.api

    missing = [n for n in cape.api.__all__ if n not in cape.__all__]
    assert not missing, f"cape.api functions not exported from cape: {missing}"
    assert all(getattr(cape, n) is getattr(cape.api, n) for n in cape.api.__all__)
    assert len(cape.__all__) == len(set(cape.__all__))
