"""What every importer shares: reading a file's text safely and collecting rows with origins."""

from __future__ import annotations

import json
import math
import re
from datetime import datetime, timezone
from dataclasses import dataclass, field
from pathlib import Path

from ..benchmarks import BenchmarkName, resolve, suggest, try_resolve, unregistered_name
from ..errors import InputError

__all__ = ["read_text", "read_json", "to_number", "Rows", "PERCENT_METRICS", "file_run_date"]

#: Metrics that are proportions (reported as fractions by the harness) and so become
#: percentages in CAPE. Others (perplexity, bits_per_byte, BLEU maxima...) are skipped.
PERCENT_METRICS = frozenset({
    "acc", "acc_norm", "exact_match", "em", "f1", "mc1", "mc2", "pass@1", "pass_at_1",
    "prompt_level_strict_acc", "inst_level_strict_acc", "prompt_level_loose_acc",
    "inst_level_loose_acc", "resolved", "bleu_acc", "rouge1_acc", "rouge2_acc", "rougeL_acc",
})


def read_text(path: Path) -> str:
    """The file's text. Empty files and files that are not UTF-8 are errors."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise InputError("no such file", file=path) from None
    except IsADirectoryError:
        raise InputError("is a folder, not a file", file=path) from None
    except OSError as exc:
        raise InputError(f"cannot read: {exc.strerror or exc}", file=path) from None
    if not raw.strip():
        raise InputError("the file is empty", file=path)
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise InputError(
            f"not UTF-8 text: byte 0x{raw[exc.start]:02x} at offset {exc.start} (line {line})",
            file=path, hint="save the file as UTF-8",
        ) from None


def read_json(path: Path, text: str | None = None):
    """Parse JSON, reporting where a truncated or broken file stops making sense."""
    text = read_text(path) if text is None else text
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        # A document that stops before its outermost bracket closes was cut short.
        body = text.strip()
        closes = {"{": "}", "[": "]"}.get(body[:1])
        truncated = closes is not None and not body.endswith(closes)
        what = "truncated JSON" if truncated else "not valid JSON"
        raise InputError(f"{what} ({exc.msg}, line {exc.lineno} column {exc.colno})",
                         file=path) from None


def to_number(value, *, file, row, field) -> float | None:
    """A score cell as a float; ``None`` when the cell is empty. Text and NaN are errors."""
    if value is None:
        return None
    if isinstance(value, bool):
        raise InputError(f"'{value}' is not a number", file=file, row=row, field=field)
    if isinstance(value, (int, float)):
        number = float(value)
    else:
        text = str(value).strip()
        if text == "":
            return None
        try:
            number = float(text)
        except ValueError:
            raise InputError(f"'{text}' is not a number", file=file, row=row, field=field) from None
    if math.isnan(number):
        raise InputError("NaN is not a score (leave the cell empty if there is no value)",
                         file=file, row=row, field=field)
    if math.isinf(number):
        raise InputError(f"{value} is not a finite number", file=file, row=row, field=field)
    return number


_STAMP = re.compile(r"results_(\d{4}-\d{2}-\d{2})T(\d{2})[-:](\d{2})[-:](\d{2}(?:\.\d+)?)")


def file_run_date(doc, name: str, *, label: str) -> str | None:
    """When the run behind a result file was made, as ISO text (UTC where known):

    * lm-eval 0.4's top-level ``date`` (seconds since the epoch, the run's start);
    * else the time in a ``results_<YYYY-MM-DDTHH-MM-SS.ffffff>.json`` file name, as lm-eval
      0.4 and lighteval write it (the machine's local time, no zone);
    * else ``None`` (lm-eval 0.3, tables without a ``run_date`` column).

    A ``date`` that is not a number is an error naming the file.
    """
    date = doc.get("date") if isinstance(doc, dict) else None
    if date is not None and not isinstance(date, bool):
        stamp = to_number(date, file=label, row=None, field="date")
        if stamp is not None and stamp > 0:
            when = datetime.fromtimestamp(stamp, tz=timezone.utc).replace(tzinfo=None)
            return when.isoformat(timespec="microseconds").removesuffix(".000000")
    hit = _STAMP.search(Path(name).name)
    if hit:
        return f"{hit[1]}T{hit[2]}:{hit[3]}:{hit[4]}"
    return None


@dataclass
class Rows:
    """Model and score records gathered by an importer, each with its origin.

    Records are dicts in ``models`` and ``scores``; a large table is read in bulk instead, as
    a pair of DataFrames in ``frames`` (same columns as the dicts would have). Each entry of
    ``frames`` is ``(n_models, n_scores, models, scores)``: the number of dict records that
    came before it, so that :meth:`model_table` and :meth:`score_table` keep reading order.
    """

    models: list[dict] = field(default_factory=list)
    scores: list[dict] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    unregistered: dict[str, str] = field(default_factory=dict)
    frames: list[tuple] = field(default_factory=list)

    def benchmark(self, name: str, *, skip_unknown: bool, label: str, what: str,
                  row: str | int | None = None, field: str | None = None):
        """Resolve a benchmark name. An unknown one is skipped (and noted) with
        ``skip_unknown``; a near typo of a known name (``hellaswagg``) is refused with the
        name it resembles; any other unknown task is kept under its own name
        (:func:`~cape.benchmarks.unregistered_name`), recorded in ``unregistered`` (name ->
        where first seen) and flagged ``unregistered`` by :func:`cape.io.read_results`.

        Returns the :class:`~cape.benchmarks.BenchmarkName`, or ``None`` when skipped.
        """
        found = try_resolve(name)
        if found is None:
            if skip_unknown:
                self.skipped.append(f"{label}: {what} (unknown benchmark)")
                return None
            own = unregistered_name(name)
            if own is None or suggest(name):
                resolve(name, file=label, row=row, field_name=field)  # raises, naming the closest
            self.unregistered.setdefault(own, f"{label}: {what}")
            return BenchmarkName(own)
        return found

    def add_frames(self, models, scores) -> None:
        """Append a bulk-read table (a models and a scores DataFrame) after the records so far."""
        self.frames.append((len(self.models), len(self.scores), models, scores))

    @property
    def n_scores(self) -> int:
        return len(self.scores) + sum(len(f[3]) for f in self.frames)

    def score_frames(self) -> list:
        """The bulk-read score tables (for in-place changes such as flags)."""
        return [f[3] for f in self.frames]

    def model_table(self):
        """Every model record, dicts and bulk-read tables, in reading order, as one DataFrame."""
        return self._table(self.models, 0, 2)

    def score_table(self):
        """Every score record, dicts and bulk-read tables, in reading order, as one DataFrame."""
        return self._table(self.scores, 1, 3)

    def _table(self, records: list[dict], at: int, which: int):
        import pandas as pd

        if not self.frames:
            return pd.DataFrame.from_records(records)
        pieces, start = [], 0
        for part in self.frames:
            if part[at] > start:
                pieces.append(pd.DataFrame.from_records(records[start:part[at]]))
                start = part[at]
            pieces.append(part[which])
        if start < len(records):
            pieces.append(pd.DataFrame.from_records(records[start:]))
        pieces = [p for p in pieces if len(p)] or pieces[:1]
        if len(pieces) == 1:
            return pieces[0]
        return pd.concat(pieces, ignore_index=True)

    def extend(self, other: "Rows") -> None:
        for nm, ns, mf, sf in other.frames:
            self.frames.append((nm + len(self.models), ns + len(self.scores), mf, sf))
        self.models.extend(other.models)
        self.scores.extend(other.scores)
        self.skipped.extend(other.skipped)
        for k, v in other.unregistered.items():
            self.unregistered.setdefault(k, v)
