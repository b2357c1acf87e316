"""Parallel tempering: every temperature's marginal is its Boltzmann law (discrete target, with a coldest
replica that never moves by itself, so its histogram is made by the exchanges alone), a negative control with
the wrong exchange rule, and the KA MonteCarlo replicas plugging in."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from glassgen.dynamics.initial import random_state
from glassgen.dynamics.mc import MonteCarlo
from glassgen.errors import InputError
from glassgen.sampling.tempering import ParallelTempering

LEVELS = np.array([0.0, 0.5, 1.5, 3.0, 5.0])  # energies of the 5 states
TEMPS = [0.5, 1.0, 2.0, 4.0]


class LevelReplica:
    """A 5-state system at temperature T: Metropolis steps to a uniformly drawn state (none if ``frozen``)."""

    def __init__(self, T: float, state: int, seed: int, frozen: bool = False) -> None:
        self.beta, self.frozen = 1.0 / T, frozen
        self.pos = np.array([state])
        self.rng = np.random.default_rng(seed)

    @property
    def energy(self) -> float:
        return float(LEVELS[self.pos[0]])

    def set_positions(self, pos: np.ndarray) -> None:
        self.pos = np.array(pos, copy=True)

    def sweep(self, n: int) -> None:
        if self.frozen:
            return
        for _ in range(n):
            new = self.rng.integers(0, LEVELS.size)
            if math.log(self.rng.random()) < -self.beta * (LEVELS[new] - self.energy):
                self.pos = np.array([new])


def boltzmann(T: float) -> np.ndarray:
    p = np.exp(-LEVELS / T)
    return p / p.sum()


def histograms(pt: ParallelTempering, steps: int, thin: int = 8) -> np.ndarray:
    """(K, 5) state counts at each temperature, every ``thin`` steps after 500 steps of burn-in."""
    counts = np.zeros((pt.n_temperatures, LEVELS.size))
    for s in range(500 + steps):
        pt.step(1)
        if s >= 500 and s % thin == 0:
            for k, r in enumerate(pt.replicas):
                counts[k, r.pos[0]] += 1
    return counts


def make(seed: int) -> ParallelTempering:
    reps = [LevelReplica(T, state=4, seed=seed * 10 + k, frozen=(k == 0)) for k, T in enumerate(TEMPS)]
    return ParallelTempering(reps, TEMPS, seed=seed)


@pytest.mark.parametrize("seed", [1, 2])
def test_every_temperature_has_its_boltzmann_law(seed):
    pt = make(seed)
    counts = histograms(pt, 40_000)
    for k, T in enumerate(TEMPS):
        p = stats.chisquare(counts[k], counts[k].sum() * boltzmann(T)).pvalue
        assert p > 1e-4, (T, counts[k] / counts[k].sum(), boltzmann(T))
    assert np.all(pt.exchange_acceptance > 0.2)
    assert pt.round_trips > 100


def test_wrong_exchange_rule_is_detected():
    pt = make(3)
    pt.beta = -pt.beta  # negative control: the acceptance exponent with the wrong sign
    counts = histograms(pt, 40_000)
    assert stats.chisquare(counts[0], counts[0].sum() * boltzmann(TEMPS[0])).pvalue < 1e-10


def test_ka_monte_carlo_replicas_exchange_and_keep_consistent_energies():
    temps = [0.8, 1.0]
    reps = [MonteCarlo(random_state("ka3d", 32, T=T, seed=k), T=T, delta=0.1, seed=k) for k, T in enumerate(temps)]
    pt = ParallelTempering(reps, temps, seed=0)
    before = [r.pos.copy() for r in reps]
    for _ in range(40):
        pt.step(2)
    assert pt.exchange_acceptance[0] > 0  # some exchange happened
    for r in reps:  # the incremental energy matches a fresh evaluation after the jumps
        assert r.energy == pytest.approx(r.recompute_energy(), abs=1e-8)
    assert not np.allclose(before[0], reps[0].pos)


def test_bad_ladders_are_refused():
    reps = [LevelReplica(1.0, 0, 0), LevelReplica(2.0, 0, 1)]
    with pytest.raises(InputError):
        ParallelTempering(reps, [2.0, 1.0])
    with pytest.raises(InputError):
        ParallelTempering(reps, [1.0, 2.0, 3.0])
    with pytest.raises(InputError):
        ParallelTempering(reps[:1], [1.0])
    with pytest.raises(InputError):
        ParallelTempering(reps, [0.0, 1.0])
