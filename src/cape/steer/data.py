"""Contrast data: labelled true/false statements, grouped by question, split without leaks.

A :class:`ContrastSet` is the input of extraction (``cape.steer.extraction``): statements, a
boolean label per statement (True = a true statement), and a group per statement. Statements
of one question share a group, and :meth:`ContrastSet.split` splits BY GROUP, so no question
has statements on both the extraction and the evaluation side.

Loaders (numpy/pandas only; no torch here):

- :func:`from_truthfulqa` -- TruthfulQA.csv (columns Question, Best Answer, Correct Answers,
  Incorrect Answers; Type, Category and Source are not used). Each answer becomes the
  statement ``TRUTHFULQA_TEMPLATE.format(question=..., answer=...)``, that is
  ``"Q: {question}\\nA: {answer}"``, with the question and answer texts verbatim (stripped of
  surrounding spaces; no period added). True statements: the Best Answer, then the other
  Correct Answers; false statements: the Incorrect Answers, in file order. The group is
  ``"truthfulqa:N"``, N the question's 0-based position in the file.
- :func:`from_repe_facts` -- the representation-engineering facts file (statement,label).
- :func:`from_file` -- a user's CSV, TSV, JSONL or JSON list with statement, label[, group].
- :func:`default_set` -- 40 true/false pairs of plain facts written for CAPE (MIT).
- :func:`load_contrast` -- one entry point for a spec string (what the CLI passes).

Cleaning, the same for every loader (the real files need it; counts land in ``notes``):

- answer lists are split on ``;`` (TruthfulQA's separator is ``"; "``, but some answers end
  with a stray ``;`` and one list ends with ``"; "``); empty pieces are dropped;
- within a group, a statement given both labels is ambiguous and dropped from both sides
  (TruthfulQA: "Unknown" is both a correct and an incorrect answer of two questions; repe
  facts: "The Nile River is the longest river in the world." is labelled 1 once and 0 once);
- within a group, a repeated statement with the same label is kept once (file order).

Labels: ``1``/``0``, ``true``/``false`` (any case), JSON booleans, or the numbers 1.0/0.0.
Anything else is an :class:`~cape.errors.InputError` naming the file, the line and the field.

>>> cs = default_set()
>>> len(cs), int(cs.labels.sum()), cs.n_groups
(80, 40, 40)
>>> extract_set, eval_set = cs.split(seed=0, eval_fraction=0.3)
>>> set(extract_set.groups) & set(eval_set.groups)
set()
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd

from ..errors import CapeError, InputError

__all__ = [
    "ContrastSet",
    "DEFAULT_PAIRS",
    "TRUTHFULQA_COLUMNS",
    "TRUTHFULQA_TEMPLATE",
    "default_set",
    "from_file",
    "from_repe_facts",
    "from_truthfulqa",
    "load_contrast",
]

#: How a TruthfulQA question and one of its answers become one statement.
TRUTHFULQA_TEMPLATE = "Q: {question}\nA: {answer}"
#: The TruthfulQA.csv columns the loader reads (Type, Category and Source are ignored).
TRUTHFULQA_COLUMNS = ("Question", "Best Answer", "Correct Answers", "Incorrect Answers")
#: Version tag mixed into :meth:`ContrastSet.hash`; change it only if the serialisation changes.
_HASH_VERSION = "cape-contrast-v1"
_TRUE_WORDS = {"1": True, "true": True, "0": False, "false": False}
_SUFFIXES = {".csv": ",", ".tsv": "\t", ".jsonl": None, ".ndjson": None, ".json": None}


# ---------------------------------------------------------------------------------------------
# The value object
# ---------------------------------------------------------------------------------------------
@dataclass(eq=False)
class ContrastSet:
    """Labelled statements grouped by question.

    ``statements[i]`` is a text, ``labels[i]`` is True for a true statement, ``groups[i]`` is
    the id of the question it belongs to (statements of one question share it; a loose
    statement is its own group). ``source`` says where the set came from (not hashed);
    ``notes`` record what the loader dropped (not hashed).
    """

    statements: list[str]
    labels: np.ndarray
    groups: list[str]
    source: str = ""
    notes: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.statements = [str(s) for s in self.statements]
        labels = np.asarray(self.labels)
        if labels.ndim != 1:
            raise CapeError(f"contrast set '{self.source}': labels must be 1-D, got shape {labels.shape}")
        if labels.dtype != bool:
            if labels.size and not np.isin(labels, (0, 1)).all():
                raise CapeError(f"contrast set '{self.source}': labels must be booleans or 0/1")
            labels = labels.astype(bool)
        self.labels = labels
        self.groups = [str(g) for g in self.groups]
        if not len(self.statements) == len(self.labels) == len(self.groups):
            raise CapeError(f"contrast set '{self.source}': {len(self.statements)} statements, "
                            f"{len(self.labels)} labels and {len(self.groups)} groups differ in length")

    # -- sizes -----------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.statements)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ContrastSet):
            return NotImplemented
        return (self.statements == other.statements and self.groups == other.groups
                and np.array_equal(self.labels, other.labels))

    @property
    def n_true(self) -> int:
        return int(self.labels.sum())

    @property
    def n_false(self) -> int:
        return len(self) - self.n_true

    @property
    def n_groups(self) -> int:
        return len(set(self.groups))

    @property
    def is_two_sided(self) -> bool:
        """True when the set holds at least one true and one false statement."""
        return self.n_true > 0 and self.n_false > 0

    def require_two_sided(self) -> "ContrastSet":
        """Return ``self``, or raise :class:`CapeError` when the set is empty or one-sided."""
        if len(self) == 0:
            raise CapeError(f"contrast set '{self.source}' is empty: it needs true and false statements")
        if not self.is_two_sided:
            side = "true" if self.n_false == 0 else "false"
            raise CapeError(f"contrast set '{self.source}' is one-sided: all {len(self)} statements are "
                            f"{side}; extraction needs both true and false statements")
        return self

    # -- identity --------------------------------------------------------------------------
    def hash(self) -> str:
        """SHA-256 (hex) of the content: statements, labels and groups, in order.

        The digest is over the UTF-8 bytes of the compact JSON
        ``["cape-contrast-v1", statements, labels as 0/1, groups]``. It is order-sensitive
        (the same statements in another order hash differently, as they give another split),
        and it ignores ``source`` and ``notes``, so the same content read from two paths has
        one hash. Stable across runs, platforms and Python versions.
        """
        payload = [_HASH_VERSION, self.statements, self.labels.astype(int).tolist(), self.groups]
        text = json.dumps(payload, ensure_ascii=False, separators=(",", ":"))
        return hashlib.sha256(text.encode("utf-8")).hexdigest()

    # -- derived sets ----------------------------------------------------------------------
    def subset(self, index: Sequence[int] | np.ndarray, source: str | None = None) -> "ContrastSet":
        """The statements at ``index`` (integer positions or a boolean mask), order kept."""
        idx = np.asarray(index)
        if idx.dtype == bool:
            idx = np.flatnonzero(idx)
        idx = idx.astype(int)
        return ContrastSet([self.statements[i] for i in idx], self.labels[idx],
                           [self.groups[i] for i in idx], self.source if source is None else source,
                           list(self.notes))

    def _group_codes(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(sorted unique group ids, code per statement, true count per group, false count)."""
        uniq, codes = np.unique(np.asarray(self.groups, dtype=object).astype(str), return_inverse=True)
        n_true = np.bincount(codes, weights=self.labels, minlength=len(uniq)).astype(int)
        n_all = np.bincount(codes, minlength=len(uniq))
        return uniq, codes, n_true, n_all - n_true

    def split(self, seed: int = 0, eval_fraction: float = 0.3) -> tuple["ContrastSet", "ContrastSet"]:
        """Split BY GROUP into ``(extract_set, eval_set)``; no group lands on both sides.

        Method: groups are sorted by id and classed as mixed (true and false statements),
        true-only or false-only; within each class a permutation drawn from
        ``numpy.random.default_rng(seed)`` puts ``round(eval_fraction * n_class)`` groups
        (halves rounded up) on the evaluation side. Stratifying by class keeps both sides
        two-sided whenever the set allows it (a set of loose statements, one per group, is split
        per label). The result depends only on the content, ``seed`` and ``eval_fraction``.
        Both sides keep the original statement order.

        Raises :class:`CapeError` when ``eval_fraction`` is not in (0, 1), or when the set is too
        small for both sides to hold true and false statements.
        """
        if not 0.0 < float(eval_fraction) < 1.0:
            raise CapeError(f"eval_fraction must be between 0 and 1 (exclusive), got {eval_fraction}")
        self.require_two_sided()
        uniq, codes, n_true, n_false = self._group_codes()
        kind = np.where((n_true > 0) & (n_false > 0), 0, np.where(n_true > 0, 1, 2))
        rng = np.random.default_rng(seed)
        to_eval = np.zeros(len(uniq), dtype=bool)
        for k in (0, 1, 2):
            members = np.flatnonzero(kind == k)
            n_eval = int(np.floor(eval_fraction * len(members) + 0.5))
            to_eval[rng.permutation(members)[:n_eval]] = True
        mask = to_eval[codes]
        tag = f"seed={seed}, eval_fraction={eval_fraction}"
        ext = self.subset(~mask, source=f"{self.source} [extract: {tag}]")
        ev = self.subset(mask, source=f"{self.source} [eval: {tag}]")
        if not (ext.is_two_sided and ev.is_two_sided):
            raise CapeError(
                f"contrast set '{self.source}' is too small to split with eval_fraction={eval_fraction}: "
                f"{len(uniq)} groups ({self.n_true} true, {self.n_false} false statements) give an "
                f"extraction side with {ext.n_true} true/{ext.n_false} false and an evaluation side "
                f"with {ev.n_true} true/{ev.n_false} false; both need true and false statements",
                hint="add statements or change eval_fraction")
        return ext, ev

    def balanced(self) -> "ContrastSet":
        """Equal numbers of true and false statements in every mixed group.

        A group with k_true true and k_false false statements keeps its first
        min(k_true, k_false) of each, in order (for TruthfulQA: the Best Answer first, then the
        next Correct Answers, and the first Incorrect Answers). One-sided groups (a loose
        statement) cannot be balanced and are kept whole.
        """
        if len(self) == 0:
            return self.subset(np.zeros(0, dtype=int))
        _, codes, n_true, n_false = self._group_codes()
        key = codes * 2 + self.labels.astype(int)
        order = np.argsort(key, kind="stable")
        sorted_key = key[order]
        starts = np.flatnonzero(np.r_[True, sorted_key[1:] != sorted_key[:-1]])
        run_start = np.repeat(starts, np.diff(np.r_[starts, len(key)]))
        rank = np.empty(len(key), dtype=int)
        rank[order] = np.arange(len(key)) - run_start
        cap = np.minimum(n_true, n_false)
        cap = np.where(cap > 0, cap, np.maximum(n_true, n_false))  # one-sided groups: keep all
        out = self.subset(rank < cap[codes])
        dropped = len(self) - len(out)
        if dropped:
            out.notes.append(f"balanced: dropped {dropped} statements to give each question equal "
                             f"numbers of true and false statements")
        return out

    def sample(self, max_groups: int | None, seed: int = 0) -> "ContrastSet":
        """At most ``max_groups`` groups drawn without replacement by ``default_rng(seed)``.

        Groups are drawn from the sorted group ids; the kept statements stay in order. ``None``
        or a number at least the group count returns the set unchanged.
        """
        if max_groups is None:
            return self
        if int(max_groups) < 1:
            raise CapeError(f"max_questions must be at least 1, got {max_groups}")
        uniq, codes, _, _ = self._group_codes()
        if max_groups >= len(uniq):
            return self
        keep = np.zeros(len(uniq), dtype=bool)
        keep[np.random.default_rng(seed).choice(len(uniq), size=int(max_groups), replace=False)] = True
        out = self.subset(keep[codes])
        out.notes.append(f"sampled {int(max_groups)} of {len(uniq)} questions (seed {seed})")
        return out

    # -- presentation ----------------------------------------------------------------------
    def counts(self) -> dict[str, Any]:
        """Sizes and identity as a JSON-ready dict."""
        _, _, n_true, n_false = self._group_codes()
        return {"source": self.source, "n": len(self), "n_true": self.n_true, "n_false": self.n_false,
                "n_groups": int(len(n_true)), "n_mixed_groups": int(((n_true > 0) & (n_false > 0)).sum()),
                "hash": self.hash(), "notes": list(self.notes)}

    def summary(self) -> str:
        """A few lines a person can read: source, sizes, hash and loader notes."""
        c = self.counts()
        lines = [f"Contrast set {c['source'] or '(unnamed)'}: {c['n']} statements "
                 f"({c['n_true']} true, {c['n_false']} false) in {c['n_groups']} groups "
                 f"({c['n_mixed_groups']} with both)",
                 f"  sha256 {c['hash']}"]
        lines += [f"  note: {n}" for n in self.notes]
        return "\n".join(lines)

    def to_frame(self) -> pd.DataFrame:
        """Columns statement, label (bool), group."""
        return pd.DataFrame({"statement": self.statements, "label": self.labels, "group": self.groups})

    def save(self, path: str | Path) -> Path:
        """Write CSV (``.csv``/``.tsv``) or JSONL (``.jsonl``) that :func:`from_file` reads back
        to an equal set with the same hash."""
        path = Path(path)
        suffix = path.suffix.lower()
        if suffix in (".jsonl", ".ndjson"):
            with path.open("w", encoding="utf-8") as fh:
                for s, lab, g in zip(self.statements, self.labels.tolist(), self.groups):
                    fh.write(json.dumps({"statement": s, "label": int(lab), "group": g}, ensure_ascii=False) + "\n")
        elif suffix in (".csv", ".tsv"):
            frame = self.to_frame().assign(label=self.labels.astype(int))
            frame.to_csv(path, index=False, sep=_SUFFIXES[suffix], lineterminator="\n")
        else:
            raise CapeError(f"{path}: cannot write a contrast set as '{suffix}'; use .csv, .tsv or .jsonl")
        return path


