"""Boltzmann generators against MD and local Metropolis MC, per effectively independent sample.

For each system and temperature, in one run on the same machine:

* flow IS: ``--is-samples`` flow samples, exact energies, Kish ESS/n; CPU s per effective sample =
  wall time / ESS. For a flow on a ladder of Boltzmann priors (pools of MD configurations at T_h > T)
  the row also reports ``identity_ess_fraction``: the ESS/n of the same pool reweighted from T_h to T
  without any flow (log w = -U/T + U/T_h), i.e. what the trained map adds over plain temperature
  reweighting, and ``pool_route_s_per_indep`` = MD CPU s per independent sample at T_h (the MD row of
  T_h in this run) / ESS_fraction + the IS cost: what an independent sample at T costs when the pool's
  MD is paid for. ``speedup_pool_route_vs_md`` compares it with MD at T;
* flow-MCMC: ``--chains`` independence-MH chains with one local MC sweep per iteration; IMH
  acceptance; tau = max(tau_U, tau_Q) in iterations (integrated autocorrelation times of U and of
  the self-overlap, a = 0.3); CPU s per independent sample = wall / (iterations * chains) * tau;
* local MC: the same code path without proposals (one sweep per iteration);
* MD: NVT (Nose-Hoover chain, dt = 0.005), U and positions every ``--md-every`` steps, same tau
  definition (in samples).

A tau whose Sokal window was not reached within the run is a lower bound (marked ``>=``); the cost
per independent sample is then a lower bound too. Flows are taken from ``runs/<model>_n<N>.pt`` or
the package's shipped checkpoints; a system without a trained flow reports the baselines only.
Reference U/N at each state point comes from the local-MC chain (error from tau).

Run: ``.venv/bin/python benchmarks/flows.py`` (all systems) or ``--systems ka3d:32``.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import numba
import numpy as np
import torch
from _common import RESULTS, save, table

from glassgen.api import shipped_flow
from glassgen.config import repo_root
from glassgen.dynamics.initial import random_state
from glassgen.dynamics.mc import MonteCarlo
from glassgen.dynamics.md import MDSimulation
from glassgen.flows.base import BoltzmannPriorBase
from glassgen.flows.generator import BoltzmannGenerator
from glassgen.flows.weights import kish_ess_fraction, reweighted_mean
from glassgen.observables.overlap import overlap_correlation
from glassgen.observables.thermo import integrated_autocorrelation_time, mean_and_error
from glassgen.sampling import FlowMCMC

GRID = {("ka3d", 32): (0.6, 0.5, 0.45, 0.4), ("ka3d", 64): (0.6, 0.5, 0.45, 0.4),
        ("ka3d", 128): (0.6, 0.5, 0.45, 0.4), ("ka2d", 43): (0.5, 0.4, 0.3)}


def find_flow(model: str, n: int) -> Path | None:
    for p in (repo_root() / "runs" / f"{model}_n{n}.pt", shipped_flow(model, n)):
        if p.is_file():
            return p
    return None


def equilibrated(model: str, n: int, T: float, sweeps: int, seed: int) -> MonteCarlo:
    mc = MonteCarlo(random_state(model, n, T=T, seed=seed), T=T, delta=0.1, seed=seed)
    mc.tune_delta(0.4, sweeps=max(1, sweeps // 40), rounds=10)
    mc.sweep(sweeps)
    return mc


def tau_of(u: np.ndarray, frames: np.ndarray, box: np.ndarray) -> tuple[float, float, bool]:
    """(tau_U, tau_Q, converged) in sample units; u (n, chains), frames (n, chains, N, d)."""
    from glassgen.sampling.flow_mcmc import pooled_autocorrelation_time

    tu = pooled_autocorrelation_time(u) if u.ndim == 2 else integrated_autocorrelation_time(u)
    ov = overlap_correlation(frames, box)
    conv_u = tu < u.shape[0] / 10
    return float(tu), float(ov.tau), bool(ov.converged and conv_u)


RDF_BINS = 30


def rdf_series(frames: np.ndarray, mc: MonteCarlo) -> np.ndarray:
    """(n, RDF_BINS) total g(r) of every frame, r up to L/2."""
    from glassgen.api import _per_sample_rdf

    return _per_sample_rdf(frames, mc.species, mc.box, RDF_BINS)[1]


def rdf_agreement(g_a: np.ndarray, e_a: np.ndarray, g_b: np.ndarray, e_b: np.ndarray) -> dict:
    """Largest |g_a - g_b| / sqrt(e_a^2 + e_b^2) over bins where g > 0.05, and the share of bins within 2."""
    ok = (np.maximum(g_a, g_b) > 0.05) & (np.hypot(e_a, e_b) > 0)
    z = np.abs(g_a - g_b)[ok] / np.hypot(e_a, e_b)[ok]
    return {"rdf_max_z": float(z.max()), "rdf_within_2sigma": float(np.mean(z < 2.0))}


def run_md(mc: MonteCarlo, T: float, steps: int, every: int,
           energies: list | None = None) -> tuple[dict, np.ndarray, np.ndarray]:
    """MD row entries, and the MD g(r) (bins,) with its error (correlated frames: block errors).
    ``energies``, if given, receives the sampled potential energies (n,)."""
    sim = MDSimulation(mc.configuration(), T=T, dt=0.005, thermostat="nhc", seed=1, threads=1,
                       init_velocities=True)
    sim.step(steps // 5)  # MD equilibration from the MC state (local MC of small cold systems can be stuck)
    n_s = steps // every
    u, frames = np.empty(n_s), np.empty((n_s, mc.n, mc.dim))
    t0 = time.perf_counter()
    for k in range(n_s):
        sim.step(every)
        u[k] = sim.potential
        frames[k] = sim.positions
    wall = time.perf_counter() - t0
    if energies is not None:
        energies.append(u)
    tu, tq, conv = tau_of(u, frames, mc.box)
    tau = max(tu, tq)
    g = rdf_series(frames[:: max(1, n_s // 1000)], mc)
    g_err = np.array([mean_and_error(g[:, b])[1] for b in range(RDF_BINS)])
    return ({"md_tau_U_steps": tu * every, "md_tau_Q_steps": tq * every, "md_converged": conv,
             "md_s_per_indep": wall / n_s * tau, "md_U_per_N": float(u.mean() / mc.n),
             "md_U_per_N_err": float(mean_and_error(u / mc.n)[1])}, g.mean(axis=0), g_err)


def run_chains(proposal, mc: MonteCarlo, T: float, chains: int, iters: int, seed: int) -> tuple[dict, float]:
    starts = [mc.configuration()] * chains
    sampler = FlowMCMC(proposal, starts, T, chains, local_sweeps=1, delta=float(mc.delta[0]), seed=seed)
    sampler.run(max(2, iters // 10), progress=False)  # burn-in
    t0 = time.perf_counter()
    res = sampler.run(iters, progress=False, store_every=1)
    wall = time.perf_counter() - t0
    tu, tq, conv = tau_of(res.energies, res.frames, mc.box)
    tau = max(tu, tq)
    return {"tau_U": tu, "tau_Q": tq, "converged": conv, "s_per_indep": wall / (iters * chains) * tau,
            "imh_acceptance": res.imh_acceptance, "energies": res.energies}, wall


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--systems", default="all", help="comma list model:N (default all of the grid)")
    ap.add_argument("--is-samples", type=int, default=4000)
    ap.add_argument("--chains", type=int, default=8)
    ap.add_argument("--iterations", type=int, default=400, help="flow-MCMC / local-MC iterations per chain")
    ap.add_argument("--md-steps", type=int, default=400_000)
    ap.add_argument("--md-every", type=int, default=100)
    ap.add_argument("--equilibration", type=int, default=4000, help="MC sweeps before sampling")
    args = ap.parse_args()
    numba.set_num_threads(1)
    torch.set_num_threads(1)
    systems = list(GRID) if args.systems == "all" else [
        (s.split(":")[0], int(s.split(":")[1])) for s in args.systems.split(",")]
    rows = []
    md_cost: dict[tuple[str, int, float], float] = {}
    for model, n in systems:
        ck = find_flow(model, n)
        gen = BoltzmannGenerator.load(ck) if ck else None
        if gen is not None:
            gen.allow_extrapolation = True
        for T in GRID.get((model, n), (0.5,)):
            row: dict = {"model": model, "N": n, "T": T, "flow": str(ck.name) if ck else None}
            mc = equilibrated(model, n, T, args.equilibration, seed=7)
            # local MC (reference U/N, baseline)
            loc, _ = run_chains(None, mc, T, args.chains, args.iterations, seed=11)
            u_ref = loc["energies"] / n
            ref = [mean_and_error(u_ref[:, c]) for c in range(args.chains)]
            row["U_per_N_ref"] = float(np.mean([m for m, _ in ref]))
            row["U_per_N_ref_err"] = float(math.sqrt(sum(e * e for _, e in ref)) / args.chains)
            row.update({"mc_tau_sweeps": max(loc["tau_U"], loc["tau_Q"]), "mc_converged": loc["converged"],
                        "mc_s_per_indep": loc["s_per_indep"]})
            md_row, g_md, g_md_err = run_md(mc, T, args.md_steps, args.md_every)
            row.update(md_row)
            md_cost[(model, n, float(T))] = row["md_s_per_indep"]
            base = gen.flow.q0 if gen is not None else None
            pooled = isinstance(base, BoltzmannPriorBase)
            if pooled and base.prior_temperature(T) <= T:
                row["flow_note"] = "no prior pool hotter than T: flow not evaluated"
            elif gen is not None:
                torch.manual_seed(0)
                n_is = min(args.is_samples, base.pools[base.T_priors.index(base.prior_temperature(T))].shape[0]) \
                    if pooled else args.is_samples  # a pool-based flow: one pass over the pool, no duplicates
                row["is_samples"] = n_is
                t0 = time.perf_counter()
                x, lq = gen.sample(n_is, T)
                groups = gen.last_pool_chains  # pool chains: chain-aware IS errors
                u = gen.energies(x)
                lw = gen.log_weights(u, lq, T)
                wall = time.perf_counter() - t0
                ess = kish_ess_fraction(lw) if np.isfinite(lw).any() else 0.0
                row.update({"is_ess_fraction": ess, "finite_fraction": float(np.isfinite(u).mean()),
                            "is_s_per_indep": wall / (ess * n_is) if ess > 0 else math.inf})
                if ess > 0:
                    ok = np.isfinite(lw)
                    grp = None if groups is None else groups[ok]
                    m, e = reweighted_mean(u[ok] / n, lw[ok], grp)
                    row.update({"U_per_N_is": float(m), "U_per_N_is_err": float(e),
                                "U_per_N_is_err_independent": float(reweighted_mean(u[ok] / n, lw[ok])[1])})
                    g_is, g_is_err = reweighted_mean(rdf_series(x.numpy()[ok], mc), lw[ok], grp)
                    row.update(rdf_agreement(np.asarray(g_is), np.asarray(g_is_err), g_md, g_md_err))
                if pooled:
                    t_h = base.prior_temperature(T)
                    k = base.T_priors.index(t_h)
                    u_pool = base.pool_energies[k].numpy()
                    row.update({"prior_T": t_h, "pool_size": int(u_pool.size),
                                "identity_ess_fraction": kish_ess_fraction(-u_pool / T + u_pool / t_h)})
                    pool_md = md_cost.get((model, n, float(t_h)))
                    if pool_md is not None and ess > 0:
                        route = pool_md / ess + row["is_s_per_indep"]
                        row.update({"pool_route_s_per_indep": route,
                                    "speedup_pool_route_vs_md": row["md_s_per_indep"] / route})
                fm, _ = run_chains(gen, mc, T, args.chains, args.iterations, seed=13)
                u_f = fm["energies"] / n
                fe = [mean_and_error(u_f[:, c]) for c in range(args.chains)]
                row["U_per_N_fmcmc_err_chain"] = float(math.sqrt(sum(e * e for _, e in fe)) / args.chains)
                # a finite pool: the chains resample its reweighted empirical law, whose error adds
                row["U_per_N_fmcmc_err"] = (math.hypot(row["U_per_N_fmcmc_err_chain"], row["U_per_N_is_err"])
                                            if pooled and "U_per_N_is_err" in row else row["U_per_N_fmcmc_err_chain"])
                row.update({"imh_acceptance": fm["imh_acceptance"], "fmcmc_tau": max(fm["tau_U"], fm["tau_Q"]),
                            "fmcmc_converged": fm["converged"], "fmcmc_s_per_indep": fm["s_per_indep"],
                            "U_per_N_fmcmc": float(u_f.mean())})
                row["speedup_fmcmc_vs_md"] = row["md_s_per_indep"] / fm["s_per_indep"]
            rows.append(row)
            print({k: (round(v, 5) if isinstance(v, float) else v) for k, v in row.items()}, flush=True)
    cols = ["model", "N", "T", "prior_T", "identity_ess_fraction", "is_ess_fraction", "imh_acceptance",
            "is_s_per_indep", "fmcmc_s_per_indep", "mc_s_per_indep", "md_s_per_indep", "speedup_fmcmc_vs_md",
            "speedup_pool_route_vs_md", "md_U_per_N", "U_per_N_ref", "U_per_N_is", "U_per_N_fmcmc"]
    print(table(rows, cols))
    if args.systems != "all" and (RESULTS / "flows.json").exists():  # keep the other systems' rows
        done = {(r["model"], r["N"]) for r in rows}
        kept = [r for r in json.loads((RESULTS / "flows.json").read_text())["rows"] if (r["model"], r["N"]) not in done]
        order = {s: i for i, s in enumerate(GRID)}
        rows = sorted(kept + rows, key=lambda r: (order.get((r["model"], r["N"]), 99), -r["T"]))
    save("flows", {"rows": rows, "args": vars(args),
                   "notes": "s_per_indep = CPU seconds per effectively independent sample; tau = max(tau_U, "
                            "tau_Q); *_converged False means tau (and the cost) is a lower bound"})


if __name__ == "__main__":
    main()
