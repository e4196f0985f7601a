"""The analyses' default settings that ``cape --help`` shows, in the standard library only.

Each value is set here, once; the analysis module it belongs to re-exports it under the
same name (``cape.stats.DEFAULT_BOOTSTRAP``, ``cape.analysis.gamma.DEFAULT_GUARD`` ...), so
the library and the command line share it while ``cape --help`` imports no numpy, pandas or
SciPy (issue 18). These are protocol settings and definitions, never results.
"""

from __future__ import annotations

__all__ = [
    "DEFAULT_PERMUTATIONS", "DEFAULT_BOOTSTRAP", "DEFAULT_GUARD", "DEFAULT_CURATED", "SIZE_WINDOW",
    "DEFAULT_RESAMPLES", "DEFAULT_DEGREE", "DEFAULT_THRESHOLD", "DEFAULT_ALPHA", "DEFAULT_ENSEMBLE",
    "SCHEMES", "FRONTIER_PAIR", "BAND", "DEFAULT_DYNAMICS_GUARD", "JUMP", "ROTATE_BELOW",
    "REPLICATION_PANEL", "OWNERS",
]

# ----------------------------------------------------------------------- cape.stats
#: Monte Carlo permutations when n > EXACT_MAX_N (p resolution 1e-4).
DEFAULT_PERMUTATIONS = 9_999
#: Bootstrap resamples (the preprint's N_c protocol uses 10,000).
DEFAULT_BOOTSTRAP = 10_000

# --------------------------------------------------------------- cape.analysis.gamma
#: Default guard on |dB1| in percentage points (the preprint's figures use 0.5 pp).
DEFAULT_GUARD = 0.5

# -------------------------------------------------------------- cape.analysis.advise
#: Families counted as trained on curated data (a definition, not a result): a family is
#: curated when its name equals one of these or starts with one followed by a non-letter
#: (Qwen1.5, Qwen2.5, OLMo-2 ...). Override with ``curated=``.
DEFAULT_CURATED = ("Phi", "OLMo", "Qwen")
#: "Similar size": within this factor of the target's size(s).
SIZE_WINDOW = 3.0
#: Default resamples (every bootstrap here is vectorised; 2,000 keeps the command quick).
DEFAULT_RESAMPLES = 2000

# ------------------------------------------------------------ cape.analysis.dynamics
DEFAULT_DEGREE = 2
DEFAULT_THRESHOLD = 0.1
#: Ridge penalty of STLSQ's thresholding steps (pysindy's default); the final coefficients
#: are an unpenalised least-squares refit on the selected terms.
DEFAULT_ALPHA = 0.05
DEFAULT_ENSEMBLE = 1000
SCHEMES = ("family", "largest")

# ------------------------------------------------------------ cape.analysis.frontier
#: Paper B's pair: SWE-bench Verified (x) and GPQA Diamond (y).
FRONTIER_PAIR = ("swe_bench_verified", "gpqa_diamond")
#: Band edge in points: |h| <= BAND cooperative, h > BAND reasoning-specialist,
#: h < -BAND coding excursion.
BAND = 10.0
#: Release-to-release gamma is left undefined when |dx| is below this many points.
DEFAULT_DYNAMICS_GUARD = 1.0
#: |dh| above this many points between consecutive releases of a lab is flagged.
JUMP = 10.0

# ---------------------------------------------------------- cape.analysis.saturation
#: The preprint's rotation rule: rotate when spread(old) / spread(new) is below this.
ROTATE_BELOW = 0.2

# ------------------------------------------------------------------------ cape.audit
#: The independent panel the replication section runs on (one harness, 148 base models).
REPLICATION_PANEL = "openllm-v1-base"

#: Which module re-exports which of these (checked by tests/test_startup.py).
OWNERS = {
    "cape.stats": ("DEFAULT_PERMUTATIONS", "DEFAULT_BOOTSTRAP"),
    "cape.analysis.gamma": ("DEFAULT_GUARD",),
    "cape.analysis.advise": ("DEFAULT_CURATED", "SIZE_WINDOW", "DEFAULT_RESAMPLES"),
    "cape.analysis.dynamics": ("DEFAULT_DEGREE", "DEFAULT_THRESHOLD", "DEFAULT_ALPHA", "DEFAULT_ENSEMBLE",
                               "SCHEMES"),
    "cape.analysis.frontier": ("FRONTIER_PAIR", "BAND", "DEFAULT_DYNAMICS_GUARD", "JUMP"),
    "cape.analysis.saturation": ("ROTATE_BELOW",),
    "cape.audit": ("REPLICATION_PANEL",),
}