# ---------------------------------------------------------------------------------------------
# Cleaning shared by all loaders
# ---------------------------------------------------------------------------------------------
def _clean(statements: list[str], labels: np.ndarray, groups: list[str], source: str,
           notes: list[str] | None = None) -> ContrastSet:
    """Drop statements that carry both labels within a group; keep repeats once (see module doc)."""
    frame = pd.DataFrame({"statement": statements, "label": np.asarray(labels, dtype=bool), "group": groups})
    notes = list(notes or [])
    if len(frame):
        n_labels = frame.groupby(["group", "statement"], sort=False)["label"].transform("nunique")
        ambiguous = (n_labels > 1).to_numpy()
        if ambiguous.any():
            examples = sorted(set(frame.loc[ambiguous, "statement"]))[:3]
            notes.append(f"dropped {int(ambiguous.sum())} statements labelled both true and false in one "
                         f"group ({len(set(frame.loc[ambiguous, 'statement']))} distinct, e.g. "
                         f"{'; '.join(repr(e) for e in examples)})")
            frame = frame.loc[~ambiguous]
        repeat = frame.duplicated(["group", "statement"], keep="first").to_numpy()
        if repeat.any():
            notes.append(f"kept {int(repeat.sum())} repeated statements once")
            frame = frame.loc[~repeat]
    return ContrastSet(frame["statement"].tolist(), frame["label"].to_numpy(bool), frame["group"].tolist(),
                       source, notes)


