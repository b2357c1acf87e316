"""Predict-then-propose experiment (issue 8): decorrelation per CPU second of samplers, one command.

``predict_propose_experiment(config=...)`` reads a TOML file (configs/experiments/), and for every case
(model, N, T) equilibrates one start, decorrelates ``n_chains`` chain starts, then runs each method on
them and measures, per chain:

- tau_alpha: first 1/e crossing of F_s(q, t) of all particles (origin = start of the run, pooled over
  chains), in the method's own steps and in CPU seconds (process time / chains); NaN if not reached;
- tau_U: pooled integrated autocorrelation time of U (Sokal window), in CPU seconds;
- U/N: mean and error (standard error inflated by tau_U) against the Metropolis reference;
- selection scores of the sampled configurations (the feature scorer used for the biased methods).

Methods: ``md`` (NVT, Nose-Hoover chain), ``metropolis`` (displacements, tuned step), ``pgmc`` (policy
learned in a short burn-in, then frozen), ``predict_pgmc`` (same policy; displacements with selection
biased by the feature scorer), ``local_flow_uniform`` / ``local_flow_predictor`` (a LocalFlow trained on
Metropolis frames at T; uniform or biased centre selection), ``flow_mcmc`` (the shipped global flow,
independence MH + 1 local sweep; only where one is shipped). Writes ``<out>/results.json`` and
``<out>/report.md`` with PNG plots, atomically, with provenance and ``os.getloadavg()``.
"""

from __future__ import annotations

import json
import math
import os
import time
from pathlib import Path
from typing import Any

import numpy as np

from glassgen.config_values import read_toml
from glassgen.errors import InputError
from glassgen.provenance import atomic_path, png_metadata, provenance, strict_json

__all__ = ["predict_propose_experiment", "ka2d_energy_check", "METHODS"]

PathLike = str | os.PathLike[str]
METHODS = ("md", "metropolis", "pgmc", "predict_pgmc", "local_flow_uniform", "local_flow_predictor", "flow_mcmc")


def _load(path: PathLike) -> dict[str, Any]:
    return read_toml(path)[0]


# keys of the experiment config (top level, [quick], [[case]], [case.quick]) and their TOML types
_COUNTS = ("n", "n_chains", "equilibrate_sweeps", "sweeps", "md_steps", "learn_iterations", "max_env", "max_mobile",
           "flow_layers", "flow_hidden", "flow_train_frames", "flow_train_every", "flow_train_steps",
           "local_flow_steps", "flow_mcmc_iterations")
_KEY_TYPES: dict[str, Any] = {**dict.fromkeys(_COUNTS, int), "seed": int, "T": float, "md_dt": float,
                              "selection_scale": float, "region_half_width": float, "env_radius": float,
                              "model": str, "selection": str, "out": str, "quick_default": bool}
_LIST_KEYS = ("methods", "theta_select")


def _check_keys(table: dict[str, Any], where: str) -> dict[str, Any]:
    """Unknown keys, values of the wrong type and counts below 1 are one-line errors naming the key."""
    from glassgen.config_values import check_types

    unknown = sorted(set(table) - set(_KEY_TYPES) - set(_LIST_KEYS))
    if unknown:
        raise InputError(f"{where}: unknown key(s) {', '.join(unknown)} "
                         f"(allowed: {', '.join(sorted([*_KEY_TYPES, *_LIST_KEYS]))})")
    for k in _LIST_KEYS:
        if k in table and not isinstance(table[k], list):
            raise InputError(f"{where}: {k} must be a list, got {table[k]!r}")
    out = check_types(table, _KEY_TYPES, where)
    low = [k for k in _COUNTS if k in out and out[k] < 1]
    if low:
        raise InputError(f"{where}: {', '.join(low)} must be >= 1")
    if out.get("seed", 0) < 0:
        raise InputError(f"{where}: seed must be >= 0")
    return out


def _fs_tau(steps: np.ndarray, frames: np.ndarray, q: float) -> tuple[float, float, np.ndarray, np.ndarray]:
    """(tau_alpha in steps, last F_s, lags, F_s) from unwrapped frames (F, chains, N, d)."""
    from glassgen.observables.dynamics import SelfIntermediateScattering, tau_alpha

    fs = SelfIntermediateScattering(q)
    t = np.asarray(steps, dtype=np.float64)
    for c in range(frames.shape[1]):
        fs.compute(t - t[0], frames[:, c], None, reset=(c == 0))
    return float(tau_alpha(fs.lag_times, fs.fs)), float(fs.fs[-1]), fs.lag_times, fs.fs


