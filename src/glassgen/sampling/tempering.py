r"""Parallel tempering (replica exchange) over a ladder of temperatures.

One chain per temperature T_0 < T_1 < ... < T_{K-1} (any object with the replica protocol below, e.g.
:class:`~glassgen.dynamics.mc.MonteCarlo`). A step runs ``n_sweeps`` local sweeps on every chain and then
one exchange pass: neighbouring temperatures (k, k+1), for k of one parity (even and odd passes alternate),
propose to exchange configurations and accept with

    log alpha = (beta_k - beta_{k+1}) (U_k - U_{k+1}),

a Metropolis move on the pair, so the joint chain keeps prod_k exp(-beta_k U(x_k)) / Z_k invariant and each
temperature's marginal is its Boltzmann law (Swendsen & Wang, PRL 57, 2607 (1986); Hukushima & Nemoto, JPSJ
65, 1604 (1996)). The alternation of even and odd passes is a fixed composition of such moves.

Replica protocol: ``energy`` (float, total, epsilon), ``pos`` (the configuration, an array),
``set_positions(pos)`` (jump to a configuration; recomputes ``energy``) and ``sweep(n)``.

Diagnostics: exchange acceptance per pair, and round trips (a configuration that reached the hottest
temperature since it last left the coldest, counted when it is back at the coldest).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from glassgen.errors import InputError, PhysicsError

__all__ = ["ParallelTempering"]


class ParallelTempering:
    """Replica exchange over ``replicas`` (one per temperature, coldest first).

    Args:
        replicas: K >= 2 chains, replicas[k] at temperatures[k] (the replica protocol of the module docstring).
        temperatures: (K,) strictly increasing, positive (epsilon / k_B).
        seed: seed of the exchange decisions' ``np.random.Generator``.

    Attributes:
        owner: (K,) int, which initial configuration sits at each temperature now.
        exchange_acceptance: (K-1,) accepted / proposed exchanges of pair (k, k+1) since the last reset.
        round_trips: completed coldest -> hottest -> coldest trips since the last reset.
    """

    def __init__(self, replicas: list[Any], temperatures: list[float] | np.ndarray, seed: int = 0) -> None:
        t = np.asarray(temperatures, dtype=np.float64)
        if len(replicas) != t.size or t.size < 2:
            raise InputError(f"parallel tempering needs >= 2 replicas, one per temperature; got {len(replicas)} "
                             f"replicas and {t.size} temperatures")
        if not (np.all(t > 0) and np.all(np.diff(t) > 0)):
            raise InputError("temperatures must be positive and strictly increasing (coldest first)")
        self.replicas = list(replicas)
        self.temperatures = t
        self.beta = 1.0 / t
        self.rng = np.random.default_rng(seed)
        self.owner = np.arange(t.size)
        self._parity = 0
        self.reset_stats()

    @property
    def n_temperatures(self) -> int:
        return int(self.temperatures.size)

    def reset_stats(self) -> None:
        """Zero the exchange counters and the round-trip bookkeeping."""
        k = self.n_temperatures
        self._trials, self._accepted = np.zeros(k - 1), np.zeros(k - 1)
        self._last_end = np.full(k, -1)  # per configuration: 0 = last at the coldest end, 1 = the hottest
        self.round_trips = 0

    @property
    def exchange_acceptance(self) -> np.ndarray:
        return self._accepted / np.maximum(self._trials, 1)

    @property
    def energies(self) -> np.ndarray:
        """(K,) total energy at each temperature (epsilon)."""
        return np.array([r.energy for r in self.replicas], dtype=np.float64)

    def exchange(self) -> None:
        """One exchange pass over the pairs of the current parity, then switch parity."""
        for k in range(self._parity, self.n_temperatures - 1, 2):
            a, b = self.replicas[k], self.replicas[k + 1]
            ua, ub = float(a.energy), float(b.energy)
            if not (math.isfinite(ua) and math.isfinite(ub)):
                raise PhysicsError(f"non-finite energy in parallel tempering at T = {self.temperatures[k]:g}")
            self._trials[k] += 1
            if math.log(self.rng.random()) < (self.beta[k] - self.beta[k + 1]) * (ua - ub):
                pa, pb = np.array(a.pos, copy=True), np.array(b.pos, copy=True)
                a.set_positions(pb)
                b.set_positions(pa)
                self.owner[k], self.owner[k + 1] = self.owner[k + 1], self.owner[k]
                self._accepted[k] += 1
        self._parity ^= 1
        cold, hot = self.owner[0], self.owner[-1]
        if self._last_end[cold] == 1:
            self.round_trips += 1
        self._last_end[cold] = 0
        self._last_end[hot] = 1

    def step(self, n_sweeps: int = 1) -> None:
        """``n_sweeps`` local sweeps on every replica, then one exchange pass."""
        for r in self.replicas:
            r.sweep(n_sweeps)
        self.exchange()
