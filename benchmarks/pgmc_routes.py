"""Policy-guided MC as the pool sampler of the KA2D N = 43 generator's routes: measured, against MD and swap MC.

``swap_reference.py`` prices every route of the KA2D N = 43 Boltzmann generator (reweighting, flow-MCMC,
annealed IS, annealed flow-MCMC) with swap MC's CPU seconds per independent sample at the pool's temperature
T_h, and finds flow-MCMC 2.35x faster than MD at T = 0.35 (the lowest T where MD converges at this size) with
the 0.4 pool paid for. A route's efficiency (ESS/n, the chains' tau in iterations) depends only on the pool's
law, the Boltzmann distribution at T_h, not on the sampler that drew it; its cost is the pool's cost per
independent sample times a factor. So a cheaper pool sampler lifts every route in proportion, and this script
measures by how much policy-guided MC (``pgmc.py``'s KA2D policy: 80 % environment-aware displacements, 20 %
swaps through C with single-flip selection, learned in ``--learn-iters`` burn-in iterations per chain, then
frozen) does so.

Per temperature (default 0.4 = T_h and 0.35 = T, the sweeps and frame spacing of ``swap_reference.py``),
``--chains`` independent PGMC chains, each from its own random state equilibrated by swap MC for a fifth of
its sampling sweeps, run in ``--workers`` processes and checkpointed to ``results/ckpt/``. Reported:

* U/N (chain-aware error) against the converged swap-MC truth (``swap_reference.json``): the PGMC chains sample
  the same law;
* tau_U and tau_Q in sweeps with the estimators of ``swap_reference.py`` (self-overlap a = 0.3 of tagged
  particles, which keep their index through swaps; centre-of-mass frame; Sokal windows), and CPU seconds per
  independent sample;
* the PGMC frames at T_h reweighted to T (the shipped KA2D generator's map is the identity, so this is its
  importance-sampling route on a PGMC pool): Kish ESS/n and U/N against the truth at T;
* the cost table: one NVT MD step, one swap-MC sweep and one sweep of each frozen PGMC policy timed back to back
  in this process (three rounds, medians; every round is saved), times the taus of MD
  (``md_reference_ka2d_n43.json``), swap MC (``swap_reference.json``) and PGMC (this run): CPU s per
  independent sample of MD, swap MC and PGMC at T, and of every route with a swap-MC pool and with a PGMC pool
  (efficiencies from ``swap_reference.json``'s checks and ``annealed_ka2d.json``, priced by
  ``swap_reference.best_annealed``). PGMC's training CPU is reported separately (paid once per temperature).

Run: ``.venv/bin/python benchmarks/pgmc_routes.py --workers 2 --resume`` (about 25 min on 2 cores). Writes
``benchmarks/results/pgmc_routes.json``.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time

import numpy as np
from _common import RESULTS, add_chain_arguments, chain_specs, run_jobs, save, table

N = 43
MODEL = "ka2d"
DEFAULT_T = ("0.4:480000:120", "0.35:800000:200")  # T: sampling sweeps per chain, sweeps between frames
CKPT = RESULTS / "ckpt"
LOCAL_FRACTION, SWAP_FRACTION, FLIP = 0.8, 0.2, 0.5  # pgmc.py's KA2D N <= 100 policy
ROUNDS = 3  # rounds of unit-cost timing


def run_chain(T: float, c: int, sweeps: int, every: int, seed: int, learn_iters: int) -> dict:
    """One PGMC chain: {u (n,) total energies and tagged (n, N, d) unwrapped positions every ``every`` sweeps,
    wall (CPU s of the production sweeps), train_cpu, acceptance, policy (dict), final positions/species}."""
    import numba
    from pgmc import best_delta, learn_policy

    from glassgen.dynamics.initial import random_state
    from glassgen.dynamics.mc import MonteCarlo
    from glassgen.sampling.pgmc import PGMC

    numba.set_num_threads(1)
    path = CKPT / f"pgmc_route_{MODEL}_n{N}_T{T}_c{c}_s{sweeps}_e{every}_l{learn_iters}_seed{seed}.npz"
    if path.is_file():
        z = np.load(path)
        return {k: (z[k] if z[k].ndim else z[k].item()) for k in z.files}
    s = seed * 1009 + c + 500  # not the seeds of swap_reference.py's chains
    conf = random_state(MODEL, N, T=T, seed=s)
    mc = MonteCarlo(conf, T=T, delta=0.1, swap_fraction=SWAP_FRACTION, seed=s)
    mc.tune_delta(0.4, sweeps=100, rounds=10)
    mc.sweep(sweeps // 5)
    conf = mc.configuration()
    delta, _ = best_delta(conf, T)
    pg, train_cpu = learn_policy(conf, T, delta / math.sqrt(3), 1, s + 30, learn_iters, local_2d=LOCAL_FRACTION,
                                 biased=True, swap_2d=SWAP_FRACTION, flip_2d=FLIP)
    start = (pg.chains[0].pos.copy(), pg.chains[0].species.copy())
    prod = PGMC(pg.target, pg.freeze(), [start], seed=s + 31)
    res = prod.run(sweeps, sample_every=every, frame_sweeps=np.arange(every, sweeps + 1, every))
    assert np.array_equal(res.sample_sweeps[1:], res.frame_sweeps)
    out = {"u": res.energies[1:, 0], "tagged": res.frames[:, 0], "wall": float(res.info["cpu_s"]),
           "train_cpu": float(train_cpu), "acceptance": json.dumps(res.acceptance),
           "policy": json.dumps(prod.policy.to_dict(), default=float), "final_pos": res.final_positions[0],
           "final_species": res.final_species[0]}
    CKPT.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.npz")
    np.savez(tmp, **out)
    tmp.replace(path)
    return out


def pgmc_sweep_cost(policy: dict, conf, T: float, sweeps: int = 20_000) -> float:
    """CPU seconds of one sweep of the frozen ``policy`` on ``conf`` at T (one chain, after 100 sweeps)."""
    from glassgen.sampling.pgmc import PGMC, PGMCTarget
    from glassgen.sampling.policies import Policy

    pg = PGMC(PGMCTarget.from_model(conf.model, conf.box, T), Policy.from_dict(policy), [conf], seed=5)
    pg.freeze()
    pg.sweep(100)
    t0 = time.process_time()
    pg.sweep(sweeps)
    return (time.process_time() - t0) / sweeps


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_chain_arguments(ap, DEFAULT_T)
    ap.add_argument("--learn-iters", type=int, default=60, help="PGMC burn-in learning iterations per chain")
    args = ap.parse_args()
    import numba

    numba.set_num_threads(1)
    from flows import tau_of
    from swap_reference import annealed_rows, best_annealed, unit_costs

    from glassgen.dynamics.initial import random_state
    from glassgen.flows.weights import kish_ess_fraction, reweighted_mean
    from glassgen.observables.thermo import mean_and_error_of_chains

    needed = [RESULTS / "swap_reference.json", RESULTS / f"md_reference_{MODEL}_n{N}.json"]
    missing = [p.name for p in needed if not p.is_file()]
    if missing:  # checked before hours of chains, not after
        print(f"error: {', '.join(missing)} not found in {RESULTS}: run swap_reference.py and "
              f"md_reference.py --model {MODEL} --N {N} first", file=sys.stderr)
        sys.exit(2)
    specs = chain_specs(args.T or DEFAULT_T)
    if not args.resume:
        for p in CKPT.glob(f"pgmc_route_{MODEL}_n{N}_*_seed{args.seed}.npz"):
            p.unlink()
    jobs = [(T, c, sw, ev, args.seed, args.learn_iters) for T, sw, ev in specs for c in range(args.chains)]
    t_start = time.perf_counter()
    results = run_jobs(run_chain, jobs, args.workers)
    print(f"chains done in {time.perf_counter() - t_start:.0f} s", flush=True)
    by_T: dict[float, list[dict]] = {}
    for j, r in zip(jobs, results, strict=True):
        by_T.setdefault(j[0], []).append(r)
    swap_doc = json.loads((RESULTS / "swap_reference.json").read_text())
    truth = {r["T"]: r for r in swap_doc["rows"]}
    conf0 = random_state(MODEL, N, T=1.0, seed=0)
    box = conf0.box
    rows, u_by_T = [], {}
    for T, _sw, ev in specs:
        ch = by_T[T]
        u = np.stack([r["u"] for r in ch], axis=1) / N  # (n, chains)
        u_by_T[T] = u
        n = u.shape[0]
        m, e = mean_and_error_of_chains(u.T.ravel(), args.chains)
        tagged = np.stack([r["tagged"] for r in ch], axis=1)
        tu, tq, conv = tau_of(u, tagged, box)
        wall = sum(r["wall"] for r in ch)
        acc = [json.loads(str(r["acceptance"])) for r in ch]
        row = {"T": T, "chains": args.chains, "sweeps_per_chain": n * ev, "every": ev, "U_per_N": m, "U_per_N_err": e,
               "tau_U_sweeps": tu * ev, "tau_Q_sweeps": tq * ev, "converged": conv,
               "independent_samples": args.chains * n * ev / (max(tu, tq) * ev),
               "ms_per_sweep_chains": 1e3 * wall / (args.chains * n * ev),
               "train_cpu_s_per_chain": float(np.mean([r["train_cpu"] for r in ch])),
               "acceptance": {k: float(np.mean([a[k] for a in acc])) for k in acc[0]}}
        if T in truth:
            t = truth[T]
            row.update(U_per_N_swap=t["U_per_N"], U_per_N_swap_err=t["U_per_N_err"],
                       z_vs_swap=(m - t["U_per_N"]) / math.hypot(e, t["U_per_N_err"]),
                       swap_tau_Q_sweeps=t["tau_Q_sweeps"], swap_tau_U_sweeps=t["tau_U_sweeps"],
                       sweeps_ratio_swap_over_pgmc=max(t["tau_U_sweeps"], t["tau_Q_sweeps"]) / max(tu * ev, tq * ev))
        rows.append(row)
        print({k: (round(v, 5) if isinstance(v, float) else v) for k, v in row.items()}, flush=True)
    print(table(rows, ["T", "chains", "sweeps_per_chain", "U_per_N", "U_per_N_err", "z_vs_swap", "tau_U_sweeps",
                       "tau_Q_sweeps", "swap_tau_Q_sweeps", "sweeps_ratio_swap_over_pgmc", "converged",
                       "independent_samples", "ms_per_sweep_chains", "train_cpu_s_per_chain"]))
    # the PGMC frames at T_h reweighted to T (identity map): the generator's IS route on a PGMC pool
    direct = []
    temps = sorted(u_by_T)
    for T, t_h in zip(temps[:-1], temps[1:], strict=True):
        uh = u_by_T[t_h]  # (n, chains), per particle
        lw = -(1.0 / T - 1.0 / t_h) * N * uh.T.ravel()
        groups = np.repeat(np.arange(uh.shape[1]), uh.shape[0])
        mw, ew = reweighted_mean(uh.T.ravel(), lw, groups)
        d = {"T": T, "T_h": t_h, "ess_fraction": kish_ess_fraction(lw), "U_per_N": float(mw), "U_per_N_err": float(ew)}
        if T in truth:
            t = truth[T]
            d.update(U_per_N_swap=t["U_per_N"], z_vs_swap=(mw - t["U_per_N"]) / math.hypot(ew, t["U_per_N_err"]))
        direct.append(d)
    print(table(direct, ["T", "T_h", "ess_fraction", "U_per_N", "U_per_N_err", "U_per_N_swap", "z_vs_swap"]))
    # costs: MD step, swap-MC sweep and PGMC sweeps timed back to back here
    t_cal = 0.4 if 0.4 in by_T else temps[0]
    cal = by_T[t_cal][0]
    conf_cal = conf0.replace(positions=np.asarray(cal["final_pos"]) % box, species=np.asarray(cal["final_species"]),
                             velocities=None)
    rounds = []  # MD step, swap sweep, PGMC sweeps: timed back to back, ROUNDS times; the medians price everything
    for _ in range(ROUNDS):
        md_step, swap_sweep = unit_costs(conf_cal, T=t_cal)
        rounds.append({"md": md_step, "swap": swap_sweep,
                       **{f"pgmc_{T}": pgmc_sweep_cost(json.loads(str(by_T[T][0]["policy"])), conf_cal, T)
                          for T in temps}})
    t_md = float(np.median([r["md"] for r in rounds]))
    t_sweep = float(np.median([r["swap"] for r in rounds]))
    t_pgmc = {T: float(np.median([r[f"pgmc_{T}"] for r in rounds])) for T in temps}
    print("unit costs (s):", rounds, flush=True)
    pgmc_cost = {r["T"]: max(r["tau_U_sweeps"], r["tau_Q_sweeps"]) * t_pgmc[r["T"]] for r in rows}
    swap_cost = {T: max(t["tau_U_sweeps"], t["tau_Q_sweeps"]) * t_sweep for T, t in truth.items()}
    md_doc = json.loads((RESULTS / f"md_reference_{MODEL}_n{N}.json").read_text())
    md = {r["T"]: max(r["md_tau_U_steps"], r["md_tau_Q_steps"]) * t_md for r in md_doc["rows"]}
    checks = swap_doc["checks"]
    rew = {c["T"]: c for c in checks if c["what"] == "reweighted"}
    chain = {c["T"]: c for c in checks if c["what"] == "flow-MCMC"}
    annealed = annealed_rows()
    costs = []
    for T in temps:
        if T not in md or T not in rew or rew[T]["T_h"] not in pgmc_cost:
            continue
        r, t_h = rew[T], rew[T]["T_h"]
        for sampler, pool_s in (("swap MC", swap_cost[t_h]), ("PGMC", pgmc_cost[t_h])):
            row = {"T": T, "T_h": t_h, "pool_sampler": sampler, "md_us_per_step": 1e6 * t_md,
                   "swap_ms_per_sweep": 1e3 * t_sweep, "pgmc_ms_per_sweep": 1e3 * t_pgmc[T],
                   "md_s_per_indep": md[T], "swap_s_per_indep": swap_cost[T], "pgmc_s_per_indep": pgmc_cost[T],
                   "md_over_swap": md[T] / swap_cost[T], "md_over_pgmc": md[T] / pgmc_cost[T],
                   "pool_s_per_indep": pool_s,
                   "reweighting_s_per_indep": pool_s / r["ess_fraction"] + r["is_s_per_indep"]}
            if T in chain:
                f = chain[T]
                row["flow_mcmc_s_per_indep"] = (pool_s + f["s_per_iteration"]) * max(f["tau_U_iterations"],
                                                                                       f["tau_Q_iterations"])
            ais, aimh = best_annealed(annealed, T, t_h, pool_s)
            if ais is not None:
                row.update(ais_s_per_indep=ais[0], ais_steps=ais[1])
            if aimh is not None:
                row.update(aimh_s_per_indep=aimh[0], aimh_steps=aimh[1])
            for k in ("reweighting", "flow_mcmc", "ais", "aimh"):
                if f"{k}_s_per_indep" in row:
                    row[f"md_over_{k}"] = md[T] / row[f"{k}_s_per_indep"]
            costs.append(row)
    print(table(costs, ["T", "T_h", "pool_sampler", "md_s_per_indep", "swap_s_per_indep", "pgmc_s_per_indep",
                        "pool_s_per_indep", "md_over_swap", "md_over_pgmc", "md_over_reweighting", "md_over_flow_mcmc",
                        "md_over_ais", "md_over_aimh"]))
    save("pgmc_routes", {"rows": rows, "reweighted_pgmc_pool": direct, "costs": costs, "unit_cost_rounds": rounds,
                         "args": vars(args),
                         "policy": {"local_fraction": LOCAL_FRACTION, "swap_fraction": SWAP_FRACTION, "flip": FLIP},
                         "notes": "KA2D N = 43; taus in sweeps (tagged self-overlap, centre-of-mass frame); "
                                  "s_per_indep = CPU seconds per independent sample, tau = max(tau_U, tau_Q); "
                                  "route efficiencies from swap_reference.json and annealed_ka2d.json"})


if __name__ == "__main__":
    main()
