"""User-level PGMC jobs: train a policy (burn-in learning), run exact production chains, sample.

Every job validates its inputs (:class:`~glassgen.errors.InputError` on bad input), writes atomically
with provenance (command, glassgen version, seed, model, T), and :func:`pgmc_run` checkpoints next to its
output (``<out>.ckpt.h5``) and resumes from that checkpoint when the same command is repeated.
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

from glassgen.dynamics.schedule import DeferredInterrupt
from glassgen.errors import InputError
from glassgen.observables.dynamics import default_q
from glassgen.observables.thermo import drift_z, warn_if_drifting
from glassgen.provenance import atomic_path, check_output_name, provenance
from glassgen.sampling.pgmc import OPTIMIZERS, PGMC, PGMCResult, PGMCTarget
from glassgen.sampling.policies import Policy, default_local_fraction
from glassgen.systems.configuration import Configuration
from glassgen.systems.io import h5_write_attrs, write_configuration_group
from glassgen.systems.model import default_swap_pairs

__all__ = ["pgmc_train", "pgmc_run", "pgmc_sample", "default_swap_pairs", "default_q", "chain_starts"]

PathLike = str | os.PathLike[str]


def _positive(name: str, v: Any) -> None:
    if v is None or not (isinstance(v, (int, float)) and math.isfinite(v) and v > 0):
        raise InputError(f"{name} must be positive, got {name}={v}")


def _used(per_kind: dict[str, float], pol: Policy) -> dict[str, float]:
    """The entries of a per-move-kind dict (gauss, local, swap) for the kinds the policy makes."""
    return {k: per_kind[k] for k, p in zip(("gauss", "local", "swap"), pol.move_probs, strict=True) if p > 0}


def chain_starts(conf: Configuration | list[Configuration], n_chains: int, T: float, seed: int,
                 equilibrate_sweeps: int = 0, policy: Policy | None = None, checkpoint: PathLike | None = None,
                 checkpoint_every: int = 1000, progress: bool = False) -> list[Configuration]:
    """``n_chains`` starting configurations: ``conf`` (or one configuration per chain) decorrelated by
    independent Metropolis-like PGMC sweeps (``equilibrate_sweeps`` each, Gaussian sigma 0.1 or the given
    policy). With ``checkpoint`` the equilibration is a checkpointed run (every ``checkpoint_every`` sweeps and
    at a Ctrl-C) that resumes from that file, bit for bit; the caller deletes it once its own output is
    written."""
    confs = list(conf) if isinstance(conf, (list, tuple)) else [conf] * n_chains
    if len(confs) != n_chains:
        raise InputError(f"{len(confs)} starting configurations for {n_chains} chains")
    if equilibrate_sweeps <= 0:
        return confs
    m = confs[0].require_model()
    pol = policy or Policy.default(m.nsp, m.dim, sigma=0.1)
    pg = PGMC(PGMCTarget.from_model(m, confs[0].box, T), pol, confs, seed=seed + 7919)
    if checkpoint is None:
        pg.sweep(equilibrate_sweeps)
    else:
        pg.run(equilibrate_sweeps, sample_every=equilibrate_sweeps, progress=progress, checkpoint=checkpoint,
               checkpoint_every=checkpoint_every)
    return [confs[0].replace(positions=c.pos.copy(), species=c.species.copy(), velocities=None) for c in pg.chains]


def pgmc_train(*, T: float, out: PathLike, input: PathLike | None = None, model: str | None = None,
               n: int | None = None, density: float | None = None, seed: int = 0, n_chains: int = 8,
               equilibrate_sweeps: int = 200, iterations: int = 200, trials_per_chain: int = 100,
               sweeps_between: int = 1, optimizer: str = "natural", lr: float = 0.1, sigma: float = 0.1,
               local_fraction: float | None = None, swap_fraction: float | None = None,
               swap_pairs: list[list[int]] | None = None, biased: bool = False, hidden: int = 8,
               flip: float = 0.0, progress: bool = False) -> dict[str, Any]:
    """Learn a PGMC policy during burn-in and save it (one JSON file, ``out``); the learning state is
    checkpointed to ``<out>.ckpt.h5`` and resumed from there when the same call is repeated.

    The chains start from ``input`` (or a random state of ``n`` particles of ``model``), are equilibrated
    for ``equilibrate_sweeps`` sweeps, then ``iterations`` learning steps follow (each: ``sweeps_between``
    sweeps, ``trials_per_chain`` trial proposals per chain, one ``optimizer`` step). ``local_fraction`` (the
    share of environment-aware displacements) defaults to the measured best,
    :func:`glassgen.sampling.policies.default_local_fraction` (1.0 in 3D; 0.8 for 2D systems of <= 100
    particles, else 0.3), at most 1 - ``swap_fraction``; ``swap_fraction`` to 0.2 where the model has swap
    pairs. Swap selection is uniform unless ``biased``: the (energy, coordination) bias alone raises swap
    acceptance but not mixing, and tracking its features makes a KA2D sweep several times dearer (docs/pgmc.md).
    ``flip`` (biased only) starts the single-flip selection coefficients at phi = -flip / T: 0.5 weights swap
    partners by exp(-dE / 2T), dE the energy change of flipping each particle alone (locally balanced selection), which
    raises the swap acceptance ~30x and is the fastest policy in sweeps (README, PGMC; docs/pgmc.md).

    Returns:
        Summary: learned widths, acceptances and J estimates at the end, wall time, output path.
    """
    from glassgen.api import load_input

    check_output_name(out, "JSON")
    _positive("T", T)
    if optimizer not in OPTIMIZERS:
        raise InputError(f"unknown optimizer {optimizer!r} (choose from {', '.join(OPTIMIZERS)})")
    for name, v in (("n_chains", n_chains), ("iterations", iterations), ("trials_per_chain", trials_per_chain)):
        if not (isinstance(v, int) and v >= 1):
            raise InputError(f"{name} must be a positive integer, got {v}")
    _positive("lr", lr)
    _positive("sigma", sigma)
    if not (isinstance(flip, (int, float)) and math.isfinite(flip)):
        raise InputError(f"flip must be a finite number, got {flip}")
    if flip and not biased:
        raise InputError("flip needs biased swap selection (--biased)")
    conf = load_input(input, model, n, None, density, seed, check_overlap=True)
    m = conf.require_model()
    pairs = [tuple(p) for p in swap_pairs] if swap_pairs is not None else default_swap_pairs(m.name)
    if swap_fraction is None:
        swap_fraction = 0.2 if pairs else 0.0
    if local_fraction is None:  # the measured best, leaving room for the swaps
        local_fraction = min(default_local_fraction(m.dim, conf.n), max(0.0, 1.0 - swap_fraction))
    if swap_fraction > 0 and not pairs:
        raise InputError(f"model {m.name} has no species pairs to swap; set swap_pairs or swap_fraction = 0")
    counts = np.bincount(conf.species, minlength=m.nsp)
    pol = Policy.default(m.nsp, m.dim, sigma=sigma, local_fraction=local_fraction, swap_fraction=swap_fraction,
                         swap_pairs=pairs or None, biased=biased, hidden=hidden, seed=seed, counts=counts,
                         phi=-float(flip) / T)
    t0 = time.perf_counter()
    ck = Path(str(out) + ".ckpt.h5")  # learning resumes from here when the same command is repeated
    eq_ck = Path(str(out) + ".eq.ckpt.h5")  # and the equilibration before it
    resumed = ck.is_file() or eq_ck.is_file()
    with DeferredInterrupt():  # one Ctrl-C scope over equilibration and learning
        starts = chain_starts(conf, n_chains, T, seed, 0 if ck.is_file() else equilibrate_sweeps, policy=pol,
                              checkpoint=eq_ck, progress=progress)  # with the initial policy
        pg = PGMC(PGMCTarget.from_model(m, conf.box, T), pol, starts, seed=seed)
        hist = pg.learn(iterations, trials_per_chain=trials_per_chain, sweeps_between=sweeps_between,
                        optimizer=optimizer, lr=lr, progress=progress, checkpoint=ck)
    learned = pg.freeze()
    tail = hist[-max(1, len(hist) // 10):]
    summary: dict[str, Any] = {"model": m.name, "N": conf.n, "T": T, "optimizer": optimizer,
                               "iterations": iterations, "move_probs": learned.move_probs.tolist(),
                               "biased_swaps": learned.biased}
    if learned.move_probs[0] > 0:  # the Gaussian widths, where Gaussian moves are made
        summary["sigma_learned"] = learned.sigma.tolist()
    if learned.move_probs[2] > 0 and learned.biased:
        summary.update({"theta": learned.theta.tolist(), "phi": learned.phi.tolist()})
    for key in tail[0]:
        if key.startswith(("J_", "acc_")):
            summary[f"{key}_last10pct"] = float(np.nanmean([h.get(key, math.nan) for h in tail]))
    summary["wall_s"] = time.perf_counter() - t0
    summary["resumed"] = resumed
    learned.meta.update({"model": m.name, "N": conf.n, "T": T, "box": conf.box.tolist(),
                         "training": {k: v for k, v in summary.items() if k not in ("theta", "phi")},
                         "history_tail": tail})
    learned.save(out, seed=seed, model=m.name, T=T, N=conf.n)
    ck.unlink(missing_ok=True)
    eq_ck.unlink(missing_ok=True)
    summary["out"] = str(out)
    return summary


def _frame_sweeps(sweeps: int, traj: str, per_decade: int) -> np.ndarray | None:
    from glassgen.observables.schedule import log_spaced_steps

    if traj == "none":
        return None
    if traj == "log":
        return log_spaced_steps(sweeps, per_decade)
    if traj.startswith("linear"):
        every = max(1, sweeps // 100)
        return np.arange(0, sweeps + 1, every)
    if traj.startswith("every:") and traj[6:].isdigit() and int(traj[6:]) >= 1:  # the states of glassgen sample
        return np.arange(0, sweeps + 1, int(traj[6:]))
    raise InputError(f"traj must be log, linear or none, got {traj!r}")


def _u_summary(res: PGMCResult, n: int) -> tuple[float, float]:
    from glassgen.observables.thermo import mean_and_error_of_parallel_chains

    u = res.energies[res.energies.shape[0] // 5:] / n  # first 20 % discarded
    if u.shape[0] < 4:
        return math.nan, math.nan
    return mean_and_error_of_parallel_chains(u)  # pooled tau_int; at least the spread of the chain means


def pgmc_run(*, policy: PathLike, out: PathLike, sweeps: int, T: float | None = None, input: PathLike | None = None,
             model: str | None = None, n: int | None = None, density: float | None = None, seed: int = 0,
             n_chains: int = 4, equilibrate_sweeps: int = 0, sample_every: int = 10, traj: str = "log",
             frames_per_decade: int = 10, q: float | None = None, checkpoint_every: int = 1000,
             progress: bool = False, starts: list[Configuration] | None = None) -> dict[str, Any]:
    """Production PGMC with a frozen policy: an exact Markov chain per chain; trajectory in HDF5.

    ``T`` defaults to the temperature the policy was trained at (any T is exact; the policy is only
    tuned for its own). Writes ``out`` (HDF5) with provenance attributes, ``/energies`` (S, chains),
    ``/sample_sweeps``, ``/trajectory/{sweeps, positions (F, chains, N, d) unwrapped, species}``,
    ``/final/{positions, species}``, ``/box`` and the policy (JSON attribute ``policy``). A checkpoint
    ``<out>.ckpt.h5`` is written every ``checkpoint_every`` sweeps and resumed if present; it is removed
    when the run completes. ``starts`` (one configuration per chain, e.g. equilibrium samples of a nearby
    temperature) replaces ``input``/``model``/``n`` as the chains' starting states.

    Returns:
        Summary: U/N (mean, error), acceptance per move kind, tau_alpha (sweeps and CPU seconds) from
        F_s(q) of all particles if it decays below 1/e, cpu seconds, output path.
    """
    from glassgen.api import load_input

    check_output_name(out, "HDF5")
    pol = Policy.load(policy)
    if T is None and pol.meta.get("T") is None:
        raise InputError(f"policy {policy} records no temperature; pass --T")
    T = float(T if T is not None else pol.meta["T"])
    _positive("T", T)
    if not (isinstance(sweeps, int) and sweeps >= 1):
        raise InputError(f"sweeps must be a positive integer, got {sweeps}")
    if not (isinstance(n_chains, int) and n_chains >= 1):
        raise InputError(f"n_chains must be a positive integer, got {n_chains}")
    if q is not None and not (isinstance(q, (int, float)) and math.isfinite(q) and q > 0):
        raise InputError(f"q must be positive, got {q}")  # checked before the run, not after it
    if model is None and input is None:
        model = pol.meta.get("model")
    if n is None and input is None:
        n = pol.meta.get("N")
    if density is None and input is None and not starts:
        density = _policy_density(pol, model, n)
    conf = starts[0] if starts else load_input(input, model, n, None, density, seed, check_overlap=True)
    m = conf.require_model()
    if (m.nsp, m.dim) != (pol.nsp, pol.dim):
        raise InputError(f"policy {policy} is for {pol.nsp} species in {pol.dim}D, model {m.name} has "
                         f"{m.nsp} species in {m.dim}D")
    if isinstance(sample_every, int) and sample_every >= 1 and sweeps < 2 * sample_every:
        raise InputError(f"--sweeps {sweeps} with --sample-every {sample_every} stores fewer than 2 energies per "
                         "chain: nothing to average (raise --sweeps or lower --sample-every)")
    ck = Path(str(out) + ".ckpt.h5")
    eq_ck = Path(str(out) + ".eq.ckpt.h5")
    resumed = ck.is_file() or eq_ck.is_file()
    fr = _frame_sweeps(sweeps, traj, frames_per_decade)
    t0 = time.perf_counter()
    with DeferredInterrupt():  # one Ctrl-C scope over equilibration and production
        # equilibrate with the frozen policy itself: any exact kernel will do, and this one relaxes fastest
        starts = chain_starts(starts or conf, n_chains, T, seed, 0 if ck.is_file() else equilibrate_sweeps,
                              policy=pol, checkpoint=eq_ck, checkpoint_every=checkpoint_every, progress=progress)
        pg = PGMC(PGMCTarget.from_model(m, conf.box, T), pol, starts, seed=seed)
        res = pg.run(sweeps, sample_every=sample_every, frame_sweeps=fr, progress=progress, checkpoint=ck,
                     checkpoint_every=checkpoint_every)
    q = default_q(m.dim) if q is None else float(q)
    summary: dict[str, Any] = {"model": m.name, "N": conf.n, "T": T, "chains": n_chains, "sweeps": sweeps,
                               "resumed": resumed, "acceptance": _used(res.acceptance, pol),
                               "feature_updates": res.info["feature_updates"]}
    if pol.move_probs[0] > 0:
        summary["sigma"] = pol.sigma.tolist()
    summary["U_per_N"] = _u_summary(res, conf.n)
    summary["U_per_N_drift_z"] = drift_z(res.energies[res.energies.shape[0] // 5:] / conf.n)
    warn_if_drifting(summary["U_per_N_drift_z"])
    if res.frames is not None and res.frames.shape[0] >= 2:
        from glassgen.observables.dynamics import tau_alpha

        lag, fs = res.fs(q)
        tau = float(tau_alpha(lag, fs)) if lag.size > 1 else math.nan
        summary["q"] = q
        summary["tau_alpha_sweeps"] = tau
        summary["tau_alpha_cpu_s"] = tau * res.info["cpu_s"] / max(1, res.info["sweeps"]) if math.isfinite(tau) \
            else math.nan
        summary["fs_final"] = float(fs[-1])
        if not math.isfinite(tau):
            summary["tau_alpha_note"] = (f"not reached: F_s = {float(fs[-1]):.2f} > 1/e after {int(lag[-1])} sweeps "
                                         "(run longer)")
    summary["cpu_s"] = res.info["cpu_s"]
    summary["wall_s"] = time.perf_counter() - t0
    prov = provenance(seed=seed, model=m.name, T=T, N=conf.n, method="pgmc", policy=str(policy),
                      policy_provenance=pol.meta.get("provenance"))
    with atomic_path(out) as tmp, h5py.File(tmp, "w") as f:
        h5_write_attrs(f, prov)
        f.attrs["policy"] = json.dumps(pol.to_dict(), default=float)
        f.attrs["summary"] = json.dumps(summary, default=float)
        f.create_dataset("energies", data=res.energies)
        f.create_dataset("sample_sweeps", data=res.sample_sweeps)
        f.create_dataset("box", data=conf.box)
        f.create_dataset("final/positions", data=res.final_positions)
        f.create_dataset("final/species", data=res.final_species)
        # chain 0's final state as the configuration every command reads with --input
        write_configuration_group(f.create_group("configuration"), conf.replace(
            positions=res.final_positions[0], species=res.final_species[0], velocities=None))
        if res.frames is not None:
            g = f.create_group("trajectory")
            g.attrs["unwrapped"] = True
            g.create_dataset("sweeps", data=res.frame_sweeps)
            g.create_dataset("positions", data=res.frames, compression="gzip")
            g.create_dataset("species", data=res.frame_species, compression="gzip")
    ck.unlink(missing_ok=True)
    eq_ck.unlink(missing_ok=True)
    summary["out"] = str(out)
    return summary


def _policy_density(pol: Policy, model: str | None, n: int | None) -> float | None:
    """The density of the system a policy was learned on, where a run on that system (same model and N) would
    otherwise take the model's default density and it differs from it; else None (the default)."""
    from glassgen.systems.model import load_model

    box, m_pol, n_pol = pol.meta.get("box"), pol.meta.get("model"), pol.meta.get("N")
    if box is None or m_pol is None or n_pol is None or model is None or n is None:
        return None
    try:
        same = load_model(model).name == m_pol and int(n) == int(n_pol)
        rho = float(n_pol) / float(np.prod(np.asarray(box, dtype=np.float64)))
        default = load_model(m_pol).density
    except (InputError, TypeError, ValueError):
        return None
    return rho if same and math.isfinite(rho) and rho > 0 and abs(rho - default) > 1e-9 * default else None


