"""Coupling analyses of paper A (base-model families). Each is a pure function of a panel
DataFrame (see :func:`cape.load_panel`) returning a result object with ``to_dict()`` and
``summary()``; the CLI, report and dashboard only present these.

>>> import cape
>>> from cape.analysis import family_coupling
>>> res = family_coupling(cape.load_panel("paper-pythia"), seed=0)
>>> round(res.table.loc[0, "r"], 4)
-0.9886
"""

import sys
import types

#: Each public name and the module it comes from: imported when first used, so that
#: ``cape nc`` loads the N_c analysis only (and ``cape --help`` none).
_LAZY = {
    "Advice": ".advise", "advise": ".advise",
    "FamilyCoupling": ".coupling", "family_coupling": ".coupling",
    "DEFAULT_PAIR": ".data", "PairData": ".data", "pair_data": ".data", "parse_pair": ".data",
    "Eigenstructure": ".eigen", "eigenstructure": ".eigen", "participation_ratio": ".eigen",
    "LocalCoupling": ".gamma", "RunningCoupling": ".gamma", "local_coupling": ".gamma",
    "phase_label": ".gamma", "running_coupling": ".gamma",
    "CriticalScale": ".nc", "QuadraticVertex": ".nc", "critical_scale": ".nc",
    "family_crossings": ".nc", "quadratic_vertex": ".nc",
    "Isocline": ".phase", "ModelPhase": ".phase", "fit_isocline": ".phase", "phase_of_model": ".phase",
    "Replication": ".replication", "replication": ".replication",
    "Estimate": ".results", "Result": ".results",
    "WidthNormalization": ".width", "width_normalization": ".width",
}

__all__ = [
    "DEFAULT_PAIR", "PairData", "pair_data", "parse_pair", "Estimate", "Result",
    "FamilyCoupling", "family_coupling", "LocalCoupling", "local_coupling", "phase_label",
    "RunningCoupling", "running_coupling", "CriticalScale", "critical_scale", "QuadraticVertex",
    "quadratic_vertex", "family_crossings", "Isocline", "fit_isocline", "ModelPhase",
    "phase_of_model", "WidthNormalization", "width_normalization", "Eigenstructure",
    "eigenstructure", "participation_ratio", "Replication", "replication", "Advice", "advise",
]


def __getattr__(name: str):
    from .. import _lazy_attribute

    return _lazy_attribute(__name__, _LAZY, globals(), name)


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


class _Package(types.ModuleType):
    """Importing the submodule ``advise`` (or ``replication``) binds it on this package; keep
    the function of the same name there instead, as the package did when it imported every
    analysis eagerly (``from cape.analysis import advise`` is the function)."""

    def __setattr__(self, name: str, value) -> None:
        if name in ("advise", "replication") and isinstance(value, types.ModuleType):
            return
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package
