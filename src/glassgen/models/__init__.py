"""Phenomenological glass models: trap models by KMC (:mod:`.trap`) and the StEP lattice model (:mod:`.step`).

Kernels live in :mod:`glassgen._kernels.kmc` and :mod:`glassgen._kernels.lattice`; observables in
:mod:`.observables`; plots in :mod:`.plots`; user-level jobs in :mod:`glassgen.api_models`.
"""

from glassgen.models.softness_law import SoftnessLaw, load_softness_law
from glassgen.models.step import StepModel, StepParams, StepResult, ductility, propagator
from glassgen.models.trap import MODELS, TrapModel, TrapRun, load_trap_model, simulate

__all__ = ["MODELS", "TrapModel", "TrapRun", "simulate", "load_trap_model", "SoftnessLaw", "load_softness_law",
           "StepModel", "StepParams", "StepResult", "propagator", "ductility"]