def _parse_label(value: Any, *, file: str, row: int) -> bool:
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, float, np.integer, np.floating)) and value in (0, 1):
        return bool(value)
    word = str(value).strip().lower() if value is not None else ""
    if word in _TRUE_WORDS:
        return _TRUE_WORDS[word]
    if word in ("1.0", "0.0"):
        return word == "1.0"
    shown = "empty" if word == "" else repr(value)
    raise InputError(f"label {shown} is not 0/1/true/false", file=file, row=row, field="label")


def truthfulqa_records(path: Path) -> list:
    """The data rows of a TruthfulQA.csv, ``(line, record)`` each, after checking its columns
    (an InputError naming the file and the missing column) and that it has rows."""
    header, records = _read_table(path, ",")
    for col in TRUTHFULQA_COLUMNS:
        if col not in header:
            raise InputError(f"missing column '{col}' (TruthfulQA.csv has {', '.join(TRUTHFULQA_COLUMNS)})",
                             file=path, field=col)
    if not records:
        raise InputError("no questions (the file has no data rows)", file=path)
    return records


def _check_path(path: str | Path) -> Path:
    path = Path(path).expanduser()
    if not path.is_file():
        raise CapeError(f"{path}: no such file (a contrast set is 'default', 'truthfulqa:PATH', "
                        f"'repe:PATH' or a CSV/TSV/JSONL path)")
    return path


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as err:
        raise InputError(f"not UTF-8 text ({err.reason} at byte {err.start})", file=path) from None