def pgmc_sample(*, T: float, model: str | None = None, n: int | None = None, n_samples: int = 2000,
                seed: int = 0, out: PathLike = "sample.h5", policy: PathLike | None = None, n_chains: int = 8,
                sweeps_per_sample: int = 10, train_iterations: int = 100, progress: bool = False) -> dict[str, Any]:
    """``glassgen sample --method pgmc``: exact samples at T from PGMC chains.

    Uses the policy file ``policy`` if given; otherwise first learns one on the fly (``train_iterations``
    learning steps at T during burn-in, saved next to ``out`` as ``<out>.policy.json``). The chains start
    from the shipped generator's equilibrium pool nearest T from above where (model, N) has one
    (:func:`generator_pool_starts`), else from a random state, and are equilibrated at T for max(2000,
    production) sweeps with the frozen policy. Then
    ``n_chains`` frozen-policy chains run ``ceil(n_samples / n_chains) * sweeps_per_sample`` sweeps, storing a
    state every ``sweeps_per_sample`` sweeps (``n_samples`` states rounded up to a multiple of ``n_chains``,
    at least 8 per chain; the first 20 % of each chain excluded from the U/N estimate and from g(r)). Output:
    :func:`pgmc_run`'s HDF5 file, the states in ``trajectory/positions`` (F, chains, N, d; unwrapped, with
    their ``trajectory/species``, which swaps change; before 2026-12-06 only their energies were kept).
    """
    from glassgen.systems.model import load_model

    _positive("T", T)
    if not (isinstance(n_samples, int) and n_samples >= 1):
        raise InputError(f"n_samples must be a positive integer, got {n_samples}")
    policy_density = None
    if policy is not None:  # the policy's system unless told otherwise (as pgmc run --policy)
        pol = Policy.load(policy)
        model = model or pol.meta.get("model")
        n = n if n is not None else pol.meta.get("N")
        policy_density = _policy_density(pol, model, n)
    model = model or "ka3d"
    if n is not None and n < 2:
        raise InputError(f"N must be at least 2, got {n}")
    n = int(n if n is not None else 64)  # as the generator methods of glassgen sample (api.DEFAULT_FLOW)
    summary: dict[str, Any] = {}
    if policy is None:
        policy = Path(str(out) + ".policy.json")
        tr = pgmc_train(T=T, out=policy, model=load_model(model).name, n=n, seed=seed, n_chains=n_chains,
                        iterations=train_iterations, trials_per_chain=50, progress=progress)
        summary["trained_policy"] = {"out": tr["out"], "wall_s": tr["wall_s"]}
    per_chain = max(8, math.ceil(n_samples / n_chains))  # fewer give no U/N error after the 20 % burn-in
    sweeps = per_chain * sweeps_per_sample
    # the shipped pools are at the model's density: not for a policy learned at another one
    pool = None if policy_density is not None else generator_pool_starts(load_model(model).name, n, T, n_chains, seed)
    if pool is not None:
        summary["chain_starts"] = f"shipped generator pool at T_h = {pool[1]:g}"
    else:
        summary["chain_starts"] = "random state"
    res = pgmc_run(policy=policy, out=out, sweeps=sweeps, T=T, model=model, n=n, seed=seed, n_chains=n_chains,
                   equilibrate_sweeps=max(2000, sweeps), sample_every=sweeps_per_sample,
                   traj=f"every:{sweeps_per_sample}", progress=progress, starts=None if pool is None else pool[0])
    png = _plot_pgmc_sample(Path(out), T, seed)
    return {**summary, **res, "method": "pgmc", "n_samples": per_chain * n_chains, "plot": str(png)}


