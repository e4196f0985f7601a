"""Reading the YAML/JSON files people write for CAPE (predictions, claims) so that every
error names the file, the line and the field."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from .errors import CapeError, InputError

__all__ = ["load_yaml", "path_text"]


def _loader():
    """PyYAML's safe loader without implicit timestamps: dates stay text, so CAPE checks
    them (and names the line of a bad one) instead of PyYAML failing without a location."""
    import yaml

    class Loader(yaml.SafeLoader):
        pass

    Loader.yaml_implicit_resolvers = {
        k: [r for r in v if r[0] != "tag:yaml.org,2002:timestamp"]
        for k, v in yaml.SafeLoader.yaml_implicit_resolvers.items()}
    return Loader


def _line_map(text: str) -> dict[tuple, int]:
    """1-based line of every mapping key and sequence item, by path."""
    import yaml

    lines: dict[tuple, int] = {}

    def walk(node, path):
        lines.setdefault(path, node.start_mark.line + 1)
        if isinstance(node, yaml.MappingNode):
            for k, v in node.value:
                key = k.value
                lines[path + (key,)] = k.start_mark.line + 1
                walk(v, path + (key,))
        elif isinstance(node, yaml.SequenceNode):
            for i, v in enumerate(node.value):
                walk(v, path + (i,))

    root = yaml.compose(text, Loader=_loader())
    if root is not None:
        walk(root, ())
    return lines


def path_text(path: tuple) -> str:
    """('predictions', 1, 'pass') -> 'predictions[1].pass'."""
    out = ""
    for p in path:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out


def load_yaml(path: str | Path | None = None, *, text: str | None = None, label: str | None = None,
              what: str = "file") -> tuple[object, Callable[[tuple, str], InputError]]:
    """Parse a YAML or JSON file; return the data and ``err(path, message)``, which builds an
    :class:`InputError` located at ``file:LINE, field 'a.b[2]'`` (the nearest line known)."""
    import yaml

    label = label or (str(path) if path is not None else f"<{what}>")
    if text is None:
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as exc:
            raise CapeError(f"cannot read {what} {path}: {exc.strerror or exc}") from None
    if text.lstrip().startswith(("{", "[")):
        # JSON: a literal tab can only be whitespace between tokens (JSON strings escape
        # theirs), and YAML refuses tabs there, so they become spaces.
        text = text.replace("\t", " ")
    try:
        data = yaml.load(text, Loader=_loader())
        lines = _line_map(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{label}:{mark.line + 1}" if mark else label
        raise InputError(f"not valid YAML/JSON ({getattr(exc, 'problem', None) or exc})", file=where) from None

    def err(path_: tuple, msg: str) -> InputError:
        line = None
        for cut in range(len(path_), -1, -1):
            if path_[:cut] in lines:
                line = lines[path_[:cut]]
                break
        return InputError(msg, file=f"{label}:{line}" if line else label, field=path_text(path_) or None)

    return data, err
