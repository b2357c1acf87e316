"""Molecular dynamics with the Numba engine: velocity Verlet (NVE) and NVT thermostats.

``MDSimulation`` holds the state arrays (positions are kept UNWRAPPED, so displacements are
physical) and advances them in place; :meth:`MDSimulation.run` samples thermodynamics and
trajectory frames, checkpoints periodically and resumes from a checkpoint. :func:`run_md` is the
engine-independent entry point (``engine="numba"`` or ``"lammps"``).

Integrators (dt in LJ time units):
- ``nve``: velocity Verlet.
- ``nvt``/``nhc``: Nose-Hoover chain (Trotter split) around velocity Verlet.
- ``nvt``/``langevin``: BAOAB with friction 1/tau.
- ``nvt``/``bussi``: stochastic velocity rescaling, half step before and after velocity Verlet.
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

from glassgen._kernels.integrators import drift, kick, kick_drift
from glassgen.dynamics.forces import ForceField
from glassgen.dynamics.results import ENSEMBLES, THERMOSTATS, MDResult
from glassgen.dynamics.schedule import check_resumed_schedule, collect_results, new_samples, run_events
from glassgen.dynamics.thermostats import Bussi, Langevin, NoseHooverChain
from glassgen.errors import InputError, PhysicsError, check_temperature
from glassgen.provenance import atomic_path, provenance
from glassgen.systems.configuration import Configuration
from glassgen.systems.io import h5_write_attrs
from glassgen.systems.model import InteractionModel

__all__ = ["MDSimulation", "run_md", "maxwell_boltzmann", "degrees_of_freedom"]


def degrees_of_freedom(n: int, dim: int) -> int:
    """N_f = d N - d (total momentum is conserved and set to zero)."""
    return max(dim * n - dim, 1)


def maxwell_boltzmann(masses: np.ndarray, dim: int, T: float, rng: np.random.Generator) -> np.ndarray:
    """Velocities (N, d) from Maxwell-Boltzmann at T, zero total momentum, rescaled to exactly T.

    Args:
        masses: (N,) particle masses.
    """
    n = masses.shape[0]
    v = rng.standard_normal((n, dim)) * np.sqrt(T / masses)[:, None]
    v -= (masses[:, None] * v).sum(0) / masses.sum()
    k2 = float(np.sum(masses[:, None] * v * v))
    if k2 > 0:
        v *= math.sqrt(degrees_of_freedom(n, dim) * T / k2)
    return v


def _check_T(T: float | None, required: bool) -> None:
    if T is None:
        if required:
            raise InputError("a temperature T is required")
        return
    check_temperature(T)


class MDSimulation:
    """Molecular dynamics of one configuration.

    Args:
        conf: starting configuration (must carry a model); its velocities are used if present,
            otherwise drawn from Maxwell-Boltzmann at T with ``seed``.
        T: target temperature (NVT) or initial-velocity temperature (NVE).
        dt: time step (LJ units), default 0.005.
        ensemble: ``nve`` or ``nvt``.
        thermostat: ``nhc``, ``langevin`` or ``bussi`` (NVT only).
        tau: thermostat time constant (LJ time); default 100 dt for nhc/bussi, 1.0 for langevin.
        seed: seed of the run's ``np.random.Generator`` (velocities, Langevin/Bussi noise).
        skin: neighbour-list skin.
        threads: Numba threads for forces.
        chain: Nose-Hoover chain length.
    """

    def __init__(self, conf: Configuration, T: float | None = None, dt: float = 0.005,
                 ensemble: str = "nvt", thermostat: str = "nhc", tau: float | None = None,
                 seed: int = 0, skin: float = 0.3, threads: int | None = None, chain: int = 3,
                 init_velocities: bool = False, origin: str = "") -> None:
        model = conf.require_model()
        self.origin = str(origin)  # the caller's identity of the run's start (part of the checkpoint signature)
        if ensemble not in ENSEMBLES:
            raise InputError(f"unknown ensemble {ensemble!r} (choose from {', '.join(ENSEMBLES)})")
        if ensemble == "nvt" and thermostat not in THERMOSTATS:
            raise InputError(f"unknown thermostat {thermostat!r} (choose from {', '.join(THERMOSTATS)})")
        _check_T(T, required=(ensemble == "nvt" or conf.velocities is None or init_velocities))
        if not (dt > 0 and math.isfinite(dt)) or dt > 1.0:
            raise InputError(f"time step must be in (0, 1] (LJ time units; KA runs use 0.001-0.005), got dt={dt}")
        self.model: InteractionModel = model
        self.conf0 = conf
        self.T = None if T is None else float(T)
        self.dt = float(dt)
        self.ensemble = ensemble
        self.thermostat = thermostat if ensemble == "nvt" else "none"
        self.seed = int(seed)
        self.rng = np.random.default_rng(seed)
        n, d = conf.n, conf.dim
        self.n, self.dim = n, d
        self.masses = model.masses[conf.species]
        self.inv_mass = 1.0 / self.masses
        self.n_dof = degrees_of_freedom(n, d)
        self.ff = ForceField(model, conf.species, conf.box, skin=skin, threads=threads)
        self.positions = conf.positions.copy()
        if conf.velocities is None or init_velocities:
            self.velocities = maxwell_boltzmann(self.masses, d, self.T, self.rng)  # type: ignore[arg-type]
        else:  # the centre of mass is put at rest: N_f = dN - d assumes zero total momentum
            self.velocities = conf.velocities.copy()
            self.velocities -= np.sum(self.masses[:, None] * self.velocities, axis=0) / float(np.sum(self.masses))
        self.forces = np.empty((n, d))
        self.step_count = 0
        if tau is None:
            tau = 1.0 if self.thermostat == "langevin" else 100 * self.dt
        if tau <= 0:
            raise InputError(f"thermostat tau must be positive, got {tau}")
        self.tau = float(tau)
        self.bath: Any = None
        if self.thermostat == "nhc":
            self.bath = NoseHooverChain(self.T, self.tau, self.dt, self.n_dof, chain)  # type: ignore[arg-type]
        elif self.thermostat == "langevin":
            self.bath = Langevin(self.T, self.tau, self.dt, self.masses)  # type: ignore[arg-type]
        elif self.thermostat == "bussi":
            self.bath = Bussi(self.T, self.tau, self.dt, self.n_dof)  # type: ignore[arg-type]
        res = self.ff.compute(self.positions, out=self.forces)
        self.potential = res.energy
        self.virial = res.virial
        self.k2 = float(np.sum(self.masses[:, None] * self.velocities**2))

    # ------------------------------------------------------------------ integration
    def step(self, nsteps: int = 1) -> None:
        """Advance ``nsteps`` time steps in place."""
        x, v, f, im = self.positions, self.velocities, self.forces, self.inv_mass
        dt, h = self.dt, 0.5 * self.dt
        ff, th = self.ff, self.thermostat
        for _ in range(nsteps):
            if th == "langevin":
                kick(v, f, im, h)
                drift(x, v, h)
                self.bath.apply(v, self.rng)
                drift(x, v, h)
            else:
                s = 1.0
                if th == "nhc":
                    s = self.bath.half_step(self.k2)
                elif th == "bussi":
                    s = self.bath.scale(self.k2, self.rng)
                kick_drift(x, v, f, im, h, dt, s)
            try:
                energy, virial = ff.forces_into(x, f)
            except PhysicsError as exc:  # the start was checked: particles ran into each other during the run
                raise PhysicsError(f"{str(exc).split(';')[0]} at step {self.step_count + 1} of the run: the time "
                                   f"step dt = {dt} is too large for this T (reduce dt: --dt or the config's "
                                   "dt)") from None
            k2 = kick(v, f, im, h)
            if th == "nhc":
                s = self.bath.half_step(k2)
                v *= s
                k2 *= s * s
            elif th == "bussi":
                s = self.bath.scale(k2, self.rng)
                v *= s
                k2 *= s * s
            self.k2 = k2
            self.potential = energy
            self.virial = virial
            self.step_count += 1
        if not math.isfinite(self.potential):
            raise PhysicsError(f"non-finite energy at step {self.step_count}; reduce dt")

    # ------------------------------------------------------------------ observables
    @property
    def kinetic(self) -> float:
        return 0.5 * self.k2

    @property
    def temperature(self) -> float:
        """Kinetic temperature 2K / N_f."""
        return self.k2 / self.n_dof

    @property
    def pressure(self) -> float:
        return self.ff.pressure(self.virial, self.temperature)

    @property
    def conserved(self) -> float:
        """E = K + U (NVE) plus the thermostat's energy (NVT)."""
        e = self.kinetic + self.potential
        return e + (self.bath.energy() if self.bath is not None else 0.0)

    def configuration(self) -> Configuration:
        """Current state as a Configuration (unwrapped positions, velocities)."""
        return self.conf0.replace(positions=self.positions.copy(), velocities=self.velocities.copy())

    # ------------------------------------------------------------------ checkpoints
    def state(self) -> dict[str, Any]:
        """The full dynamical state (arrays and scalars; the random stream as JSON): what a checkpoint keeps and
        :meth:`restore_state` sets."""
        st = {"positions": self.positions, "velocities": self.velocities, "forces": self.forces,
              "step": self.step_count, "potential": self.potential, "virial": self.virial, "k2": self.k2,
              "run_start": getattr(self, "_run_start", 0),
              "rng": json.dumps(self.rng.bit_generator.state)}
        if self.ff.list_positions is not None:
            st["list_positions"] = self.ff.list_positions
        if self.bath is not None:
            st["bath"] = self.bath.bath
            if isinstance(self.bath, NoseHooverChain):
                st["xi"], st["vxi"] = self.bath.xi, self.bath.vxi
        return st

    def _load_state(self, g: h5py.Group) -> None:
        self.restore_state({**{k: g[k][()] for k in g}, **dict(g.attrs)})

    def restore_state(self, st: dict[str, Any]) -> None:
        """Set the full dynamical state from a dict (arrays and scalars; ``rng`` as JSON) as :meth:`state`
        returns it: positions, velocities, forces, step count, random stream and thermostat variables."""
        self.positions[:] = st["positions"]
        self.velocities[:] = st["velocities"]
        self.step_count = int(st["step"])
        self._run_start = int(st.get("run_start", 0))
        self.rng.bit_generator.state = json.loads(str(st["rng"]))
        if self.bath is not None:
            self.bath.bath = float(st.get("bath", 0.0))
            if isinstance(self.bath, NoseHooverChain):
                self.bath.xi[:] = st["xi"]
                self.bath.vxi[:] = st["vxi"]
        self.forces[:] = st["forces"]
        self.potential = float(st["potential"])
        self.virial = float(st["virial"])
        # the neighbour list of the run that wrote the state, built where it was built: the same pairs in the same
        # order, so a resumed run is bitwise identical (a state without it: rebuilt at the next step)
        if st.get("list_positions") is not None:
            self.ff.restore_list(st["list_positions"])
        else:
            self.ff.invalidate()
        # sum m v^2 as the run carried it (rescaled step by step by the thermostat), not recomputed: the two
        # differ in the last bit, which the next thermostat step would amplify
        self.k2 = float(st["k2"]) if "k2" in st else float(np.sum(self.masses[:, None] * self.velocities**2))

    def _signature(self) -> str:
        sig = {"model": self.model.name, "n": self.n, "T": self.T, "dt": self.dt, "ensemble": self.ensemble,
               "thermostat": self.thermostat, "tau": self.tau, "seed": self.seed,
               "box": [float(x) for x in self.conf0.box]}
        if self.origin:
            sig["origin"] = self.origin
        return json.dumps(sig)

    def save_checkpoint(self, path: str | os.PathLike[str], thermo: dict[str, list[float]],
                        frames: list[tuple[int, np.ndarray]]) -> None:
        """Write the full state plus everything sampled so far (atomic); the run goes on unchanged."""
        with atomic_path(path) as tmp, h5py.File(tmp, "w") as f:
            h5_write_attrs(f, provenance(seed=self.seed, model=self.model.name, T=self.T))
            f.attrs["signature"] = self._signature()
            g = f.create_group("state")
            for k, val in self.state().items():
                if isinstance(val, np.ndarray):
                    g.create_dataset(k, data=val)
                else:
                    g.attrs[k] = val
            t = f.create_group("thermo")
            for k, val in thermo.items():
                t.create_dataset(k, data=np.asarray(val, dtype=np.float64))
            if frames:
                tr = f.create_group("frames")
                tr.create_dataset("steps", data=np.array([s for s, _ in frames], dtype=np.int64))
                tr.create_dataset("positions", data=np.stack([p for _, p in frames]), compression="gzip")

    def load_checkpoint(self, path: str | os.PathLike[str]) -> tuple[dict[str, list[float]],
                                                                     list[tuple[int, np.ndarray]]]:
        """Restore state from a checkpoint; returns the thermo samples and frames already taken."""
        try:
            with h5py.File(path, "r") as f:
                if str(f.attrs.get("signature")) != self._signature():
                    raise InputError(f"checkpoint {path} belongs to a different run "
                                     f"({f.attrs.get('signature')}); delete it or change --out")
                self._load_state(f["state"])
                thermo = {k: list(f["thermo"][k][()]) for k in f["thermo"]}
                frames: list[tuple[int, np.ndarray]] = []
                if "frames" in f:
                    steps = f["frames/steps"][()]
                    pos = f["frames/positions"][()]
                    frames = [(int(s), pos[k]) for k, s in enumerate(steps)]
        except OSError as exc:
            raise InputError(f"cannot read checkpoint {path}: {exc}") from None
        return thermo, frames

    # ------------------------------------------------------------------ driver
    def run(self, nsteps: int, thermo_every: int = 100, traj_steps: np.ndarray | list[int] | None = None,
            progress: bool = False, checkpoint: str | os.PathLike[str] | None = None,
            checkpoint_every: int = 10000, callback: Any = None, what: str = "run") -> MDResult:
        """Run ``nsteps`` steps from the current step, sampling thermo and frames.

        Args:
            nsteps: number of steps of the whole run (a resumed run continues to the same total).
            thermo_every: thermo sampling interval (steps); step 0 is sampled.
            traj_steps: steps (relative to the run start) at which to store positions.
            progress: draw a progress bar.
            checkpoint: checkpoint file; if it exists the run resumes from it.
            checkpoint_every: steps between checkpoints.
            callback: ``callback(sim)`` called at every thermo sample.
        """
        if nsteps < 0:
            raise InputError("nsteps must be >= 0")
        thermo_every = max(1, int(thermo_every))
        wanted = set() if traj_steps is None else {int(s) for s in traj_steps if 0 <= int(s) <= nsteps}
        thermo = new_samples()
        frames: list[tuple[int, np.ndarray]] = []
        self._run_start = self.step_count
        last_done = -1  # last event (relative step) fully processed
        if checkpoint is not None and Path(checkpoint).is_file():
            thermo, frames = self.load_checkpoint(checkpoint)
            last_done = self.step_count - self._run_start
            check_resumed_schedule(checkpoint, last_done, [s - self._run_start for s, _ in frames], wanted,
                                   len(thermo.get("step", [])), thermo_every, nsteps, what)

        def on_event(ev: int) -> None:
            if ev % thermo_every == 0 or ev == nsteps:
                self._sample(thermo)
                if callback is not None:
                    callback(self)
            if ev in wanted:
                frames.append((self.step_count, self.positions.copy()))

        save = None if checkpoint is None else (lambda: self.save_checkpoint(checkpoint, thermo, frames))
        events = sorted(set(range(0, nsteps + 1, thermo_every)) | wanted | {nsteps})
        # steady-state throughput: the steps after the first advance, which pays Numba's compile or cache load
        timing = {"advances": 0, "steps": 0, "s": 0.0}

        def advance(a: int, b: int) -> None:
            t0 = time.perf_counter()
            self.step(b - a)
            if timing["advances"] > 0:
                timing["steps"] += b - a
                timing["s"] += time.perf_counter() - t0
            timing["advances"] += 1

        run_events(nsteps, events, last_done, advance, on_event, save, checkpoint_every, progress, "MD")
        th, traj = collect_results(thermo, frames, self.dt)
        info = {"engine": "numba", "neighbour_builds": self.ff.builds, "threads": self.ff.threads,
                "tau": self.tau, "thermostat": self.thermostat,
                "steps_run": nsteps - max(0, last_done),  # in this call (a resumed run did the rest before)
                "steps_per_s": timing["steps"] / timing["s"] if timing["s"] > 0 else float("nan")}
        return MDResult(final=self.configuration(), thermo=th, trajectory=traj, info=info)

    def _sample(self, thermo: dict[str, list[float]]) -> None:
        thermo["step"].append(float(self.step_count))
        thermo["time"].append(self.step_count * self.dt)
        thermo["potential"].append(self.potential)
        thermo["kinetic"].append(self.kinetic)
        thermo["temperature"].append(self.temperature)
        thermo["pressure"].append(self.pressure)
        thermo["conserved"].append(self.conserved)