def generator_pool_starts(model: str, n: int, T: float, n_chains: int,
                          seed: int = 0) -> tuple[list[Configuration], float] | None:
    """Starting states for PGMC chains at T from the shipped generator of (model, N), if there is one with
    Boltzmann-prior pools: ``n_chains`` equilibrium configurations of the pool nearest T from above (the
    hottest pool if T is above every pool), evenly spaced through it (its MD or MC chains are stored one
    after another), with the pinned particle at the origin. None without a shipped generator.

    Returns:
        (configurations, the pool's temperature T_h).
    """
    import torch

    from glassgen.api import load_input, shipped_flow
    from glassgen.flows.base import BoltzmannPriorBase
    from glassgen.flows.generator import BoltzmannGenerator
    from glassgen.flows.model import to_full

    ck = shipped_flow(model, n)
    if not ck.is_file():
        return None
    gen = BoltzmannGenerator.load(ck)
    base = gen.flow.q0
    if not isinstance(base, BoltzmannPriorBase):
        return None
    above = [t for t in base.T_priors if t >= T]
    t_h = min(above) if above else max(base.T_priors)
    pool = base.pools[base.T_priors.index(t_h)]
    idx = np.linspace(0, pool.shape[0] - 1, n_chains).round().astype(np.int64)
    x = to_full(pool[idx], torch.zeros(n_chains, gen.system.dim, dtype=torch.float64), gen.box).numpy()
    ref = load_input(None, model, n, None, None, seed, check_overlap=False)  # model, box and the Configuration type
    if not np.allclose(ref.box, gen.system.box_array()):
        return None
    species = gen.system.species_array()
    return [ref.replace(positions=x[k], species=species, velocities=None) for k in range(n_chains)], t_h


