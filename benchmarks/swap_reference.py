"""Converged swap-MC references for KA2D N = 43, and the shipped KA2D generator checked against them.

Issue 3 asks for the reweighted and flow-MCMC U/N and g(r) of the KA2D N = 43 generator to agree with a
long-simulation truth at T = 0.5. MD is no such truth at this size (``flows.py``: tau_Q >= 1e5 steps at
T = 0.5, one trajectory per basin at T = 0.3), but uniform swap MC is (``pgmc.py``: tau_alpha ~ 10^3
sweeps at T = 0.5 ... 0.3, 0.3 ms per sweep). This script runs, per temperature, ``--chains`` independent
swap-MC chains (``MonteCarlo`` with swap_fraction 0.2: a species swap of a uniform particle with a uniform
particle of another species, displacement tuned to 40 %), each from its own random state, equilibrated for
a fifth of its sampling sweeps, in ``--workers`` processes. It reports:

* U/N with the chain-aware error (``mean_and_error_of_chains``), first-half minus second-half drift;
* tau_U and tau_Q (self-overlap, a = 0.3, of tagged particles: every particle keeps its index through swaps,
  so a swap alone does not decorrelate Q, the convention of the swap-MC literature; centre-of-mass frame, since
  MC drifts) in sweeps, whether the Sokal windows closed, and CPU seconds per independent sample
  (tau = max(tau_U, tau_Q)). ``tau_Q_relabelled_sweeps`` is the self-overlap of the relabelled frames below,
  the measure used before 2026-12-06: relabelling renumbers particles after a swap, so it decays by
  relabelling as well as by motion and is not a label-invariant time (kept for the record);
* the total g(r) with chain-aware errors per bin.

Frames are relabelled to the canonical species order (``canonical_order``), as the generator's swap-MC pools
are (``[data] source = "mc"``, ``swap_fraction``).

Then the checks: every shipped KA2D N = 43 pool's U/N against the reference at its temperature (z-score),
and the shipped generator at each reference temperature it serves (``--check``): importance sampling over
its whole pool and flow-MCMC (8 chains x 400 iterations from a reference state), U/N and g(r) against the
reference; z = difference / combined error. Each (T, chain) is checkpointed to ``results/ckpt/``; ``--resume``
reuses them.

Where ``md_reference.py --model ka2d --N 43`` has run (``md_reference_ka2d_n43.json``), the cost of an independent
sample at T is compared three ways: MD, swap MC at T, and the generator's pool route (swap-MC CPU s per
independent sample at T_h / ESS/n + IS CPU s per independent sample), flow-MCMC (one fresh pool sample per
chain iteration: (swap-MC s per independent sample at T_h + s per iteration) x max(tau_U, tau_Q) of the
check's chains) and annealed flow-MCMC (``annealed.py``'s chains, priced the same way).

Run: ``.venv/bin/python benchmarks/swap_reference.py --workers 2 --resume`` (about 45 min on 2 cores; the chains
took 32 CPU minutes on one core on 2026-12-06). Writes ``benchmarks/results/swap_reference.json``.
"""

from __future__ import annotations

import argparse
import json
import math
import time

import numpy as np
from _common import RESULTS, add_chain_arguments, chain_specs, run_jobs, save, table

N = 43
MODEL = "ka2d"
SWAP_FRACTION = 0.2
# T: sampling sweeps per chain, sweeps between stored frames
# (4x longer above T = 0.3 since 2026-12-06, so that the Sokal windows of the tagged self-overlap close)
DEFAULT_T = ("0.6:160000:40", "0.5:240000:60", "0.4:480000:120", "0.35:800000:200", "0.3:300000:150")
CKPT = RESULTS / "ckpt"