def _read_table(path: Path, sep: str) -> tuple[list[str], list[tuple[int, dict[str, str]]]]:
    """Header and (line number, record) pairs of a CSV/TSV; line 1 is the header."""
    text = _read_text(path)
    if not text.strip():
        raise InputError("the file is empty", file=path)
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=sep)
    try:
        header = [h.strip() for h in next(reader)]
        records = []
        for values in reader:
            if not any(v.strip() for v in values):
                continue
            if len(values) > len(header):
                raise InputError(f"{len(values)} fields but the header has {len(header)}",
                                 file=path, row=reader.line_num)
            records.append((reader.line_num, dict(zip(header, values))))
    except csv.Error as err:
        raise InputError(f"not valid CSV ({err})", file=path, row=reader.line_num) from None
    return header, records


def _read_json_records(path: Path) -> list[tuple[int, dict[str, Any]]]:
    text = _read_text(path)
    if not text.strip():
        raise InputError("the file is empty", file=path)
    if path.suffix.lower() == ".json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as err:
            raise InputError(f"not valid JSON ({err.msg})", file=path, row=err.lineno) from None
        if not isinstance(data, list):
            raise InputError("a .json contrast file must hold a list of objects", file=path)
        items = [(i, rec) for i, rec in enumerate(data, start=1)]
    else:
        items = []
        for i, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                items.append((i, json.loads(line)))
            except json.JSONDecodeError as err:
                raise InputError(f"not valid JSON ({err.msg})", file=path, row=i) from None
    for i, rec in items:
        if not isinstance(rec, dict):
            raise InputError(f"expected an object with statement and label, got {type(rec).__name__}",
                             file=path, row=i)
    return items


