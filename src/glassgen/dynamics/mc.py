"""Metropolis Monte Carlo in the canonical ensemble (Numba kernels, numpy random numbers).

Moves: uniform displacement in a cube of half-width ``delta[species]`` (symmetric proposal) and,
with probability ``swap_fraction`` per trial, a species swap between particle i (uniform) and a
particle j chosen uniformly among the particles of other species (the pair-selection probability is
the same forward and backward, so the acceptance is min(1, exp(-beta dE))). One sweep = N trials.
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

from glassgen._kernels.mc import build_cells, build_image_list, metropolis_sweeps, total_energy_mc
from glassgen._kernels.neighbors import mc_image_shifts
from glassgen._kernels.pair import kernel_variant
from glassgen.dynamics.forces import ForceField
from glassgen.dynamics.results import MDResult
from glassgen.dynamics.schedule import (
    DeferredInterrupt,
    check_resumed_schedule,
    collect_results,
    new_samples,
    open_checkpoint,
    run_events,
)
from glassgen.errors import InputError, PhysicsError, check_temperature
from glassgen.provenance import atomic_path, provenance
from glassgen.systems.configuration import Configuration
from glassgen.systems.io import h5_write_attrs

__all__ = ["MonteCarlo", "run_mc"]


class MonteCarlo:
    """A Metropolis Monte Carlo chain.

    Args:
        conf: starting configuration (with a model).
        T: temperature (> 0).
        delta: maximal displacement (scalar or one per species), sigma_AA units.
        swap_fraction: probability that a trial is a species swap (0 disables swaps).
        seed: seed of the chain's ``np.random.Generator``.
        soft_core: soft-core factor (0 = exact potential).
        neighbour_list: in boxes smaller than 2 r_c,max (several periodic images per pair), evaluate
            energies through a Verlet list over images (:func:`glassgen._kernels.mc.build_image_list`)
            instead of summing over every image of every particle; None (default) uses it exactly there.
            The chain is the same to round-off (tested); ~10x fewer pair distances at KA 3D N = 64.
        list_skin: skin of that list, sigma_AA units (0 < skin < L_min / 2).
    """

    def __init__(self, conf: Configuration, T: float, delta: float | list[float] = 0.1,
                 swap_fraction: float = 0.0, seed: int = 0, soft_core: float = 0.0, origin: str = "",
                 neighbour_list: bool | None = None, list_skin: float = 0.4) -> None:
        model = conf.require_model()
        T = check_temperature(T)
        if not 0.0 <= swap_fraction <= 1.0:
            raise InputError("swap_fraction must be in [0, 1]")
        self.model, self.T, self.beta = model, float(T), 1.0 / float(T)
        self.origin = str(origin)
        self.conf0 = conf
        self.seed = int(seed)
        self.rng = np.random.default_rng(seed)
        self.swap_fraction = float(swap_fraction)
        self.delta = np.broadcast_to(np.asarray(delta, dtype=np.float64), (model.nsp,)).copy()
        if not np.all(np.isfinite(self.delta) & (self.delta > 0)):
            raise InputError(f"delta must be positive and finite, got {self.delta}")
        if np.any(self.delta > 0.5 * conf.box.min()):  # the trajectory is unwrapped once per sweep: moves < L/2
            raise InputError(f"delta {self.delta.max():g} exceeds half the box {0.5 * conf.box.min():g}")
        self.params = model.kernel_params(soft_core)
        self.box = conf.box.copy()
        self.pos = np.ascontiguousarray(conf.wrapped_positions())
        self.species = conf.species.copy()
        self.n, self.dim = conf.n, conf.dim
        rc = self.params.rc_max
        ncell = np.floor(self.box / rc).astype(np.int64)
        self.use_cells = bool(np.all(ncell >= 3))
        if self.use_cells:
            self.ncell = ncell
            self.shifts = np.zeros((1, self.dim))
            mean_occ = self.n / float(np.prod(ncell))
            self._cap = int(3 * mean_occ) + 16
            self._rebuild_cells()
        else:
            self.ncell = np.ones(self.dim, dtype=np.int64)
            self.shifts = mc_image_shifts(self.box, rc)
            self.cells = np.zeros((1, 1), dtype=np.int64)
            self.cell_count = np.zeros(1, dtype=np.int64)
            self.cell_of = np.zeros(self.n, dtype=np.int64)
            self.slot = np.zeros(self.n, dtype=np.int64)
        if neighbour_list and self.use_cells:
            raise InputError("the Verlet list over images is for boxes without cells (L < 3 r_c per axis); "
                             "this box uses cells")
        self.use_list = (not self.use_cells and self.shifts.shape[0] > 1) if neighbour_list is None \
            else bool(neighbour_list)
        self.list_skin = float(list_skin)
        p = self.params
        self._variant = kernel_variant(p.c1, p.c2, p.c4, p.rs2)
        if self._variant == 6:  # no model has both a linear and a polynomial term (as in ForceField)
            self._variant = 7
        self.list_stats = np.zeros(2, dtype=np.int64)
        if self.use_list:
            if not (0.0 < self.list_skin < 0.5 * float(self.box.min())):
                raise InputError(f"list_skin must be in (0, L_min/2 = {0.5 * float(self.box.min()):g}), "
                                 f"got {list_skin}")
            self._list_shifts = mc_image_shifts(self.box, rc + self.list_skin)
            cap = self.n * self._list_shifts.shape[0]
            self.nb_j = np.zeros((self.n, cap), dtype=np.int64)
            self.nb_r = np.zeros((self.n, cap, self.dim))
            self.nb_n = np.zeros(self.n, dtype=np.int64)
            self.ref_disp = np.zeros((self.n, self.dim))
            self._rebuild_list()
        else:
            self._list_shifts = np.zeros((1, self.dim))
            self.nb_j = np.zeros((0, 0), dtype=np.int64)
            self.nb_r = np.zeros((0, 0, self.dim))
            self.nb_n = np.zeros(0, dtype=np.int64)
            self.ref_disp = np.zeros((0, self.dim))
        nsp = model.nsp
        self.members = np.full((nsp, self.n), -1, dtype=np.int64)
        self.member_pos = np.empty(self.n, dtype=np.int64)
        self.n_members = np.zeros(nsp, dtype=np.int64)
        for i, s in enumerate(self.species):
            self.members[s, self.n_members[s]] = i
            self.member_pos[i] = self.n_members[s]
            self.n_members[s] += 1
        self.stats = np.zeros(4, dtype=np.int64)
        self.sweeps = 0
        ff = ForceField(model, self.species, self.box, skin=0.0, soft_core=soft_core)
        self.energy = ff.compute(self.pos).energy  # raises on overlaps / non-finite energy

    def _rebuild_cells(self) -> None:
        while True:
            cells, count, cell_of, slot, ok = build_cells(self.pos, self.box, self.ncell, self._cap)
            if ok:
                break
            self._cap *= 2
        self.cells, self.cell_count, self.cell_of, self.slot = cells, count, cell_of, slot

    def _rebuild_list(self) -> None:
        if self.use_list:
            rl = self.params.rc_max + self.list_skin
            build_image_list(self.pos, self.box, self._list_shifts, rl * rl, self.nb_j, self.nb_r, self.nb_n,
                             self.ref_disp)

    def _kernel_args(self) -> tuple[Any, ...]:
        p = self.params
        return (self.pos, self.species, self.box, p.nsp, *p.as_tuple()[:2], p.rc2, p.c0, p.c1, p.c2, p.c4,
                p.rs2)

    def sweep(self, n_sweeps: int = 1, unwrapped: np.ndarray | None = None) -> None:
        """Perform ``n_sweeps`` sweeps of N trial moves each.

        The random numbers are drawn sweep by sweep (the same stream for any split of the sweeps into
        calls) and the trial moves of up to ~10^5 of them run in one kernel call, so small systems do not
        pay a Python call per sweep. ``unwrapped`` (N, d), if given, accumulates every accepted
        displacement (unwrapped positions across any number of sweeps).
        """
        p = self.params
        n, d = self.n, self.dim
        track = unwrapped if unwrapped is not None else np.zeros((n, d))
        left = int(n_sweeps)
        max_chunk = max(1, 100_000 // n)
        rl2 = (p.rc_max + self.list_skin) ** 2
        while left > 0:
            k = min(left, max_chunk)
            kind = np.empty(k * n, dtype=np.int8)
            idx = np.empty(k * n, dtype=np.int64)
            disp = np.empty((k * n, d))
            partner = np.empty(k * n)
            logu = np.empty(k * n)
            for b in range(k):  # per sweep, in the order of the one-sweep draws
                sl = slice(b * n, (b + 1) * n)
                kind[sl] = self.rng.random(n) < self.swap_fraction
                idx[sl] = self.rng.integers(0, n, n)
                disp[sl] = self.rng.uniform(-1.0, 1.0, (n, d))
                partner[sl] = self.rng.random(n)
                logu[sl] = np.log(self.rng.random(n))
            start = 0
            while True:
                de, start = metropolis_sweeps(self.pos, self.species, self.box, p.nsp, p.sig2, p.eps4, p.rc2,
                                             p.c0, p.c1, p.c2, p.c4, p.rs2, self.beta, self.use_cells,
                                             self.ncell, self.cells, self.cell_count, self.cell_of,
                                             self.slot, self.shifts, self.members, self.member_pos,
                                             self.n_members, kind, idx, disp, partner, logu, self.delta,
                                             start, self.stats, track, self.use_list, self.nb_j, self.nb_r,
                                             self.nb_n, self.ref_disp, self._list_shifts, rl2,
                                             0.25 * self.list_skin**2, self.list_stats, self._variant)
                self.energy += de
                if start >= k * n:
                    break
                self._cap *= 2  # a cell overflowed: grow and continue with the same random numbers
                self._rebuild_cells()
            self.sweeps += k
            left -= k
        if not math.isfinite(self.energy):
            raise PhysicsError("non-finite energy in Monte Carlo")

    def set_positions(self, pos: np.ndarray) -> None:
        """Replace the positions (a jump, e.g. an accepted flow proposal); species stay as they are.

        The positions are wrapped into [0, L), the cell lists rebuilt and :attr:`energy` recomputed
        from scratch with the MC kernel. The unwrapped-displacement bookkeeping of :meth:`run` restarts
        from ``pos`` as given (a jump is not a diffusive displacement, so no displacement is carried over).

        Args:
            pos: (N, d) float64 positions, sigma_AA units, in any periodic image.

        Raises:
            InputError: wrong shape or non-finite positions.
            PhysicsError: the new configuration has a non-finite energy.
        """
        new = np.asarray(pos, dtype=np.float64)
        if new.shape != (self.n, self.dim):
            raise InputError(f"positions must have shape {(self.n, self.dim)}, got {new.shape}")
        if not np.all(np.isfinite(new)):
            raise InputError("positions contain NaN or infinite values")
        self.pos[:] = new - self.box * np.floor(new / self.box)
        if self.use_cells:
            self._rebuild_cells()
        self._rebuild_list()
        self.energy = self.recompute_energy()
        if getattr(self, "_unwrapped", None) is not None:
            self._unwrapped = new.copy()
        if not math.isfinite(self.energy):
            raise PhysicsError(f"non-finite energy ({self.energy}) after set_positions")

    def recompute_energy(self) -> float:
        """Total energy from scratch with the MC kernel (for bookkeeping checks)."""
        p = self.params
        return float(total_energy_mc(self.pos, self.species, self.box, p.nsp, p.sig2, p.eps4, p.rc2, p.c0,
                                     p.c1, p.c2, p.c4, p.rs2, self.use_cells, self.ncell, self.cells,
                                     self.cell_count, self.shifts))

    @property
    def acceptance(self) -> dict[str, float]:
        """Acceptance ratios of displacement and swap moves so far."""
        s = self.stats
        return {"displacement": float(s[1] / s[0]) if s[0] else float("nan"),
                "swap": float(s[3] / s[2]) if s[2] else float("nan")}

    def tune_delta(self, target: float = 0.4, sweeps: int = 20, rounds: int = 10) -> None:
        """Adapt delta towards a displacement acceptance ``target`` (use during equilibration only).

        delta is capped at L_min / 8, so that a particle's net move within one sweep stays far below L/2
        (trajectories are unwrapped once per sweep). The acceptance counters restart afterwards: the
        reported acceptance is that of the fixed-delta chain."""
        for _ in range(rounds):
            before = self.stats.copy()
            self.sweep(sweeps)
            tried = self.stats[0] - before[0]
            acc = (self.stats[1] - before[1]) / tried if tried else target
            self.delta *= float(np.clip(acc / target, 0.5, 2.0))
            self.delta = np.minimum(self.delta, 0.125 * float(self.box.min()))
        self.stats[:] = 0

    def configuration(self) -> Configuration:
        """Current state (wrapped positions; species may have been swapped)."""
        return self.conf0.replace(positions=self.pos.copy(), species=self.species.copy(), velocities=None)

    # ------------------------------------------------------------------ checkpoints
    def _signature(self) -> str:
        sig = {"model": self.model.name, "n": self.n, "T": self.T, "seed": self.seed,
               "swap_fraction": self.swap_fraction, "box": [float(x) for x in self.box]}
        if self.origin:  # the caller's identity of the run's start (input, tuning, equilibration)
            sig["origin"] = self.origin
        return json.dumps(sig)

    def save_checkpoint(self, path: str | os.PathLike[str], samples: dict[str, list[float]],
                        frames: list[tuple[Any, ...]]) -> None:
        with atomic_path(path) as tmp, h5py.File(tmp, "w") as f:
            h5_write_attrs(f, provenance(seed=self.seed, model=self.model.name, T=self.T))
            f.attrs["signature"] = self._signature()
            f.attrs["rng"] = json.dumps(self.rng.bit_generator.state)
            f.attrs["sweeps"] = self.sweeps
            f.attrs["run_origin"] = getattr(self, "_run_origin", 0)  # sweeps before run() (delta tuning)
            f.attrs["energy"] = self.energy
            f.create_dataset("positions", data=self.pos)
            f.create_dataset("species", data=self.species)
            f.create_dataset("delta", data=self.delta)
            f.create_dataset("stats", data=self.stats)
            # the order of these lists decides swap partners and the summation order of energies:
            # stored so that a resumed chain is identical to an uninterrupted one
            for name in ("members", "member_pos", "n_members", "cells", "cell_count", "cell_of", "slot"):
                f.create_dataset(f"lists/{name}", data=getattr(self, name))
            if self.use_list:  # the Verlet list decides the summation order too (its used columns only)
                f.attrs["list_skin"] = self.list_skin
                m = int(self.nb_n.max())
                f.create_dataset("lists/nb_j", data=self.nb_j[:, :m])
                f.create_dataset("lists/nb_r", data=self.nb_r[:, :m])
                for name in ("nb_n", "ref_disp", "list_stats"):
                    f.create_dataset(f"lists/{name}", data=getattr(self, name))
            if getattr(self, "_unwrapped", None) is not None:
                f.create_dataset("unwrapped", data=self._unwrapped)  # displacements accumulated so far
            for k, v in samples.items():
                f.create_dataset(f"samples/{k}", data=np.asarray(v, dtype=np.float64))
            if frames:
                f.create_dataset("frames/sweeps", data=np.array([fr[0] for fr in frames]))
                f.create_dataset("frames/positions", data=np.stack([fr[1] for fr in frames]), compression="gzip")
                if len(frames[0]) > 2:
                    f.create_dataset("frames/species", data=np.stack([fr[2] for fr in frames]))

    def load_checkpoint(self, path: str | os.PathLike[str]) -> tuple[dict[str, list[float]], list[tuple[Any, ...]]]:
        with open_checkpoint(path, self._signature()) as f:
            self.pos[:] = f["positions"][()]
            self.species[:] = f["species"][()]
            self.delta[:] = f["delta"][()]
            self.stats[:] = f["stats"][()]
            self.rng.bit_generator.state = json.loads(str(f.attrs["rng"]))
            self.sweeps = int(f.attrs["sweeps"])
            self._run_origin = int(f.attrs.get("run_origin", 0))
            self.energy = float(f.attrs["energy"])
            samples = {k: list(f[f"samples/{k}"][()]) for k in f["samples"]} if "samples" in f else {}
            frames: list[tuple[Any, ...]] = []
            if "frames" in f and self.swap_fraction > 0 and "frames/species" not in f:
                raise InputError(f"checkpoint {path} was written before MC runs with swaps kept each frame's species; "
                                 "delete it (the run starts over) or change --out")
            if "frames" in f:
                cols = [f["frames/sweeps"][()], f["frames/positions"][()]]
                if "frames/species" in f:
                    cols.append(f["frames/species"][()])
                frames = [(int(fr[0]), *fr[1:]) for fr in zip(*cols, strict=True)]
            for name in ("members", "member_pos", "n_members", "cells", "cell_count", "cell_of", "slot"):
                setattr(self, name, np.ascontiguousarray(f[f"lists/{name}"][()]))
            if self.use_list:
                if "lists/nb_j" in f and float(f.attrs.get("list_skin", -1.0)) == self.list_skin:
                    m = f["lists/nb_j"].shape[1]
                    self.nb_j[:, :m] = f["lists/nb_j"][()]
                    self.nb_r[:, :m] = f["lists/nb_r"][()]
                    for name in ("nb_n", "ref_disp", "list_stats"):
                        getattr(self, name)[...] = f[f"lists/{name}"][()]
                else:  # written without the list (or with another skin): the same chain up to round-off
                    self._rebuild_list()
            self._unwrapped = f["unwrapped"][()] if "unwrapped" in f else None
        if self.use_cells:
            self._cap = int(self.cells.shape[1])
        return samples, frames

    # ------------------------------------------------------------------ driver
    def run(self, n_sweeps: int, sample_every: int = 10, traj_sweeps: list[int] | np.ndarray | None = None,
            progress: bool = False, checkpoint: str | os.PathLike[str] | None = None,
            checkpoint_every: int = 1000, what: str = "run") -> MDResult:
        """Run ``n_sweeps`` sweeps; sample U and P every ``sample_every`` sweeps, store frames.

        Returns an :class:`MDResult` whose thermo ``step``/``time`` count sweeps; ``kinetic`` and
        ``conserved`` are NaN and ``temperature`` is T. Pressure is the virial pressure rho T + W/(dV).
        Frames hold UNWRAPPED positions (displacements are accumulated across the periodic boundary).
        ``info["cpu_s"]``: process CPU seconds of the sweeps alone (this call), without the sampling
        bookkeeping, as PGMC's ``cpu_s``, so that samplers are compared on their moves; the sweeps between
        two samples or frames run in one call, as PGMC's do.
        """
        sample_every = max(1, int(sample_every))
        wanted = set() if traj_sweeps is None else {int(s) for s in traj_sweeps if 0 <= int(s) <= n_sweeps}
        samples = new_samples()
        frames: list[tuple[Any, ...]] = []
        last_done = -1
        self._run_origin = self.sweeps  # sweeps already made (delta tuning) are not part of this run
        if checkpoint is not None and Path(checkpoint).is_file():
            samples, frames = self.load_checkpoint(checkpoint)
            last_done = self.sweeps - self._run_origin
            check_resumed_schedule(checkpoint, last_done, [fr[0] for fr in frames], wanted,
                                   len(samples.get("step", [])), sample_every, n_sweeps, what)
        ff = [ForceField(self.model, self.species, self.box, skin=0.0)]
        restored = getattr(self, "_unwrapped", None)
        unwrapped = restored.copy() if restored is not None else self.pos.copy()
        self._unwrapped = unwrapped

        sweep_cpu = [0.0]

        def advance_to(current: int, target: int) -> None:
            t0 = time.process_time()
            self.sweep(target - current, unwrapped=unwrapped)  # the kernel accumulates the displacements
            sweep_cpu[0] += time.process_time() - t0

        def on_event(ev: int) -> None:
            if ev % sample_every == 0 or ev == n_sweeps:
                if self.swap_fraction > 0:  # species changed: the force field's species array is stale
                    ff[0] = ForceField(self.model, self.species, self.box, skin=0.0)
                res = ff[0].compute(self.pos)
                for key, val in (("step", float(ev)), ("time", float(ev)), ("potential", self.energy),
                                 ("kinetic", math.nan), ("temperature", self.T),
                                 ("pressure", ff[0].pressure(res.virial, self.T)), ("conserved", math.nan)):
                    samples[key].append(val)
            if ev in wanted:
                # with species swaps each frame keeps its own species (particles keep their labels)
                frames.append((ev, unwrapped.copy(), self.species.copy()) if self.swap_fraction > 0
                              else (ev, unwrapped.copy()))

        save = None if checkpoint is None else (lambda: self.save_checkpoint(checkpoint, samples, frames))
        events = sorted(set(range(0, n_sweeps + 1, sample_every)) | wanted | {n_sweeps})
        run_events(n_sweeps, events, last_done, advance_to, on_event, save, checkpoint_every, progress, "MC")
        th, traj = collect_results(samples, frames, 1.0)
        info = {"engine": "numba-mc", "acceptance": self.acceptance, "delta": self.delta.tolist(),
                "sweeps": self.sweeps - self._run_origin, "sweeps_before_run": self._run_origin, "cpu_s": sweep_cpu[0]}
        return MDResult(final=self.configuration(), thermo=th, trajectory=traj, info=info)


def run_mc(conf: Configuration, *, T: float, n_sweeps: int, delta: float | list[float] = 0.1,
           swap_fraction: float = 0.0, seed: int = 0, sample_every: int = 10,
           traj_sweeps: list[int] | np.ndarray | None = None, tune_sweeps: int = 0, equilibrate_sweeps: int = 0,
           progress: bool = False, checkpoint: str | os.PathLike[str] | None = None,
           checkpoint_every: int = 1000, equilibrate_checkpoint: str | os.PathLike[str] | None = None,
           origin: str = "") -> MDResult:
    """Run a Metropolis chain (optionally tuning delta for ``tune_sweeps`` sweeps, then ``equilibrate_sweeps``
    unrecorded sweeps at the tuned delta, first; neither is redone when a checkpoint is resumed).

    With ``equilibrate_checkpoint`` the equilibration is checkpointed too (every ``checkpoint_every`` sweeps and
    on Ctrl-C) and resumes from there, tuning included; the chain is the same as without (the random numbers are
    drawn sweep by sweep). The caller deletes that file once the run is written."""
    mc = MonteCarlo(conf, T, delta=delta, swap_fraction=swap_fraction, seed=seed, origin=origin)
    # one Ctrl-C scope over the phases: a Ctrl-C in the tuning or in the equilibration's last stretch stops the
    # run at the next phase's first event point, with a checkpoint there (it was forgotten between phases)
    with DeferredInterrupt(active=checkpoint is not None):
        return _run_mc_phases(mc, checkpoint, equilibrate_checkpoint, n_sweeps, sample_every, traj_sweeps,
                              tune_sweeps, equilibrate_sweeps, progress, checkpoint_every)


def _run_mc_phases(mc: MonteCarlo, checkpoint: Any, equilibrate_checkpoint: Any, n_sweeps: int, sample_every: int,
                   traj_sweeps: Any, tune_sweeps: int, equilibrate_sweeps: int, progress: bool,
                   checkpoint_every: int) -> MDResult:
    if not (checkpoint is not None and Path(checkpoint).is_file()):
        eq_resumed = (equilibrate_sweeps > 0 and equilibrate_checkpoint is not None
                      and Path(equilibrate_checkpoint).is_file())
        if tune_sweeps > 0 and not eq_resumed:
            mc.tune_delta(sweeps=max(1, tune_sweeps // 10), rounds=10)
        if equilibrate_sweeps > 0:
            if equilibrate_checkpoint is None:
                mc.sweep(int(equilibrate_sweeps))
            else:
                mc.run(int(equilibrate_sweeps), sample_every=int(equilibrate_sweeps), progress=progress,
                       checkpoint=equilibrate_checkpoint, checkpoint_every=checkpoint_every, what="equilibration")
                mc._unwrapped = None  # the recorded run's displacements start at its own first frame
            mc.stats[:] = 0  # the reported acceptance is the recorded run's
    return mc.run(n_sweeps, sample_every=sample_every, traj_sweeps=traj_sweeps, progress=progress,
                  checkpoint=checkpoint, checkpoint_every=checkpoint_every)
