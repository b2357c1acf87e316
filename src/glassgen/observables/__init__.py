"""Observables: compute classes following freud's contract, schedules, trajectories, error bars, plots.

Compute classes take their parameters in the constructor; ``compute(...)`` returns ``self``;
results are properties that raise :class:`NotComputedError` before ``compute``; ``reset=False``
accumulates further frames or runs. ``write(path)`` stores the results as text columns with a
provenance header.

- :class:`RDF`: partial g_ab(r) (2D/3D, periodic orthorhombic box, minimum image).
- :class:`StaticStructureFactor`: S(q) and Ashcroft-Langreth S_ab(q) over the box's wave vectors.
- :class:`MSD`, :class:`SelfIntermediateScattering`, :class:`NonGaussian`,
  :class:`FourPointSusceptibility` (self overlap Q(t) and chi_4(t)): self correlations of unwrapped
  trajectories, per species, with one origin, all origins, or a block-log schedule;
  :func:`tau_alpha`, :func:`relaxation_time`.
- :func:`log_spaced_steps`, :func:`block_log_schedule`: frame schedules.
- :class:`TrajectoryWriter`, :func:`read_trajectory`: interrupt-safe, resumable HDF5 trajectories.
- :func:`self_overlap`, :func:`overlap_correlation`: self-overlap Q and its decorrelation time tau_Q.
- :func:`block_average`, :func:`integrated_autocorrelation_time`, ...: error bars.
- :mod:`glassgen.observables.plots`: PNG plots (matplotlib imported only when plotting).
"""

from glassgen.observables._base import NotComputedError
from glassgen.observables.dynamics import (
    MSD,
    FourPointSusceptibility,
    NonGaussian,
    SelfIntermediateScattering,
    batched_self_correlations,
    relaxation_time,
    tau_alpha,
    unwrap,
)
from glassgen.observables.overlap import OverlapCorrelation, overlap_baseline, overlap_correlation, self_overlap
from glassgen.observables.plots import plot_chi4, plot_fs, plot_msd, plot_rdf, plot_structure_factor, plot_thermo
from glassgen.observables.rdf import RDF
from glassgen.observables.schedule import (
    BlockLogSchedule,
    LagPairs,
    block_log_schedule,
    lag_pairs_all_origins,
    lag_pairs_from_steps,
    lag_pairs_single_origin,
    log_spaced_steps,
)
from glassgen.observables.structure_factor import StaticStructureFactor
from glassgen.observables.thermo import (
    AutocorrelationTime,
    autocorrelation,
    autocorrelation_time,
    block_average,
    effective_sample_size,
    integrated_autocorrelation_time,
    mean_and_error,
    statistical_inefficiency,
)
from glassgen.observables.trajectory import TrajectoryData, TrajectoryWriter, read_trajectory

__all__ = [
    "NotComputedError",
    "RDF",
    "StaticStructureFactor",
    "MSD",
    "batched_self_correlations",
    "SelfIntermediateScattering",
    "NonGaussian",
    "FourPointSusceptibility",
    "tau_alpha",
    "relaxation_time",
    "unwrap",
    "log_spaced_steps",
    "block_log_schedule",
    "BlockLogSchedule",
    "LagPairs",
    "lag_pairs_single_origin",
    "lag_pairs_all_origins",
    "lag_pairs_from_steps",
    "TrajectoryWriter",
    "TrajectoryData",
    "read_trajectory",
    "block_average",
    "autocorrelation",
    "AutocorrelationTime",
    "autocorrelation_time",
    "integrated_autocorrelation_time",
    "statistical_inefficiency",
    "effective_sample_size",
    "mean_and_error",
    "self_overlap",
    "overlap_baseline",
    "overlap_correlation",
    "OverlapCorrelation",
    "plot_rdf",
    "plot_msd",
    "plot_fs",
    "plot_chi4",
    "plot_structure_factor",
    "plot_thermo",
]