def _labelled(path: Path, records: list[tuple[int, dict[str, Any]]], columns: set[str],
              source: str, group_prefix: str) -> ContrastSet:
    """statement,label[,group] records -> a cleaned, two-sided ContrastSet."""
    if not records:
        raise InputError("no statements (the file has no data rows)", file=path)
    lower = {c.strip().lower(): c for c in columns}
    for need in ("statement", "label"):
        if need not in lower:
            raise InputError(f"missing column '{need}' (found: {', '.join(sorted(columns)) or 'none'})",
                             file=path, field=need)
    key_s, key_l, key_g = lower["statement"], lower["label"], lower.get("group")
    statements, labels, groups, lines = [], [], [], []
    for line, rec in records:
        text = rec.get(key_s)
        text = "" if text is None else str(text).strip()
        if not text:
            raise InputError("empty statement", file=path, row=line, field=key_s)
        statements.append(text)
        labels.append(_parse_label(rec.get(key_l), file=str(path), row=line))
        g = rec.get(key_g) if key_g else None
        groups.append("" if g is None else str(g).strip())
        lines.append(line)
    # A statement without a group is its own group, named by the line of its first occurrence,
    # so that repeats of one statement can never land on both sides of a split.
    frame = pd.DataFrame({"s": statements, "g": groups, "line": lines})
    first = frame.groupby("s", sort=False)["line"].transform("first")
    own = group_prefix + ":line" + first.astype(str)
    frame["g"] = np.where(frame["g"] == "", own, frame["g"])
    out = _clean(statements, np.array(labels, dtype=bool), frame["g"].tolist(), source)
    return _require(out, path)


def _require(cs: ContrastSet, path: Path) -> ContrastSet:
    try:
        return cs.require_two_sided()
    except CapeError as err:
        raise InputError(err.message.replace(f"contrast set '{cs.source}'", "the contrast set"),
                         file=path) from None


# ---------------------------------------------------------------------------------------------
# Loaders
# ---------------------------------------------------------------------------------------------
def _answers(text: str) -> list[str]:
    """TruthfulQA answer list -> answers: split on ';', stripped, empty pieces dropped."""
    return [a.strip() for a in text.split(";") if a.strip()]


