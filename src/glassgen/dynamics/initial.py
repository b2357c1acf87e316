"""Initial states and equilibration helpers.

- :func:`random_state`: random positions at the model's composition and density, overlaps removed
  by soft-core FIRE, velocities from Maxwell-Boltzmann at T.
- :func:`equilibrate`: NVT in blocks until the block-averaged potential energy stops drifting.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from glassgen.dynamics.md import MDSimulation, maxwell_boltzmann
from glassgen.dynamics.minimize import remove_overlaps
from glassgen.errors import InputError, PhysicsError, check_temperature
from glassgen.progress import progress_bar
from glassgen.systems.configuration import Configuration, random_configuration
from glassgen.systems.model import InteractionModel, load_model

__all__ = ["random_state", "equilibrate", "EquilibrationReport", "drift_test"]


def random_state(model: str | InteractionModel, n: int, T: float | None = None,
                 density: float | None = None, seed: int = 0) -> Configuration:
    """A random configuration without overlaps (closest pair > 0.7 sigma_ab), with velocities at T."""
    m = load_model(model)
    if T is not None:
        T = check_temperature(T)
    rng = np.random.default_rng(seed)
    start = random_configuration(m, n, density, rng)
    try:
        conf = remove_overlaps(start)
    except PhysicsError:
        rho = start.n / float(np.prod(start.box))
        raise InputError(f"cannot place {n} particles without overlaps at number density {rho:g}: "
                         "too dense for a random start (the models' densities are ~1.2)") from None
    if T is not None:
        vel = maxwell_boltzmann(m.masses[conf.species], m.dim, T, rng)
        conf = conf.replace(velocities=vel)
    return conf


def drift_test(block_means: np.ndarray, n_sigma: float = 2.0) -> tuple[float, float, bool]:
    """Linear trend of block means: (slope per block, its standard error, |slope| < n_sigma * err)."""
    y = np.asarray(block_means, dtype=np.float64)
    k = y.shape[0]
    if k < 3:
        return float("nan"), float("nan"), False
    t = np.arange(k, dtype=np.float64)
    tm = t - t.mean()
    slope = float(np.dot(tm, y - y.mean()) / np.dot(tm, tm))
    resid = y - y.mean() - slope * tm
    err = float(np.sqrt(np.dot(resid, resid) / (k - 2) / np.dot(tm, tm)))
    return slope, err, abs(slope) <= n_sigma * err


@dataclass(frozen=True)
class EquilibrationReport:
    """Result of :func:`equilibrate`: final configuration, block means of U/N, steps run, verdict."""

    configuration: Configuration
    block_means: np.ndarray
    steps: int
    equilibrated: bool
    slope: float
    slope_err: float


def equilibrate(conf: Configuration, T: float, block_steps: int = 2000, n_window: int = 6,
                max_blocks: int = 60, seed: int = 0, dt: float = 0.005, thermostat: str = "nhc",
                progress: bool = False) -> EquilibrationReport:
    """NVT blocks until the last ``n_window`` block means of U/N have no significant linear drift.

    The verdict uses :func:`drift_test` (slope within 2 standard errors of zero).
    """
    sim = MDSimulation(conf, T=T, dt=dt, ensemble="nvt", thermostat=thermostat, seed=seed)
    means: list[float] = []
    ok = False
    slope = err = float("nan")
    with progress_bar(max_blocks, "equilibrate", progress) as advance:
        for _ in range(max_blocks):
            acc = 0.0
            nsamp = 0
            for _ in range(20):
                sim.step(max(1, block_steps // 20))
                acc += sim.potential
                nsamp += 1
            means.append(acc / nsamp / sim.n)
            advance(1)
            if len(means) >= n_window:
                slope, err, ok = drift_test(np.array(means[-n_window:]))
                if ok:
                    break
    return EquilibrationReport(sim.configuration(), np.array(means), sim.step_count, ok, slope, err)
