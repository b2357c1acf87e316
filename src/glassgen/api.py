"""Plain typed functions, one per user-level job; the CLI parses options and calls exactly one.

Every job validates its inputs (one-line :class:`~glassgen.errors.GlassgenError` on bad input),
writes its outputs atomically with provenance, checkpoints long runs next to the output
(``<out>.ckpt.h5``) and resumes from that checkpoint when it is present.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import time
import warnings
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from glassgen.config_values import check_types, read_toml, type_hints
from glassgen.dynamics.results import MDResult
from glassgen.dynamics.schedule import DeferredInterrupt
from glassgen.errors import InputError
from glassgen.observables.dynamics import default_q
from glassgen.provenance import atomic_path, check_hdf5_name, check_output_name, provenance, strict_json
from glassgen.systems.configuration import Configuration
from glassgen.systems.io import (
    h5_write_attrs,
    read_configuration,
    write_configuration,
    write_configuration_group,
    written_by,
)
from glassgen.systems.model import default_swap_pairs, load_model

__all__ = ["load_config", "config_options", "load_input", "md_run", "mc_run", "minimize", "init_state", "analyze",
           "write_run", "checkpoint_path"]

PathLike = str | os.PathLike[str]


# ------------------------------------------------------------------------------------ helpers
def load_config(path: PathLike | None, section: str, other_tables: tuple[str, ...] = ()) -> dict[str, Any]:
    """Read a TOML config: top-level keys plus the keys of table ``[section]`` (which win).

    A table that is neither ``[section]`` nor one of ``other_tables`` (the tables of sibling commands that
    share the file, e.g. pgmc's ``[train]`` and ``[run]``) is a one-line error, not silently ignored.
    """
    if path is None:
        return {}
    p = Path(path)
    data, _ = read_toml(p)
    unknown = sorted(k for k, v in data.items() if isinstance(v, dict) and k != section and k not in other_tables)
    if unknown:
        raise InputError(f"unknown table(s) in {p}: {', '.join(f'[{k}]' for k in unknown)} "
                         f"(this command reads the top level and [{section}])")
    if section in data and not isinstance(data[section], dict):
        raise InputError(f"{p}: {section} must be a table [{section}]")
    nested = sorted(k for k, v in data.get(section, {}).items() if isinstance(v, dict))
    if nested:
        raise InputError(f"unknown table(s) in {p}: {', '.join(f'[{section}.{k}]' for k in nested)}")
    out = {k: v for k, v in data.items() if not isinstance(v, dict)}
    out.update(data.get(section, {}))
    return out


def config_options(path: PathLike | None, section: str, target: Any, other_tables: tuple[str, ...] = (),
                   **cli: Any) -> dict[str, Any]:
    """The keyword arguments of ``target`` from a TOML config (top level + ``[section]``), overridden by the
    command-line options that were given (not None). Unknown keys and tables and values of the wrong type
    (``n = "ten"``, ``T = "hot"``) are one-line :class:`InputError` errors."""
    import inspect

    opts = {k.replace("-", "_"): v for k, v in load_config(path, section, other_tables).items()
            if not isinstance(v, dict)}
    allowed = set(inspect.signature(target).parameters) - {"progress"}
    unknown = sorted(set(opts) - allowed)
    if unknown:
        raise InputError(f"unknown key(s) in {path}: {', '.join(unknown)} (allowed: {', '.join(sorted(allowed))})")
    opts = check_types(opts, type_hints(target), str(path))
    opts.update({k: v for k, v in cli.items() if v is not None})
    return opts


def checkpoint_path(out: PathLike) -> Path:
    """Where a job writing ``out`` keeps its checkpoint."""
    return Path(str(out) + ".ckpt.h5")


def run_origin(conf: Configuration, **settings: Any) -> str:
    """A short hash of a run's start (positions, species, box, velocities) and of the ``settings`` that shape it
    before recording (equilibration, tuning): part of a checkpoint's signature, so that a checkpoint is never
    resumed from another input or density (it was, silently, before 2026-12-06)."""
    h = hashlib.sha256()
    for a in (conf.positions, conf.species, conf.box, conf.velocities):
        if a is not None:
            h.update(np.ascontiguousarray(a).tobytes())
    h.update(json.dumps(settings, sort_keys=True, default=str).encode())
    return h.hexdigest()[:16]


def equilibration_checkpoint_path(out: PathLike) -> Path:
    """Where a job writing ``out`` keeps the checkpoint of its unrecorded equilibration."""
    return Path(str(out) + ".eq.ckpt.h5")


def _positive(name: str, value: float | None) -> None:
    if value is None:
        raise InputError(f"missing {name}: give --{name} (or {name} = ... in the config)")
    if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
        raise InputError(f"{name} must be positive, got {name}={value}")


def load_input(input: PathLike | None = None, model: str | None = None, n: int | None = None,
               T: float | None = None, density: float | None = None, seed: int = 0,
               check_overlap: bool = False) -> Configuration:
    """The starting configuration: a file (``input``), or a random state of ``n`` particles of ``model``.

    A file is bound to ``model`` when given (else to the model recorded in the file). ``check_overlap``:
    a file with overlapping particles (a pair closer than half its sigma_ab) is a one-line error, for the
    commands that do not compute forces themselves before their first step.
    """
    if input is not None:
        given = [f for f, v in (("N", n), ("density", density)) if v is not None]
        if given:
            warnings.warn(f"{' and '.join(given)} ignored: the --input file sets them", stacklevel=2)
        conf = read_configuration(input, model)
        if conf.model is None:
            meta = (conf.metadata or {}) if hasattr(conf, "metadata") else {}
            named = meta.get("model") or meta.get("Model")
            if named:
                raise InputError(f"{input} names model {named!r}, which is unknown; pass --model (see glassgen models)")
            raise InputError(f"{input} names no model; pass --model")
        if check_overlap:
            from glassgen.dynamics.forces import ForceField

            ForceField.for_configuration(conf, skin=0.0).compute(conf.positions)  # raises on overlaps
        return conf
    if model is None or n is None:
        raise InputError("give --input FILE, or --model and --N for a random initial state")
    if n < 2 or n > 10**7:
        raise InputError(f"N must be between 2 and 1e7, got {n}")
    from glassgen.dynamics.initial import random_state

    return random_state(model, int(n), T=T, density=density, seed=seed)


def write_run(path: PathLike, result: MDResult, prov: dict[str, Any],
              extra_attrs: dict[str, Any] | None = None) -> None:
    """Write a run: provenance attributes, ``/configuration`` (final), ``/thermo``, ``/trajectory``."""
    from glassgen.observables.trajectory import write_trajectory_group

    conf = result.final
    with atomic_path(path) as tmp, h5py.File(tmp, "w") as f:
        h5_write_attrs(f, prov)
        h5_write_attrs(f, {"info": result.info, **(extra_attrs or {})})
        write_configuration_group(f.create_group("configuration"), conf)
        th = f.create_group("thermo")
        for k, v in result.thermo.as_dict().items():
            th.create_dataset(k, data=v)
        if result.trajectory is not None:  # per-species curves select by the species of the first frame
            tr = result.trajectory
            write_trajectory_group(f, tr, conf.species if tr.species is None else tr.species[0], conf.box,
                                   conf.model.name if conf.model else None)


def _thermo_summary(result: MDResult, n: int) -> dict[str, Any]:
    from glassgen.observables.thermo import block_average, drift_z, warn_if_drifting

    th = result.thermo
    s: dict[str, Any] = {}
    k0 = len(th.potential) // 5  # discard the first 20 % as a precaution
    series = [("U_per_N", th.potential / n), ("pressure", th.pressure)]
    if np.isfinite(th.kinetic).any():  # MC has no kinetic temperature (its thermo "temperature" is the bath's T)
        series.append(("T_kin", th.temperature))
    for key, arr in series:
        a = arr[k0:]
        a = a[np.isfinite(a)]
        if a.size >= 4:
            m, e = block_average(a, min(10, a.size // 2))
            s[key] = (float(m), float(e))
    u = th.potential[k0:] / n
    s["U_per_N_drift_z"] = drift_z(u)  # halves of the kept series, in combined standard errors
    warn_if_drifting(s["U_per_N_drift_z"])
    c = th.conserved[np.isfinite(th.conserved)]
    if c.size >= 2 and th.time[-1] > th.time[0]:
        slope = np.polyfit(th.step[: c.size], c / n, 1)[0]
        s["conserved_drift_per_N_per_1e4_steps"] = float(slope * 1e4)
    return s


def _traj_steps(nsteps: int, traj: str, traj_every: int | None, n_per_decade: int,
                n_blocks: int) -> tuple[np.ndarray | None, dict[str, Any]]:
    from glassgen.observables.schedule import block_log_schedule, log_spaced_steps

    if traj_every is not None and traj != "linear":
        raise InputError(f"--traj-every sets the spacing of --traj linear frames; it does nothing with --traj {traj}")
    if n_blocks > 1 and traj != "log":
        raise InputError(f"--traj-blocks sets the time origins of --traj log frames; it does nothing with "
                         f"--traj {traj}")
    if traj == "none":
        return None, {}
    if traj == "linear":
        every = traj_every or max(1, nsteps // 100)
        return np.arange(0, nsteps + 1, every), {"traj_schedule": {"kind": "linear", "every": every}}
    if traj == "log":
        if n_blocks > 1:
            block = nsteps // n_blocks
            if block < 1:
                raise InputError("too few steps for the requested number of trajectory blocks")
            sch = block_log_schedule(n_blocks, block, n_per_decade)
            return sch.steps, {"traj_schedule": {"kind": "block_log", "n_blocks": n_blocks,
                                                 "block_steps": block, "n_per_decade": n_per_decade}}
        return log_spaced_steps(nsteps, n_per_decade), {"traj_schedule": {"kind": "log",
                                                                          "n_per_decade": n_per_decade}}
    raise InputError(f"unknown trajectory schedule {traj!r} (none, log, linear)")


# ------------------------------------------------------------------------------------ jobs
def init_state(*, model: str, n: int, out: PathLike, T: float | None = None, density: float | None = None,
               seed: int = 0) -> dict[str, Any]:
    """Write a random configuration without overlaps (velocities at T if given)."""
    if T is not None:
        _positive("T", T)
    conf = load_input(None, model, n, T, density, seed)
    write_configuration(out, conf, seed=seed, T=T)
    return {"out": str(out), "N": conf.n, "model": conf.model.name, "box": conf.box.tolist()}  # type: ignore[union-attr]


def md_run(*, out: PathLike, T: float | None, steps: int, input: PathLike | None = None,
           model: str | None = None, n: int | None = None, density: float | None = None, dt: float = 0.005,
           ensemble: str = "nvt", thermostat: str = "nhc", tau: float | None = None, engine: str = "numba",
           threads: int | None = None, seed: int = 0, thermo_every: int = 100, traj: str = "log",
           traj_every: int | None = None, n_per_decade: int = 10, traj_blocks: int = 1,
           checkpoint_every: int = 20000, equilibrate_steps: int = 0, progress: bool = False,
           plot: bool = True) -> dict[str, Any]:
    """Run MD and write ``out`` (HDF5): final configuration, thermo series, trajectory, provenance.

    ``equilibrate_steps`` of NVT at T (same thermostat, not recorded) precede the production run.
    Resumes from ``<out>.ckpt.h5`` if a previous run with the same parameters was interrupted.
    """
    from glassgen.dynamics.md import run_md

    check_hdf5_name(out)
    if ensemble == "nvt" or T is not None:
        _positive("T", T)
    _positive("dt", dt)
    if tau is not None:
        _positive("tau", tau)
    if threads is not None and threads > (os.cpu_count() or 1):
        warnings.warn(f"--threads {threads} exceeds the {os.cpu_count()} cores of this machine (oversubscribed: "
                      "slower, not faster)", stacklevel=2)
    if steps is None or not 1 <= steps <= 10**15:
        raise InputError(f"steps must be a positive integer up to 1e15, got {steps}")
    # LAMMPS aborts the whole process (not an exception) on a pair inside its tables: check overlaps first
    conf = load_input(input, model, n, T, density, seed, check_overlap=engine == "lammps")
    traj_steps, sched = _traj_steps(int(steps), traj, traj_every, n_per_decade, traj_blocks)
    ck = checkpoint_path(out) if engine == "numba" else None
    eq_ck = equilibration_checkpoint_path(out) if engine == "numba" else None
    production_saved = ck is not None and ck.is_file()
    resumed = production_saved or (equilibrate_steps > 0 and eq_ck is not None and eq_ck.is_file())
    origin = run_origin(conf, equilibrate_steps=int(equilibrate_steps))
    # one Ctrl-C scope over both phases: a Ctrl-C in the equilibration's last stretch (which it lets finish) stops
    # the run at the production's first event point, with a checkpoint there, instead of being forgotten
    with DeferredInterrupt(active=ck is not None):
        if equilibrate_steps > 0 and not production_saved:  # (resumed from its own checkpoint if one was kept)
            if T is None:
                raise InputError("equilibration needs a temperature T")
            eq = run_md(conf, T=T, dt=dt, nsteps=int(equilibrate_steps), ensemble="nvt",
                        thermostat=thermostat if ensemble == "nvt" else "nhc", tau=tau, seed=seed + 1_000_003,
                        thermo_every=max(1, int(equilibrate_steps)), threads=threads, engine=engine,
                        progress=progress, checkpoint=eq_ck, checkpoint_every=checkpoint_every, origin=origin,
                        what="equilibration")
            conf = eq.final
        t0 = time.perf_counter()
        res = run_md(conf, T=T, dt=dt, nsteps=int(steps), ensemble=ensemble, thermostat=thermostat, tau=tau,
                     seed=seed, thermo_every=thermo_every, traj_steps=traj_steps, threads=threads, engine=engine,
                     progress=progress, checkpoint=ck, checkpoint_every=checkpoint_every, origin=origin)
    wall = time.perf_counter() - t0
    prov = provenance(seed=seed, model=conf.model.name, T=T, engine=engine, ensemble=ensemble,  # type: ignore[union-attr]
                      thermostat=thermostat if ensemble == "nvt" else None, dt=dt, steps=int(steps),
                      N=conf.n, input=str(input) if input else None, equilibrate_steps=equilibrate_steps)
    write_run(out, res, prov, sched)
    for done in (ck, eq_ck):
        if done is not None and done.is_file():
            done.unlink()
    summary = {"out": str(out), "N": conf.n, "model": conf.model.name, "engine": engine, "T": T,  # type: ignore[union-attr]
               "steps": int(steps), "wall_s": wall, "resumed": resumed,
               # the steady state (Numba: after the first advance, which pays the compile or cache load; before
               # 2026-12-06 the whole call, e.g. 1e5 instead of 4e5 for 1000 steps at N = 256)
               "particle_steps_per_s": conf.n * float(res.info["steps_per_s"])
               if math.isfinite(float(res.info.get("steps_per_s", math.nan)))  # one advance only: the whole call
               else (conf.n * int(res.info.get("steps_run", steps)) / wall if wall > 0 else float("nan")),
               **_thermo_summary(res, conf.n)}
    if plot:
        from glassgen.observables.plots import plot_thermo

        png = Path(str(out)).with_suffix(".thermo.png")
        run_meta = {k: v for k, v in prov.items() if k not in ("command", "glassgen_version", "time", "host", "python")}
        plot_thermo(res.thermo.as_dict(), png, title=f"{conf.model.name} N={conf.n} T={T}",  # type: ignore[union-attr]
                    **run_meta, output=str(out))
        summary["plot"] = str(png)
    return summary


def mc_run(*, out: PathLike, T: float, sweeps: int, input: PathLike | None = None, model: str | None = None,
           n: int | None = None, density: float | None = None, delta: float | None = None,
           swap_fraction: float = 0.0, tune_sweeps: int | None = None, equilibrate_sweeps: int = 0, seed: int = 0,
           sample_every: int = 10, traj: str = "log",
           traj_every: int | None = None, n_per_decade: int = 10, traj_blocks: int = 1,
           checkpoint_every: int = 2000, progress: bool = False) -> dict[str, Any]:
    """Run Metropolis MC (displacements, optional swaps) and write ``out`` like :func:`md_run`.

    delta: maximal displacement (sigma_AA). Without it the run starts from 0.1 and tunes it for ``tune_sweeps``
    (default 200) sweeps towards acceptance 0.4 first; a given delta is used as is unless ``tune_sweeps`` is
    given too (then it is the start of the tuning). ``equilibrate_sweeps`` unrecorded sweeps follow.
    """
    from glassgen.dynamics.mc import run_mc

    check_hdf5_name(out)
    _positive("T", T)
    if sweeps is None or not 1 <= sweeps <= 10**15:
        raise InputError(f"sweeps must be a positive integer up to 1e15, got {sweeps}")
    if tune_sweeps is None:
        tune_sweeps = 200 if delta is None else 0
    delta = 0.1 if delta is None else delta
    conf = load_input(input, model, n, T, density, seed)
    if swap_fraction and not default_swap_pairs(conf.require_model().name):
        warnings.warn(f"model {conf.require_model().name} has no species pair worth swapping (A-B swaps of KA cost "
                      "~70 epsilon and are never accepted): --swap-fraction only wastes trials here", stacklevel=2)
    traj_steps, sched = _traj_steps(int(sweeps), traj, traj_every, n_per_decade, traj_blocks)
    ck = checkpoint_path(out)
    eq_ck = equilibration_checkpoint_path(out)
    resumed = ck.is_file() or (equilibrate_sweeps > 0 and eq_ck.is_file())
    t0 = time.perf_counter()
    res = run_mc(conf, T=T, n_sweeps=int(sweeps), delta=delta, swap_fraction=swap_fraction, seed=seed,
                 sample_every=sample_every, traj_sweeps=traj_steps, tune_sweeps=tune_sweeps,
                 equilibrate_sweeps=int(equilibrate_sweeps), equilibrate_checkpoint=eq_ck,
                 progress=progress, checkpoint=ck, checkpoint_every=checkpoint_every,
                 origin=run_origin(conf, delta=delta, tune_sweeps=int(tune_sweeps),
                                   equilibrate_sweeps=int(equilibrate_sweeps)))
    wall = time.perf_counter() - t0
    prov = provenance(seed=seed, model=conf.model.name, T=T, engine="numba-mc", sweeps=int(sweeps),  # type: ignore[union-attr]
                      N=conf.n, swap_fraction=swap_fraction, input=str(input) if input else None,
                      equilibrate_sweeps=int(equilibrate_sweeps))
    write_run(out, res, prov, sched)
    for done in (ck, eq_ck):
        if done.is_file():
            done.unlink()
    return {"out": str(out), "N": conf.n, "model": conf.model.name, "T": T, "sweeps": int(sweeps),  # type: ignore[union-attr]
            "wall_s": wall, "resumed": resumed,
            "acceptance": {k: v for k, v in res.info["acceptance"].items() if k != "swap" or swap_fraction > 0},
            "delta": res.info["delta"], "delta_tuned": bool(tune_sweeps), **_thermo_summary(res, conf.n)}


def minimize(*, input: PathLike, out: PathLike, model: str | None = None, ftol: float = 1e-10,
             max_iter: int = 200000, soft: bool = False, progress: bool = False) -> dict[str, Any]:
    """FIRE to the inherent state of ``input`` (``soft``: remove overlaps first); writes ``out``."""
    from glassgen.dynamics.minimize import fire_minimize, remove_overlaps

    _positive("ftol", ftol)
    conf = load_input(input, model)
    if soft:
        conf = remove_overlaps(conf)
    r = fire_minimize(conf, ftol=ftol, max_iter=max_iter, progress=progress)
    write_configuration(out, r.configuration, ftol=ftol, converged=r.converged, energy=r.energy,
                        max_force=r.max_force, input=str(input))
    return {"out": str(out), "N": conf.n, "U_per_N": r.energy / conf.n, "max_force": r.max_force,
            "iterations": r.iterations, "converged": r.converged}


def _check_q_max(q_max: float, box: np.ndarray) -> None:
    """One-line error where no wave vector of the box is as short as ``q_max`` (S(q) would be empty)."""
    q_min = 2 * math.pi / float(np.max(box))
    if q_max < q_min:
        raise InputError(f"--q-max {q_max:g} is below the shortest wave vector of the box, 2 pi / L = {q_min:.4g}: "
                         "S(q) would be empty")


def _rdf_range(r_max: float | None, box: np.ndarray) -> float:
    """The g(r) range: ``r_max`` (default and at most half the smallest box side, with a warning if cut)."""
    half = 0.5 * float(np.min(box))
    if r_max is not None and r_max > half:
        warnings.warn(f"--r-max {r_max:g} exceeds half the box ({half:.4g}); g(r) stops there", stacklevel=3)
    return half if r_max is None else min(float(r_max), half)


def analyze(*, input: PathLike, out_dir: PathLike | None = None, q: float | None = None, r_max: float | None = None,
            bins: int = 200, frames_for_rdf: int = 20, overlap_a: float = 0.3, q_max: float = 12.0) -> dict[str, Any]:
    """g_ab(r), S(q), MSD, F_s(q, t), tau_alpha, the non-Gaussian parameter, the self overlap Q(t) and chi_4(t) of a
    run file; PNGs + text.

    g(r) and S(q) (box wave vectors up to ``q_max``, :class:`~glassgen.observables.StaticStructureFactor`) are
    averaged over the last ``frames_for_rdf`` frames; the main peak of S_AA(q) is the natural q for F_s.

    chi_4(t) = N var Q(t) (:class:`~glassgen.observables.dynamics.FourPointSusceptibility`, overlap radius
    ``overlap_a``) comes from the spread of Q over the time origins of one MD run (correlated origins: an
    estimate that needs a run many tau_alpha long) or over the chains of a PGMC run (independent).

    ``tau_alpha`` is defined as the time where F_s(q, t) of all particles (and per species) first
    falls below 1/e (log-time interpolation), at the wave number ``q`` (default
    :func:`glassgen.observables.dynamics.default_q`: 7.25, the KA 3D A-A peak, in 3D; 2 pi in 2D, as
    ``glassgen pgmc run`` uses).
    """
    from glassgen.observables import (
        MSD,
        RDF,
        FourPointSusceptibility,
        NonGaussian,
        SelfIntermediateScattering,
        StaticStructureFactor,
        read_trajectory,
    )
    from glassgen.observables.schedule import block_log_schedule

    if not (isinstance(overlap_a, (int, float)) and math.isfinite(overlap_a) and overlap_a > 0):
        raise InputError(f"--overlap-a must be a positive number, got {overlap_a}")
    if not (isinstance(q_max, (int, float)) and math.isfinite(q_max) and 0 < q_max <= 100):
        raise InputError(f"--q-max must be a number in (0, 100], got {q_max}")
    if q is not None and not (isinstance(q, (int, float)) and 0.01 <= q <= 1000):
        raise InputError(f"--q must be a wave number in [0.01, 1000] (1/sigma_AA; 7.25 for KA 3D), got {q}")
    if r_max is not None and not (isinstance(r_max, (int, float)) and 0.01 <= r_max < math.inf):
        raise InputError(f"--r-max must be a distance of at least 0.01 sigma_AA, got {r_max}")
    p = Path(input)
    if not p.is_file():
        raise InputError(f"file not found: {p}")
    _check_analyzable(p)
    pgmc_run = _read_pgmc_frames(p)
    if pgmc_run is not None:
        q = default_q(pgmc_run["positions"].shape[-1]) if q is None else q
        return _analyze_pgmc(p, pgmc_run, out_dir, q, r_max, bins, frames_for_rdf, overlap_a, q_max)
    data = read_trajectory(p)
    q = default_q(data.trajectory.positions.shape[-1]) if q is None else q
    traj, species, box = data.trajectory, data.species, data.box
    _check_q_max(q_max, box)
    if traj.positions.shape[0] < 2:
        raise InputError(f"{p} holds fewer than two frames: nothing to analyse")
    outd = Path(out_dir) if out_dir is not None else p.with_suffix("")
    outd.mkdir(parents=True, exist_ok=True)
    names = None
    if data.model:
        try:
            names = list(load_model(data.model).species)
        except InputError:
            names = None
    if names is not None and species.size and int(species.max()) >= len(names):
        raise InputError(f"{p}: species index {int(species.max())} is beyond the {len(names)} species of model "
                         f"{data.model}")
    sched = {}
    try:
        with h5py.File(p, "r") as f:
            if "traj_schedule" in f.attrs:
                sched = json.loads(str(f.attrs["traj_schedule"]))
    except OSError:
        pass
    origins: Any = "first"
    if sched.get("kind") == "block_log":
        origins = block_log_schedule(sched["n_blocks"], sched["block_steps"], sched["n_per_decade"])
    elif sched.get("kind") == "linear":
        origins = "all"
    kw = {"steps": traj.steps} if not isinstance(origins, str) else {}
    dt_unit = traj.times[1] / traj.steps[1] if traj.steps[1] > 0 else 1.0
    msd = MSD(origins=origins).compute(traj.times, traj.positions, species, box, **kw)
    fs = SelfIntermediateScattering(q, origins=origins).compute(traj.times, traj.positions, species, box, **kw)
    ngp = NonGaussian(origins=origins).compute(traj.times, traj.positions, species, box, **kw)
    chi4 = FourPointSusceptibility(overlap_a, origins=origins).compute(traj.times, traj.positions, species, box, **kw)
    nf = traj.positions.shape[0]
    nsp = int(max(species.max(), -1 if traj.species is None else traj.species.max())) + 1
    rdf = RDF(_rdf_range(r_max, box), bins, n_species=nsp)
    sq = StaticStructureFactor(q_max, n_species=nsp)
    for k in range(max(0, nf - frames_for_rdf), nf):  # structure with each frame's own species (swaps)
        sp_k = species if traj.species is None else traj.species[k]
        rdf.compute(traj.positions[k], sp_k, box, reset=(k == max(0, nf - frames_for_rdf)))
        sq.compute(traj.positions[k], sp_k, box, reset=(k == max(0, nf - frames_for_rdf)))
    # the analysed run's own provenance (model, T, seed, ...) travels into every output
    run = {f"run_{k}": v for k, v in data.attrs.items() if k in ("model", "T", "seed", "N", "engine", "method")}
    if str(data.attrs.get("engine", "")).endswith("-mc"):  # mc run: frames are counted in MC sweeps
        return _write_analysis(p, outd, q, rdf, sq, msd, fs, ngp, chi4, species, names,
                               {"input": str(p), **run, "time_unit": "MC sweeps"},
                               {"time_unit": "MC sweeps", "frames": nf}, "t (MC sweeps)")
    return _write_analysis(p, outd, q, rdf, sq, msd, fs, ngp, chi4, species, names, {"input": str(p), **run},
                           {"time_unit": f"LJ time (MD step dt = {float(dt_unit):g})", "frames": nf}, "t")


def _write_analysis(p: Path, outd: Path, q: float, rdf: Any, sq: Any, msd: Any, fs: Any, ngp: Any, chi4: Any,
                    species: np.ndarray, names: list[str] | None, meta: dict[str, Any], extra: dict[str, Any],
                    time_label: str) -> dict[str, Any]:
    """The outputs of :func:`analyze`: PNGs, tables and ``summary.json`` (tau_alpha and the chi_4 peak of all
    particles and per species of ``species``), every one carrying ``meta``."""
    from glassgen.observables import plot_chi4, plot_fs, plot_msd, plot_rdf, plot_structure_factor
    from glassgen.observables.structure_factor import PEAK_WINDOW

    plot_rdf(rdf, outd / "rdf.png", species_names=names, **meta)
    plot_structure_factor(sq, outd / "sq.png", species_names=names, **meta)
    sq.write(outd / "sq.txt", **meta)
    plot_msd(msd, outd / "msd.png", species_names=names, time_label=time_label, **meta)
    plot_fs(fs, outd / "fs.png", species_names=names, time_label=time_label, **meta)
    plot_chi4(chi4, outd / "chi4.png", species_names=names, time_label=time_label, **meta)
    rdf.write(outd / "rdf.txt", **meta)
    msd.write(outd / "msd.txt", **meta)
    fs.write(outd / "fs.txt", **meta)
    ngp.write(outd / "ngp.txt", **meta)
    chi4.write(outd / "chi4.txt", **meta)
    taus = {"all": float(fs.tau_alpha())}
    peaks = {"all": dict(zip(("t", "chi4"), chi4.peak(), strict=True))}
    sq_peaks = {"all": dict(zip(("q", "S"), sq.peak(window=PEAK_WINDOW), strict=True))}
    for s in np.unique(species):
        key = names[s] if names else str(int(s))
        taus[key] = float(fs.tau_alpha(species=int(s)))
        peaks[key] = dict(zip(("t", "chi4"), chi4.peak(int(s)), strict=True))
        sq_peaks[f"{key}-{key}"] = dict(zip(("q", "S"), sq.peak((int(s), int(s)), window=PEAK_WINDOW), strict=True))
    summary = {"input": str(p), "out_dir": str(outd), "q": q, "tau_alpha": taus, **extra,
               "ngp_max": float(np.nanmax(ngp.alpha2)) if np.isfinite(ngp.alpha2).any() else None,
               "S_q_peak": sq_peaks, "S_q_peak_window": PEAK_WINDOW, "overlap_a": chi4.a, "chi4_peak": peaks,
               "chi4_samples_per_lag": [int(chi4.n_overlap_samples[1:].min()) if len(chi4.lag_times) > 1 else 0,
                                        int(chi4.n_overlap_samples.max())]}
    with atomic_path(outd / "summary.json") as tmp:
        tmp.write_text(strict_json({**summary, "provenance": provenance(**meta)}, indent=2))
    if not np.isfinite(taus["all"]) and len(fs.lag_times) > 1:
        warnings.warn(f"tau_alpha is NaN: F_s(q = {q:g}) of all particles is {float(fs.fs[-1]):.2f} > 1/e at the last "
                      f"lag ({float(fs.lag_times[-1]):g}); the run is shorter than tau_alpha", stacklevel=3)
    if summary["chi4_samples_per_lag"][1] < 2:  # N var Q needs two overlaps per lag at least
        warnings.warn("chi_4 is NaN: one time origin and one run give one overlap per lag; record several "
                      "origins (md run / mc run --traj-blocks K) or chains (pgmc run --chains K)", stacklevel=3)
    return summary


_ANALYZED = "analyze reads the trajectories (.h5) of md run, mc run and pgmc run"


def _check_analyzable(p: Path) -> None:
    """One line naming what the file is, when it is not a trajectory analyze reads (an npz dataset, a model run)."""
    if not h5py.is_hdf5(p):
        raise InputError(f"{p} is not an HDF5 file: {_ANALYZED}")
    with h5py.File(p, "r") as f:
        if "trajectory" in f or "thermo" in f or f.attrs.get("method") == "pgmc":
            return
        cmd = written_by(f.attrs.get("command", ""))
    made_by = f" (this file was written by `{cmd}`)" if cmd else ""
    raise InputError(f"{p} holds no trajectory{made_by}: {_ANALYZED}")


def _read_pgmc_frames(p: Path) -> dict[str, Any] | None:
    """Frames of a ``glassgen pgmc run`` file, or None if ``p`` is not one.

    Returns a dict with sweeps (F,), positions (F, n_chains, N, d) unwrapped, species (F, n_chains, N),
    box (d,) and the run's provenance attributes.
    """
    try:
        with h5py.File(p, "r") as f:
            if f.attrs.get("method") != "pgmc" or "final" not in f:
                return None
            if "trajectory" not in f:
                made = written_by(f.attrs.get("command"))
                raise InputError(f"{p} is a PGMC file without trajectory frames (`{made}` stored none; "
                                 "`glassgen pgmc run --traj log` stores them)")
            g = f["trajectory"]
            out = {"sweeps": g["sweeps"][()].astype(np.float64), "positions": g["positions"][()].astype(np.float64),
                   "species": g["species"][()].astype(np.int64), "box": f["box"][()].astype(np.float64),
                   "attrs": {k: _decode_attr(v) for k, v in f.attrs.items()}}
    except (OSError, KeyError) as exc:
        raise InputError(f"cannot read {p}: {exc}") from None
    pos = out["positions"]
    if pos.ndim != 4 or out["species"].shape != pos.shape[:3] or out["sweeps"].shape != pos.shape[:1]:
        raise InputError(f"{p}: malformed PGMC trajectory (positions {pos.shape}, species {out['species'].shape})")
    return out


def _decode_attr(v: Any) -> Any:
    if isinstance(v, bytes):
        v = v.decode()
    if isinstance(v, np.generic):
        v = v.item()
    return v


def _analyze_pgmc(p: Path, run: dict[str, Any], out_dir: PathLike | None, q: float, r_max: float | None,
                  bins: int, frames_for_rdf: int, overlap_a: float, q_max: float) -> dict[str, Any]:
    """:func:`analyze` of a PGMC run: time in MC sweeps from the first frame, pooled over the chains.

    Particles keep their labels through species swaps; per-species curves select by the species at the
    first frame; g_ab(r) uses each frame's own species.
    """
    from glassgen.observables import (
        MSD,
        RDF,
        FourPointSusceptibility,
        NonGaussian,
        SelfIntermediateScattering,
        StaticStructureFactor,
    )

    t, pos, sp, box = run["sweeps"], run["positions"], run["species"], run["box"]
    _check_q_max(q_max, box)
    nf, nc = pos.shape[0], pos.shape[1]
    if nf < 2:
        raise InputError(f"{p} holds fewer than two frames: nothing to analyse")
    attrs = run["attrs"]
    names = None
    try:
        names = list(load_model(str(attrs.get("model"))).species)
    except InputError:
        names = None
    if names is not None and sp.size and int(sp.max()) >= len(names):
        raise InputError(f"{p}: species index {int(sp.max())} is beyond the {len(names)} species of model "
                         f"{attrs.get('model')}")
    outd = Path(out_dir) if out_dir is not None else p.with_suffix("")
    outd.mkdir(parents=True, exist_ok=True)
    lag = t - t[0]
    msd, fs, ngp, chi4 = MSD(), SelfIntermediateScattering(q), NonGaussian(), FourPointSusceptibility(overlap_a)
    for c in range(nc):  # chains are independent runs: chi_4 from the spread of Q over chains
        for obs in (msd, fs, ngp, chi4):
            obs.compute(lag, pos[:, c], sp[0, c], box, reset=(c == 0))
    rdf = RDF(_rdf_range(r_max, box), bins, n_species=int(sp.max()) + 1)
    sq = StaticStructureFactor(q_max, n_species=int(sp.max()) + 1)
    first = True
    for k in range(max(0, nf - frames_for_rdf), nf):
        for c in range(nc):
            rdf.compute(pos[k, c], sp[k, c], box, reset=first)
            sq.compute(pos[k, c], sp[k, c], box, reset=first)
            first = False
    run_meta = {f"run_{k}": v for k, v in attrs.items() if k in ("model", "T", "seed", "N", "method")}
    return _write_analysis(p, outd, q, rdf, sq, msd, fs, ngp, chi4, sp[0], names,
                           {"input": str(p), **run_meta, "time_unit": "MC sweeps"},
                           {"time_unit": "MC sweeps", "frames": nf, "chains": nc}, "t (MC sweeps)")


# ----------------------------------------------------------------------------- Boltzmann generators
DEFAULT_FLOW = {"model": "ka3d", "N": 64}
SAMPLE_METHODS = ("is", "imh", "ais", "aimh", "pgmc")


def shipped_flow(model: str, n: int) -> Path:
    """Path of the flow checkpoint shipped in the package for (model, N) (may not exist)."""
    return Path(__file__).parent / "data" / "flows" / f"{model}_n{int(n)}.pt"


def flow_train(*, config: PathLike, out: PathLike, resume: bool = True, device: str = "cpu",
               progress: bool = False, ship: bool = False, workers: int = 1, seed: int | None = None) -> dict[str, Any]:
    """Train a Boltzmann generator from a TOML config (``configs/flows/*.toml``); checkpoint to ``out``.

    ``ship`` additionally writes a slim copy (no optimizer state) to the package's shipped location;
    ``workers`` processes generate the reference data's chains; ``seed`` (if given) replaces the config's
    ``[training] seed`` (torch and the reference data's chains).
    """
    import torch

    from glassgen.flows.generator import BoltzmannGenerator
    from glassgen.flows.training import TrainingConfig, train_flow

    check_output_name(out, "a PyTorch checkpoint")
    p = Path(config)
    raw, _ = read_toml(p)
    cfg = TrainingConfig.from_dict(raw)
    if seed is not None:
        if seed < 0:
            raise InputError(f"--seed must be >= 0, got {seed}")
        cfg = dataclasses.replace(cfg, seed=int(seed))
    t0 = time.perf_counter()
    if workers < 1:
        raise InputError(f"--workers must be >= 1, got {workers}")
    gen = train_flow(cfg, out, resume=resume, device=device, progress=progress, workers=workers)
    summary: dict[str, Any] = {"out": str(out), "model": cfg.model, "N": cfg.N, "T_range": list(gen.T_range or ()),
                               "steps": cfg.total_steps, "skipped_steps": gen.training.get("skipped"),
                               "resumed_from_step": gen.training.get("resumed_from_step"),
                               "wall_s": time.perf_counter() - t0}
    if (summary["resumed_from_step"] or 0) >= cfg.total_steps:
        summary["note"] = f"{out} had finished training already: nothing trained now"
    if summary["resumed_from_step"] is None:
        summary["resumed_from_step"] = "no (trained from the start)"
    losses = [h for h in gen.training.get("history", []) if "reverse_kl" in h]
    if losses:  # only the objectives this config trains on (a NaN forward KL of a reverse-only run said nothing)
        summary["final_losses"] = {k: v for k, v in losses[-1].items()
                                   if k in ("reverse_kl", "forward_kl") and isinstance(v, float) and math.isfinite(v)}
    if gen.training.get("selected"):
        summary["selected_by_validation"] = gen.training["selected"]
    if ship:
        ck = torch.load(out, map_location="cpu", weights_only=False)
        text = p.read_text()
        if seed is not None:  # the text is the config as read; say what replaced its seed
            text += f"\n# flow train --seed {seed}: [training] seed = {seed} replaced the value above\n"
        slim = BoltzmannGenerator.from_state(ck).state(config_file=str(p), config_text=text)
        dest = shipped_flow(cfg.model, cfg.N)
        with atomic_path(dest) as tmp:
            torch.save(slim, tmp)
        summary["shipped"] = str(dest)
    return summary


def _per_sample_rdf(x: np.ndarray, species: np.ndarray, box: np.ndarray, bins: int) -> tuple[np.ndarray, np.ndarray]:
    """(n, bins) total g(r) of every configuration (for reweighting), r up to L/2."""
    from glassgen.observables import RDF

    rdf = RDF(r_max=0.5 * float(box.min()), bins=bins)
    out = np.empty((x.shape[0], bins))
    for k in range(x.shape[0]):
        out[k] = rdf.compute(x[k], species, box).g_total
    return rdf.bin_centers, out


#: Below this Kish ESS (of at least 50 importance samples) ``sample`` warns that its weights are degenerate.
DEGENERATE_ESS = 10.0


def sample(*, T: float, model: str | None = None, n: int | None = None, n_samples: int | None = None,
           method: str = "imh", seed: int = 0, out: PathLike = "sample.h5", checkpoint: PathLike | None = None,
           train: bool = False, n_chains: int = 16, local_sweeps: int = 1, rdf_bins: int = 60,
           anneal_steps: int = 10, progress: bool = False) -> dict[str, Any]:
    """Draw configurations at temperature ``T`` from a Boltzmann generator, unbiased exactly.

    Both methods first draw ``n_samples`` flow samples and report their importance weights
    log w = -U/T - log q (self-normalised estimates, Kish ESS, log Z). ``method="imh"`` (default)
    then runs flow-MCMC, ``n_chains`` independence-Metropolis-Hastings chains with ``local_sweeps`` local
    MC sweeps per iteration, ``ceil(n_samples / n_chains)`` iterations each (the first 20 % discarded as
    burn-in). ``method="ais"`` (generators on a ladder of Boltzmann priors) skips the flow: ``n_samples``
    configurations of the prior pool serving T are annealed to T in
    ``anneal_steps`` steps of one Metropolis sweep with exact AIS weights
    (:func:`glassgen.sampling.annealed.anneal`). ``method="aimh"`` (annealed flow-MCMC) uses those annealed
    configurations as independence proposals: ``n_chains`` Metropolis–Hastings chains accept with the ratio
    of AIS weights (:func:`glassgen.sampling.independence.independence_chains`), exact on annealing paths,
    ``n_samples // n_chains`` iterations each. Writes ``out`` (HDF5: configurations, energies, log_q,
    log_weights, provenance) and ``out`` with suffix ``.png`` (energy histogram and g(r)).
    """
    import torch

    from glassgen.flows.base import BoltzmannPriorBase
    from glassgen.flows.generator import BoltzmannGenerator
    from glassgen.flows.weights import kish_ess_fraction, reweighted_mean, summarize
    from glassgen.observables.plots import plot_sample_summary
    from glassgen.observables.thermo import mean_and_error_of_parallel_chains

    _positive("T", T)
    check_hdf5_name(out)
    if method not in SAMPLE_METHODS:
        raise InputError(f"unknown method {method!r} (use is, imh, ais, aimh or pgmc)")
    if (n_samples is not None and n_samples < 1) or n_chains < 1:
        raise InputError("n_samples and n_chains must be positive")
    if n_samples is not None and n_samples < 2 and method in ("is", "ais"):
        raise InputError(f"--method {method} needs at least 2 samples for an error bar, got {n_samples}")
    if n_samples is not None and n_samples < 50 and method in ("is", "ais"):
        warnings.warn(f"{n_samples} importance samples: the ESS and the error bars of so few heavy-tailed weights are "
                      "unreliable (use hundreds)", stacklevel=2)
    if n_samples is None and method in ("pgmc", "imh"):
        n_samples = 2000  # chain states (is, ais and aimh: one pass over the prior pool, below)
    if method == "pgmc":  # policy-guided MC: ``checkpoint`` is the policy file (trained on the fly if None)
        from glassgen.api_pgmc import pgmc_sample

        return pgmc_sample(T=T, model=model, n=n, n_samples=n_samples, seed=seed, out=out, policy=checkpoint,
                           n_chains=n_chains, progress=progress)
    if method in ("ais", "aimh") and anneal_steps < 1:
        raise InputError(f"--anneal-steps must be >= 1, got {anneal_steps}")
    _check_samples_per_chain(method, n_samples, n_chains)
    if n is not None and n < 2:
        raise InputError(f"N must be at least 2, got {n}")
    if train and checkpoint is not None:
        raise InputError("--train trains a flow from configs/flows/<model>_n<N>.toml; --checkpoint names a trained "
                         "one: give one of them")
    if checkpoint is None:
        model = model or DEFAULT_FLOW["model"]
        n = int(n if n is not None else DEFAULT_FLOW["N"])
        ck = shipped_flow(load_model(model).name, n)
        cfg = repo_flow_config(model, n)
        if train and cfg is None:
            raise InputError(f"--train: no flow config for model={model} N={n} under configs/flows/ (write one like "
                             "configs/flows/ka3d_n64.toml, train it with glassgen flow train --config ... --out F.pt, "
                             "then pass --checkpoint F.pt)")
        if train:  # a fresh flow from the committed config, even where one is shipped
            ck = Path(str(out)).with_suffix(".flow.pt")
            flow_train(config=cfg, out=ck, progress=progress)  # type: ignore[arg-type]
        elif not ck.is_file():
            raise InputError(f"no trained flow shipped for model={model} N={n}; pass --checkpoint, "
                             f"or --train (needs {cfg or 'a config under configs/flows/'})")
    else:
        ck = Path(checkpoint)
    gen = BoltzmannGenerator.load(ck, T=T)
    if checkpoint is not None:  # the checkpoint's system unless --model / --N say otherwise
        if (model is not None and gen.system.model != load_model(model).name) or (n is not None
                                                                                  and gen.system.n != n):
            raise InputError(f"checkpoint {ck} is for model={gen.system.model} N={gen.system.n}, "
                             f"not model={model or gen.system.model} N={n or gen.system.n}")
        model, n = gen.system.model, gen.system.n
    gen.check_temperature(T)
    done = gen.training_steps
    if done is not None and done[0] < done[1]:  # an interrupted `flow train` leaves its checkpoint in --out
        warnings.warn(f"flow checkpoint {ck} is unfinished: trained {done[0]} of {done[1]} steps (run the same "
                      "glassgen flow train command again to finish it)", stacklevel=2)
    torch.manual_seed(seed)
    t0 = time.perf_counter()
    species, box, nn = gen.system.species_array(), gen.system.box_array(), gen.system.n
    base = gen.flow.q0
    if n_samples is None:  # is, ais, aimh: every configuration of the pool serving T once, else 2000 flow samples
        n_samples = (int(base.pool_energies[base.T_priors.index(base.prior_temperature(T))].numel())
                     if isinstance(base, BoltzmannPriorBase) else 2000)
        _check_samples_per_chain(method, n_samples, n_chains)
    summary: dict[str, Any] = {"model": gen.system.model, "N": nn, "T": T, "method": method,
                               "checkpoint": str(ck), "n_samples": n_samples}
    if isinstance(base, BoltzmannPriorBase):  # ladder of Boltzmann priors: which pool serves T
        t_h = base.prior_temperature(T)
        u_pool = base.pool_energies[base.T_priors.index(t_h)].numpy()
        summary.update({"prior_T": t_h, "prior_pool_size": int(u_pool.size),
                        "ESS_fraction_identity_map": kish_ess_fraction(-u_pool / T + u_pool / t_h)})
    if method in ("ais", "aimh"):
        from glassgen.flows.model import to_full
        from glassgen.sampling.annealed import anneal

        if not isinstance(base, BoltzmannPriorBase):
            raise InputError(f"--method {method} needs a generator with a Boltzmann-prior pool (this one has a "
                             "uniform base)")
        if n_samples > summary["prior_pool_size"]:
            warnings.warn(f"{n_samples} annealing paths start from {summary['prior_pool_size']} pool configurations: "
                          "each is reused, so the ESS counts paths, not independent starts (the error bars keep "
                          "the pool's chains apart)", stacklevel=2)
        r0, _ = base.draw_pool(T, n_samples)
        chains_of = gen.pool_chains(*base.last_draw) if base.last_draw is not None else None
        x0 = to_full(r0, torch.zeros(n_samples, gen.system.dim, dtype=torch.float64), gen.box).numpy()
        xa, lw, u = anneal(x0, species, box, load_model(gen.system.model), summary["prior_T"], T, anneal_steps,
                           seed=seed)
        x, lq = torch.as_tensor(xa), torch.full((n_samples,), float("nan"), dtype=torch.float64)
        summary["anneal_steps"] = anneal_steps
    else:
        n_is = n_samples
        if isinstance(base, BoltzmannPriorBase):  # one pass over the pool at most: no duplicated samples
            n_is = min(n_samples, summary["prior_pool_size"])
            summary["flow_samples"] = n_is
            if method == "is" and n_is < n_samples:
                warnings.warn(f"{n_is} flow samples, not {n_samples}: the prior pool serving T={T} holds "
                              f"{n_is} configurations and a sample uses each at most once", stacklevel=2)
                summary["n_samples"], summary["n_samples_requested"] = n_is, n_samples  # record what was used
        x, lq = gen.sample(n_is, T)
        chains_of = gen.last_pool_chains
        u = gen.energies(x)
        lw = gen.log_weights(u, lq, T)
    if chains_of is not None:  # configurations of one pool chain are correlated: chain-aware IS errors
        summary["pool_chains"] = int(np.unique(chains_of).size)
    x_np = x.numpy()
    ws = summarize(lw)
    summary.update({"ESS": ws.ess, "ESS_fraction": ws.ess_fraction, "log_Z": (ws.log_z, ws.log_z_err),
                    "max_weight_fraction": ws.max_weight_fraction})
    if lw.size >= 50 and (not ws.ess >= DEGENERATE_ESS or not np.isfinite(lw).mean() >= 0.5):
        warnings.warn(f"the importance weights are degenerate (ESS {ws.ess:.3g} of {lw.size} samples, largest weight "
                      f"{ws.max_weight_fraction:.3g} of the total, finite weights {np.isfinite(lw).mean():.0%}): the "
                      f"reweighted estimates rest on a handful of samples and their error bars mean nothing; the "
                      f"generator does not cover the target at T = {T:g}", stacklevel=2)
    r, g_each = _per_sample_rdf(x_np, species, box, rdf_bins)
    finite = np.isfinite(lw)
    g_raw = g_each.mean(axis=0)
    if finite.any():
        grp = None if chains_of is None else chains_of[finite]
        u_mean, u_err = reweighted_mean(u[finite] / nn, lw[finite], grp)
        g_rw, g_rw_err = reweighted_mean(g_each[finite], lw[finite], grp)
    else:
        u_mean = u_err = float("nan")
        g_rw, g_rw_err = np.full(rdf_bins, np.nan), None
    summary["finite_energy_fraction"] = float(np.isfinite(u).mean())
    summary["U_per_N_flow_raw"] = float(np.mean(u[np.isfinite(u)] / nn)) if np.isfinite(u).any() else float("nan")
    summary["U_per_N_reweighted"] = (float(u_mean), float(u_err))
    raw_label = "annealed pool (raw)" if method in ("ais", "aimh") else "flow q (raw)"
    energies_plot: dict[str, tuple[np.ndarray, np.ndarray | None]] = {
        raw_label: (u / nn, None), "reweighted to exp(-U/T)": (u / nn, lw)}
    g_plot: dict[str, tuple[np.ndarray, np.ndarray | None]] = {
        raw_label: (g_raw, None),
        "reweighted": (np.asarray(g_rw), None if g_rw_err is None else np.asarray(g_rw_err))}
    chain = None
    if method == "imh":
        from glassgen.sampling import FlowMCMC
        from glassgen.systems.configuration import Configuration

        n_iter = max(2, int(math.ceil(n_samples / n_chains)))
        starts = [Configuration(x_np[k], species, box, load_model(gen.system.model))
                  for k in _lowest_energy(u, n_chains)]
        summary["chains_started_from_flow"] = len(starts)
        starts += _relaxed_states(gen.system.model, nn, T, box, n_chains - len(starts), seed)
        mcmc = FlowMCMC(gen, starts, T, n_chains, local_sweeps=local_sweeps, seed=seed)
        chain = mcmc.run(n_iter, progress=progress, store_every=1, overlap_every=1)
        u_chain = chain.energies[n_iter // 5:] / nn  # first 20 % discarded as burn-in
        pooled, err = mean_and_error_of_parallel_chains(u_chain)  # pooled tau_int; >= the chain-mean spread
        summary["U_per_N_imh_chain_error"] = err
        if isinstance(base, BoltzmannPriorBase) and math.isfinite(u_err):
            # proposals come from a finite pool: the chains resample the pool's reweighted empirical
            # distribution, so the pool's own importance-sampling error adds to the chain error
            err = float(math.hypot(err, u_err))
        summary.update({"imh_acceptance": chain.imh_acceptance, "local_acceptance": chain.local_acceptance,
                        "tau_U_iterations": chain.tau_u, "tau_overlap_iterations": chain.tau_q,
                        "U_per_N_imh": (pooled, err)})
        energies_plot["flow-MCMC chain"] = (u_chain.ravel(), None)
        _, g_chain = _per_sample_rdf(chain.frames[n_iter // 5:].reshape(-1, nn, gen.system.dim), species, box,
                                     rdf_bins)
        g_plot["flow-MCMC"] = (g_chain.mean(axis=0), None)
        chain_positions, chain_energies, burn_in = chain.frames, chain.energies, n_iter // 5
    if method == "aimh":
        from glassgen.sampling import independence_chains, summarize_chains

        chain = independence_chains(lw, n_chains, seed=seed + 1)
        cs = summarize_chains(chain, u, x_np, box)
        # proposals are pool configurations, correlated along the pool's MC/MD chains, which the chains'
        # own error does not see: the pool's chain-aware importance-sampling error adds, as for imh
        err = float(math.hypot(cs.u_per_n_err, u_err)) if math.isfinite(u_err) else cs.u_per_n_err
        summary.update({"imh_acceptance": cs.acceptance, "tau_U_iterations": cs.tau_u,
                        "tau_overlap_iterations": cs.tau_q, "U_per_N_imh_chain_error": cs.u_per_n_err,
                        "U_per_N_imh": (cs.u_per_n, err), "chain_iterations": int(chain.index.shape[0])})
        u_chain = cs.u_per_n_chain
        energies_plot["annealed flow-MCMC chain"] = (u_chain.ravel(), None)
        _, g_chain = _per_sample_rdf(cs.positions.reshape(-1, nn, gen.system.dim), species, box, rdf_bins)
        chain_positions, chain_energies, burn_in = x_np[chain.index], u[chain.index], cs.burn_in
        g_plot["annealed flow-MCMC"] = (g_chain.mean(axis=0), None)
    summary["wall_s"] = time.perf_counter() - t0
    prov = provenance(seed=seed, model=gen.system.model, T=T, N=nn, method=method, checkpoint=str(ck),
                      flow_provenance=gen.provenance,
                      flow_training_steps=None if done is None else {"trained": done[0], "of": done[1]})
    with atomic_path(out) as tmp:
        with h5py.File(tmp, "w") as f:
            h5_write_attrs(f, prov)
            f.create_dataset("flow_samples/positions", data=x.numpy())
            f.create_dataset("flow_samples/energies", data=u)
            f.create_dataset("flow_samples/log_q", data=lq.numpy())
            f.create_dataset("flow_samples/log_weights", data=lw)
            f["species"] = species
            f["box"] = box
            f.create_dataset("rdf/r", data=r)
            f.create_dataset("rdf/g_reweighted", data=np.asarray(g_rw))
            if chain is not None:  # every iteration of every chain: (iterations, chains, ...), burn-in included
                f.create_dataset("flow_mcmc/positions", data=chain_positions)
                f.create_dataset("flow_mcmc/energies", data=chain_energies)
                if method == "aimh":  # which annealed proposal each chain holds after each iteration
                    f.create_dataset("flow_mcmc/proposal_index", data=chain.index)
                h5_write_attrs(f["flow_mcmc"], {"burn_in_iterations": int(burn_in),
                                                "note": "statistics use iterations >= burn_in_iterations"})
            h5_write_attrs(f["flow_samples"], {"summary": {k: v for k, v in summary.items()}})
    png = Path(str(out)).with_suffix(".png")
    plot_sample_summary(png, energies=energies_plot, r=r, g=g_plot,
                        title=f"{gen.system.model} N={nn} T={T} ({method})", **prov)
    summary.update({"out": str(out), "plot": str(png)})
    return summary


def _check_samples_per_chain(method: str, n_samples: int | None, n_chains: int) -> None:
    if method in ("imh", "aimh") and n_samples is not None and n_samples < 8 * n_chains:  # short chains stay biased
        raise InputError(f"--method {method} needs at least 8 samples per chain: {n_samples} samples for "
                         f"{n_chains} chains (raise --n-samples or lower --chains)")


def _lowest_energy(u: np.ndarray, k: int) -> np.ndarray:
    """Indices of the (at most) k lowest finite energies: chain starting points (the chain equilibrates)."""
    order = np.argsort(np.where(np.isfinite(u), u, np.inf))
    return order[np.isfinite(u[order])][:k]


def _relaxed_states(model: str, n: int, T: float, box: np.ndarray, k: int, seed: int) -> list[Configuration]:
    """k random states with overlaps removed (soft core), for chains the flow could not start."""
    from glassgen.dynamics.initial import random_state

    out = []
    for j in range(k):
        c = random_state(model, n, T=T, seed=seed * 1000 + j)
        if not np.allclose(c.box, box):
            raise InputError(f"cannot build starting states in the flow's box {box.tolist()}")
        out.append(c)
    return out


def repo_flow_config(model: str, n: int) -> Path | None:
    """``configs/flows/<model>_n<N>.toml`` of the source tree, if present."""
    from glassgen.config import repo_root

    p = repo_root() / "configs" / "flows" / f"{load_model(model).name}_n{int(n)}.toml"
    return p if p.is_file() else None
