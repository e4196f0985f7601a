"""The optional dependencies of :mod:`cape.steer`, checked once with an install hint."""

from __future__ import annotations

import importlib.util

from ..errors import CapeError

__all__ = ["require", "STEER_PACKAGES"]

#: import name -> what to install (torch first and pinned: an unpinned torch from PyPI pulls CUDA)
STEER_PACKAGES = {"torch": "torch==2.13.0", "transformers": "transformers", "safetensors": "safetensors"}


def require(*names: str) -> None:
    """Raise one clear CapeError when a package ``cape.steer`` needs is not installed."""
    wanted = names or tuple(STEER_PACKAGES)
    missing = [n for n in wanted if importlib.util.find_spec(n) is None]
    if missing:
        raise CapeError(
            f"cape steer needs {', '.join(missing)}, which is not installed",
            hint="pip install torch==2.13.0 (a CPU build; first, so nothing pulls CUDA), "
                 "then pip install 'cape[steer]'")
