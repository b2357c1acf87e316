"""Plain typed functions, one per user-level job; the CLI parses options and calls exactly one.

Every job validates its inputs (one-line :class:`~glassgen.errors.GlassgenError` on bad input),
writes its outputs atomically with provenance, checkpoints long runs next to the output
(``<out>.ckpt.h5``) and resumes from that checkpoint when it is present.
"""

from __future__ import annotations

import json
import math
import os
import time
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import tomllib

from glassgen.dynamics.results import MDResult
from glassgen.errors import InputError
from glassgen.provenance import atomic_path, provenance
from glassgen.systems.configuration import Configuration
from glassgen.systems.io import _write_conf_group, h5_write_attrs, read_configuration, write_configuration
from glassgen.systems.model import load_model

__all__ = ["load_config", "load_input", "md_run", "mc_run", "minimize", "init_state", "analyze",
           "write_run", "checkpoint_path"]

PathLike = str | os.PathLike[str]


# ------------------------------------------------------------------------------------ helpers
def load_config(path: PathLike | None, section: str) -> dict[str, Any]:
    """Read a TOML config: top-level keys plus the keys of table ``[section]`` (which win)."""
    if path is None:
        return {}
    p = Path(path)
    if not p.is_file():
        raise InputError(f"config file not found: {p}")
    try:
        data = tomllib.loads(p.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise InputError(f"malformed config {p}: {exc}") from None
    out = {k: v for k, v in data.items() if not isinstance(v, dict)}
    out.update(data.get(section, {}))
    return out


def checkpoint_path(out: PathLike) -> Path:
    """Where a job writing ``out`` keeps its checkpoint."""
    return Path(str(out) + ".ckpt.h5")


def _positive(name: str, value: float | None) -> None:
    if value is None or not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
        raise InputError(f"{name} must be positive, got {name}={value}")


def load_input(input: PathLike | None = None, model: str | None = None, n: int | None = None,
               T: float | None = None, density: float | None = None, seed: int = 0) -> Configuration:
    """The starting configuration: a file (``input``), or a random state of ``n`` particles of ``model``.

    A file is bound to ``model`` when given (else to the model recorded in the file).
    """
    if input is not None:
        conf = read_configuration(input, model)
        if conf.model is None:
            raise InputError(f"{input} names no model; pass --model")
        return conf
    if model is None or n is None:
        raise InputError("give --input FILE, or --model and --n for a random initial state")
    if n < 2:
        raise InputError(f"N must be at least 2, got {n}")
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
        _write_conf_group(f.create_group("configuration"), conf)
        th = f.create_group("thermo")
        for k, v in result.thermo.as_dict().items():
            th.create_dataset(k, data=v)
        if result.trajectory is not None:
            write_trajectory_group(f, result.trajectory, conf.species, conf.box,
                                   conf.model.name if conf.model else None)


def _thermo_summary(result: MDResult, n: int) -> dict[str, Any]:
    from glassgen.observables.thermo import block_average

    th = result.thermo
    s: dict[str, Any] = {}
    k0 = len(th.potential) // 5  # discard the first 20 % as a precaution
    for key, arr in (("U_per_N", th.potential / n), ("pressure", th.pressure), ("T_kin", th.temperature)):
        a = arr[k0:]
        a = a[np.isfinite(a)]
        if a.size >= 4:
            m, e = block_average(a, min(10, a.size // 2))
            s[key] = (float(m), float(e))
    c = th.conserved[np.isfinite(th.conserved)]
    if c.size >= 2 and th.time[-1] > th.time[0]:
        slope = np.polyfit(th.step[: c.size], c / n, 1)[0]
        s["conserved_drift_per_N_per_1e4_steps"] = float(slope * 1e4)
    return s


def _traj_steps(nsteps: int, traj: str, traj_every: int | None, n_per_decade: int,
                n_blocks: int) -> tuple[np.ndarray | None, dict[str, Any]]:
    from glassgen.observables.schedule import block_log_schedule, log_spaced_steps

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

    if ensemble == "nvt" or T is not None:
        _positive("T", T)
    _positive("dt", dt)
    if steps is None or steps < 1:
        raise InputError(f"steps must be a positive integer, got {steps}")
    conf = load_input(input, model, n, T, density, seed)
    traj_steps, sched = _traj_steps(int(steps), traj, traj_every, n_per_decade, traj_blocks)
    ck = checkpoint_path(out) if engine == "numba" else None
    resumed = ck is not None and ck.is_file()
    if equilibrate_steps > 0 and not resumed:
        if T is None:
            raise InputError("equilibration needs a temperature T")
        eq = run_md(conf, T=T, dt=dt, nsteps=int(equilibrate_steps), ensemble="nvt",
                    thermostat=thermostat if ensemble == "nvt" else "nhc", tau=tau, seed=seed + 1_000_003,
                    thermo_every=max(1, int(equilibrate_steps)), threads=threads, engine=engine,
                    progress=progress)
        conf = eq.final
    t0 = time.perf_counter()
    res = run_md(conf, T=T, dt=dt, nsteps=int(steps), ensemble=ensemble, thermostat=thermostat, tau=tau,
                 seed=seed, thermo_every=thermo_every, traj_steps=traj_steps, threads=threads, engine=engine,
                 progress=progress, checkpoint=ck, checkpoint_every=checkpoint_every)
    wall = time.perf_counter() - t0
    prov = provenance(seed=seed, model=conf.model.name, T=T, engine=engine, ensemble=ensemble,  # type: ignore[union-attr]
                      thermostat=thermostat if ensemble == "nvt" else None, dt=dt, steps=int(steps),
                      N=conf.n, input=str(input) if input else None, equilibrate_steps=equilibrate_steps)
    write_run(out, res, prov, sched)
    if ck is not None and ck.is_file():
        ck.unlink()
    summary = {"out": str(out), "N": conf.n, "model": conf.model.name, "engine": engine, "T": T,  # type: ignore[union-attr]
               "steps": int(steps), "wall_s": wall, "resumed": resumed,
               "particle_steps_per_s": conf.n * int(steps) / wall if wall > 0 else float("nan"),
               **_thermo_summary(res, conf.n)}
    if plot:
        from glassgen.observables.plots import plot_thermo

        png = Path(str(out)).with_suffix(".thermo.png")
        plot_thermo(res.thermo.as_dict(), png, title=f"{conf.model.name} N={conf.n} T={T}")  # type: ignore[union-attr]
        summary["plot"] = str(png)
    return summary


def mc_run(*, out: PathLike, T: float, sweeps: int, input: PathLike | None = None, model: str | None = None,
           n: int | None = None, density: float | None = None, delta: float = 0.1, swap_fraction: float = 0.0,
           tune_sweeps: int = 200, seed: int = 0, sample_every: int = 10, traj: str = "log",
           traj_every: int | None = None, n_per_decade: int = 10, traj_blocks: int = 1,
           checkpoint_every: int = 2000, progress: bool = False) -> dict[str, Any]:
    """Run Metropolis MC (displacements, optional swaps) and write ``out`` like :func:`md_run`."""
    from glassgen.dynamics.mc import run_mc

    _positive("T", T)
    if sweeps is None or sweeps < 1:
        raise InputError(f"sweeps must be a positive integer, got {sweeps}")
    conf = load_input(input, model, n, T, density, seed)
    traj_steps, sched = _traj_steps(int(sweeps), traj, traj_every, n_per_decade, traj_blocks)
    ck = checkpoint_path(out)
    resumed = ck.is_file()
    t0 = time.perf_counter()
    res = run_mc(conf, T=T, n_sweeps=int(sweeps), delta=delta, swap_fraction=swap_fraction, seed=seed,
                 sample_every=sample_every, traj_sweeps=traj_steps, tune_sweeps=tune_sweeps,
                 progress=progress, checkpoint=ck, checkpoint_every=checkpoint_every)
    wall = time.perf_counter() - t0
    prov = provenance(seed=seed, model=conf.model.name, T=T, engine="numba-mc", sweeps=int(sweeps),  # type: ignore[union-attr]
                      N=conf.n, swap_fraction=swap_fraction, input=str(input) if input else None)
    write_run(out, res, prov, sched)
    if ck.is_file():
        ck.unlink()
    return {"out": str(out), "N": conf.n, "model": conf.model.name, "T": T, "sweeps": int(sweeps),  # type: ignore[union-attr]
            "wall_s": wall, "resumed": resumed, "acceptance": res.info["acceptance"],
            "delta": res.info["delta"], **_thermo_summary(res, conf.n)}


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


def analyze(*, input: PathLike, out_dir: PathLike | None = None, q: float = 7.25, r_max: float | None = None,
            bins: int = 200, frames_for_rdf: int = 20) -> dict[str, Any]:
    """g_ab(r), MSD, F_s(q, t), tau_alpha and the non-Gaussian parameter of a run file; PNGs + text.

    ``tau_alpha`` is defined as the time where F_s(q, t) of all particles (and per species) first
    falls below 1/e (log-time interpolation), at the wave number ``q`` (default 7.25, the KA 3D A-A
    peak).
    """
    from glassgen.observables import (
        MSD,
        RDF,
        NonGaussian,
        SelfIntermediateScattering,
        plot_fs,
        plot_msd,
        plot_rdf,
        read_trajectory,
    )
    from glassgen.observables.schedule import block_log_schedule

    p = Path(input)
    if not p.is_file():
        raise InputError(f"file not found: {p}")
    data = read_trajectory(p)
    traj, species, box = data.trajectory, data.species, data.box
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
    rmax = r_max if r_max is not None else 0.5 * float(box.min())
    rdf = RDF(min(rmax, 0.5 * float(box.min())), bins)
    nf = traj.positions.shape[0]
    rdf.compute(traj.positions[max(0, nf - frames_for_rdf):], species, box)
    plot_rdf(rdf, outd / "rdf.png", species_names=names)
    plot_msd(msd, outd / "msd.png", species_names=names)
    plot_fs(fs, outd / "fs.png", species_names=names)
    rdf.write(outd / "rdf.txt")
    msd.write(outd / "msd.txt")
    fs.write(outd / "fs.txt")
    ngp.write(outd / "ngp.txt")
    taus = {"all": float(fs.tau_alpha())}
    for s in np.unique(species):
        taus[names[s] if names else str(int(s))] = float(fs.tau_alpha(species=int(s)))
    summary = {"input": str(p), "out_dir": str(outd), "q": q, "tau_alpha": taus, "time_unit": float(dt_unit),
               "frames": nf, "ngp_max": float(np.nanmax(ngp.alpha2)) if np.isfinite(ngp.alpha2).any() else None}
    with atomic_path(outd / "summary.json") as tmp:
        tmp.write_text(json.dumps({**summary, "provenance": provenance(input=str(p))}, indent=2))
    return summary
