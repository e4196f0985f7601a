"""Errors that CAPE reports to a person.

Every error that comes from bad input says where (file, row, field) and what to do. The CLI
prints ``str(error)`` as one line on stderr and exits with code 2.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

__all__ = ["CapeError", "InputError", "StoreError", "Location"]


@dataclass(frozen=True)
class Location:
    """Where a problem sits in an input: a file, a row (1-based, or a JSON path) and a field."""

    file: str | None = None
    row: str | int | None = None
    field: str | None = None

    def __str__(self) -> str:
        parts = []
        if self.file is not None:
            parts.append(str(self.file))
        if self.row is not None:
            parts.append(f"row {self.row}")
        if self.field is not None:
            parts.append(f"field '{self.field}'")
        return ", ".join(parts)


class CapeError(Exception):
    """Base class: a problem a user can fix. ``str(err)`` is a complete one-line message."""

    def __init__(self, message: str, *, hint: str | None = None):
        self.message = message
        self.hint = hint
        super().__init__(self.__str__())

    def __str__(self) -> str:
        text = self.message
        if self.hint:
            text = f"{text} ({self.hint})"
        return " ".join(text.split())


class InputError(CapeError):
    """Bad input data: the message starts with the file, row and field it concerns."""

    def __init__(
        self,
        message: str,
        *,
        file: str | Path | None = None,
        row: str | int | None = None,
        field: str | None = None,
        hint: str | None = None,
    ):
        self.location = Location(None if file is None else str(file), row, field)
        where = str(self.location)
        super().__init__(f"{where}: {message}" if where else message, hint=hint)


class StoreError(CapeError):
    """The results database cannot be opened, is not a CAPE database, or refused a write."""