def _plot_pgmc_sample(out: Path, T: float, seed: int, rdf_bins: int = 60) -> Path:
    """The ``glassgen sample`` PNG of a PGMC run file: U/N histogram (after the 20 % burn-in) and g(r) of the
    chains' final states, next to ``out``."""
    from glassgen.api import _per_sample_rdf
    from glassgen.observables.plots import plot_sample_summary

    with h5py.File(out, "r") as f:
        e = f["energies"][()]
        if "trajectory" in f:  # the sampled states after the 20 % burn-in, every chain
            fr = f["trajectory/positions"][()]
            pos, spec = fr[fr.shape[0] // 5:].reshape(-1, *fr.shape[2:]), f["trajectory/species"][0, 0]
            label = f"PGMC samples ({pos.shape[0]} states)"
        else:
            pos, spec = f["final/positions"][()], f["final/species"][0]
            label = f"PGMC final states ({pos.shape[0]} chains)"
        box = f["box"][()]
        model = str(f.attrs.get("model", ""))
    n = pos.shape[1]
    r, g = _per_sample_rdf(pos - box * np.floor(pos / box), spec, box, rdf_bins)  # total g(r): labels do not enter
    png = out.with_suffix(".png")
    plot_sample_summary(png, energies={"PGMC chains": (e[e.shape[0] // 5:].ravel() / n, None)}, r=r,
                        g={label: (g.mean(axis=0), None)},
                        title=f"{model} N={n} T={T} (pgmc)",
                        **provenance(seed=seed, model=model, T=T, N=n, method="pgmc"))
    return png
