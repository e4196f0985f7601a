"""The benchmark registry: canonical names, the one alias table, and variant preferences.

Every benchmark name that enters CAPE (a CSV column, an lm-eval task, a leaderboard key)
goes through :func:`resolve`, which returns the canonical name plus whatever the name says
about the variant (``truthfulqa_mc2`` -> variant ``mc2``) and the shot count
(``hellaswag_10shot`` -> 10 shots).

Example
-------
>>> resolve("HellaSwag (10-shot)")
BenchmarkName(benchmark='hellaswag', variant=None, n_shot=10)
>>> resolve("truthfulqa_mc2").variant
'mc2'
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass, field

__all__ = [
    "Benchmark",
    "BenchmarkName",
    "BENCHMARKS",
    "UNSPECIFIED",
    "normalise_key",
    "UNREGISTERED",
    "unregistered_name",
    "resolve",
    "try_resolve",
    "suggest",
    "variant_rank",
]

#: Variant recorded when an input does not say which metric a score is (acc or acc_norm,
#: mc1 or mc2...). It is kept distinct on purpose: guessing would mix levels 15 points apart.
UNSPECIFIED = "unspecified"


@dataclass(frozen=True)
class Benchmark:
    """A benchmark CAPE knows.

    ``variants`` is the preference order used when a wide table needs one value per model;
    ``items`` is the size of the evaluation set, used for binomial noise floors.
    """

    name: str
    title: str
    variants: tuple[str, ...] = ()
    aliases: tuple[str, ...] = ()
    items: int | None = None
    # alias -> variant it implies, e.g. "truthfulqa_mc2" -> "mc2"
    variant_aliases: dict[str, str] = field(default_factory=dict)


# Item counts are dataset sizes (definitions, not results): the evaluation split the
# standard harness settings score on.
BENCHMARKS: dict[str, Benchmark] = {
    b.name: b
    for b in [
        Benchmark("hellaswag", "HellaSwag", ("acc_norm", "acc"), ("hella_swag", "hs"), items=10042),
        Benchmark(
            "truthfulqa",
            "TruthfulQA",
            ("mc2", "mc1"),
            ("truthful_qa", "tqa", "truthfulqa_mc"),
            items=817,
            variant_aliases={"truthfulqa_mc1": "mc1", "truthfulqa_mc2": "mc2", "tqa_mc1": "mc1",
                             "tqa_mc2": "mc2"},
        ),
        Benchmark("arc_challenge", "ARC-Challenge", ("acc_norm", "acc"),
                  ("arc", "arc_c", "ai2_arc", "arc_challenge_25shot"), items=1172),
        Benchmark("arc_easy", "ARC-Easy", ("acc_norm", "acc"), ("arc_e",), items=2376),
        Benchmark("mmlu", "MMLU", ("acc",), ("hendryckstest", "mmlu_avg"), items=14042),
        # "acc" is the Open LLM Leaderboard v2 setting (leaderboard_mmlu_pro: 5-shot, multiple
        # choice by log-likelihood); "exact_match:custom-extract" the generative CoT one.
        Benchmark("mmlu_pro", "MMLU-Pro", ("exact_match:custom-extract", "acc"),
                  ("mmlupro", "leaderboard_mmlu_pro"), items=12032),
        Benchmark("winogrande", "WinoGrande", ("acc",), ("wg", "wino_grande"), items=1267),
        Benchmark(
            "gsm8k",
            "GSM8K",
            ("exact_match:strict-match", "acc", "exact_match:flexible-extract"),
            ("gsm_8k",),
            items=1319,
        ),
        Benchmark("xwinograd", "XWinograd", ("acc",), ("x_winograd",)),
        Benchmark("humaneval", "HumanEval", ("pass@1",), ("human_eval",), items=164),
        Benchmark("gpqa_diamond", "GPQA Diamond", ("acc_norm", "acc"),
                  ("gpqa", "gpqa_d", "gpqadiamond"), items=198),
        # The Open LLM Leaderboard v2 "GPQA": the lm-eval group leaderboard_gpqa, i.e. gpqa_main
        # (448), gpqa_extended (546) and gpqa_diamond (198) zero-shot, averaged over all 1192
        # item evaluations. Not comparable with Diamond alone. The three sets nest (diamond in
        # main in extended), so the distinct questions, used for noise floors, are the 546.
        Benchmark("gpqa_all", "GPQA (main + extended + diamond)", ("acc_norm", "acc"),
                  ("leaderboard_gpqa", "gpqa_main_extended_diamond"), items=546),
        Benchmark("swe_bench_verified", "SWE-bench Verified", ("resolved",),
                  ("swe", "swebench_verified", "swe_verified", "swe_bench_v"), items=500),
        # strict_acc_mean: the mean of prompt-level and instruction-level strict accuracy, the
        # Open LLM Leaderboard v2 IFEval score (leaderboard_ifeval, 541 prompts, 834 instructions),
        # preferred: the v2 contents table has only it, and the lm-eval and lighteval readers
        # add it, so one column holds one measure whatever the source.
        Benchmark("ifeval", "IFEval", ("strict_acc_mean", "prompt_level_strict_acc", "inst_level_strict_acc",
                                       "prompt_level_loose_acc", "inst_level_loose_acc"),
                  ("if_eval", "leaderboard_ifeval"), items=541),
        Benchmark("hle", "Humanity's Last Exam", ("acc",), ("humanitys_last_exam",), items=2500),
        # acc_norm: the Open LLM Leaderboard v2 setting (leaderboard_bbh: 24 tasks, 3-shot,
        # multiple choice); exact_match: the generative setting.
        Benchmark("bbh", "BIG-Bench Hard", ("exact_match", "acc_norm"), ("big_bench_hard", "leaderboard_bbh")),
        Benchmark("math", "MATH", ("exact_match",), ("minerva_math",)),
        # The level-5 problems of MATH only (lm-eval leaderboard_math_hard, 4-shot, Minerva
        # answer checking); far harder than MATH as a whole, so a benchmark of its own.
        Benchmark("math_lvl5", "MATH Level 5", ("exact_match",),
                  ("math_lvl_5", "math_level_5", "math_hard", "leaderboard_math_hard"), items=1324),
        # MuSR: murder mysteries (250), object placements (256), team allocation (250).
        Benchmark("musr", "MuSR", ("acc_norm",), ("mu_sr", "leaderboard_musr"), items=756),
        Benchmark("piqa", "PIQA", ("acc_norm", "acc"), ()),
        Benchmark("boolq", "BoolQ", ("acc",), ()),
        Benchmark("openbookqa", "OpenBookQA", ("acc_norm", "acc"), ("obqa",)),
        Benchmark("lambada", "LAMBADA", ("acc",), ("lambada_openai",)),
        Benchmark("sciq", "SciQ", ("acc_norm", "acc"), ()),
        Benchmark("drop", "DROP", ("f1", "em"), ()),
    ]
}

# Metric names that can appear as a name suffix ("hellaswag_acc_norm") and the variant
# they denote. Longest first, so "acc_norm" wins over "acc".
_VARIANT_SUFFIXES = (
    "exact_match", "acc_norm", "pass_at_1", "pass1", "mc1", "mc2", "acc", "em", "f1",
)
_SUFFIX_TO_VARIANT = {"pass_at_1": "pass@1", "pass1": "pass@1"}
_SHOT_RE = re.compile(r"^(.*?)_?(\d+)_?shots?$")
_ZERO_SHOT_RE = re.compile(r"^(.*?)_?zero_?shot$")


def normalise_key(name: str) -> str:
    """Lower-case, turn every run of non-alphanumerics into one underscore, trim."""
    key = re.sub(r"[^0-9a-z@]+", "_", str(name).strip().lower())
    return key.strip("_")


def _build_alias_table() -> dict[str, tuple[str, str | None]]:
    table: dict[str, tuple[str, str | None]] = {}
    for b in BENCHMARKS.values():
        for alias in (b.name, normalise_key(b.title), *b.aliases):
            table[normalise_key(alias)] = (b.name, None)
        for alias, variant in b.variant_aliases.items():
            table[normalise_key(alias)] = (b.name, variant)
    return table


_ALIASES = _build_alias_table()


@dataclass(frozen=True)
class BenchmarkName:
    """What a raw benchmark name says: the canonical benchmark, maybe a variant and shots."""

    benchmark: str
    variant: str | None = None
    n_shot: int | None = None


def try_resolve(name: str) -> BenchmarkName | None:
    """Resolve ``name`` through the alias table; ``None`` if it names no known benchmark."""
    key = normalise_key(name)
    variant: str | None = None
    n_shot: int | None = None
    for _ in range(4):  # a name carries at most a few suffixes: metric, shots
        if key in _ALIASES:
            bench, implied = _ALIASES[key]
            return BenchmarkName(bench, variant or implied, n_shot)
        m = _SHOT_RE.match(key)
        if m and m.group(1):
            key, n_shot = m.group(1).rstrip("_"), int(m.group(2))
            continue
        m = _ZERO_SHOT_RE.match(key)
        if m and m.group(1):
            key, n_shot = m.group(1).rstrip("_"), 0
            continue
        for suffix in _VARIANT_SUFFIXES:
            if key.endswith("_" + suffix):
                key = key[: -len(suffix) - 1]
                variant = _SUFFIX_TO_VARIANT.get(suffix, suffix)
                break
        else:
            return None
    return None


#: How alike (difflib ratio) a name must be to a known one for a "did you mean" hint: a
#: typo ("hellaswagg", "arc_chalenge") passes; another task that shares letters ("cola" and
#: "openbookqa", "mmlu_formal_logic" and "mmlu_pro", "truthfulqa_gen" and "truthfulqa") does not.
SUGGEST_CUTOFF = 0.85


def suggest(name: str) -> str | None:
    """The known benchmark whose name ``name`` is a likely typo of, for an error message;
    ``None`` when nothing is that close. A metric suffix is tried off as well
    ("hellaswagg_acc" -> "hellaswagg")."""
    key = normalise_key(name)
    keys = [key] + [key[: -len(s) - 1] for s in _VARIANT_SUFFIXES if key.endswith("_" + s)]
    for k in keys:
        match = difflib.get_close_matches(k, list(_ALIASES), n=1, cutoff=SUGGEST_CUTOFF)
        if match:
            return _ALIASES[match[0]][0]
    return None


def resolve(name: str, *, file: str | None = None, row: str | int | None = None,
            field_name: str | None = None) -> BenchmarkName:
    """Like :func:`try_resolve`, but an unknown name raises an error naming the closest one."""
    from .errors import InputError

    found = try_resolve(name)
    if found is None:
        close = suggest(name)
        hint = f"did you mean '{close}'?" if close else "see `cape benchmarks` for known names"
        raise InputError(f"unknown benchmark '{name}'", file=file, row=row,
                         field=field_name, hint=hint)
    return found


#: A score rescaled against a random baseline, (raw - b) / (1 - b): the Open LLM Leaderboard
#: v2's "normalised" columns. Not on the benchmark's own scale.
NORMALISED = "normalised"
#: Variants on another scale than the benchmark's own: a panel's plain benchmark column never
#: holds them (they get a ``benchmark:variant`` column of their own), so no column mixes scales.
OTHER_SCALE_VARIANTS = frozenset({NORMALISED})


#: Flag of a score whose benchmark CAPE does not know (a researcher's own task), stored under
#: its own name (see :func:`unregistered_name`).
UNREGISTERED = "unregistered"


def unregistered_name(name: str) -> str | None:
    """The name an unknown task is stored under: :func:`normalise_key` of it, when that
    starts with a letter and has at most 64 characters; else None (not storable)."""
    key = normalise_key(str(name))
    return key if key and key[0].isalpha() and len(key) <= 64 else None


def variant_rank(benchmark: str, variant: str) -> int:
    """Position of ``variant`` in the benchmark's preference order (lower is preferred)."""
    prefs = BENCHMARKS[benchmark].variants if benchmark in BENCHMARKS else ()
    if variant in prefs:
        return prefs.index(variant)
    if variant == UNSPECIFIED:
        return len(prefs) + 1000
    return len(prefs) + 1
