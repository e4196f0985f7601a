"""Quality flags: what each one means and what ``clean`` does about it.

A flag is an identifier in a model's or a score's ``flags`` field, optionally with an
argument (``duplicate_of:Llama-3-8B``). Reference panels keep the published values and
flag every known problem; ``clean=True`` (CLI: ``--clean``) applies the rule stated here
for each flag and reports what it did. Flags whose rule is ``keep`` are information only.

The rules, in the order they are applied:

========================  ==========================================================
rule                      effect
========================  ==========================================================
``drop``                  a model flag: the model and its scores leave the panel;
                          a score flag: that score leaves the panel
``set_family``            the model moves to the family named by the flag's argument
``relabel_variant``       the score's variant becomes the flag's argument
``clear``                 the flag is removed (its problem is gone with another row)
``keep``                  nothing changes; the flag stays as a warning
========================  ==========================================================
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Flag", "FLAGS", "flag_name", "flag_arg", "describe"]


@dataclass(frozen=True)
class Flag:
    name: str
    applies_to: str  # "model" or "score"
    meaning: str
    rule: str  # "drop" | "set_family" | "relabel_variant" | "clear" | "keep"
    rule_text: str
    #: for relabel_variant: the variant to record
    target: str | None = None


FLAGS: dict[str, Flag] = {
    f.name: f
    for f in [
        Flag("duplicate_of", "model",
             "a second row for a model that the panel already holds, from another source with "
             "other values; the argument names the row that is kept",
             "drop", "drop this row and keep the one it duplicates (the traceable leaderboard row)"),
        Flag("has_duplicate", "model",
             "another row in the panel is the same model from another source",
             "clear", "kept; its duplicate is dropped and this flag cleared"),
        Flag("family_mislabelled", "model",
             "the release puts the model in a family it does not belong to; the argument is "
             "the correct family",
             "set_family", "move the model to the family named in the argument"),
        Flag("untraceable", "model",
             "the scores cannot be traced to the source the release cites",
             "drop", "drop the model"),
        Flag("instruct_model", "model",
             "an instruction-tuned model inside a base-model panel",
             "drop", "drop the model"),
        Flag("effective_params", "model",
             "the parameter count is an 'effective' count, not the total number of weights",
             "drop", "drop the model (its size is not comparable)"),
        Flag("partially_estimated", "model",
             "the release says these scores were partly estimated from related checkpoints",
             "keep", "kept, flagged"),
        Flag("source_mislabelled", "model",
             "the release labels the row's source wrongly; the citation given here is the real one",
             "keep", "kept, with the corrected citation"),
        Flag("tokens_units_suspect", "model",
             "the pretraining-token figure (and the FLOPs derived from it) look 1000x off",
             "keep", "kept, flagged"),
        Flag("params_corrected", "model",
             "the source's parameter count is not the model's total (for a mixture-of-experts "
             "model, the active count or neither); params holds the developer's published total, "
             "active_params the active count, and the argument keeps the source's figure",
             "keep", "kept, with the corrected count"),
        Flag("compute_tier", "model",
             "the same weights evaluated at another inference-compute setting as a separate row",
             "keep", "kept, flagged"),
        Flag("repeats_scores_of", "model",
             "every score equals that of the model named in the argument",
             "keep", "kept, flagged"),
        Flag("swe_equals_other_model", "model",
             "its SWE-bench value equals that of the model named in the argument",
             "keep", "kept, flagged"),
        Flag("params_unknown", "model",
             "the source gives no usable parameter count (the Open LLM Leaderboard writes 0.0 "
             "when it could not read one); params is left empty",
             "keep", "kept, without a size (size-based analyses leave it out)"),
        Flag("leaderboard_flagged", "model",
             "the Open LLM Leaderboard marks the model as flagged: a reported problem, such as "
             "contamination, under discussion at the leaderboard",
             "drop", "drop the model (its scores are disputed at the source)"),
        Flag("merged", "model",
             "a merge of other models' weights (the Open LLM Leaderboard's 'Merged' column, or "
             "'Not_Merged' false in older files)",
             "keep", "kept, flagged"),
        Flag("moe", "model",
             "a mixture-of-experts model; params is the total number of weights, not the active count",
             "keep", "kept, flagged"),
        Flag("hub_unavailable", "model",
             "the source says the model is no longer available on the Hugging Face Hub, so its "
             "scores cannot be re-checked",
             "keep", "kept, flagged"),
        Flag("post_cutoff", "model",
             "released after the preprint's frozen panel; used only for out-of-sample checks",
             "keep", "kept; analyses exclude it from fits"),
        Flag("mc2_labelled_mc1", "score",
             "TruthfulQA described as MC1 in the preprint text, but the values are MC2-level",
             "relabel_variant", "record the variant as mc2", target="mc2"),
        Flag("conflicting_value_in_release", "score",
             "another file of the same release gives a different value",
             "keep", "kept; the value from the cited leaderboard source is used"),
        Flag("estimated", "score",
             "the source marks the value as an estimate",
             "keep", "kept, flagged"),
        Flag("errata_available", "score",
             "a documented correction exists (see the panel's errata layer, applied with "
             "corrected=True / --corrected)",
             "keep", "kept; corrected only on request"),
        Flag("partial_aggregate", "score",
             "an average over fewer parts than the benchmark has (argument: parts found/expected)",
             "keep", "kept, flagged"),
        Flag("limited", "score",
             "scored on part of the task's items (an lm-eval run with --limit); the argument is "
             "items scored/items in the task from n-samples (limited:8/2376), or the run's "
             "config.limit where the file gives no counts (limited:limit=100)",
             "drop", "drop the score (a partial run is not the task's score); ingest --strict "
             "refuses it"),
        Flag("unregistered", "score",
             "a task CAPE does not know (a researcher's own, GLUE's cola, ...), stored under its own "
             "name with its metric as the variant; not checked against a registered definition",
             "keep", "kept, flagged (its own column in the panel); ingest --strict refuses it"),
        Flag("mixed_shots", "score",
             "a group score (MMLU) whose subtasks ran with different shot counts (the argument "
             "lists them); n_shot is left empty",
             "drop", "drop the score (no single shot count describes it); ingest --strict "
             "refuses it"),
        Flag("items_mismatch", "score",
             "the run scored another item set than the benchmark's: the argument is items in "
             "the file's task (n-samples) / items the benchmark has (items_mismatch:5000/1324: "
             "lm-eval's leaderboard_math_hard version 2.0 read all MATH levels, not level 5)",
             "drop", "drop the score (it measures another set of items); ingest --strict "
             "refuses it"),
        Flag("corrected", "score",
             "value replaced by the errata layer; the source names the correction",
             "keep", "set by corrected=True"),
    ]
}


def flag_name(flag: str) -> str:
    """``"duplicate_of:Llama-3-8B"`` -> ``"duplicate_of"``."""
    return flag.split(":", 1)[0]


def flag_arg(flag: str) -> str | None:
    """``"duplicate_of:Llama-3-8B"`` -> ``"Llama-3-8B"``; ``None`` without an argument."""
    return flag.split(":", 1)[1] if ":" in flag else None


def describe(flag: str) -> str:
    """One line for a person: meaning and what clean does."""
    f = FLAGS.get(flag_name(flag))
    if f is None:
        return f"{flag}: (not a CAPE flag)"
    return f"{flag}: {f.meaning}. Clean: {f.rule_text}."
