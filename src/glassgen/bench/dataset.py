"""GlassBench-style isoconfigurational datasets produced with our own engines (``glassgen dataset make``).

Protocol for one (model, N, T):

1. **Equilibrate**: a random non-overlapping state, NVT (Nose-Hoover chain) blocks until the block means
   of U/N show no significant drift (:func:`glassgen.dynamics.initial.equilibrate`).
2. **Measure tau_alpha**: an NVT run with equally spaced frames; F_s(q, t) of species A over all time
   origins; tau_alpha where F_s = 1/e. The run is extended until F_s crosses 1/e. Then the equilibration
   is topped up so that it lasts at least ``equil_tau`` tau_alpha, and tau_alpha is measured again (mean
   of two runs), topping up further until two successive values agree within 25 %: a liquid just past
   the drift test is still young and relaxes faster (KA 3D, T = 0.64: 5.8 first, 8.8-11.9 later).
3. **Draw configurations**: one NVT trajectory, a configuration every ``spacing`` tau_alpha (independent).
4. **Per configuration** (any order, any process): FIRE inherent state, ``n_replicas`` isoconfigurational
   replicas (:func:`glassgen.bench.replicas.run_isoconfigurational`), propensity and bond-breaking at
   lag times ``time_factors * tau_alpha`` (a log-spaced grid that contains tau_alpha exactly), written as
   ``N{N}T{T}_{i}.npz`` in the GlassBench model-file layout with provenance.

Resumability: steps 1-3 store their state in ``prep_N{N}T{T}.npz`` (rewritten atomically after every
configuration drawn); step 4 skips configurations whose file exists. An interrupted run therefore
continues where it stopped and never recomputes or corrupts a finished configuration. Configurations are
spread over ``workers`` local processes, and over independent launches with ``shard=(k, K)`` (configuration
i is done by shard (i - 1) mod K), e.g. one shard per MPI rank.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from glassgen.bench.replicas import run_isoconfigurational, time_steps
from glassgen.dynamics.initial import EquilibrationReport, equilibrate, random_state
from glassgen.dynamics.md import MDSimulation
from glassgen.dynamics.minimize import inherent_state
from glassgen.errors import InputError, check_temperature
from glassgen.observables.dynamics import SelfIntermediateScattering
from glassgen.provenance import atomic_path, provenance
from glassgen.systems.configuration import Configuration
from glassgen.systems.glassbench import GlassBenchSample, write_sample
from glassgen.systems.model import load_model

__all__ = ["DatasetSpec", "prepare", "make_configuration", "make_dataset", "sample_path", "prep_path",
           "measure_tau_alpha", "shard_from_env"]

#: Lag times in units of tau_alpha: log-spaced below tau_alpha, tau_alpha itself (index 6, as in
#: GlassBench's KA grids), then 1.75 and 3 tau_alpha.
DEFAULT_FACTORS = (0.004, 0.012, 0.035, 0.1, 0.25, 0.5, 1.0, 1.75, 3.0)


@dataclasses.dataclass(frozen=True)
class DatasetSpec:
    """What to generate for one temperature.

    Attributes:
        model: interaction model name (``ka3d``, ``ka2d``, ...).
        n: particles.
        T: temperature.
        n_configs: configurations; the last ``n_test`` of them form the test split.
        n_replicas: isoconfigurational replicas per configuration.
        time_factors: lag times in units of tau_alpha (must contain 1.0).
        spacing: tau_alpha between consecutive configurations.
        equil_tau: minimal equilibration length in tau_alpha (after the drift test passed).
        q: wavenumber of F_s for tau_alpha (default: 7.25 in 3D, the first peak of KA 3D's S(q); 2 pi in 2D, as
            ``glassgen analyze`` and the KA2D literature use).
        dt: time step.
        ensemble: replica dynamics, ``nve`` or ``nvt``.
        engine: ``numba`` or ``lammps`` (replicas); preparation always uses the Numba engine.
        r_in, r_out: bond-breaking radii (sigma_ab units).
        seed: master seed; configuration i uses seed * 7919 + i for its replicas.
        keep_replicas: store replica positions at tau_alpha in each file (large).
        tau_alpha: skip the measurement and use this value.
        n_test: configurations at the end assigned to the test split.
    """

    model: str = "ka3d"
    n: int = 500
    T: float = 0.64
    n_configs: int = 50
    n_replicas: int = 32
    time_factors: tuple[float, ...] = DEFAULT_FACTORS
    spacing: float = 3.0
    equil_tau: float = 30.0
    q: float | None = None
    dt: float = 0.005
    ensemble: str = "nve"
    engine: str = "numba"
    r_in: float = 1.4
    r_out: float = 1.8
    seed: int = 1
    keep_replicas: bool = False
    tau_alpha: float | None = None
    n_test: int = 10

    def __post_init__(self) -> None:
        check_temperature(self.T)
        if self.q is None:
            object.__setattr__(self, "q", 2 * math.pi if load_model(self.model).dim == 2 else 7.25)
        if self.n < 2 or self.n_configs < 1 or self.n_replicas < 1:
            raise InputError("need N >= 2, n_configs >= 1 and n_replicas >= 1")
        if 1.0 not in self.time_factors or any(f <= 0 for f in self.time_factors):
            raise InputError("time_factors must be positive and contain 1.0 (tau_alpha)")
        if self.spacing <= 0 or self.equil_tau < 0:
            raise InputError("spacing must be positive and equil_tau non-negative")
        if not (0 <= self.n_test <= self.n_configs):
            raise InputError(f"n_test (--test) must be in [0, n_configs = {self.n_configs}], got {self.n_test}"
                             + (" (the default: give --test)" if self.n_test == 10 else ""))
        if self.ensemble not in ("nve", "nvt"):
            raise InputError(f"unknown ensemble {self.ensemble!r} (choose from nve, nvt)")
        if self.engine not in ("numba", "lammps"):
            raise InputError(f"unknown engine {self.engine!r} (choose from numba, lammps)")
        if self.tau_alpha is not None and not (math.isfinite(self.tau_alpha) and self.tau_alpha > 0):
            raise InputError(f"tau_alpha must be positive, got {self.tau_alpha}")
        if not (self.dt > 0 and self.q > 0 and self.r_in > 0 and self.r_out > 0):
            raise InputError("dt, q, r_in and r_out must be positive")
        if self.tau_alpha is not None:  # judged now, not after the equilibration that precedes its use
            steps = self.tau_alpha * (self.equil_tau + self.spacing * self.n_configs + max(self.time_factors)) / self.dt
            if steps > 1e15:
                raise InputError(f"tau_alpha = {self.tau_alpha:g} asks for more than 1e15 MD steps "
                                 f"({steps:.3g} at dt = {self.dt:g})")
            try:  # the replicas' lag times must fall on distinct MD steps, as they will be run
                time_steps(np.asarray(self.time_factors) * self.tau_alpha, self.dt)
            except InputError as exc:
                raise InputError(f"tau_alpha = {self.tau_alpha:g}: {exc}") from None
        load_model(self.model)

    @property
    def tag(self) -> str:
        return f"N{self.n}T{self.T:.2f}"

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["time_factors"] = list(self.time_factors)
        return d


def sample_path(out: Path, spec: DatasetSpec, i: int) -> Path:
    return Path(out) / f"T{spec.T:.2f}" / f"{spec.tag}_{i}.npz"


def prep_path(out: Path, spec: DatasetSpec) -> Path:
    return Path(out) / f"T{spec.T:.2f}" / f"prep_{spec.tag}.npz"


def measure_tau_alpha(sim: MDSimulation, q: float, guess: float, species: int = 0, max_doublings: int = 8,
                      n_frames: int = 200) -> tuple[float, np.ndarray, np.ndarray, float]:
    """tau_alpha from an NVT continuation of ``sim``: F_s(q, t) of one species over all origins.

    The run lasts ``8 * guess`` with ``n_frames`` equally spaced frames and is redone twice as long until F_s
    reaches 1/e within lags of a quarter of the run.

    Returns:
        (tau_alpha, lag times, F_s, simulated time).
    """
    length = 8.0 * guess
    spent = 0.0
    for _ in range(max_doublings):
        every = max(1, int(round(length / n_frames / sim.dt)))
        frames = [sim.positions.copy()]
        for _ in range(n_frames):
            sim.step(every)
            frames.append(sim.positions.copy())
        spent += n_frames * every * sim.dt
        times = np.arange(n_frames + 1) * every * sim.dt
        fs = SelfIntermediateScattering(q, "all", max_lag=n_frames // 4)
        fs.compute(times, np.asarray(frames), sim.conf0.species)
        curve = fs.fs_by_species[species]
        tau = fs.tau_alpha(species=species)
        if math.isfinite(tau) and tau > 2 * every * sim.dt:
            return float(tau), fs.lag_times, curve, spent
        length = length * 0.5 if math.isfinite(tau) else length * 2.0  # too fast: resolve; too slow: extend
    raise InputError(f"could not measure tau_alpha (F_s(q={q}) did not reach 1/e); is T too low?")


def _save_prep(path: Path, state: dict[str, Any]) -> None:
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            np.savez(fh, **{k: (np.asarray(json.dumps(v)) if k == "info" else v) for k, v in state.items()})


def _load_prep(path: Path) -> dict[str, Any]:
    with np.load(path, allow_pickle=False) as z:
        d = {k: z[k] for k in z.files}
    d["info"] = json.loads(str(d["info"]))
    return d


def _equilibration_path(prep: Path) -> Path:
    return prep.with_name(prep.stem + ".equilibrated.npz")


def _equilibrated(spec: DatasetSpec, prep: Path, m: Any, progress: bool,
                  log: Callable[[str], None]) -> EquilibrationReport:
    """Step 1, kept in its own file until the preparation is saved: a run interrupted while tau_alpha is
    measured resumes from the equilibrated state (the same state: the rest of the preparation is the same)."""
    eq_path = _equilibration_path(prep)
    if eq_path.is_file():
        st = _load_prep(eq_path)
        if st["info"].get("spec_core") == _core(spec):
            conf = Configuration(st["positions"], st["species"], st["box"], m, velocities=st["velocities"])
            i = st["info"]
            log(f"T={spec.T}: equilibrated state read from {eq_path}")
            return EquilibrationReport(conf, st["block_means"], int(i["steps"]), bool(i["equilibrated"]),
                                       float(i["slope"]), float(i["slope_err"]))
    conf = random_state(m, spec.n, T=spec.T, seed=spec.seed)
    log(f"T={spec.T}: equilibrating N={spec.n}")
    rep = equilibrate(conf, spec.T, block_steps=2000, seed=spec.seed, dt=spec.dt, progress=progress)
    c = rep.configuration
    _save_prep(eq_path, {"positions": c.positions, "velocities": c.velocities, "species": c.species, "box": c.box,
                         "block_means": rep.block_means,
                         "info": {"spec_core": _core(spec), "steps": int(rep.steps), "equilibrated": rep.equilibrated,
                                  "slope": rep.slope, "slope_err": rep.slope_err,
                                  "provenance": provenance(seed=spec.seed, model=spec.model, T=spec.T, N=spec.n)}})
    return rep


def prepare(spec: DatasetSpec, out: Path, progress: bool = False,
            log: Callable[[str], None] = lambda s: None) -> dict[str, Any]:
    """Steps 1-3: equilibrate, measure tau_alpha, draw the initial configurations (resumable).

    Returns:
        the preparation state: ``initial`` (k, N, d), ``species``, ``box``, ``tau_alpha``, ``fs_t``, ``fs``,
        ``positions``/``velocities`` of the running trajectory, ``info`` (dict with the equilibration record).
    """
    path = prep_path(out, spec)
    m = load_model(spec.model)
    if path.is_file():
        st = _load_prep(path)
        if st["info"].get("spec_core") != _core(spec):
            raise InputError(f"{path} was prepared with different settings {st['info'].get('spec_core')}; "
                             "use another --out or delete it")
        before = st["info"].get("spec_samples")
        n_drawn = max(spec.n_configs, len(st["initial"]))
        written = any(sample_path(out, spec, i).is_file() for i in range(1, n_drawn + 1))
        if before is not None and before != _sample_settings(spec) and written:
            diff = sorted(k for k in before if before[k] != _sample_settings(spec).get(k))
            raise InputError(f"{path.parent} already holds configurations made with other {', '.join(diff)} "
                             f"({', '.join(f'{k}={before[k]}' for k in diff)}); use those or another --out")
        if before != _sample_settings(spec):
            st["info"]["spec_samples"] = _sample_settings(spec)
            _save_prep(path, st)
    else:
        t0 = time.perf_counter()
        rep = _equilibrated(spec, path, m, progress, log)
        if not rep.equilibrated:
            raise InputError(f"T={spec.T}: equilibration drift test failed after {rep.steps} steps")
        sim = MDSimulation(rep.configuration, T=spec.T, dt=spec.dt, seed=spec.seed + 1)
        if spec.tau_alpha is not None:
            tau, fs_t, fs, spent = float(spec.tau_alpha), np.zeros(0), np.zeros(0), 0.0
        else:
            tau, fs_t, fs, spent = measure_tau_alpha(sim, spec.q, guess=1.0)
        log(f"T={spec.T}: tau_alpha = {tau:.4g} (F_s at q={spec.q:.4g}, species A; "
            + ("given)" if spec.tau_alpha is not None else "first estimate, re-measured after more equilibration)"))
        top_up = max(0.0, spec.equil_tau * tau - rep.steps * spec.dt - spent)
        sim.step(int(math.ceil(top_up / spec.dt)))
        history = [tau]
        if spec.tau_alpha is None:
            # tau_alpha measured right after the drift test can be too short (the liquid is still young);
            # re-measure after the top-up (mean of two runs) until it is stable within 25 %.
            for _ in range(4):
                runs = [measure_tau_alpha(sim, spec.q, guess=tau / 2) for _ in range(2)]
                new = float(np.mean([r[0] for r in runs]))
                spent += sum(r[3] for r in runs)
                fs_t, fs = runs[-1][1], runs[-1][2]
                history.append(new)
                stable = abs(new - tau) < 0.25 * tau
                tau = new
                if stable:
                    break
                extra = spec.equil_tau * tau
                sim.step(int(math.ceil(extra / spec.dt)))
                top_up += extra
            log(f"T={spec.T}: tau_alpha = {tau:.4g} used (estimates in turn: {', '.join(f'{t:.3g}' for t in history)})")
        info = {"spec_core": _core(spec), "spec_samples": _sample_settings(spec),
                "equilibration_steps": int(rep.steps), "drift_slope": rep.slope,
                "drift_slope_err": rep.slope_err, "equilibrated": bool(rep.equilibrated),
                "equilibration_time": rep.steps * spec.dt + spent + top_up, "block_means": rep.block_means.tolist(),
                "tau_alpha_history": history, "prep_seconds": time.perf_counter() - t0,
                "provenance": provenance(seed=spec.seed, model=spec.model, T=spec.T, N=spec.n)}
        st = {"initial": np.zeros((0, spec.n, m.dim)), "species": rep.configuration.species,
              "box": rep.configuration.box, "tau_alpha": np.asarray(tau), "fs_t": fs_t, "fs": fs,
              "positions": sim.positions, "velocities": sim.velocities, "info": info}
        _save_prep(path, st)
        _equilibration_path(path).unlink(missing_ok=True)
    tau = float(st["tau_alpha"])
    k = st["initial"].shape[0]
    if k < spec.n_configs:
        conf = Configuration(st["positions"], st["species"], st["box"], m, velocities=st["velocities"])
        sim = MDSimulation(conf, T=spec.T, dt=spec.dt, seed=spec.seed * 31 + (0 if "sim_rng" in st else k))
        if "sim_rng" in st:  # continue the drawing run exactly (thermostat variables included) where it stopped
            sim.restore_state({key[4:]: v for key, v in st.items() if key.startswith("sim_")})
            sim.ff.invalidate()  # as the drawing run did after saving it (below)
        every = int(math.ceil(spec.spacing * tau / spec.dt))
        initial = list(st["initial"])
        while len(initial) < spec.n_configs:
            sim.step(every)
            initial.append(np.mod(sim.positions, st["box"]))
            st.update(initial=np.asarray(initial), positions=sim.positions.copy(),
                      velocities=sim.velocities.copy(),
                      **{f"sim_{key}": np.copy(v) for key, v in sim.state().items()})
            _save_prep(path, st)
            sim.ff.invalidate()  # as a resumed run does: the same neighbour-list rebuilds, the same chain bit for bit
        log(f"T={spec.T}: {spec.n_configs} configurations drawn, {spec.spacing} tau_alpha apart")
    return st


def _sample_settings(spec: DatasetSpec) -> dict[str, Any]:
    """The settings of the configuration files (replicas, lag times, split): files already written with other
    values would silently mix with new ones."""
    d = spec.to_dict()
    return {k: d[k] for k in ("n_configs", "n_test", "n_replicas", "time_factors", "ensemble", "engine", "r_in",
                              "r_out", "keep_replicas")}


def _core(spec: DatasetSpec) -> dict[str, Any]:
    """The settings that define the prepared trajectory (changing them needs a new preparation)."""
    return {k: v for k, v in spec.to_dict().items() if k in ("model", "n", "T", "spacing", "q", "dt", "seed",
                                                           "tau_alpha", "equil_tau")}


def make_configuration(spec: DatasetSpec, out: Path, i: int, st: dict[str, Any], threads: int = 1) -> Path:
    """Step 4 for configuration ``i`` (1-based): inherent state, replicas, propensities; written atomically."""
    path = sample_path(out, spec, i)
    if path.is_file():
        return path
    m = load_model(spec.model)
    t0 = time.perf_counter()
    conf = Configuration(st["initial"][i - 1], st["species"], st["box"], m)
    tau = float(st["tau_alpha"])
    times = np.asarray(spec.time_factors) * tau
    fire = inherent_state(conf)
    res = run_isoconfigurational(conf, T=spec.T, times=times, n_replicas=spec.n_replicas,
                                 seed=spec.seed * 7919 + i, dt=spec.dt, ensemble=spec.ensemble, engine=spec.engine,
                                 r_in=spec.r_in, r_out=spec.r_out, keep_replicas=spec.keep_replicas, threads=threads)
    k_tau = int(np.argmin(np.abs(np.asarray(spec.time_factors) - 1.0)))
    split = "test" if i > spec.n_configs - spec.n_test else "train"
    sample = GlassBenchSample(
        system=spec.model, T=spec.T, index=i, species=conf.species, positions=conf.positions, box=conf.box,
        times=res.times, inherent=np.mod(fire.configuration.positions, conf.box), md_prop=res.md_prop,
        bb_prop=res.bb_prop, replicas=None if res.replicas is None else res.replicas[k_tau],
        replica_time=float(res.times[k_tau]), metadata={"split": split})
    prov = provenance(seed=spec.seed * 7919 + i, master_seed=spec.seed, model=spec.model, T=spec.T, N=spec.n,
                      tau_alpha=tau, n_replicas=spec.n_replicas, ensemble=spec.ensemble, engine=spec.engine,
                      r_in=spec.r_in, r_out=spec.r_out, tau_alpha_index=k_tau, inherent_energy=fire.energy / spec.n,
                      seconds=time.perf_counter() - t0, msd=res.msd.tolist(), split=split)
    write_sample(path, sample, provenance=prov)
    return path


def shard_from_env() -> tuple[int, int]:
    """(rank, size) from MPI launcher variables (Open MPI, MPICH/PMI, Slurm), (0, 1) if none."""
    for rk, sz in (("OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE"), ("PMI_RANK", "PMI_SIZE"),
                   ("SLURM_PROCID", "SLURM_NTASKS")):
        if rk in os.environ and sz in os.environ:
            return int(os.environ[rk]), int(os.environ[sz])
    return 0, 1


def _worker(args: tuple[DatasetSpec, str, int]) -> str:
    spec, out, i = args
    st = _load_prep(prep_path(Path(out), spec))
    return str(make_configuration(spec, Path(out), i, st))


def make_dataset(spec: DatasetSpec, out: str | os.PathLike[str], *, workers: int = 1,
                 shard: tuple[int, int] = (0, 1), progress: bool = False,
                 log: Callable[[str], None] = lambda s: None) -> dict[str, Any]:
    """Generate (or finish) the dataset of ``spec`` under ``out/T{T}/``; see the module docstring.

    Args:
        workers: local processes for step 4 (each runs single-threaded MD).
        shard: (k, K): this launch does configurations i with (i - 1) mod K == k.

    Returns:
        summary: tau_alpha, files written now / already present, wall seconds, CPU seconds of step 4.
    """
    from glassgen.progress import progress_bar

    outp = Path(out)
    k, kk = shard
    if not (0 <= k < kk):
        raise InputError(f"shard must satisfy 0 <= k < K, got {k}/{kk}")
    t0 = time.perf_counter()
    st = prepare(spec, outp, progress=progress, log=log)
    todo = [i for i in range(1, spec.n_configs + 1)
            if (i - 1) % kk == k and not sample_path(outp, spec, i).is_file()]
    done_before = sum(sample_path(outp, spec, i).is_file() for i in range(1, spec.n_configs + 1))
    t1 = time.perf_counter()
    with progress_bar(len(todo), f"T={spec.T} configurations", progress) as advance:
        if workers <= 1 or len(todo) <= 1:
            for i in todo:
                make_configuration(spec, outp, i, st)
                advance(1)
        else:
            import multiprocessing as mp

            ctx = mp.get_context("spawn")
            with ctx.Pool(workers, initializer=_single_thread) as pool:
                for _ in pool.imap_unordered(_worker, [(spec, str(outp), i) for i in todo]):
                    advance(1)
    return {"T": spec.T, "tau_alpha": float(st["tau_alpha"]), "written": len(todo), "already_present": done_before,
            "prep_info": st["info"], "seconds": time.perf_counter() - t0,
            "replica_cpu_seconds": (time.perf_counter() - t1) * max(1, min(workers, len(todo))),
            "directory": str(outp / f"T{spec.T:.2f}")}


def _single_thread() -> None:
    os.environ["NUMBA_NUM_THREADS"] = "1"
