"""Annealed importance sampling (AIS): stochastic layers between a hot pool and a cold target, exact weights.

A stochastic normalizing flow whose deterministic layers are the identity (Neal, Stat. Comput. 11, 125
(2001); Wu, Koehler, Noe, NeurIPS 2020). Start from x_0 ~ p_0 = exp(-beta_0 U)/Z_0 (a configuration of an
equilibrium pool at T_from). For k = 1 .. K on the inverse temperatures beta_k = beta_0 + (k/K)(beta_K - beta_0):

    log w += -(beta_k - beta_{k-1}) U(x_{k-1});   x_k = ``sweeps`` Metropolis sweeps at beta_k from x_{k-1}.

Every Metropolis sweep leaves p_k invariant, so sum_i w_i a(x_K,i) / sum_i w_i -> <a>_{T_to} for any K >= 1
and any number of sweeps (K = 1 with zero sweeps is plain temperature reweighting of the pool). More steps
move the samples towards the target and raise the ESS; the weights stay exact. Input weights ``log_w0``
(e.g. of a weighted pool) are carried along. Energies in epsilon, temperatures in epsilon / k_B, float64.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from glassgen.dynamics.mc import MonteCarlo
from glassgen.errors import InputError
from glassgen.systems.configuration import Configuration
from glassgen.systems.model import InteractionModel

__all__ = ["anneal"]


def anneal(x0: np.ndarray, species: np.ndarray, box: np.ndarray, model: InteractionModel, T_from: float,
           T_to: float, steps: int, sweeps: int = 1, delta: float = 0.08, seed: int = 0,
           log_w0: np.ndarray | None = None, progress: Callable[[int], None] | None = None
           ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Anneal every configuration of ``x0`` from ``T_from`` to ``T_to`` and return AIS weights.

    Args:
        x0: (n, N, d) float64 configurations, equilibrium (or weighted by ``log_w0``) at ``T_from``.
        species, box, model: the system.
        T_from, T_to: start and target temperatures (> 0).
        steps: K >= 1 annealing steps (inverse temperatures linear from 1/T_from to 1/T_to).
        sweeps: Metropolis sweeps per step (>= 0).
        delta: maximal single-particle displacement per axis (sigma_AA).
        seed: seed of the Metropolis moves.
        log_w0: (n,) input log-weights (default 0).
        progress: called with 1 after every configuration.

    Returns:
        x: (n, N, d) annealed configurations; log_w: (n,) float64 log-weights for the target at
        ``T_to`` (up to a common constant); energies: (n,) float64 potential energies of x.
    """
    x0 = np.asarray(x0, dtype=np.float64)
    if x0.ndim != 3 or x0.shape[0] < 1:
        raise InputError(f"configurations must have shape (n, N, d), got {x0.shape}")
    if not (T_from > 0 and T_to > 0):
        raise InputError(f"temperatures must be positive, got T_from={T_from}, T_to={T_to}")
    if steps < 1 or sweeps < 0:
        raise InputError("annealing needs steps >= 1 and sweeps >= 0")
    n = x0.shape[0]
    log_w = np.zeros(n) if log_w0 is None else np.asarray(log_w0, dtype=np.float64).copy()
    if log_w.shape != (n,):
        raise InputError(f"log_w0 must have shape ({n},), got {log_w.shape}")
    betas = np.linspace(1.0 / T_from, 1.0 / T_to, steps + 1)
    mc = MonteCarlo(Configuration(x0[0].copy(), species, box, model), T=T_from, delta=delta, seed=seed)
    x = np.empty_like(x0)
    energies = np.empty(n)
    for i in range(n):
        mc.set_positions(x0[i].copy())
        for k in range(1, steps + 1):
            log_w[i] -= (betas[k] - betas[k - 1]) * mc.energy
            mc.beta, mc.T = float(betas[k]), float(1.0 / betas[k])
            mc.sweep(sweeps)
        x[i] = mc.pos
        energies[i] = mc.energy
        if progress is not None:
            progress(1)
    return x, log_w, energies