def run_md(conf: Configuration, *, T: float | None, dt: float = 0.005, nsteps: int,
           ensemble: str = "nvt", thermostat: str = "nhc", tau: float | None = None, seed: int = 0,
           thermo_every: int = 100, traj_steps: np.ndarray | list[int] | None = None,
           init_velocities: bool = False, threads: int | None = None, engine: str = "numba",
           progress: bool = False, checkpoint: str | os.PathLike[str] | None = None,
           checkpoint_every: int = 10000, skin: float = 0.3, origin: str = "", what: str = "run") -> MDResult:
    """Run MD with the chosen engine; both engines return the same :class:`MDResult`.

    Args:
        engine: ``numba`` (this package) or ``lammps`` (the ``lammps`` Python module).
        Other arguments: see :class:`MDSimulation` and :meth:`MDSimulation.run`.
    """
    if engine == "numba":
        sim = MDSimulation(conf, T=T, dt=dt, ensemble=ensemble, thermostat=thermostat, tau=tau, seed=seed,
                           skin=skin, threads=threads, init_velocities=init_velocities, origin=origin)
        return sim.run(nsteps, thermo_every=thermo_every, traj_steps=traj_steps, progress=progress,
                       checkpoint=checkpoint, checkpoint_every=checkpoint_every, what=what)
    if engine == "lammps":
        from glassgen.dynamics.lammps_engine import run_md_lammps

        _check_T(T, required=(ensemble == "nvt"))
        return run_md_lammps(conf, T=T, dt=dt, nsteps=nsteps, ensemble=ensemble, thermostat=thermostat,
                             tau=tau if tau is not None else (1.0 if thermostat == "langevin" else 100 * dt),
                             seed=seed, thermo_every=thermo_every, traj_steps=traj_steps,
                             init_velocities=init_velocities or conf.velocities is None,
                             threads=threads or 1)
    raise InputError(f"unknown engine {engine!r} (choose numba or lammps)")
