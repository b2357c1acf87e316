"""Annealed importance sampling from the shipped generators' MD pools, against plain reweighting of the pool.

For each (system, T) of the flow benchmark whose prior pool is on the grid: ``--samples`` pool
configurations at T_h (the coldest pool hotter than T) are annealed to T in K steps of one Metropolis
sweep (:func:`glassgen.sampling.annealed.anneal`); K = 1 with zero sweeps is plain temperature
reweighting of the pool (the baseline, same code path, same samples), and the trained flow's ESS/n from
``benchmarks/results/flows.json`` is listed next to it. Reported: Kish ESS/n, reweighted U/N with its
error, CPU ms per annealed sample, and the pool route: MD CPU s per independent sample at T_h (from the
MD rows of ``flows.json``, run on this machine) / ESS_fraction + annealing CPU s / ESS_fraction, next to
MD's own cost at T.

Annealed flow-MCMC: the same annealed samples, in drawing order, are the proposals of ``--chains``
independence Metropolis–Hastings chains accepting with the ratio of AIS weights
(:func:`glassgen.sampling.independence.independence_chains`); reported are the acceptance, tau_U and tau_Q
(self-overlap) in iterations and the chains' U/N. One iteration of one chain consumes one annealed sample,
so the route costs (pool cost per sample + annealing) x max(tau_U, tau_Q) per independent sample.

Run: ``NUMBA_NUM_THREADS=1 .venv/bin/python benchmarks/annealed.py`` (about 3 CPU minutes).
"""

from __future__ import annotations

import argparse
import json
import time

import torch
from _common import RESULTS, save, table

from glassgen.api import shipped_flow
from glassgen.flows.generator import BoltzmannGenerator
from glassgen.flows.model import to_full
from glassgen.flows.weights import kish_ess_fraction, reweighted_mean
from glassgen.sampling.annealed import anneal
from glassgen.sampling.independence import independence_chains, summarize_chains
from glassgen.systems.model import load_model

CASES = (("ka3d", 64, 0.45), ("ka3d", 64, 0.4), ("ka3d", 64, 0.5), ("ka3d", 32, 0.45), ("ka3d", 32, 0.4),
         ("ka2d", 43, 0.4))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--samples", type=int, default=512)
    ap.add_argument("--steps", type=int, nargs="+", default=[5, 20])
    ap.add_argument("--cases", default="", help="comma list model:N:T (default: the built-in grid)")
    ap.add_argument("--chains", type=int, default=8, help="annealed flow-MCMC chains")
    ap.add_argument("--out", default="annealed", help="results name (benchmarks/results/<out>.json)")
    args = ap.parse_args()
    cases = CASES if not args.cases else [(c.split(":")[0], int(c.split(":")[1]), float(c.split(":")[2]))
                                          for c in args.cases.split(",")]
    torch.set_num_threads(1)
    flows = {(r["model"], r["N"], r["T"]): r for r in json.loads((RESULTS / "flows.json").read_text())["rows"]}
    rows = []
    for model, n, T in cases:
        gen = BoltzmannGenerator.load(shipped_flow(model, n))
        base = gen.flow.q0
        torch.manual_seed(0)
        r0, t_h = base.draw_pool(T, args.samples)
        groups = gen.pool_chains(*base.last_draw)  # MD chain of each pool configuration: chain-aware errors
        x0 = to_full(r0, torch.zeros(r0.shape[0], gen.system.dim, dtype=torch.float64), gen.box).numpy()
        species, box, mdl = gen.system.species_array(), gen.system.box_array(), load_model(model)
        md_h, md_t = flows.get((model, n, t_h), {}), flows.get((model, n, T), {})
        for steps, sweeps in [(1, 0)] + [(k, 1) for k in args.steps]:
            t0 = time.process_time()
            x_a, lw, u = anneal(x0, species, box, mdl, t_h, T, steps, sweeps=sweeps, seed=1)
            cpu = time.process_time() - t0
            ess = kish_ess_fraction(lw)
            m, e = reweighted_mean(u / n, lw, groups)
            row = {"model": model, "N": n, "T": T, "T_h": t_h, "steps": steps, "sweeps_per_step": sweeps,
                   "ess_fraction": ess, "flow_ess_fraction": md_t.get("is_ess_fraction"),
                   "U_per_N": float(m), "U_per_N_err": float(e), "md_U_per_N": md_t.get("md_U_per_N"),
                   "ms_per_sample": 1e3 * cpu / args.samples, "md_s_per_indep_T": md_t.get("md_s_per_indep"),
                   "md_converged_T": md_t.get("md_converged")}
            cs = summarize_chains(independence_chains(lw, args.chains, seed=2), u, x_a, box)
            row.update({"imh_chains": args.chains, "imh_acceptance": cs.acceptance, "imh_tau_U": cs.tau_u,
                        "imh_tau_Q": cs.tau_q, "imh_U_per_N": cs.u_per_n, "imh_U_per_N_err": cs.u_per_n_err})
            if "md_s_per_indep" in md_h:
                route = (md_h["md_s_per_indep"] + cpu / args.samples) / ess
                imh_route = (md_h["md_s_per_indep"] + cpu / args.samples) * max(cs.tau_u, cs.tau_q)
                row.update({"pool_route_s_per_indep": route, "md_converged_T_h": md_h.get("md_converged"),
                            "speedup_vs_md": md_t["md_s_per_indep"] / route if md_t else None,
                            "imh_route_s_per_indep": imh_route,
                            "imh_speedup_vs_md": md_t["md_s_per_indep"] / imh_route if md_t else None})
            rows.append(row)
            print({k: (round(v, 4) if isinstance(v, float) else v) for k, v in row.items()}, flush=True)
    cols = ["model", "N", "T", "T_h", "steps", "ess_fraction", "flow_ess_fraction", "U_per_N", "U_per_N_err",
            "imh_acceptance", "imh_tau_U", "imh_tau_Q", "imh_U_per_N", "md_U_per_N", "ms_per_sample",
            "pool_route_s_per_indep", "md_s_per_indep_T", "speedup_vs_md", "imh_speedup_vs_md"]
    print(table(rows, cols))
    print("saved", save(args.out, {"rows": rows, "args": vars(args),
                                     "notes": "steps=1, sweeps=0: plain temperature reweighting of the pool; MD "
                                              "costs from flows.json (lower bounds where md_converged is False)"}))


if __name__ == "__main__":
    main()
