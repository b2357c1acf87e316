"""Isoconfigurational runs: R replicas of one configuration with fresh Maxwell-Boltzmann velocities.

Each replica starts from the same positions with velocities drawn at T (zero total momentum) and runs
MD (NVE by default, as in the isoconfigurational protocol of Widmer-Cooper & Harrowell; NVT optional)
with the Numba engine or LAMMPS. At every lag time of ``times`` the propensity ``R_i(t)`` and the
bond-breaking ``C_B,i(t)`` are accumulated on the fly, so replica positions need not be stored.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from glassgen.dynamics.md import MDSimulation, maxwell_boltzmann, run_md
from glassgen.errors import InputError, check_temperature
from glassgen.observables.isoconfig import bond_breaking, initial_bonds
from glassgen.systems.configuration import Configuration

__all__ = ["IsoconfigResult", "time_steps", "run_isoconfigurational"]


@dataclasses.dataclass(frozen=True)
class IsoconfigResult:
    """Propensity and bond-breaking of one configuration.

    Attributes:
        times: (n_times,) lag times (LJ units), multiples of dt.
        md_prop: (n_times, N) propensity R_i(t) (sigma_AA units).
        bb_prop: (n_times, N) bond-breaking C_B,i(t) in [0, 1].
        replicas: (n_times, R, N, d) unwrapped replica positions if requested, else None.
        msd: (n_times,) mean squared displacement over replicas and particles (a check of the dynamics).
    """

    times: np.ndarray
    md_prop: np.ndarray
    bb_prop: np.ndarray
    replicas: np.ndarray | None
    msd: np.ndarray


def time_steps(times: np.ndarray | list[float], dt: float) -> np.ndarray:
    """Lag times rounded to whole MD steps (>= 1); raises if two times fall on the same step."""
    t = np.asarray(times, dtype=np.float64)
    if t.ndim != 1 or t.size == 0 or np.any(t <= 0) or np.any(np.diff(t) <= 0):
        raise InputError(f"lag times must be positive and increasing, got {t.tolist()}")
    steps = np.maximum(1, np.rint(t / dt)).astype(np.int64)
    if np.any(np.diff(steps) <= 0):
        raise InputError(f"lag times {[float(f'{x:.4g}') for x in t]} are closer than the time step dt={dt:g}")
    return steps


def run_isoconfigurational(conf: Configuration, *, T: float, times: np.ndarray | list[float], n_replicas: int = 32,
                           seed: int = 0, dt: float = 0.005, ensemble: str = "nve", engine: str = "numba",
                           r_in: float = 1.4, r_out: float = 1.8, keep_replicas: bool = False,
                           threads: int | None = 1) -> IsoconfigResult:
    """Run ``n_replicas`` MD replicas from ``conf`` and measure R_i(t), C_B,i(t) at ``times``.

    Args:
        conf: initial configuration with a model; its velocities are ignored.
        T: temperature of the Maxwell-Boltzmann velocities (and the thermostat with ``ensemble='nvt'``).
        times: (n_times,) increasing lag times; rounded to multiples of ``dt``.
        n_replicas: R; replica r uses seed ``seed * 1_000_003 + r`` for its velocities.
        ensemble: ``nve`` (default) or ``nvt`` (Nose-Hoover chain).
        engine: ``numba`` or ``lammps``.
        r_in, r_out: bond-breaking radii in units of sigma_ab.
        keep_replicas: also return all replica positions (memory: n_times * R * N * d floats).

    Returns:
        :class:`IsoconfigResult`.
    """
    check_temperature(T)
    if n_replicas < 1:
        raise InputError("n_replicas must be >= 1")
    model = conf.require_model()
    steps = time_steps(times, dt)
    x0 = conf.positions.copy()
    box = conf.box
    bonds = initial_bonds(x0, conf.species, box, model.sigma, r_in)
    n, d = conf.n, conf.dim
    nt = steps.size
    md_prop = np.zeros((nt, n))
    bb_prop = np.zeros((nt, n))
    msd = np.zeros(nt)
    reps = np.zeros((nt, n_replicas, n, d)) if keep_replicas else None
    masses = model.masses[conf.species]
    for r in range(n_replicas):
        rng = np.random.default_rng(seed * 1_000_003 + r)
        v = maxwell_boltzmann(masses, d, T, rng)
        start = conf.replace(velocities=v)
        if engine == "numba":
            sim = MDSimulation(start, T=T, dt=dt, ensemble=ensemble, seed=seed * 1_000_003 + r, threads=threads)
            frames = []
            for k in range(nt):
                sim.step(int(steps[k] - sim.step_count))
                frames.append(sim.positions.copy())
        elif engine == "lammps":
            res = run_md(start, T=T, dt=dt, nsteps=int(steps[-1]), ensemble=ensemble, seed=seed * 1_000_003 + r,
                         traj_steps=steps, engine="lammps", threads=threads or 1, thermo_every=int(steps[-1]))
            got = res.trajectory.steps if res.trajectory is not None else np.zeros(0)
            if not np.array_equal(np.asarray(got, dtype=np.int64), steps):
                raise InputError(f"LAMMPS returned frames at steps {got} instead of {steps}")
            frames = list(res.trajectory.positions)  # type: ignore[union-attr]
        else:
            raise InputError(f"unknown engine {engine!r} (choose numba or lammps)")
        for k, xt in enumerate(frames):
            dr = xt - x0  # both unwrapped: the MD engines never wrap stored positions
            dist2 = np.einsum("nd,nd->n", dr, dr)
            md_prop[k] += np.sqrt(dist2)
            msd[k] += dist2.mean()
            bb_prop[k] += bond_breaking(x0, xt, conf.species, box, model.sigma, r_in, r_out, bonds=bonds,
                                        unwrapped=True)
            if reps is not None:
                reps[k, r] = xt
    return IsoconfigResult(times=steps * dt, md_prop=md_prop / n_replicas, bb_prop=bb_prop / n_replicas,
                           replicas=reps, msd=msd / n_replicas)
