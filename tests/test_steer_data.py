"""cape.steer.data: contrast sets, loaders, the leak-free split, the hash, bad input."""

from __future__ import annotations

import csv
import hashlib
import json
import subprocess
import sys
from collections import defaultdict

import numpy as np
import pytest

from cape.errors import CapeError, InputError
from cape.steer.data import (DEFAULT_PAIRS, TRUTHFULQA_TEMPLATE, ContrastSet, default_set, from_file,
                             from_repe_facts, from_truthfulqa, load_contrast)


# ---------------------------------------------------------------------------------------------
# Real files (skipped when ../shared is absent)
# ---------------------------------------------------------------------------------------------
@pytest.fixture
def tqa_path(shared_data):
    path = shared_data / "data" / "truthfulqa" / "TruthfulQA.csv"
    if not path.is_file():
        pytest.skip(f"{path} is absent")
    return path


@pytest.fixture
def repe_path(shared_data):
    path = shared_data / "data" / "repe-facts" / "facts_true_false.csv"
    if not path.is_file():
        pytest.skip(f"{path} is absent")
    return path


def _tqa_by_hand(path):
    """The documented construction, written out with the csv module: per question the Best
    Answer, the other Correct Answers, then the Incorrect Answers; answers split on ';' and
    stripped; an answer in both lists dropped; a repeat within a list kept once."""
    with open(path, newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    statements, labels, groups = [], [], []
    for n, row in enumerate(rows):
        q = row["Question"].strip()
        correct = [a.strip() for a in row["Correct Answers"].split(";") if a.strip()]
        incorrect = [a.strip() for a in row["Incorrect Answers"].split(";") if a.strip()]
        best = row["Best Answer"].strip()
        correct = [best] + [a for a in correct if a != best]
        both = set(correct) & set(incorrect)
        for answers, label in ((correct, True), (incorrect, False)):
            seen = set()
            for a in answers:
                if a in both or a in seen:
                    continue
                seen.add(a)
                statements.append(f"Q: {q}\nA: {a}")
                labels.append(label)
                groups.append(f"truthfulqa:{n}")
    return rows, statements, np.array(labels), groups


def test_truthfulqa_round_trip(tqa_path):
    rows, statements, labels, groups = _tqa_by_hand(tqa_path)
    cs = from_truthfulqa(tqa_path, balanced=False)
    assert cs.n_groups == len(rows) == 817
    assert cs.statements == statements
    assert np.array_equal(cs.labels, labels)
    assert cs.groups == groups
    assert TRUTHFULQA_TEMPLATE == "Q: {question}\nA: {answer}"
    # the first statement of every question is its Best Answer, labelled true
    first = {g: i for i, g in reversed(list(enumerate(cs.groups)))}
    for n, row in enumerate(rows[:50]):
        i = first[f"truthfulqa:{n}"]
        assert cs.labels[i] and cs.statements[i].endswith("A: " + row["Best Answer"].strip())
    # "Unknown" is both correct and incorrect for two questions: gone from both sides
    both = [i for i, row in enumerate(rows)
            if "Unknown" in row["Correct Answers"].split("; ") and "Unknown" in row["Incorrect Answers"].split("; ")]
    assert len(both) == 2
    assert not any(s.endswith("\nA: Unknown") and g in {f"truthfulqa:{i}" for i in both}
                   for s, g in zip(cs.statements, cs.groups))
    assert cs.n_false > cs.n_true  # TruthfulQA has more incorrect answers than correct ones


def test_truthfulqa_balanced(tqa_path):
    _, statements, labels, groups = _tqa_by_hand(tqa_path)
    full = from_truthfulqa(tqa_path, balanced=False)
    cs = from_truthfulqa(tqa_path)  # balanced by default
    per_t, per_f = defaultdict(int), defaultdict(int)
    for g, lab in zip(groups, labels):
        (per_t if lab else per_f)[g] += 1
    expected = sum(min(per_t[g], per_f[g]) for g in per_t)
    assert cs.n_true == cs.n_false == expected
    assert cs.n_groups == 817
    kept_t, kept_f = defaultdict(int), defaultdict(int)
    for g, lab in zip(cs.groups, cs.labels):
        (kept_t if lab else kept_f)[g] += 1
    assert all(kept_t[g] == kept_f[g] for g in kept_t)
    # kept statements are the first ones of each side, in file order
    assert set(cs.statements) <= set(full.statements)
    for g in list(per_t)[:30]:
        side_t = [s for s, gg, lab in zip(full.statements, full.groups, full.labels) if gg == g and lab]
        got_t = [s for s, gg, lab in zip(cs.statements, cs.groups, cs.labels) if gg == g and lab]
        assert got_t == side_t[:len(got_t)]


def test_repe_facts_counts(repe_path):
    with open(repe_path, newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    label_sets = defaultdict(set)
    for r in rows:
        label_sets[r["statement"].strip()].add(r["label"].strip())
    n_true = sum(1 for v in label_sets.values() if v == {"1"})
    n_false = sum(1 for v in label_sets.values() if v == {"0"})
    cs = from_repe_facts(repe_path)
    assert (cs.n_true, cs.n_false) == (n_true, n_false)
    assert cs.n_groups == len(cs) == n_true + n_false
    assert len(rows) > len(cs)  # the file repeats statements; notes say so
    assert any("repeated" in n for n in cs.notes)
    assert any("both true and false" in n for n in cs.notes)
    # the same result through the spec entry point
    assert load_contrast(f"repe:{repe_path}").hash() == cs.hash()


# ---------------------------------------------------------------------------------------------
# The split
# ---------------------------------------------------------------------------------------------
def _check_split(cs, seed, frac=0.3):
    ext, ev = cs.split(seed, eval_fraction=frac)
    assert not set(ext.groups) & set(ev.groups)
    assert len(ext) + len(ev) == len(cs)
    assert sorted(ext.statements + ev.statements) == sorted(cs.statements)
    assert ext.is_two_sided and ev.is_two_sided
    return ext, ev


@pytest.mark.parametrize("which", ["default", "truthfulqa", "repe"])
def test_split_no_leak_deterministic(which, request):
    if which == "default":
        cs = default_set()
    elif which == "truthfulqa":
        cs = from_truthfulqa(request.getfixturevalue("tqa_path"))
    else:
        cs = from_repe_facts(request.getfixturevalue("repe_path"))
    eval_hashes = []
    for seed in range(21):
        ext, ev = _check_split(cs, seed)
        ext2, ev2 = cs.split(seed)
        assert ext == ext2 and ev == ev2  # deterministic per seed
        n_groups = cs.n_groups
        assert abs(ev.n_groups - 0.3 * n_groups) <= 2
        eval_hashes.append(ev.hash())
    assert len(set(eval_hashes)) == 21  # every seed gives another split


def test_split_keeps_loose_statements_two_sided():
    # one statement per group, 3 true then 3 false: a plain group permutation could leave a side
    # one-sided; the stratified split never does
    cs = ContrastSet(list("abcdef"), np.array([1, 1, 1, 0, 0, 0], bool), list("abcdef"), "loose")
    for seed in range(21):
        _check_split(cs, seed, frac=0.34)


def test_split_too_small_and_bad_fraction():
    one_pair = ContrastSet(["x is true", "x is false"], np.array([True, False]), ["q1", "q1"], "tiny")
    with pytest.raises(CapeError, match="too small to split") as err:
        one_pair.split(0)
    assert "tiny" in str(err.value) and "\n" not in str(err.value)
    two_pairs = ContrastSet(["a", "b", "c", "d"], np.array([1, 0, 1, 0], bool), ["p", "p", "q", "q"], "two")
    _check_split(two_pairs, 0)  # the smallest set that splits
    for frac in (0.0, 1.0, -0.2, 1.5):
        with pytest.raises(CapeError, match="eval_fraction"):
            default_set().split(0, eval_fraction=frac)
    one_sided = ContrastSet(["a", "b"], np.array([True, True]), ["p", "q"], "ones")
    with pytest.raises(CapeError, match="one-sided"):
        one_sided.split(0)


# ---------------------------------------------------------------------------------------------
# Hash, default set, small helpers
# ---------------------------------------------------------------------------------------------
def test_hash_documented_stable_and_sensitive():
    cs = default_set()
    payload = ["cape-contrast-v1", cs.statements, cs.labels.astype(int).tolist(), cs.groups]
    text = json.dumps(payload, ensure_ascii=False, separators=(",", ":"))
    assert cs.hash() == hashlib.sha256(text.encode("utf-8")).hexdigest()
    # stable across runs: a fresh interpreter computes the same digest
    out = subprocess.run([sys.executable, "-c", "from cape.steer.data import default_set; "
                          "print(default_set().hash())"], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == cs.hash()
    flipped = ContrastSet(cs.statements, cs.labels.copy(), cs.groups, cs.source)
    flipped.labels[5] = not flipped.labels[5]
    assert flipped.hash() != cs.hash()
    reordered = cs.subset(np.r_[1, 0, np.arange(2, len(cs))])
    assert reordered.hash() != cs.hash()  # order-sensitive, as documented
    renamed = ContrastSet(cs.statements, cs.labels, cs.groups, "elsewhere")
    assert renamed.hash() == cs.hash()  # source is not part of the content


def test_default_set():
    cs = default_set()
    assert len(DEFAULT_PAIRS) == 40 and len(cs) == 80
    assert cs.n_true == cs.n_false == cs.n_groups == 40
    assert len(set(cs.statements)) == 80
    for g in set(cs.groups):
        labs = [lab for gg, lab in zip(cs.groups, cs.labels) if gg == g]
        assert sorted(labs) == [False, True]
    assert "80 statements" in cs.summary() and cs.hash() in cs.summary()
    assert load_contrast("default") == cs


def test_balanced_and_sample_constructed():
    cs = ContrastSet(["t1", "t2", "t3", "f1", "loose", "u1", "f2", "f3"],
                     np.array([1, 1, 1, 0, 1, 1, 0, 0], bool),
                     ["a", "a", "a", "a", "b", "c", "c", "c"], "built")
    bal = cs.balanced()
    assert bal.statements == ["t1", "f1", "loose", "u1", "f2"]
    assert any("balanced" in n for n in bal.notes)
    assert cs.sample(None) is cs and cs.sample(10) is cs
    s1, s2 = cs.sample(2, seed=3), cs.sample(2, seed=3)
    assert s1 == s2 and s1.n_groups == 2
    with pytest.raises(CapeError, match="at least 1"):
        cs.sample(0)


def test_constructor_checks():
    with pytest.raises(CapeError, match="differ in length"):
        ContrastSet(["a", "b"], np.array([True]), ["g", "g"])
    with pytest.raises(CapeError, match="booleans or 0/1"):
        ContrastSet(["a"], np.array([2]), ["g"])
    assert ContrastSet(["a", "b"], [1, 0], ["g", "g"]).labels.dtype == bool


# ---------------------------------------------------------------------------------------------
# A user's files
# ---------------------------------------------------------------------------------------------
def test_user_csv_and_jsonl(tmp_path):
    csv_file = tmp_path / "mine.csv"
    csv_file.write_text("Statement,Label,Group,comment\n"
                        "\"Grass is green, mostly.\",1,q1,x\n"
                        "Grass is purple.,0,q1,\n"
                        "Fire is hot.,TRUE,q2,\n"
                        "Fire is cold.,false,q2,\n"
                        "\n"
                        "Fire is hot.,1,q2,\n", encoding="utf-8")
    cs = from_file(csv_file)
    assert cs.statements == ["Grass is green, mostly.", "Grass is purple.", "Fire is hot.", "Fire is cold."]
    assert cs.labels.tolist() == [True, False, True, False]
    assert cs.groups == ["q1", "q1", "q2", "q2"]
    assert any("repeated" in n for n in cs.notes)

    jsonl = tmp_path / "mine.jsonl"
    jsonl.write_text("\n".join(json.dumps(r) for r in [
        {"statement": "Grass is green, mostly.", "label": True, "group": "q1"},
        {"statement": "Grass is purple.", "label": 0, "group": "q1"},
        {"statement": "Fire is hot.", "label": "1", "group": "q2"},
        {"statement": "Fire is cold.", "label": False, "group": "q2"},
    ]) + "\n\n", encoding="utf-8")
    assert from_file(jsonl).hash() == cs.hash()
    assert load_contrast(str(jsonl)).hash() == cs.hash()
    as_list = tmp_path / "mine.json"
    as_list.write_text(json.dumps([json.loads(x) for x in jsonl.read_text().split("\n") if x]))
    assert from_file(as_list).hash() == cs.hash()

    # no group column: each statement its own group, repeats of one statement share it
    loose = tmp_path / "loose.tsv"
    loose.write_text("statement\tlabel\nA is A.\t1\nA is B.\t0\nA is A.\t1\n", encoding="utf-8")
    ls = from_file(loose)
    assert ls.statements == ["A is A.", "A is B."] and ls.n_groups == 2
    assert ls.groups == ["file:line2", "file:line3"]

    # save -> from_file gives the same content and hash, for CSV and JSONL
    tqa_like = default_set()
    for name in ("back.csv", "back.jsonl"):
        back = from_file(tqa_like.save(tmp_path / name))
        assert back == tqa_like and back.hash() == tqa_like.hash()


def test_load_contrast_dispatch(tqa_path, tmp_path):
    by_prefix = load_contrast(f"truthfulqa:{tqa_path}", max_questions=20, seed=1)
    by_path = load_contrast(tqa_path, max_questions=20, seed=1)
    assert by_prefix == by_path and by_prefix.n_groups == 20
    assert by_prefix == from_truthfulqa(tqa_path, max_questions=20, seed=1)
    assert by_prefix != load_contrast(tqa_path, max_questions=20, seed=2)
    assert by_prefix.n_true == by_prefix.n_false
    unbalanced = load_contrast(tqa_path, balanced=False)
    assert unbalanced == from_truthfulqa(tqa_path, balanced=False)
    cs = default_set()
    assert load_contrast(cs) is cs
    f = cs.save(tmp_path / "d.csv")
    assert load_contrast(f"file:{f}") == cs and load_contrast(f) == cs


# ---------------------------------------------------------------------------------------------
# Bad input: one line naming the file, row and field
# ---------------------------------------------------------------------------------------------
def _bad(tmp_path, name, text, match, row=None, field=None, loader=from_file):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    with pytest.raises(CapeError, match=match) as err:
        loader(path)
    msg = str(err.value)
    assert "\n" not in msg and str(path) in msg, msg
    if row is not None:
        assert f"row {row}" in msg, msg
    if field is not None:
        assert f"field '{field}'" in msg, msg
    return err.value


def test_bad_user_files(tmp_path):
    _bad(tmp_path, "empty.csv", "", "empty")
    _bad(tmp_path, "header.csv", "statement,label\n", "no statements")
    _bad(tmp_path, "empty.jsonl", "\n\n", "empty")
    _bad(tmp_path, "nolabel.csv", "statement,truth\nA.,1\n", "missing column 'label'", field="label")
    _bad(tmp_path, "nostmt.jsonl", '{"text": "A.", "label": 1}\n', "missing column 'statement'",
         field="statement")
    for value in ("maybe", "2", "yes", ""):
        _bad(tmp_path, "lab.csv", f"statement,label\nA.,1\nB.,{value}\n", "is not 0/1/true/false",
             row=3, field="label")
    _bad(tmp_path, "lab.jsonl", '{"statement": "A.", "label": 1}\n{"statement": "B.", "label": 0.5}\n',
         "is not 0/1/true/false", row=2, field="label")
    _bad(tmp_path, "blank.csv", "statement,label\nA.,1\n  ,0\n", "empty statement", row=3, field="statement")
    err = _bad(tmp_path, "ones.csv", "statement,label\nA.,1\nB.,true\n", "one-sided")
    assert isinstance(err, InputError) and "all 2 statements are true" in str(err)
    _bad(tmp_path, "zeros.jsonl", '{"statement": "A.", "label": 0}\n', "one-sided")
    _bad(tmp_path, "broken.jsonl", '{"statement": "A.", "label": 1}\n{"statement": \n', "not valid JSON", row=2)
    _bad(tmp_path, "list.jsonl", '["A.", 1]\n', "expected an object", row=1)
    _bad(tmp_path, "obj.json", '{"statement": "A."}', "list of objects")
    _bad(tmp_path, "x.txt", "statement,label\n", "unknown file type")
    _bad(tmp_path, "wide.csv", "statement,label\nA.,1,extra\n", "fields but the header", row=2)
    latin = tmp_path / "latin.csv"
    latin.write_bytes("statement,label\nCaf\xe9.,1\n".encode("latin-1"))
    with pytest.raises(InputError, match="not UTF-8"):
        from_file(latin)
    with pytest.raises(CapeError, match="no such file"):
        from_file(tmp_path / "missing.csv")
    with pytest.raises(CapeError, match="no such file"):
        load_contrast("nonsense-spec")
    _bad(tmp_path, "repe.csv", "statement,label\nA.,1\nB.,x\n", "0/1/true/false", row=3, field="label",
         loader=from_repe_facts)


TQA_HEADER = "Type,Category,Question,Best Answer,Correct Answers,Incorrect Answers,Source\n"


def test_bad_truthfulqa_files(tmp_path):
    tq = from_truthfulqa
    _bad(tmp_path, "t0.csv", "", "empty", loader=tq)
    _bad(tmp_path, "t1.csv", TQA_HEADER, "no questions", loader=tq)
    _bad(tmp_path, "t2.csv", "Type,Question,Best Answer,Correct Answers,Source\nA,Q?,x,x,s\n",
         "missing column 'Incorrect Answers'", field="Incorrect Answers", loader=tq)
    _bad(tmp_path, "t3.csv", TQA_HEADER + "A,C,Q?,yes,yes; sure,no; nope,s\nA,C, ,yes,yes,no,s\n",
         "empty question", row=3, field="Question", loader=tq)
    _bad(tmp_path, "t4.csv", TQA_HEADER + "A,C,Q?,yes,yes,  ; ,s\n", "no incorrect answer", row=2,
         field="Incorrect Answers", loader=tq)
    _bad(tmp_path, "t5.csv", TQA_HEADER + "A,C,Q?,,,no,s\n", "no correct answer", row=2,
         field="Correct Answers", loader=tq)
    # a valid two-question file, with the Best Answer missing from Correct Answers
    ok = tmp_path / "ok.csv"
    ok.write_text(TQA_HEADER + "A,C,Is ice cold?,Yes,It is cold; Yes,No; It is hot,s\n"
                  "A,C,Is fire hot?,Yes,Yes,No,s\n", encoding="utf-8")
    cs = from_truthfulqa(ok, balanced=False)
    assert cs.statements[:3] == ["Q: Is ice cold?\nA: Yes", "Q: Is ice cold?\nA: It is cold",
                                 "Q: Is ice cold?\nA: No"]
    assert cs.groups == ["truthfulqa:0"] * 4 + ["truthfulqa:1"] * 2
    assert from_truthfulqa(ok).statements == cs.statements  # 2 true, 2 false: nothing to drop
    assert from_truthfulqa(ok, max_questions=1, seed=0).n_groups == 1
    ok.write_text(TQA_HEADER + "A,C,Is ice cold?,Yes,It is cold; Yes; Very,No,s\n", encoding="utf-8")
    assert from_truthfulqa(ok).statements == ["Q: Is ice cold?\nA: Yes", "Q: Is ice cold?\nA: No"]
    custom = from_truthfulqa(ok, template="{question} {answer}")
    assert custom.statements[0] == "Is ice cold? Yes"


def test_leak_check_can_fail():
    """The no-leak assertion is not vacuous: a split by statement instead of by group leaks."""
    cs = default_set()
    perm = np.random.default_rng(0).permutation(len(cs))
    naive_eval, naive_ext = cs.subset(np.sort(perm[:24])), cs.subset(np.sort(perm[24:]))
    assert set(naive_ext.groups) & set(naive_eval.groups)
    ext, ev = cs.split(0)
    assert not set(ext.groups) & set(ev.groups)


def test_no_lazy_name_of_cape_steer_is_also_a_submodule():
    """A lazily exported function named like its module would flip between function and module
    depending on import order (cape.steer.extract was renamed extraction for this reason)."""
    import pkgutil

    import cape.steer

    modules = {m.name for m in pkgutil.iter_modules(cape.steer.__path__)}
    assert not set(cape.steer.__all__) & modules, set(cape.steer.__all__) & modules
    assert set(cape.steer.__all__) == set(cape.steer._WHERE)