def from_truthfulqa(path: str | Path, *, max_questions: int | None = None, seed: int = 0,
                    balanced: bool = True, template: str = TRUTHFULQA_TEMPLATE) -> ContrastSet:
    """Question + answer statements from TruthfulQA.csv.

    Every answer of a question gives one statement ``template.format(question=q, answer=a)``
    (default ``"Q: {question}\\nA: {answer}"``): the Best Answer (if not already among the
    Correct Answers) and the Correct Answers are true, the Incorrect Answers false. The group
    is ``"truthfulqa:N"``, N the question's 0-based row among the data rows, so splits never
    share a question. ``max_questions`` keeps that many questions drawn with ``seed`` (see
    :meth:`ContrastSet.sample`). ``balanced`` (default True) keeps min(k_true, k_false)
    statements of each side per question (:meth:`ContrastSet.balanced`): TruthfulQA has more
    incorrect than correct answers, and equal classes make 50% the chance level of a probe.
    The loader's ``notes`` say what cleaning and balancing dropped; ``summary()`` shows them.
    """
    path = _check_path(path)
    records = truthfulqa_records(path)
    statements: list[str] = []
    labels: list[bool] = []
    groups: list[str] = []
    for n, (line, rec) in enumerate(records):
        question = (rec.get("Question") or "").strip()
        if not question:
            raise InputError("empty question", file=path, row=line, field="Question")
        best = (rec.get("Best Answer") or "").strip()
        correct = _answers(rec.get("Correct Answers") or "")
        if best and best not in correct:
            correct.insert(0, best)
        elif best:
            correct.remove(best)
            correct.insert(0, best)
        if not correct:
            raise InputError("no correct answer", file=path, row=line, field="Correct Answers")
        incorrect = _answers(rec.get("Incorrect Answers") or "")
        if not incorrect:
            raise InputError("no incorrect answer", file=path, row=line, field="Incorrect Answers")
        answers = correct + incorrect
        statements += [template.format(question=question, answer=a) for a in answers]
        labels += [True] * len(correct) + [False] * len(incorrect)
        groups += [f"truthfulqa:{n}"] * len(answers)
    notes = [f"{len(records)} questions; statement = {template!r}"]
    out = _clean(statements, np.array(labels, dtype=bool), groups, f"truthfulqa:{path}", notes)
    out = out.sample(max_questions, seed)
    if balanced:
        out = out.balanced()
    return _require(out, path)


def from_repe_facts(path: str | Path) -> ContrastSet:
    """The representation-engineering facts file (CSV: statement,label with 1/0).

    Each statement is its own group (repeats of one statement share the group of its first
    line, ``"repe:lineN"``); the cleaning rules of the module docstring apply (the released
    file repeats some statements and labels one both true and false).
    """
    path = _check_path(path)
    header, records = _read_table(path, ",")
    return _labelled(path, records, set(header), f"repe:{path}", "repe")


def from_file(path: str | Path) -> ContrastSet:
    """A user's labelled statements: ``.csv``, ``.tsv``, ``.jsonl``/``.ndjson`` or ``.json``
    (a list of objects), with fields ``statement``, ``label`` and optionally ``group``
    (names in any case; other fields ignored). A statement without a group is its own group.
    """
    path = _check_path(path)
    suffix = path.suffix.lower()
    if suffix not in _SUFFIXES:
        raise InputError(f"unknown file type '{suffix}' (use .csv, .tsv, .jsonl, .ndjson or .json "
                         f"with statement,label[,group])", file=path)
    if _SUFFIXES[suffix] is not None:
        header, records = _read_table(path, _SUFFIXES[suffix])
        columns: set[str] = set(header)
    else:
        records = _read_json_records(path)
        columns = set().union(*(rec.keys() for _, rec in records)) if records else set()
    return _labelled(path, records, columns, f"file:{path}", "file")


def load_contrast(spec: "str | Path | ContrastSet", *, max_questions: int | None = None, seed: int = 0,
                  balanced: bool | None = None) -> ContrastSet:
    """A contrast set from a spec: ``"default"``, ``"truthfulqa:PATH"``, ``"repe:PATH"``,
    ``"file:PATH"``, or a path (a CSV with the TruthfulQA columns is read as TruthfulQA, any
    other file by :func:`from_file`). A :class:`ContrastSet` is returned as it is.

    ``max_questions`` keeps that many groups drawn with ``seed``; ``balanced`` balances each
    group (default: True for TruthfulQA, False otherwise, where groups are usually loose
    statements).
    """
    if isinstance(spec, ContrastSet):
        out = spec
    else:
        text = str(spec).strip()
        kind, _, rest = text.partition(":")
        if text.lower() == "default":
            out = default_set()
        elif kind.lower() == "truthfulqa" and rest:
            return from_truthfulqa(rest, max_questions=max_questions, seed=seed,
                                   balanced=True if balanced is None else balanced)
        elif kind.lower() == "repe" and rest:
            out = from_repe_facts(rest)
        elif kind.lower() == "file" and rest:
            out = from_file(rest)
        else:
            path = _check_path(text)
            if path.suffix.lower() == ".csv" and _has_truthfulqa_header(path):
                return from_truthfulqa(path, max_questions=max_questions, seed=seed,
                                       balanced=True if balanced is None else balanced)
            out = from_file(path)
    out = out.sample(max_questions, seed)
    if balanced:
        out = out.balanced()
    return out.require_two_sided()


