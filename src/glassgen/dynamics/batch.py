"""Batched exact energies of many small configurations (flow proposals, reweighting).

A Numba :class:`~glassgen.dynamics.forces.ForceField` with ``skin=0`` looped over the batch. Below
ForceField's serial threshold the loop runs with one Numba thread: a parallel neighbour-list launch
per small configuration costs far more than the work.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator

import numba
import numpy as np

from glassgen.dynamics.forces import OVERLAP_FACTOR, ForceField
from glassgen.errors import InputError
from glassgen.systems.model import InteractionModel

__all__ = ["model_energy", "numba_threads", "EnergyFn"]

EnergyFn = Callable[[np.ndarray], np.ndarray]


@contextlib.contextmanager
def numba_threads(n: int | None) -> Iterator[None]:
    """Temporarily run Numba parallel regions with ``n`` threads (None: leave the setting alone)."""
    if n is None:
        yield
        return
    old = numba.get_num_threads()
    numba.set_num_threads(n)
    try:
        yield
    finally:
        numba.set_num_threads(old)


def model_energy(model: InteractionModel, species: np.ndarray, box: np.ndarray) -> EnergyFn:
    """Batched exact total energy of an interaction model (Numba :class:`ForceField`, looped over the batch).

    Args:
        model: interaction model.
        species: (N,) int species.
        box: (d,) box lengths.

    Returns:
        ``energy(x)`` mapping (B, N, d) positions to (B,) float64 energies (epsilon); +inf for non-finite
        positions or energies and for overlapping configurations (a pair closer than
        ``OVERLAP_FACTOR`` sigma_ab, where U > 1e4 epsilon: weight exp(-1e4 / T), zero in practice).
        Below ForceField's serial threshold (N < 1000) the batch runs with one Numba thread: a parallel
        neighbour-list launch per small configuration costs far more than the work (35 ms vs 15 us for
        KA N=8 on a loaded 2-core machine).
    """
    ff = ForceField(model, species, box, skin=0.0, check_overlap=False)
    shape = (ff.n, ff.dim)

    def energy(x: np.ndarray) -> np.ndarray:
        xs = np.asarray(x, dtype=np.float64)
        if xs.ndim != 3 or xs.shape[1:] != shape:
            raise InputError(f"positions must have shape (B, {shape[0]}, {shape[1]}), got {xs.shape}")
        out = np.full(xs.shape[0], np.inf)
        with numba_threads(1 if ff.threads == 1 else None):
            for b in range(xs.shape[0]):
                if not np.all(np.isfinite(xs[b])):
                    continue
                res = ff.compute(xs[b])
                if math.isfinite(res.energy) and res.min_distance_ratio >= OVERLAP_FACTOR:
                    out[b] = res.energy
        return out

    return energy
