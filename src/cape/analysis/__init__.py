"""Coupling analyses of paper A (base-model families). Each is a pure function of a panel
DataFrame (see :func:`cape.load_panel`) returning a result object with ``to_dict()`` and
``summary()``; the CLI, report and dashboard only present these.

>>> import cape
>>> from cape.analysis import family_coupling
>>> res = family_coupling(cape.load_panel("paper-pythia"), seed=0)
>>> round(res.table.loc[0, "r"], 4)
-0.9886
"""

from .advise import Advice, advise
from .coupling import FamilyCoupling, family_coupling
from .data import DEFAULT_PAIR, PairData, pair_data, parse_pair
from .eigen import Eigenstructure, eigenstructure, participation_ratio
from .gamma import LocalCoupling, RunningCoupling, local_coupling, phase_label, running_coupling
from .nc import CriticalScale, QuadraticVertex, critical_scale, family_crossings, quadratic_vertex
from .phase import Isocline, ModelPhase, fit_isocline, phase_of_model
from .replication import Replication, replication
from .results import Estimate, Result
from .width import WidthNormalization, width_normalization

__all__ = [
    "DEFAULT_PAIR", "PairData", "pair_data", "parse_pair", "Estimate", "Result",
    "FamilyCoupling", "family_coupling", "LocalCoupling", "local_coupling", "phase_label",
    "RunningCoupling", "running_coupling", "CriticalScale", "critical_scale", "QuadraticVertex",
    "quadratic_vertex", "family_crossings", "Isocline", "fit_isocline", "ModelPhase",
    "phase_of_model", "WidthNormalization", "width_normalization", "Eigenstructure",
    "eigenstructure", "participation_ratio", "Replication", "replication", "Advice", "advise",
]
