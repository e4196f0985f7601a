"""``python -m cape.cli``: the ``cape`` command."""

from . import main

if __name__ == "__main__":
    raise SystemExit(main())