def run_chain(T: float, c: int, sweeps: int, every: int, seed: int) -> dict:
    """One swap-MC chain: {u (n,), frames (n, N, d) relabelled to the canonical species order, tagged (n, N, d)
    (every particle keeps its index through swaps), wall (CPU s of sampling), acceptance}."""
    import numba

    from glassgen.dynamics.initial import random_state
    from glassgen.dynamics.mc import MonteCarlo
    from glassgen.flows.reference_data import canonical_order

    numba.set_num_threads(1)
    path = CKPT / f"swap_ref_{MODEL}_n{N}_T{T}_c{c}_s{sweeps}_e{every}_seed{seed}.npz"
    if path.is_file():
        z = np.load(path)
        if "tagged" in z:  # chains run before 2026-12-06 stored only relabelled frames: rerun them
            return {"u": z["u"], "frames": z["frames"], "tagged": z["tagged"], "wall": float(z["wall"]),
                    "acc_disp": float(z["acc_disp"]), "acc_swap": float(z["acc_swap"])}
    s = seed * 1009 + c
    conf = random_state(MODEL, N, T=T, seed=s)
    mc = MonteCarlo(conf, T=T, delta=0.1, swap_fraction=SWAP_FRACTION, seed=s)
    mc.tune_delta(0.4, sweeps=100, rounds=10)
    mc.sweep(sweeps // 5)
    n = sweeps // every
    u, frames, tagged = np.empty(n), np.empty((n, N, mc.dim)), np.empty((n, N, mc.dim))
    t0 = time.process_time()
    for k in range(n):
        mc.sweep(every)
        u[k] = mc.energy
        frames[k] = canonical_order(mc.pos, mc.species, conf.species)
        tagged[k] = mc.pos
    wall = time.process_time() - t0
    acc = mc.acceptance
    out = {"u": u, "frames": frames, "tagged": tagged, "wall": wall, "acc_disp": acc["displacement"],
           "acc_swap": acc["swap"]}
    CKPT.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.npz")
    np.savez(tmp, **out)
    tmp.replace(path)
    return out


def unit_costs(conf, T: float = 0.4, md_steps: int = 200_000, sweeps: int = 20_000) -> tuple[float, float]:
    """CPU seconds of one NVT MD step (``flows.run_md``'s integrator: Nose-Hoover chain, dt = 0.005, one
    thread) and of one swap-MC sweep, on the same state, timed back to back in this process."""
    from glassgen.dynamics.mc import MonteCarlo
    from glassgen.dynamics.md import MDSimulation

    mc = MonteCarlo(conf, T=T, delta=0.08, swap_fraction=SWAP_FRACTION, seed=11)
    mc.sweep(100)
    t0 = time.process_time()
    mc.sweep(sweeps)
    t_sweep = (time.process_time() - t0) / sweeps
    sim = MDSimulation(mc.configuration(), T=T, dt=0.005, thermostat="nhc", seed=1, threads=1, init_velocities=True)
    sim.step(1000)
    t0 = time.process_time()
    sim.step(md_steps)
    return (time.process_time() - t0) / md_steps, t_sweep


def annealed_rows() -> list[dict]:
    """The KA2D N = 43 rows of ``annealed.py``'s annealing of the swap-MC pools (``annealed_ka2d.json``; [] if
    absent): ESS/n, ms per annealed sample and the annealed chains' tau per (T, T_h, K)."""
    path = RESULTS / "annealed_ka2d.json"
    if not path.exists():
        return []
    return [a for a in json.loads(path.read_text())["rows"] if a["N"] == N]


def best_annealed(rows: list[dict], T: float, t_h: float, pool_s: float) -> tuple[tuple | None, tuple | None]:
    """The cheapest annealing routes to T from a pool at ``t_h`` whose independent samples cost ``pool_s`` CPU s
    each, over the numbers of annealing steps K of ``rows`` (``annealed_rows``): annealed IS (cost, K, ESS/n),
    cost = (pool_s + annealing) / ESS/n, and annealed flow-MCMC (cost, K, acceptance, tau), one annealed
    sample per chain iteration, cost = (pool_s + annealing) x max(tau_U, tau_Q); None where no row serves."""
    ais = aimh = None
    for a in rows:
        if a["sweeps_per_step"] <= 0 or a["T"] != T or a["T_h"] != t_h:
            continue
        per_sample = pool_s + 1e-3 * a["ms_per_sample"]
        cost = per_sample / a["ess_fraction"]
        if ais is None or cost < ais[0]:
            ais = (cost, a["steps"], a["ess_fraction"])
        if "imh_tau_Q" in a:
            tau = max(a["imh_tau_U"], a["imh_tau_Q"])
            if aimh is None or per_sample * tau < aimh[0]:
                aimh = (per_sample * tau, a["steps"], a["imh_acceptance"], tau)
    return ais, aimh


def rdf_of(frames: np.ndarray, species: np.ndarray, box: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(r (bins,), g (n, bins)) total g(r) of every frame (``flows.RDF_BINS`` bins up to L/2)."""
    from flows import RDF_BINS

    from glassgen.api import _per_sample_rdf

    r, g = _per_sample_rdf(frames, species, box, RDF_BINS)
    return np.asarray(r), np.asarray(g)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_chain_arguments(ap, DEFAULT_T)
    ap.add_argument("--no-check", dest="check", action="store_false", help="skip the generator check")
    ap.add_argument("--checkpoint", default=None, help="generator to check (default: the shipped KA2D N = 43 one)")
    args = ap.parse_args()
    import numba
    import torch

    numba.set_num_threads(1)
    torch.set_num_threads(1)
    from flows import rdf_agreement, run_chains, tau_of

    from glassgen.api import shipped_flow
    from glassgen.dynamics.initial import random_state
    from glassgen.dynamics.mc import MonteCarlo
    from glassgen.flows.base import BoltzmannPriorBase
    from glassgen.flows.generator import BoltzmannGenerator
    from glassgen.flows.weights import kish_ess_fraction, reweighted_mean
    from glassgen.observables.overlap import overlap_correlation
    from glassgen.observables.thermo import mean_and_error_of_chains

    specs = chain_specs(args.T or DEFAULT_T)
    if not args.resume:
        for p in CKPT.glob(f"swap_ref_{MODEL}_n{N}_*_seed{args.seed}.npz"):
            p.unlink()
    jobs = [(T, c, sw, ev, args.seed) for T, sw, ev in specs for c in range(args.chains)]
    t_start = time.perf_counter()
    results = run_jobs(run_chain, jobs, args.workers)
    print(f"chains done in {time.perf_counter() - t_start:.0f} s", flush=True)
    by_T = {}
    for j, r in zip(jobs, results, strict=True):
        by_T.setdefault(j[0], []).append(r)
    conf0 = random_state(MODEL, N, T=1.0, seed=0)
    species, box = conf0.species, conf0.box
    rows, reference = [], {}
    for T, _sw, ev in specs:
        ch = by_T[T]
        u = np.stack([r["u"] for r in ch], axis=1) / N  # (n, chains)
        frames = np.stack([r["frames"] for r in ch], axis=1)  # (n, chains, N, d)
        n = u.shape[0]
        m, e = mean_and_error_of_chains(u.T.ravel(), args.chains)
        h1, h2 = u[: n // 2].T.ravel(), u[n // 2:].T.ravel()
        m1, e1 = mean_and_error_of_chains(h1, args.chains)
        m2, e2 = mean_and_error_of_chains(h2, args.chains)
        tagged = np.stack([r["tagged"] for r in ch], axis=1)
        tu, tq, conv = tau_of(u, tagged, box)
        tq_canonical = overlap_correlation(frames, box).tau
        tau = max(tu, tq) * ev  # sweeps
        wall = sum(r["wall"] for r in ch)
        s_per_sweep = wall / (args.chains * n * ev)
        r_grid, g = rdf_of(frames.transpose(1, 0, 2, 3).reshape(-1, N, frames.shape[-1]), species, box)
        g_stats = [mean_and_error_of_chains(g[:, b], args.chains) for b in range(g.shape[1])]
        g_mean, g_err = np.array([a for a, _ in g_stats]), np.array([b for _, b in g_stats])
        row = {"model": MODEL, "N": N, "T": T, "chains": args.chains, "sweeps_per_chain": n * ev, "every": ev,
               "U_per_N": m, "U_per_N_err": e, "drift_first_minus_second": m1 - m2,
               "drift_sigma": (m1 - m2) / math.hypot(e1, e2), "tau_U_sweeps": tu * ev, "tau_Q_sweeps": tq * ev,
               "tau_Q_relabelled_sweeps": tq_canonical * ev,
               "converged": conv, "independent_samples": args.chains * n * ev / tau,
               "ms_per_sweep": 1e3 * s_per_sweep, "s_per_indep": s_per_sweep * tau,
               "acc_displacement": float(np.mean([r["acc_disp"] for r in ch])),
               "acc_swap": float(np.mean([r["acc_swap"] for r in ch])),
               "r": r_grid.tolist(), "g": g_mean.tolist(), "g_err": g_err.tolist()}
        rows.append(row)
        reference[T] = (m, e, g_mean, g_err, frames[-1, 0])
        print({k: (round(v, 5) if isinstance(v, float) else v) for k, v in row.items() if k not in ("r", "g", "g_err")},
              flush=True)
    print(table(rows, ["T", "chains", "sweeps_per_chain", "U_per_N", "U_per_N_err", "drift_sigma", "tau_U_sweeps",
                       "tau_Q_sweeps", "tau_Q_relabelled_sweeps", "converged", "independent_samples", "ms_per_sweep",
                       "s_per_indep", "acc_swap"]))
    checks = []
    if args.check:
        gen = BoltzmannGenerator.load(args.checkpoint or shipped_flow(MODEL, N))
        gen.allow_extrapolation = True
        base = gen.flow.q0
        assert isinstance(base, BoltzmannPriorBase)
        chains_pool = max(1, int((gen.training or {}).get("config", {}).get("data_chains", 1) or 1))
        for k, t_h in enumerate(base.T_priors):  # the pools themselves
            if t_h not in reference:
                continue
            u_pool = base.pool_energies[k].numpy() / N
            m, e = mean_and_error_of_chains(u_pool, chains_pool)
            r, re = reference[t_h][:2]
            checks.append({"what": f"pool {t_h}", "T": t_h, "U_per_N": m, "U_per_N_err": e, "U_per_N_ref": r,
                           "U_per_N_ref_err": re, "z": (m - r) / math.hypot(e, re)})
        for T, (r, re, g_ref, g_ref_err, start) in reference.items():
            if not base.prior_temperature(T) > T:
                continue
            torch.manual_seed(0)
            t_h = base.prior_temperature(T)
            n_is = base.pools[base.T_priors.index(t_h)].shape[0]
            t0 = time.process_time()
            x, lq = gen.sample(n_is, T)
            groups = gen.last_pool_chains
            u = gen.energies(x)
            lw = gen.log_weights(u, lq, T)
            is_wall = time.process_time() - t0
            ok = np.isfinite(lw)
            grp = None if groups is None else groups[ok]
            m, e = reweighted_mean(u[ok] / N, lw[ok], grp)
            g_is, g_is_err = reweighted_mean(rdf_of(x.numpy()[ok], species, box)[1], lw[ok], grp)
            agree = rdf_agreement(np.asarray(g_is), np.asarray(g_is_err), g_ref, g_ref_err)
            ess = kish_ess_fraction(lw)
            checks.append({"what": "reweighted", "T": T, "T_h": t_h, "ess_fraction": ess,
                           "is_s_per_indep": is_wall / (ess * n_is),
                           "U_per_N": m, "U_per_N_err": e, "U_per_N_ref": r, "U_per_N_ref_err": re,
                           "z": (m - r) / math.hypot(e, re), **agree})
            mc = MonteCarlo(conf0.replace(positions=start, velocities=None), T=T, delta=0.08, seed=3)
            fm, fm_wall = run_chains(gen, mc, T, 8, 400, seed=13)
            u_f = fm["energies"] / N
            mf, ef_chain = mean_and_error_of_chains(u_f.T.ravel(), 8)
            ef = math.hypot(ef_chain, e)  # the chains resample the pool: its IS error adds
            checks.append({"what": "flow-MCMC", "T": T, "T_h": t_h, "imh_acceptance": fm["imh_acceptance"],
                           "tau_U_iterations": fm["tau_U"], "tau_Q_iterations": fm["tau_Q"],
                           "tau_converged": fm["converged"], "s_per_iteration": fm_wall / (8 * 400),
                           "U_per_N": mf, "U_per_N_err": ef, "U_per_N_ref": r, "U_per_N_ref_err": re,
                           "z": (mf - r) / math.hypot(ef, re)})
            print(checks[-2:], flush=True)
        print(table(checks, ["what", "T", "T_h", "ess_fraction", "imh_acceptance", "U_per_N", "U_per_N_err",
                             "U_per_N_ref", "U_per_N_ref_err", "z", "rdf_within_2sigma", "rdf_max_z"]))
    routes = []
    md_file = RESULTS / f"md_reference_{MODEL}_n{N}.json"
    if md_file.exists() and checks:  # what an independent sample at T costs: MD, swap MC at T, the pool routes
        md = {r["T"]: r for r in json.loads(md_file.read_text())["rows"]}
        # one MD step and one swap-MC sweep timed here, back to back (CPU s): both sides priced alike
        t_cal = 0.4 if 0.4 in reference else min(reference)
        t_md, t_sweep = unit_costs(conf0.replace(positions=reference[t_cal][4], velocities=None), T=t_cal)
        swap = {r["T"]: max(r["tau_U_sweeps"], r["tau_Q_sweeps"]) * t_sweep for r in rows}
        annealed = annealed_rows()
        chain = {c["T"]: c for c in checks if c["what"] == "flow-MCMC"}
        for c in checks:
            if c["what"] != "reweighted" or c["T"] not in md or c["T_h"] not in swap:
                continue
            m, T = md[c["T"]], c["T"]
            md_cost = max(m["md_tau_U_steps"], m["md_tau_Q_steps"]) * t_md
            route = swap[c["T_h"]] / c["ess_fraction"] + c["is_s_per_indep"]
            row = {"T": T, "T_h": c["T_h"], "md_tau_Q_steps": m["md_tau_Q_steps"], "md_converged": m["md_converged"],
                   "md_us_per_step": 1e6 * t_md, "swap_ms_per_sweep": 1e3 * t_sweep, "md_s_per_indep": md_cost,
                   "md_U_per_N": m["md_U_per_N"], "md_U_per_N_err": m["md_U_per_N_err"],
                   "swap_s_per_indep": swap.get(T, math.nan), "ess_fraction": c["ess_fraction"],
                   "pool_route_s_per_indep": route, "md_over_pool_route": md_cost / route,
                   "md_over_swap": md_cost / swap.get(T, math.nan)}
            if T in chain and "tau_Q_iterations" in chain[T]:  # flow-MCMC: one fresh pool proposal per iteration
                f = chain[T]
                tau = max(f["tau_U_iterations"], f["tau_Q_iterations"])
                row.update(flow_mcmc_route_s_per_indep=(swap[c["T_h"]] + f["s_per_iteration"]) * tau,
                           flow_mcmc_tau_iterations=tau, flow_mcmc_acceptance=f["imh_acceptance"])
                row["md_over_flow_mcmc_route"] = md_cost / row["flow_mcmc_route_s_per_indep"]
            ais, aimh = best_annealed(annealed, T, c["T_h"], swap[c["T_h"]])
            if ais is not None:
                row.update(ais_route_s_per_indep=ais[0], ais_steps=ais[1], ais_ess_fraction=ais[2],
                           md_over_ais_route=md_cost / ais[0])
            if aimh is not None:
                row.update(aimh_route_s_per_indep=aimh[0], aimh_steps=aimh[1], aimh_acceptance=aimh[2],
                           aimh_tau_iterations=aimh[3], md_over_aimh_route=md_cost / aimh[0])
            routes.append(row)
        print(table(routes, ["T", "T_h", "md_tau_Q_steps", "md_converged", "md_s_per_indep", "swap_s_per_indep",
                             "ess_fraction", "pool_route_s_per_indep", "md_over_pool_route", "ais_route_s_per_indep",
                             "md_over_ais_route", "flow_mcmc_route_s_per_indep", "md_over_flow_mcmc_route",
                             "aimh_route_s_per_indep", "md_over_aimh_route", "md_over_swap"]))
    save("swap_reference", {"rows": rows, "checks": checks, "routes": routes, "args": vars(args),
                            "notes": "KA2D N = 43 uniform swap MC (swap_fraction 0.2); taus in sweeps; "
                                     "s_per_indep = CPU seconds per independent sample, tau = max(tau_U, tau_Q)"})


if __name__ == "__main__":
    main()
