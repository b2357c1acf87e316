"""A parallel-tempering reference for KA 3D N = 32, and the shipped N = 32 generator checked against it.

Issue 3 asks for the reweighted and flow-MCMC U/N and g(r) of KA 3D N = 32 at T = 0.6 to agree with a
long-simulation truth. MD does not give one at this size (``md_reference.py --engine lammps --N 32``: tau_Q
8e6 steps at T = 0.6, 2.5 tau_Q in 2e7 steps, U/N -6.91 +- 0.05, far below the shipped pools: docs/flows.md).
Replica exchange over temperatures reaches equilibrium where a single chain does not, provided the hot end
relaxes quickly and the ladder is dense enough for exchanges to be accepted. Here each of ``--runs``
independent runs (in ``--workers`` processes) holds one local Metropolis MC chain per temperature of
``--ladder`` (``MonteCarlo``, displacement tuned to 40 % at its temperature, Verlet list over images), starting
from relaxed random states; every ``--exchange-every`` sweeps neighbouring temperatures propose to exchange
configurations, even pairs and odd pairs in turn, accepted with min(1, exp((b_i - b_j)(U_i - U_j))) (each
exchange is a Metropolis move on the pair, so the joint chain keeps the product of Boltzmann laws). The first
``--equil`` sweeps are discarded. Every ``--every`` sweeps the energies at every temperature and the
configurations at the two coldest are stored; each run is checkpointed to ``results/ckpt/`` when it ends.

Reported: U/N at every temperature (error from the spread of the independent runs, ``mean_and_error_of_chains``
with the within-run autocorrelation), tau_U at the temperature (sweeps), exchange acceptances, round trips
(a configuration travelling coldest -> hottest -> coldest), first- and second-half drift; the colder stored
configurations' g(r). Checks: the configurations at the second-coldest temperature reweighted to the coldest
agree with the coldest directly; the LAMMPS runs and the shipped N = 32 pools against PT (z-scores); the
shipped generator at the coldest temperature (importance sampling over its whole pool, flow-MCMC 8 x 400).

Result (2026-12-06, docs/flows.md): PT does not equilibrate N = 32 either (the cold end drifts down, runs
disagree); its estimate is no converged truth.

Run: ``.venv/bin/python benchmarks/pt_reference.py --workers 2 --resume`` (88 CPU minutes by default). Writes
``benchmarks/results/pt_reference_ka3d_n32.json``.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time

import numpy as np
from _common import RESULTS, run_jobs, save, table

MODEL, N = "ka3d", 32
DEFAULT_LADDER = "0.6,0.65,0.7,0.76,0.83,0.9,0.98,1.06"
CKPT = RESULTS / "ckpt"


def run_pt(run: int, ladder: tuple[float, ...], sweeps: int, equil: int, exchange_every: int, every: int,
           seed: int) -> dict:
    """One PT run: {u (n, K) total energies per temperature, frames (n, 2, N, d) at the two coldest, replica
    (n, K) index of the configuration at each temperature, acc (K-1,) exchange acceptance, round_trips, wall}."""
    import numba

    from glassgen.dynamics.initial import random_state
    from glassgen.dynamics.mc import MonteCarlo
    from glassgen.sampling.tempering import ParallelTempering

    numba.set_num_threads(1)
    key = "_".join(f"{t:g}" for t in ladder)
    path = CKPT / f"pt_ref_{MODEL}_n{N}_L{key}_r{run}_s{sweeps}_q{equil}_x{exchange_every}_e{every}_seed{seed}.npz"
    if path.is_file():
        z = np.load(path)
        return {k: (z[k] if z[k].ndim else z[k].item()) for k in z.files}
    k_t = len(ladder)
    mcs = []
    for k, T in enumerate(ladder):
        s = seed * 100003 + run * 101 + k
        mc = MonteCarlo(random_state(MODEL, N, T=T, seed=s), T=T, delta=0.1, seed=s)
        mc.tune_delta(0.4, sweeps=50, rounds=10)
        mcs.append(mc)
    pt = ParallelTempering(mcs, ladder, seed=seed * 7919 + run)
    n_store = sweeps // every
    u = np.empty((n_store, k_t))
    frames = np.empty((n_store, 2, N, 3))
    replica = np.empty((n_store, k_t), dtype=np.int64)
    t0 = time.process_time()
    for _ in range(equil // exchange_every):
        pt.step(exchange_every)
    pt.reset_stats()
    for i in range(n_store):
        for _ in range(every // exchange_every):
            pt.step(exchange_every)
        u[i] = pt.energies
        frames[i, 0], frames[i, 1] = mcs[0].pos, mcs[1].pos
        replica[i] = pt.owner
    stored = n_store
    trips, acc = pt.round_trips, pt.exchange_acceptance
    out = {"u": u[:stored], "frames": frames[:stored], "replica": replica[:stored], "acc": acc, "round_trips": trips,
           "wall": time.process_time() - t0}
    CKPT.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.npz")
    np.savez(tmp, **out)
    tmp.replace(path)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ladder", default=DEFAULT_LADDER, help=f"temperatures, coldest first (default {DEFAULT_LADDER})")
    ap.add_argument("--sweeps", type=float, default=5e5, help="production sweeps per temperature and run")
    ap.add_argument("--equil", type=float, default=5e4, help="discarded sweeps per run")
    ap.add_argument("--exchange-every", type=int, default=10)
    ap.add_argument("--every", type=int, default=100, help="sweeps between stored samples")
    ap.add_argument("--runs", type=int, default=4)
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--resume", action="store_true", help="reuse finished runs from results/ckpt/")
    ap.add_argument("--no-check", dest="check", action="store_false", help="skip the generator check")
    args = ap.parse_args()
    import numba
    import torch

    numba.set_num_threads(1)
    torch.set_num_threads(1)
    from flows import rdf_agreement, run_chains
    from swap_reference import rdf_of

    from glassgen.api import shipped_flow
    from glassgen.dynamics.initial import random_state
    from glassgen.dynamics.mc import MonteCarlo
    from glassgen.flows.base import BoltzmannPriorBase
    from glassgen.flows.generator import BoltzmannGenerator
    from glassgen.flows.weights import kish_ess_fraction, reweighted_mean
    from glassgen.observables.thermo import mean_and_error_of_chains
    from glassgen.sampling.flow_mcmc import pooled_autocorrelation_time

    ladder = tuple(float(t) for t in args.ladder.split(","))
    if list(ladder) != sorted(ladder) or len(ladder) < 2:
        print("error: --ladder needs at least two increasing temperatures, coldest first", file=sys.stderr)
        sys.exit(2)
    sweeps, equil = int(args.sweeps), int(args.equil)
    if not args.resume:
        for p in CKPT.glob(f"pt_ref_{MODEL}_n{N}_*_seed{args.seed}.npz"):
            p.unlink()
    jobs = [(r, ladder, sweeps, equil, args.exchange_every, args.every, args.seed) for r in range(args.runs)]
    t_start = time.perf_counter()
    runs = run_jobs(run_pt, jobs, args.workers)
    print(f"runs done in {time.perf_counter() - t_start:.0f} s", flush=True)
    conf0 = random_state(MODEL, N, T=1.0, seed=0)
    species, box = conf0.species, conf0.box
    u = np.stack([r["u"] for r in runs], axis=1) / N  # (n, runs, K)
    n = u.shape[0]
    rows, truth = [], {}
    for k, T in enumerate(ladder):
        x = u[:, :, k]
        m, e = mean_and_error_of_chains(x.T.ravel(), args.runs)
        m1, e1 = mean_and_error_of_chains(x[: n // 2].T.ravel(), args.runs)
        m2, e2 = mean_and_error_of_chains(x[n // 2:].T.ravel(), args.runs)
        tu = pooled_autocorrelation_time(x)
        rows.append({"T": T, "U_per_N": m, "U_per_N_err": e, "U_per_N_first_half": m1, "U_per_N_first_half_err": e1,
                     "U_per_N_second_half": m2, "U_per_N_second_half_err": e2,
                     "drift_sigma": (m1 - m2) / math.hypot(e1, e2),
                     "tau_U_sweeps": tu * args.every, "runs_U_per_N": x.mean(axis=0).tolist(),
                     "exchange_acceptance_up": float(np.mean([r["acc"][k] for r in runs])) if k < len(ladder) - 1
                     else math.nan})
        truth[T] = (m, e)
    wall = sum(r["wall"] for r in runs)
    summary = {"runs": args.runs, "sweeps_per_temperature": sweeps, "samples_per_run": n,
               "round_trips": [int(r["round_trips"]) for r in runs], "cpu_s": wall,
               "ms_per_pt_sweep": 1e3 * wall / (args.runs * (sweeps + equil))}
    print(table(rows, ["T", "U_per_N", "U_per_N_err", "U_per_N_first_half", "U_per_N_second_half", "drift_sigma",
                       "tau_U_sweeps", "exchange_acceptance_up"]))
    print(summary, flush=True)
    t_c, t_h = ladder[0], ladder[1]
    fr = np.stack([r["frames"] for r in runs], axis=1)  # (n, runs, 2, N, d)
    groups = np.repeat(np.arange(args.runs), n)
    r_grid, g_c = rdf_of(fr[:, :, 0].transpose(1, 0, 2, 3).reshape(-1, N, 3), species, box)
    g_stats = [mean_and_error_of_chains(g_c[:, b], args.runs) for b in range(g_c.shape[1])]
    g_ref, g_ref_err = np.array([a for a, _ in g_stats]), np.array([b for _, b in g_stats])
    uh = u[:, :, 1].T.ravel()
    lw = -(1.0 / t_c - 1.0 / t_h) * N * uh
    mw, ew = reweighted_mean(uh, lw, groups)
    checks = [{"what": f"PT {t_h} reweighted to {t_c}", "T": t_c, "ess_fraction": kish_ess_fraction(lw),
               "U_per_N": float(mw), "U_per_N_err": float(ew),
               "z": (mw - truth[t_c][0]) / math.hypot(ew, truth[t_c][1])}]
    lmp = RESULTS / "md_reference_lammps_n32.json"
    if lmp.exists():
        for r in json.loads(lmp.read_text())["rows"]:
            if r["T"] in truth:
                m, e = truth[r["T"]]
                checks.append({"what": f"LAMMPS MD {r['steps']:.0e} steps", "T": r["T"], "U_per_N": r["md_U_per_N"],
                               "U_per_N_err": r["md_U_per_N_err"], "converged": r["md_converged"],
                               "z": (r["md_U_per_N"] - m) / math.hypot(r["md_U_per_N_err"], e)})
    if args.check:
        gen = BoltzmannGenerator.load(shipped_flow(MODEL, N))
        gen.allow_extrapolation = True
        base = gen.flow.q0
        assert isinstance(base, BoltzmannPriorBase)
        chains_pool = max(1, int((gen.training or {}).get("config", {}).get("data_chains", 1) or 1))
        for k, th in enumerate(base.T_priors):
            if th in truth:
                m, e = mean_and_error_of_chains(base.pool_energies[k].numpy() / N, chains_pool)
                checks.append({"what": f"shipped pool {th}", "T": th, "U_per_N": m, "U_per_N_err": e,
                               "z": (m - truth[th][0]) / math.hypot(e, truth[th][1])})
        if base.prior_temperature(t_c) > t_c:
            torch.manual_seed(0)
            th = base.prior_temperature(t_c)
            x, lq = gen.sample(base.pools[base.T_priors.index(th)].shape[0], t_c)
            grp = gen.last_pool_chains
            ug = gen.energies(x)
            lwg = gen.log_weights(ug, lq, t_c)
            ok = np.isfinite(lwg)
            m, e = reweighted_mean(ug[ok] / N, lwg[ok], None if grp is None else grp[ok])
            g_is, g_is_err = reweighted_mean(rdf_of(x.numpy()[ok], species, box)[1], lwg[ok],
                                             None if grp is None else grp[ok])
            checks.append({"what": "shipped generator, reweighted", "T": t_c, "T_h": th,
                           "ess_fraction": kish_ess_fraction(lwg), "U_per_N": m, "U_per_N_err": e,
                           "z": (m - truth[t_c][0]) / math.hypot(e, truth[t_c][1]),
                           **rdf_agreement(np.asarray(g_is), np.asarray(g_is_err), g_ref, g_ref_err)})
            mc = MonteCarlo(conf0.replace(positions=fr[-1, 0, 0], velocities=None), T=t_c, delta=0.08, seed=3)
            fm, _ = run_chains(gen, mc, t_c, 8, 400, seed=13)
            mf, ef_chain = mean_and_error_of_chains((fm["energies"] / N).T.ravel(), 8)
            ef = math.hypot(ef_chain, e)
            checks.append({"what": "shipped generator, flow-MCMC", "T": t_c, "T_h": th,
                           "imh_acceptance": fm["imh_acceptance"], "U_per_N": mf, "U_per_N_err": ef,
                           "z": (mf - truth[t_c][0]) / math.hypot(ef, truth[t_c][1])})
    print(table(checks, ["what", "T", "ess_fraction", "U_per_N", "U_per_N_err", "z", "rdf_within_2sigma"]))
    save(f"pt_reference_{MODEL}_n{N}", {"rows": rows, "summary": summary, "checks": checks, "args": vars(args),
                                        "r": r_grid.tolist(), "g": g_ref.tolist(), "g_err": g_ref_err.tolist(),
                                        "notes": "KA 3D N = 32 parallel tempering (local MC per temperature); "
                                                 "U/N per particle; taus in sweeps"})


if __name__ == "__main__":
    main()