def _has_truthfulqa_header(path: Path) -> bool:
    with path.open(encoding="utf-8-sig", errors="replace", newline="") as fh:
        header = next(csv.reader(fh), [])
    return all(c in [h.strip() for h in header] for c in TRUTHFULQA_COLUMNS)


# ---------------------------------------------------------------------------------------------
# The default set (written for CAPE; MIT licence, like the repository)
# ---------------------------------------------------------------------------------------------
#: 40 (true, false) pairs of plain, uncontroversial facts; each pair is one group.
DEFAULT_PAIRS: tuple[tuple[str, str], ...] = (
    ("Paris is the capital of France.", "Paris is the capital of Germany."),
    ("Water boils at 100 degrees Celsius at sea level.", "Water boils at 50 degrees Celsius at sea level."),
    ("The Earth orbits the Sun.", "The Sun orbits the Earth."),
    ("A week has seven days.", "A week has ten days."),
    ("Ice is frozen water.", "Ice is frozen oil."),
    ("Spiders have eight legs.", "Spiders have six legs."),
    ("The Pacific is the largest ocean on Earth.", "The Arctic is the largest ocean on Earth."),
    ("Two plus two equals four.", "Two plus two equals five."),
    ("Most fish breathe with gills.", "Most fish breathe with lungs."),
    ("The Moon orbits the Earth.", "The Moon orbits Mars."),
    ("A triangle has three sides.", "A triangle has five sides."),
    ("Tokyo is the capital of Japan.", "Tokyo is the capital of China."),
    ("Bees make honey.", "Bees make milk."),
    ("The chemical symbol for gold is Au.", "The chemical symbol for gold is Fe."),
    ("A year has twelve months.", "A year has nine months."),
    ("The heart pumps blood through the body.", "The stomach pumps blood through the body."),
    ("Mount Everest is the highest mountain above sea level.",
     "Mount Fuji is the highest mountain above sea level."),
    ("Snow is cold.", "Snow is hot."),
    ("Penguins are birds.", "Penguins are fish."),
    ("Whales are mammals.", "Whales are insects."),
    ("Light travels faster than sound.", "Sound travels faster than light."),
    ("The Sahara is a desert.", "The Sahara is a rainforest."),
    ("Ten is greater than three.", "Three is greater than ten."),
    ("Shakespeare wrote Hamlet.", "Shakespeare wrote Don Quixote."),
    ("The Nile is a river in Africa.", "The Nile is a river in South America."),
    ("Green plants take in carbon dioxide for photosynthesis.",
     "Green plants take in helium for photosynthesis."),
    ("A square has four equal sides.", "A square has three equal sides."),
    ("Iron is a solid at room temperature.", "Iron is a gas at room temperature."),
    ("Canberra is the capital of Australia.", "Sydney is the capital of Australia."),
    ("Water freezes at 0 degrees Celsius.", "Water freezes at 30 degrees Celsius."),
    ("An hour has sixty minutes.", "An hour has forty minutes."),
    ("Cows eat grass.", "Cows eat rocks."),
    ("The Earth has one natural moon.", "The Earth has four natural moons."),
    ("Diamonds are made of carbon.", "Diamonds are made of copper."),
    ("Jupiter is the largest planet in the Solar System.", "Mercury is the largest planet in the Solar System."),
    ("A healthy adult human has two lungs.", "A healthy adult human has five lungs."),
    ("The Sun rises in the east.", "The Sun rises in the west."),
    ("Rome is a city in Italy.", "Rome is a city in Spain."),
    ("A century is one hundred years.", "A century is ten years."),
    ("Eight is an even number.", "Seven is an even number."),
)


def default_set() -> ContrastSet:
    """The 40 pairs of :data:`DEFAULT_PAIRS` (true then false; group ``"default:NN"``, NN = 01..40)."""
    statements = [s for pair in DEFAULT_PAIRS for s in pair]
    labels = np.tile([True, False], len(DEFAULT_PAIRS))
    groups = [f"default:{i:02d}" for i in range(1, len(DEFAULT_PAIRS) + 1) for _ in (0, 1)]
    return ContrastSet(statements, labels, groups, "default")