def _u_stats(energies: np.ndarray, n: int) -> dict[str, float]:
    from glassgen.sampling.flow_mcmc import pooled_autocorrelation_time

    e = np.asarray(energies, dtype=np.float64)
    half = e[e.shape[0] // 5:]  # drop the first fifth (the starts are equilibrated; a safety margin)
    tau = pooled_autocorrelation_time(half) if half.shape[0] >= 8 else math.nan
    neff = half.size / max(tau, 1.0) if math.isfinite(tau) else 1.0
    # Sokal's estimate of the statistical error of tau (window M ~ 5 tau, n = all samples of all chains)
    err = tau * math.sqrt(2.0 * (2.0 * math.ceil(5.0 * tau) + 1.0) / half.size) if math.isfinite(tau) else math.nan
    err_tau = float(half.std() / n / math.sqrt(max(neff, 1.0)))
    # spread of the chain means: catches slow modes (basins) that a short run's tau_U misses; the larger is used
    err_ch = float(half.mean(0).std(ddof=1) / n / math.sqrt(half.shape[1])) if half.shape[1] > 1 else math.nan
    return {"U_per_N": float(half.mean() / n), "U_per_N_err": max(err_tau, err_ch) if err_ch == err_ch else err_tau,
            "U_per_N_err_tau": err_tau, "U_per_N_err_chains": err_ch,
            "tau_U_samples": float(tau), "tau_U_err_samples": float(err)}


def _log_frames(n_steps: int, per_decade: int = 8) -> np.ndarray:
    from glassgen.observables.schedule import log_spaced_steps

    return np.unique(np.concatenate([[0], np.asarray(log_spaced_steps(n_steps, per_decade)), [n_steps]]))


def _starts(model: str, n: int, T: float, chains: int, eq_sweeps: int, seed: int) -> tuple[Any, list[Any], float]:
    """(model conf, chain starts (Configurations), tuned Metropolis delta)."""
    from glassgen.dynamics.initial import random_state
    from glassgen.dynamics.mc import MonteCarlo

    conf = random_state(model, n, seed=seed)
    swap = 0.2 if conf.model.nsp == 3 else 0.0
    mc = MonteCarlo(conf, T, delta=0.1, swap_fraction=swap, seed=seed)
    mc.tune_delta(sweeps=max(1, eq_sweeps // 20), rounds=5)
    mc.sweep(eq_sweeps)
    delta = float(np.mean(mc.delta))
    starts = []
    for c in range(chains):
        m2 = MonteCarlo(mc.configuration(), T, delta=delta, swap_fraction=swap, seed=seed + 101 + c)
        m2.sweep(max(1, eq_sweeps // 4))
        starts.append(m2.configuration())
    return conf, starts, delta


def _record(name: str, unit: str, steps: np.ndarray, frames: np.ndarray, sample_steps: np.ndarray,
            energies: np.ndarray, cpu: float, chains: int, n: int, q: float, extra: dict[str, Any],
            box: np.ndarray | None = None) -> dict[str, Any]:
    tau, f_end, lags, fs = _fs_tau(steps, frames, q)
    us = _u_stats(energies, n)
    n_steps = float(steps[-1])
    cpu_per_step = cpu / chains / max(n_steps, 1.0)
    ds = float(np.median(np.diff(sample_steps))) if len(sample_steps) > 1 else 1.0
    msd = float(np.mean(np.sum((frames[-1] - frames[0]) ** 2, axis=-1)))  # over chains and particles
    rec = {"method": name, "unit": unit, "steps": n_steps, "cpu_s_per_chain": cpu / chains,
           "cpu_per_step": cpu_per_step, "tau_alpha_steps": tau, "tau_alpha_cpu_s": tau * cpu_per_step,
           "fs_final": f_end, "msd_end": msd, "msd_per_cpu_s": msd / max(cpu / chains, 1e-12),
           "tau_U_cpu_s": us["tau_U_samples"] * ds * cpu_per_step,
           "tau_U_cpu_s_err": us["tau_U_err_samples"] * ds * cpu_per_step,
           "U_per_N": us["U_per_N"], "U_per_N_err": us["U_per_N_err"], "tau_U_steps": us["tau_U_samples"] * ds,
           "fs_curve": [lags.tolist(), fs.tolist()]}
    if box is not None and frames.shape[1] > 1:  # total g(r) per chain, second half of the frames
        r, g = _total_rdf(frames, np.asarray(box, dtype=np.float64), 0.5 * float(np.min(box)))
        err = g.std(0, ddof=1) / math.sqrt(g.shape[0])
        rec["gr"] = {"r": r.tolist(), "g": g.mean(0).tolist(), "err": err.tolist()}
    rec.update(extra)
    return rec


def _gr_comparison(rec: dict[str, Any], ref: dict[str, Any]) -> dict[str, float]:
    """chi^2 per bin and largest |z| of a method's g(r) against the reference's (bins where both vary)."""
    g, e = np.asarray(rec["gr"]["g"]), np.asarray(rec["gr"]["err"])
    g0, e0 = np.asarray(ref["gr"]["g"]), np.asarray(ref["gr"]["err"])
    ok = (e > 0) & (e0 > 0)
    z = (g[ok] - g0[ok]) / np.hypot(e[ok], e0[ok])
    return {"chi2_per_bin": float(np.mean(z * z)) if z.size else math.nan,
            "max_abs_z": float(np.max(np.abs(z))) if z.size else math.nan, "bins": int(z.size)}


def _scores_of(target: Any, theta: np.ndarray, positions: np.ndarray, species: np.ndarray,
               sel_info: dict[str, Any] | None = None) -> list[float]:
    """Per-particle scores of configurations: the selection log-weights s_k, or, for a trained selection
    predictor (``sel_info`` from :func:`trained_selection`), its predicted propensity a + w . f_k."""
    from glassgen.sampling.predict_propose import FeatureScorer, features_of

    if sel_info:
        a, w = float(sel_info["intercept"]), np.asarray(sel_info["w"])
        return np.concatenate([a + features_of(target, p, s) @ w
                               for p, s in zip(positions, species, strict=True)]).tolist()
    sc = FeatureScorer(target, theta)
    return np.concatenate([sc.scores(p, s, target.box) for p, s in zip(positions, species, strict=True)]).tolist()


#: training data of the trained selection predictor, per model: (folder, file glob, configuration indices)
_SELECTION_DATA = {"ka3d": ("ka3d-T0.44-isoconfig", "isoconfig_N4096T0.44_{i}_tc07.npz", range(1, 11)),
                   "ka2d": ("ka2d-isoconfig", "N1290T0.30_{i}_tc01.npz", (3,))}


def trained_selection(model: str, interaction: Any, scale: float = 1.0) -> tuple[np.ndarray, dict[str, Any]]:
    """Selection coefficients from a trained linear propensity predictor on the selection features.

    The predictor is R_i ~ a + w . f_i with f_i = (e_i, c_i) (pair energy, coordination: the LOCAL features
    that the Numba kernels rescore after every move), fitted by least squares on the propensity of the
    shared real data, all species pooled (the selection kernel carries no species intercept):
    KA 3D: the T = 0.44 configurations 1-10 at tau_alpha (32 replicas; 401-405 are never read);
    KA2D: the T = 0.30 training configuration 3 at t = 0.11 (20 replicas), the only KA2D propensity of the
    training split shipped (configuration 151 at T = 0.23 is a GlassBench test configuration: never trained on);
    at t = 0.11 the propensity measures the cage, not tau_alpha.
    Features are computed with the pair model ``interaction`` (the sampler's) and thermal (not inherent)
    positions. The selection log-weight is the predicted propensity in units of its spread over the training particles,
    s_i = scale * (w . f_i) / std(w . f) (the intercept cancels in P(i | x)), so theta = scale * w / std.

    Returns:
        (theta (2,), info) with the coefficients, the training Pearson (pooled, species A) and, for more
        than one configuration, the leave-one-configuration-out Pearson.
    """
    from glassgen.config import data_dir
    from glassgen.observables.isoconfig import propensity
    from glassgen.sampling.pgmc import PGMCTarget
    from glassgen.sampling.predict_propose import features_of
    from glassgen.systems.glassbench import read_sample

    if model not in _SELECTION_DATA:
        raise InputError(f"no propensity data to train a selection predictor for model {model!r} "
                         f"(have: {', '.join(_SELECTION_DATA)})")
    folder, pattern, indices = _SELECTION_DATA[model]
    feats, ys, masks = [], [], []
    for i in indices:
        path = data_dir() / folder / pattern.format(i=i)
        s = read_sample(path)
        t = PGMCTarget.from_model(interaction, s.box, 1.0)  # T does not enter the features
        feats.append(features_of(t, s.positions % s.box, s.species))
        ys.append(propensity(s.positions, s.replicas, s.box, unwrapped=False))
        masks.append(s.species == 0)
    X = np.concatenate(feats)
    y = np.concatenate(ys)
    A = np.column_stack([np.ones(len(y)), X])
    coef = np.linalg.lstsq(A, y, rcond=None)[0]
    pred = A @ coef
    a_mask = np.concatenate(masks)
    sd = float(np.std(pred - coef[0]))
    info: dict[str, Any] = {"features": ["pair_energy", "coordination"], "intercept": float(coef[0]),
                            "w": coef[1:].tolist(), "pred_std": sd, "scale": float(scale),
                            "train_files": [pattern.format(i=i) for i in indices],
                            "pearson_train_A": float(np.corrcoef(pred[a_mask], y[a_mask])[0, 1])}
    if len(indices) > 1:  # leave one configuration out
        lo = []
        for k in range(len(indices)):
            tr = [j for j in range(len(indices)) if j != k]
            At = np.column_stack([np.ones(sum(len(ys[j]) for j in tr)), np.concatenate([feats[j] for j in tr])])
            ck = np.linalg.lstsq(At, np.concatenate([ys[j] for j in tr]), rcond=None)[0]
            pk = ck[0] + feats[k] @ ck[1:]
            lo.append(float(np.corrcoef(pk[masks[k]], ys[k][masks[k]])[0, 1]))
        info["pearson_leave_one_out_A"] = lo
    theta = scale * coef[1:] / (sd if sd > 0 else 1.0)
    info["theta"] = theta.tolist()
    return theta, info


def _total_rdf(frames: np.ndarray, box: np.ndarray, r_max: float, bins: int = 60) -> tuple[np.ndarray, np.ndarray]:
    """(r, g (chains, bins)): total g(r) per chain from the second half of the frames (F, chains, N, d).

    The total g(r) (all pairs) does not depend on species labels, so it also compares samplers with swaps."""
    from glassgen.observables.rdf import RDF

    half = frames[frames.shape[0] // 2:]
    gs = []
    for c in range(frames.shape[1]):
        rdf = RDF(r_max=r_max, bins=bins, n_species=1)
        rdf.compute(half[:, c] % box, np.zeros(half.shape[2], dtype=np.int64), box)
        gs.append(rdf.g_total)
    return rdf.bin_centers, np.asarray(gs)


def _check_case(cfg: dict[str, Any], where: str) -> None:
    """Everything about a case that can be checked before any case runs (a bad case 5 must not be found
    hours into a run): model, N, T, methods, selection and its coefficients."""
    from glassgen._kernels.pgmc import N_SEL as N_SEL_FEATURES
    from glassgen.systems.model import load_model

    try:
        mdl = load_model(str(cfg["model"]))
        n, T = int(cfg["n"]), float(cfg["T"])
    except InputError as exc:  # an unknown model
        raise InputError(f"{where}: {exc}") from None
    except KeyError as exc:
        raise InputError(f"{where}: missing key {exc.args[0]!r} (model, n and T are required)") from None
    except (TypeError, ValueError):
        raise InputError(f"{where}: n must be an integer and T a number") from None
    if n < 2 or not (math.isfinite(T) and T > 0):
        raise InputError(f"{where}: need n >= 2 and T > 0, got n={n}, T={T}")
    methods = cfg.get("methods", METHODS)
    bad = [m for m in methods if m not in METHODS] if isinstance(methods, (list, tuple)) else [methods]
    if bad:
        raise InputError(f"{where}: unknown method(s) {bad} (choose from {', '.join(METHODS)})")
    if not methods:
        raise InputError(f"{where}: methods is empty (choose from {', '.join(METHODS)})")
    selection = cfg.get("selection", "features")
    if selection not in ("features", "trained"):
        raise InputError(f"{where}: selection must be 'features' or 'trained', got {selection!r}")
    if selection == "features" and "theta_select" in cfg:
        try:
            th = np.asarray(cfg["theta_select"], dtype=np.float64)
        except (TypeError, ValueError):
            raise InputError(f"{where}: theta_select must be numbers") from None
        if th.shape not in ((), (N_SEL_FEATURES,), (mdl.nsp, N_SEL_FEATURES)) or not np.all(np.isfinite(th)):
            raise InputError(f"{where}: theta_select must be a number, {N_SEL_FEATURES} numbers or {mdl.nsp} x "
                             f"{N_SEL_FEATURES} numbers, got shape {th.shape}")


def _code_stamp() -> str:
    """SHA-256 of glassgen's source files: finished cases of a run are reused only with the same code."""
    import hashlib

    h = hashlib.sha256()
    for f in sorted(Path(__file__).parent.rglob("*.py")):
        h.update(f.relative_to(Path(__file__).parent).as_posix().encode())
        h.update(f.read_bytes())
    return h.hexdigest()


def _initial_policy(mdl: Any, species: np.ndarray, sigma: float) -> Any:
    """The experiment's PGMC starting policy: Gaussian widths ``sigma``; for ternary KA2D 20 % biased swaps of
    A-C and B-C pairs."""
    from glassgen.sampling.policies import Policy

    swap = 0.2 if mdl.nsp == 3 else 0.0
    return Policy.default(mdl.nsp, mdl.dim, sigma=sigma, swap_fraction=swap,
                          swap_pairs=[(0, 2), (1, 2)] if mdl.nsp == 3 else None, biased=swap > 0,
                          counts=np.bincount(species, minlength=mdl.nsp))


def _warm_up(methods: list[str], target: Any, start: Any, T: float, delta: float, mdl: Any) -> None:
    """A few untimed moves of every timed kernel on a throwaway copy of ``start``, so that Numba compilation
    (minutes with a cold cache) is charged to no method."""
    from glassgen.dynamics.mc import MonteCarlo
    from glassgen.dynamics.md import run_md
    from glassgen.sampling.pgmc import PGMC
    from glassgen.sampling.predict_propose import PredictProposePGMC

    if "metropolis" in methods:
        MonteCarlo(start, T, delta=delta, seed=0).run(2, sample_every=1, traj_sweeps=[0, 2])
    if "md" in methods:
        run_md(start, T=T, dt=0.005, nsteps=4, seed=0, init_velocities=True, thermo_every=2, traj_steps=[0, 4],
               threads=1)
    if "pgmc" in methods or "predict_pgmc" in methods:
        pol = _initial_policy(mdl, start.species, delta)
        PGMC(target, pol, [start], seed=0).run(2, sample_every=1, frame_sweeps=[0, 2])
        PredictProposePGMC(target, pol, [start], seed=0, theta_select=np.array([1.0, 0.0])).run(
            2, sample_every=1, frame_sweeps=[0, 2])


def _run_case(case: dict[str, Any], glob: dict[str, Any], progress: bool) -> dict[str, Any]:
    import torch

    from glassgen.api_pgmc import default_q
    from glassgen.dynamics.mc import MonteCarlo
    from glassgen.dynamics.md import run_md
    from glassgen.sampling.local_flow import LocalFlow, LocalFlowMC, LocalRegion, extract_regions, train_local_flow
    from glassgen.sampling.pgmc import PGMC, PGMCTarget
    from glassgen.sampling.predict_propose import PredictProposePGMC

    torch.set_num_threads(1)
    cfg = {**glob, **case}
    model, n, T = str(cfg["model"]), int(cfg["n"]), float(cfg["T"])
    chains, seed = int(cfg.get("n_chains", 4)), int(cfg.get("seed", 0))
    methods = list(cfg.get("methods", METHODS))
    bad = [m for m in methods if m not in METHODS]
    if bad:
        raise InputError(f"unknown method(s) {bad} (choose from {', '.join(METHODS)})")
    conf, starts, delta = _starts(model, n, T, chains, int(cfg.get("equilibrate_sweeps", 2000)), seed)
    mdl = conf.model
    q = default_q(mdl.dim)
    target = PGMCTarget.from_model(mdl, conf.box, T)
    selection = str(cfg.get("selection", "features"))
    sel_info: dict[str, Any] = {}
    if selection == "trained":  # a trained propensity predictor chooses where (see trained_selection)
        theta, sel_info = trained_selection(model, mdl, float(cfg.get("selection_scale", 1.0)))
    elif selection == "features":  # hand-set coefficients of (pair energy, coordination)
        theta = np.asarray(cfg.get("theta_select", [1.0, 0.0]), dtype=np.float64)
    else:
        raise InputError(f"selection must be 'features' or 'trained', got {selection!r}")
    sweeps = int(cfg.get("sweeps", 4000))
    out: dict[str, Any] = {"model": model, "N": n, "T": T, "chains": chains, "q": q, "delta": delta,
                           "config": cfg, "selection": selection, "selection_predictor": sel_info,
                           "theta_select": np.asarray(theta).tolist(), "methods": {}}
    scores: dict[str, list[float]] = {}
    fr_sw = _log_frames(sweeps)
    every = max(1, sweeps // 200)

    def mc_run(extra_swap: float = 0.0) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[Any], float]:
        frames, ens, finals, cpu = [], [], [], 0.0
        for c, st in enumerate(starts):
            mc = MonteCarlo(st, T, delta=delta, swap_fraction=extra_swap, seed=seed + 11 + c)
            res = mc.run(sweeps, sample_every=every, traj_sweeps=fr_sw)
            cpu += res.info["cpu_s"]  # the sweeps alone, as PGMC's cpu_s (not the unwrapping and sampling)
            frames.append(res.trajectory.positions)
            ens.append(res.thermo.potential)
            finals.append(res.final)
        return (np.asarray(res.trajectory.steps), np.stack(frames, 1), np.stack(ens, 1),
                finals, cpu)

    # compile every kernel before any timing (a cold Numba cache would be charged to the first method)
    _warm_up(methods, target, starts[0], T, delta, mdl)
    if "metropolis" in methods:
        steps, frames, ens, finals, cpu = mc_run()
        out["methods"]["metropolis"] = _record("metropolis", "sweep", steps, frames, np.arange(ens.shape[0]) * every,
                                               ens, cpu, chains, n, q, {"delta": delta}, box=conf.box)
        scores["metropolis"] = _scores_of(target, theta, [f.wrapped_positions() for f in finals],
                                          [f.species for f in finals], sel_info)
    if "md" in methods:
        dt = float(cfg.get("md_dt", 0.005))
        nsteps = int(cfg.get("md_steps", 20000))
        fr_md = _log_frames(nsteps)
        frames, ens, cpu = [], [], 0.0
        for c, st in enumerate(starts):
            t0 = time.process_time()
            res = run_md(st, T=T, dt=dt, nsteps=nsteps, seed=seed + 21 + c, init_velocities=True,
                         thermo_every=max(1, nsteps // 200), traj_steps=fr_md, threads=1)
            cpu += time.process_time() - t0
            frames.append(res.trajectory.positions)
            ens.append(res.thermo.potential)
        out["methods"]["md"] = _record("md", "step", np.asarray(res.trajectory.steps), np.stack(frames, 1),
                                       np.asarray(res.thermo.step), np.stack(ens, 1), cpu, chains, n, q, {"dt": dt},
                                       box=conf.box)
    pol = None
    if "pgmc" in methods or "predict_pgmc" in methods:
        pol0 = _initial_policy(mdl, conf.species, delta / math.sqrt(3))
        pg = PGMC(target, pol0, starts, seed=seed + 31)
        t0 = time.process_time()
        pg.learn(int(cfg.get("learn_iterations", 30)), trials_per_chain=100, optimizer="natural", lr=0.1)
        train_cpu = time.process_time() - t0
        pol = pg.freeze()
        for name in ("pgmc", "predict_pgmc"):
            if name not in methods:
                continue
            if name == "pgmc":
                s = PGMC(target, pol, starts, seed=seed + 41)
            else:
                s = PredictProposePGMC(target, pol, starts, seed=seed + 41, theta_select=theta,
                                       select_fraction=1.0)  # every displacement trial; swaps as PGMC
            res = s.run(sweeps, sample_every=every, frame_sweeps=fr_sw, progress=progress)
            extra = {"train_cpu_s": train_cpu, "acceptance": res.acceptance, "sigma": pol.sigma.tolist()}
            if name == "predict_pgmc":
                extra["selection"] = s.selection_report()
            out["methods"][name] = _record(name, "sweep", res.frame_sweeps, res.frames, res.sample_sweeps,
                                           res.energies, res.info["cpu_s"], chains, n, q, extra, box=conf.box)
            scores[name] = _scores_of(target, theta, res.final_positions, res.final_species, sel_info)
    if "local_flow_uniform" in methods or "local_flow_predictor" in methods:
        reg = LocalRegion(float(cfg.get("region_half_width", 0.8)), float(cfg.get("env_radius", 2.2)),
                          int(cfg.get("max_mobile", 8)), int(cfg.get("max_env", 40)))
        # training data: Metropolis frames at T (equilibrium), regions around random centres
        mc = MonteCarlo(starts[0], T, delta=delta, seed=seed + 51)
        frames = []
        t0 = time.process_time()
        for _ in range(int(cfg.get("flow_train_frames", 60))):
            mc.sweep(int(cfg.get("flow_train_every", 20)))
            frames.append(mc.pos.copy())
        data = extract_regions(np.stack(frames), conf.species, conf.box, reg, centres_per_frame=16, seed=seed)
        flow = LocalFlow(mdl.dim, mdl.nsp, n_layers=int(cfg.get("flow_layers", 4)),
                         hidden=int(cfg.get("flow_hidden", 16)), bins=8, seed=seed)
        losses = train_local_flow(flow, data, steps=int(cfg.get("flow_train_steps", 150)), batch=128, lr=3e-3,
                                  seed=seed, progress=progress)
        flow_train_cpu = time.process_time() - t0
        lf_steps = int(cfg.get("local_flow_steps", 1500))
        fr_lf = _log_frames(lf_steps)
        LocalFlowMC(target, flow, reg, [(starts[0].wrapped_positions(), starts[0].species)], seed=0,
                    theta_select=theta).run(3, sample_every=1, frame_steps=[0, 3])  # untimed: compiles the kernels
        for name, th in (("local_flow_uniform", 0.0), ("local_flow_predictor", theta)):
            if name not in methods:
                continue
            lmc = LocalFlowMC(target, flow, reg, [(s.wrapped_positions(), s.species) for s in starts],
                              seed=seed + 61, theta_select=th)
            res = lmc.run(lf_steps, sample_every=max(1, lf_steps // 200), frame_steps=fr_lf, progress=progress)
            extra = {**res.info, "flow_train_cpu_s": flow_train_cpu, "flow_loss_first_last": [losses[0], losses[-1]],
                     "training_regions": int(data["u"].shape[0]), "energy_drift": lmc.energy_drift()}
            out["methods"][name] = _record(name, "move", res.frame_steps, res.frames, res.sample_steps,
                                           res.energies, res.cpu_s, chains, n, q, extra, box=conf.box)
            scores[name] = _scores_of(target, theta, res.final_positions, lmc.species, sel_info)
    if "flow_mcmc" in methods:
        out["methods"]["flow_mcmc"] = _flow_mcmc(model, n, T, starts, cfg, seed, q, progress)
    out["scores"] = {k: {"mean": float(np.mean(v)), "std": float(np.std(v)), "values": v} for k, v in scores.items()}
    out["score_kind"] = "predicted propensity" if sel_info else "selection log-weight"
    ref = out["methods"].get("metropolis", {})
    if "gr" in ref:
        for name, rec in out["methods"].items():
            if name != "metropolis" and "gr" in rec:
                rec["gr_vs_metropolis"] = _gr_comparison(rec, ref)
    u = out["methods"].get("local_flow_uniform", {}).get("tau_U_cpu_s", math.nan)
    p = out["methods"].get("local_flow_predictor", {}).get("tau_U_cpu_s", math.nan)
    out["ratio_tau_U_predictor_over_uniform"] = r = p / u if u and math.isfinite(u) else math.nan
    eu = out["methods"].get("local_flow_uniform", {}).get("tau_U_cpu_s_err", math.nan)
    ep = out["methods"].get("local_flow_predictor", {}).get("tau_U_cpu_s_err", math.nan)
    out["ratio_tau_U_predictor_over_uniform_err"] = abs(r) * math.hypot(ep / p, eu / u) if p and u else math.nan
    lu, lp = out["methods"].get("local_flow_uniform", {}), out["methods"].get("local_flow_predictor", {})
    if "moved_per_move" in lu and "moved_per_move" in lp:  # particles displaced per CPU s, MSD per CPU s
        mu = lu["moved_per_move"] / lu["cpu_per_step"]
        out["ratio_moved_per_cpu_s_predictor_over_uniform"] = (
            lp["moved_per_move"] / lp["cpu_per_step"] / mu if mu > 0 else math.nan)
        out["ratio_msd_per_cpu_s_predictor_over_uniform"] = (
            lp["msd_per_cpu_s"] / lu["msd_per_cpu_s"] if lu["msd_per_cpu_s"] > 0 else math.nan)
    pu = out["methods"].get("pgmc", {}).get("tau_alpha_cpu_s", math.nan)
    pp_ = out["methods"].get("predict_pgmc", {}).get("tau_alpha_cpu_s", math.nan)
    out["ratio_tau_alpha_predict_pgmc_over_pgmc"] = pp_ / pu if pu and math.isfinite(pu) else math.nan
    out["loadavg"] = list(os.getloadavg())
    return out


def _flow_mcmc(model: str, n: int, T: float, starts: list[Any], cfg: dict[str, Any], seed: int, q: float,
               progress: bool) -> dict[str, Any]:
    import torch

    from glassgen.api import shipped_flow
    from glassgen.flows.generator import BoltzmannGenerator
    from glassgen.sampling import FlowMCMC

    ck = shipped_flow(model, n)
    if not ck.is_file():
        return {"method": "flow_mcmc", "skipped": f"no shipped flow for {model} N={n}"}
    gen = BoltzmannGenerator.load(ck)
    try:
        gen.check_temperature(T)
    except Exception as exc:  # noqa: BLE001  (reported in the table, not fatal)
        return {"method": "flow_mcmc", "skipped": f"shipped flow not valid at T={T}: {exc}"}
    torch.manual_seed(seed)
    iters = int(cfg.get("flow_mcmc_iterations", 300))
    fm = FlowMCMC(gen, starts, T=T, n_chains=len(starts), local_sweeps=1, delta=0.1, seed=seed + 71)
    unwrapped = fm.pos.copy()
    prev = fm.pos.copy()
    frames, f_steps = [unwrapped.copy()], [0]
    wanted = set(_log_frames(iters).tolist())
    t0 = time.process_time()
    ens = []
    for it in range(1, iters + 1):
        r = fm.run(1, progress=False, overlap_every=0)
        d = fm.pos - prev
        d -= fm.box * np.round(d / fm.box)  # IMH jumps are not continuous: F_s counts them as min-image moves
        unwrapped += d
        prev = fm.pos.copy()
        ens.append(r.energies[0])
        if it in wanted:
            frames.append(unwrapped.copy())
            f_steps.append(it)
    cpu = time.process_time() - t0
    rec = _record("flow_mcmc", "iteration", np.array(f_steps), np.stack(frames), np.arange(1, iters + 1),
                  np.stack(ens), cpu, len(starts), n, q,
                  {"imh_acceptance": float(fm.imh_accepted.sum() / max(fm.imh_tried.sum(), 1)), "checkpoint": str(ck)},
                  box=fm.box)
    return rec


def ka2d_energy_check(T: float = 1.0, seed: int = 0, sweeps: int = 3000, chains: int = 4) -> dict[str, Any]:
    """U/N (mean, error) of KA2D N = 43 at T from Metropolis, predictor-biased PGMC and local-flow moves."""
    cfg = {"model": "ka2d", "n": 43, "T": T, "n_chains": chains, "seed": seed, "sweeps": sweeps,
           "equilibrate_sweeps": 1000, "local_flow_steps": 40 * sweeps // 10, "learn_iterations": 10,
           "methods": ["metropolis", "predict_pgmc", "local_flow_predictor"], "flow_train_steps": 80}
    r = _run_case(cfg, {}, False)["methods"]
    return {"metropolis": (r["metropolis"]["U_per_N"], r["metropolis"]["U_per_N_err"]),
            "predict_pgmc": (r["predict_pgmc"]["U_per_N"], r["predict_pgmc"]["U_per_N_err"]),
            "local_flow": (r["local_flow_predictor"]["U_per_N"], r["local_flow_predictor"]["U_per_N_err"])}


def predict_propose_experiment(*, config: PathLike, out: PathLike | None = None, quick: bool | None = None,
                               progress: bool = False, seed: int | None = None) -> dict[str, Any]:
    """Run the experiment of ``config`` (cases x methods) and write ``results.json`` + ``report.md`` + PNGs.

    Args:
        config: TOML with top-level defaults, ``[quick]`` overrides and ``[[case]]`` tables (a case's keys
            override the defaults; its optional ``[case.quick]`` table overrides them in quick mode).
        out: output folder (default: the config's ``out``).
        quick: use the ``[quick]`` overrides (default: the config's ``quick``).
        seed: if given, replaces every ``seed`` of the config (top level and cases); every chain's seed
            derives from it.
    Returns:
        The results dict (also written to ``<out>/results.json``).
    """
    cfg = _load(config)
    cases = cfg.pop("case", [])
    quick_over = cfg.pop("quick", {})
    if not isinstance(cases, list) or not all(isinstance(c, dict) for c in cases) or not isinstance(quick_over, dict):
        raise InputError(f"{config}: cases are [[case]] tables and overrides a [quick] table")
    cfg = _check_keys(cfg, f"{config}")
    q_cases = quick_over.get("cases")
    if q_cases is not None and not (isinstance(q_cases, list) and all(isinstance(i, int) for i in q_cases)):
        raise InputError(f"{config}: [quick] cases must be a list of case indices")
    quick_over = {**_check_keys({k: v for k, v in quick_over.items() if k != "cases"}, f"{config} [quick]"),
                  **({"cases": q_cases} if q_cases is not None else {})}
    for i, c in enumerate(cases):
        sub = c.get("quick", {})
        if not isinstance(sub, dict):
            raise InputError(f"{config}: case {i}: quick must be a [case.quick] table")
        cases[i] = {**_check_keys({k: v for k, v in c.items() if k != "quick"}, f"{config} case {i}"),
                    **({"quick": _check_keys(sub, f"{config} case {i} [case.quick]")} if sub else {})}
    use_quick = bool(cfg.get("quick_default", True) if quick is None else quick)
    glob = {k: v for k, v in cfg.items() if k not in ("out", "quick_default")}
    if use_quick:
        glob.update({k: v for k, v in quick_over.items() if k != "cases"})
        if "cases" in quick_over:
            cases = [c for i, c in enumerate(cases) if i in set(quick_over["cases"])]
    # a case's own [case.quick] table overrides its keys in quick mode (ignored in full mode)
    cases = [{**{k: v for k, v in c.items() if k != "quick"}, **(c.get("quick", {}) if use_quick else {})}
             for c in cases]
    if not cases:
        raise InputError(f"{config}: no [[case]] tables")
    if seed is not None:
        if seed < 0:
            raise InputError(f"--seed must be >= 0, got {seed}")
        glob["seed"] = int(seed)
        cases = [{k: v for k, v in c.items() if k != "seed"} for c in cases]
    for i, case in enumerate(cases):
        _check_case({**glob, **case}, f"{config} case {i}")
    out_dir = Path(out or cfg.get("out", "reports/predict_propose"))
    t0 = time.process_time()
    w0 = time.perf_counter()
    code = _code_stamp()
    results = {"provenance": provenance(config=str(config), quick=use_quick, code_sha256=code,
                                        seed=int(glob.get("seed", 0))),
               "loadavg_start": list(os.getloadavg()), "out_dir": str(out_dir), "cases": []}
    done = _finished_cases(out_dir / "results.json", str(config), use_quick, code)
    results["cases_reused"] = 0
    for case in cases:
        key = json.dumps({**glob, **case}, sort_keys=True, default=str)
        if key in done:  # resume: a case already computed with exactly these settings is kept
            results["cases"].append(done[key])
            results["cases_reused"] += 1
            continue
        tc, wc = time.process_time(), time.perf_counter()
        c = _run_case(case, glob, progress)
        c["cpu_s"], c["wall_s"] = time.process_time() - tc, time.perf_counter() - wc
        c["seed"] = int({**glob, **case}.get("seed", 0))  # every chain's seed derives from it
        c["computed_at"] = provenance()["time"]
        results["cases"].append(c)
        _write(out_dir, results)  # partial results survive an interruption
    results["cpu_s_total"] = time.process_time() - t0
    results["wall_s_total"] = time.perf_counter() - w0
    results["loadavg_end"] = list(os.getloadavg())
    _write(out_dir, results)
    write_report(out_dir, results)
    return results


def _finished_cases(path: Path, config: str, quick: bool, code: str) -> dict[str, dict[str, Any]]:
    """Cases of an earlier (possibly interrupted) run of the same config, mode and code (:func:`_code_stamp`),
    keyed by their settings."""
    if not path.is_file():
        return {}
    try:
        prev = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    pv = prev.get("provenance", {})
    if pv.get("config") != config or bool(pv.get("quick")) != quick or pv.get("code_sha256") != code:
        return {}
    return {json.dumps(c["config"], sort_keys=True, default=str): _restore_nan(c)
            for c in prev.get("cases", []) if "config" in c}


def _restore_nan(obj: Any, key: str = "") -> Any:
    """A case read back from ``results.json``: the nulls strict JSON wrote for NaN become NaN again (numbers
    only; ``selection_predictor`` and ``config`` keep their nulls)."""
    if key in ("selection_predictor", "config"):
        return obj
    if obj is None:
        return math.nan
    if isinstance(obj, dict):
        return {k: _restore_nan(v, k) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_restore_nan(v) for v in obj]
    return obj


def _write(out_dir: Path, results: dict[str, Any]) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    with atomic_path(out_dir / "results.json") as tmp:
        tmp.write_text(strict_json(results))  # NaN (not reached) is written as null, read back as NaN


def _fmt(v: Any, nd: int = 3) -> str:
    if isinstance(v, float):
        return "nan" if not math.isfinite(v) else f"{v:.{nd}g}"
    return str(v)


def write_report(out_dir: PathLike, results: dict[str, Any]) -> Path:
    """``report.md`` + ``fs_<case>.png`` from the results dict (atomic writes); ``<out_dir>/summary.md``, if
    present (hand-written analysis), is included after the header."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir = Path(out_dir)
    lines = ["# Predict-then-propose experiment", "",
             f"Provenance: `{results['provenance'].get('command', '')}`, glassgen "
             f"{results['provenance'].get('glassgen_version')}, {results['provenance'].get('time')}; "
             f"quick={results['provenance'].get('quick')}. Load average (1, 5, 15 min) at start "
             f"{[round(x, 2) for x in results['loadavg_start']]}, at end "
             f"{[round(x, 2) for x in results.get('loadavg_end', [math.nan] * 3)]} on a 2-core machine: CPU "
             "seconds are process time, wall time is not used.", "",
             "tau_alpha: F_s(q, t) = 1/e (all particles, origin = run start, pooled over chains); "
             "tau_U: integrated autocorrelation time of U. Both in the method's steps and in CPU seconds per "
             "chain; nan = not reached within the run (F_s at the end given instead). Errors: U/N standard error "
             "inflated by tau_U, or the spread of the chain means if larger; tau_U by Sokal's estimate (window "
             "~5 tau). MSD end: mean squared displacement "
             "over the run (chains and particles).", ""]
    summary = out_dir / "summary.md"  # hand-written analysis of these results, kept next to the report
    if summary.is_file():
        lines += [summary.read_text().rstrip(), ""]
    for c in results["cases"]:
        tag = f"{c['model']}_N{c['N']}_T{c['T']}"
        lines += [f"## {c['model']} N={c['N']} T={c['T']} ({c['chains']} chains, q={c['q']:.3g}, "
                  f"selection theta=[{', '.join(f'{v:.4g}' for v in c['theta_select'])}])", ""]
        if "loadavg" in c:  # the case's own record: reused cases were computed by an earlier run
            lines += [f"Computed {c.get('computed_at', 'by an earlier run')}"
                      + (f" in {c['cpu_s']:.0f} CPU s" if "cpu_s" in c else "")
                      + f"; load average at its end {[round(x, 2) for x in c['loadavg']]}.", ""]
        lines += [
                  "| method | unit | steps | CPU s/chain | tau_alpha (steps) | tau_alpha (CPU s) | F_s end | "
                  "MSD end | tau_U (steps) | tau_U (CPU s) | U/N | acc. |", "|" + "---|" * 12]
        for name, r in c["methods"].items():
            if "skipped" in r:
                lines.append(f"| {name} | skipped: {r['skipped']} |" + " |" * 10)
                continue
            acc = r.get("acceptance", r.get("imh_acceptance", ""))
            if isinstance(acc, dict):
                acc = ", ".join(f"{k} {v:.2f}" for k, v in acc.items() if math.isfinite(v))
            lines.append(f"| {name} | {r['unit']} | {r['steps']:.0f} | {_fmt(r['cpu_s_per_chain'])} | "
                         f"{_fmt(r['tau_alpha_steps'])} | {_fmt(r['tau_alpha_cpu_s'])} | {_fmt(r['fs_final'])} | "
                         f"{_fmt(r.get('msd_end', math.nan))} | {_fmt(r['tau_U_steps'])} | {_fmt(r['tau_U_cpu_s'])}"
                         f" +- {_fmt(r.get('tau_U_cpu_s_err', math.nan), 2)} | "
                         f"{r['U_per_N']:.4f} +- {r['U_per_N_err']:.4f} | {_fmt(acc, 2)} |")
        ref = c["methods"].get("metropolis", {})
        if "U_per_N" in ref:
            dev = [f"{k} {(r['U_per_N'] - ref['U_per_N']) / math.hypot(r['U_per_N_err'], ref['U_per_N_err']):+.1f}"
                   for k, r in c["methods"].items() if k != "metropolis" and "U_per_N" in r]
            lines += ["", "U/N minus Metropolis, in combined standard errors: " + ", ".join(dev) + "."]
        lines += ["", f"Ratio tau_U (CPU s) predictor-selected / uniform-selected local flow moves: "
                  f"**{_fmt(c['ratio_tau_U_predictor_over_uniform'])} +- "
                  f"{_fmt(c.get('ratio_tau_U_predictor_over_uniform_err', math.nan), 2)}** (target <= 0.5); "
                  f"particles displaced per CPU s, predictor / uniform: "
                  f"{_fmt(c.get('ratio_moved_per_cpu_s_predictor_over_uniform', math.nan))}, MSD per CPU s: "
                  f"{_fmt(c.get('ratio_msd_per_cpu_s_predictor_over_uniform', math.nan))}; "
                  "tau_alpha (CPU s) "
                  f"predictor-biased PGMC / PGMC: **{_fmt(c['ratio_tau_alpha_predict_pgmc_over_pgmc'])}**.", ""]
        for k in ("predict_pgmc", "local_flow_uniform", "local_flow_predictor"):
            r = c["methods"].get(k, {})
            if "selection" in r:
                lines.append(f"- {k}: selection report {r['selection']}")
            if "mean_mobile" in r:
                if "moved_per_move" in r:
                    lines.append(f"- {k}: acceptance of non-empty regions {r['acceptance_nonempty']:.3f}, particles "
                                 f"displaced per move {r['moved_per_move']:.3f}, CPU per move "
                                 f"{1e3 * r['cpu_per_step']:.2f} ms; pair energy of the chosen centre "
                                 f"{r['e_centre_selected']:.3f} (accepted moves {r['e_centre_accepted']:.3f}; "
                                 f"all particles {r['e_particle_mean']:.3f}); MSD per CPU s "
                                 f"{r['msd_per_cpu_s']:.3g}")
                lines.append(f"- {k}: acceptance {r['acceptance']:.3f}, mean mobile particles {r['mean_mobile']:.2f},"
                             f" empty regions {r['empty_fraction']:.3f}, skipped {r['skipped_fraction']:.3f}, "
                             f"flow NLL first/last {[round(x, 2) for x in r['flow_loss_first_last']]}, "
                             f"training regions {r['training_regions']}, flow training {r['flow_train_cpu_s']:.0f} "
                             "CPU s (not included above)")
        sp = c.get("selection_predictor") or {}
        if sp:
            loo = sp.get("pearson_leave_one_out_A")
            lines += ["", f"Selection by a trained propensity predictor: R ~ {sp['intercept']:.3f} + "
                      f"{sp['w'][0]:.4f} e + {sp['w'][1]:.4f} c (pair energy e, coordination c; least squares on "
                      f"{', '.join(sp['train_files'])}); training Pearson (A) {sp['pearson_train_A']:.3f}"
                      + (f", leave-one-configuration-out {np.mean(loo):.3f} +- {np.std(loo):.3f}" if loo else "")
                      + f"; selection log-weight = {sp['scale']:g} x predicted propensity / {sp['pred_std']:.3f}."]
        grs = {k: r["gr_vs_metropolis"] for k, r in c["methods"].items() if "gr_vs_metropolis" in r}
        if grs:
            k = int(c["chains"])
            nu = 2 * (k - 1)  # Welch degrees of freedom of a difference of two K-chain means (equal variances)
            null = f"{nu / (nu - 2):.2f}" if nu > 2 else "infinite"
            lines += ["", "Total g(r) against Metropolis (per-chain g(r) from the second half of the frames, errors "
                      f"from the spread over the {k} chains, so for identical distributions z is ~ Student t with "
                      f"{nu} degrees of freedom and chi2/bin ~ {null}, not 1): " + "; ".join(
                          f"{k} chi2/bin {v['chi2_per_bin']:.2f}, max |z| {v['max_abs_z']:.1f}" for k, v in grs.items())
                      + f" ({next(iter(grs.values()))['bins']} bins)."]
        if c.get("scores"):
            kind = c.get("score_kind", "selection log-weight")
            lines += ["", f"Scores ({kind}) of the final configurations (mean +- std over particles and chains): "
                      + "; ".join(f"{k} {v['mean']:.3f} +- {v['std']:.3f}" for k, v in c["scores"].items())]
        fig, ax = plt.subplots(1, 3, figsize=(15, 3.8))
        for name, r in c["methods"].items():
            if "fs_curve" not in r:
                continue
            lag, fs = np.asarray(r["fs_curve"][0]), np.asarray(r["fs_curve"][1])
            ok = lag > 0
            ax[0].semilogx(lag[ok] * r["cpu_per_step"], fs[ok], "o-", ms=3, label=name)
        ax[0].axhline(math.exp(-1), color="k", lw=0.5)
        ax[0].set(xlabel="CPU seconds per chain", ylabel="F_s(q, t)", title=tag)
        ax[0].legend(fontsize=7)
        for k, v in c.get("scores", {}).items():
            ax[1].hist(v["values"], bins=40, histtype="step", density=True, label=k)
        ax[1].set(xlabel=c.get("score_kind", "selection log-weight"), ylabel="density",
                  title="scores of sampled configurations")
        if c.get("scores"):
            ax[1].legend(fontsize=7)
        for name, r in c["methods"].items():
            if "gr" in r:
                ax[2].errorbar(r["gr"]["r"], r["gr"]["g"], yerr=r["gr"]["err"], lw=0.8, capsize=0, label=name)
        ax[2].set(xlabel="r", ylabel="g(r) (total)", title="pair correlation")
        ax[2].legend(fontsize=7)
        fig.tight_layout()
        with atomic_path(out_dir / f"fs_{tag}.png") as tmp:
            fig.savefig(tmp, format="png", dpi=110, metadata=png_metadata(
                {**results["provenance"], "model": c["model"], "N": c["N"], "T": c["T"],
                 "seed": c.get("seed", results["provenance"].get("seed"))}))
        plt.close(fig)
        lines += ["", f"![F_s, scores and g(r)](fs_{tag}.png)", ""]
    trained = [c for c in results["cases"] if c.get("score_kind") == "predicted propensity" and c.get("scores")]
    if trained:  # the predictor's view of the sampled configurations, case by case (temperature)
        lines += ["## Predicted propensity of the sampled configurations vs temperature", "",
                  "| model | N | T | " + " | ".join(METHODS) + " |", "|" + "---|" * (3 + len(METHODS))]
        for c in trained:
            lines.append(f"| {c['model']} | {c['N']} | {c['T']} | " + " | ".join(
                f"{c['scores'][m]['mean']:.3f} +- {c['scores'][m]['std']:.3f}" if m in c["scores"] else "-"
                for m in METHODS) + " |")
        lines.append("")
    reused = results.get("cases_reused", 0)
    lines += [f"Total: {results.get('cpu_s_total', math.nan):.0f} CPU s, {results.get('wall_s_total', math.nan):.0f}"
              f" s wall for the {len(results['cases']) - reused} case(s) computed in this run"
              + (f"; {reused} case(s) reused from an earlier run of the same code (their own CPU seconds are in "
                 "their tables)." if reused else "."), ""]
    path = out_dir / "report.md"
    with atomic_path(path) as tmp:
        tmp.write_text("\n".join(lines))
    return path
