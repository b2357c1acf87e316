"""Long MD references for the Boltzmann-generator benchmark: MD cost per independent sample, converged.

``benchmarks/flows.py`` runs 400 000 MD steps per state point. Below T = 0.6 the Sokal window of the
self-overlap time tau_Q is not reached there, so MD's cost per independent sample is only a lower bound,
and so is the "pool route" comparison of issue 3. This script runs the same MD (``flows.run_md``: NVT,
Nose-Hoover chain, dt = 0.005, one thread, start from an equilibrated MC state plus steps/5 of MD) for
``--steps`` steps at KA 3D N = 64 and T = 0.7, 0.6, 0.5, 0.45, 0.4. It reports tau_U, tau_Q, whether the window
was reached, and wall seconds per independent sample, tau = max(tau_U, tau_Q).

Pool route: an independent sample at T drawn from a pool of MD configurations at T_h > T, with the
pool's MD paid for, costs pool route(T) = MD s/indep(T_h) / ESS/n(T) + IS s/indep(T); the speed-up is
MD s/indep(T) / pool route(T). It is firm only where both MD runs reach their Sokal windows. ESS/n
comes from ``benchmarks/results/flows.json`` (the shipped N = 64 generator: pools at 0.6, 0.5, 0.45) or,
for a T_h of this run, from reweighting this run's own MD samples at T_h to the next lower temperature
of the run (the identity map, which the trained flows do not beat; IS cost taken as 0). MD at 0.6
comes from this run if present, else from flows.json.

Rows are saved after each temperature; ``--resume`` skips temperatures already in the JSON.
Run: ``.venv/bin/python benchmarks/md_reference.py`` (about 15 min on one core).
"""

from __future__ import annotations

import argparse
import json
import math
import time

import numba
from _common import RESULTS, save, table
from flows import equilibrated, run_md

from glassgen.flows.weights import kish_ess_fraction


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=4_000_000)
    ap.add_argument("--every", type=int, default=200)
    ap.add_argument("--T", type=float, action="append", default=[],
                    help="temperatures, repeatable (default 0.7 0.6 0.5 0.45 0.4)")
    ap.add_argument("--resume", action="store_true")
    args = ap.parse_args()
    numba.set_num_threads(1)
    temps = sorted(args.T or [0.7, 0.6, 0.5, 0.45, 0.4], reverse=True)
    out = RESULTS / "md_reference.json"
    rows = json.loads(out.read_text())["rows"] if args.resume and out.exists() else []
    done = {r["T"] for r in rows}
    for T in temps:
        if T in done:
            continue
        mc = equilibrated("ka3d", 64, T, 4000, seed=7)
        t0 = time.perf_counter()
        u: list = []
        md, _, _ = run_md(mc, T, args.steps, args.every, energies=u)
        lower = [t for t in temps if t < T]
        ess = {}
        if lower:  # reweight this run's samples (a pool at T) to the next lower temperature: identity map
            tl = max(lower)
            ess[str(tl)] = kish_ess_fraction(-u[0] * (1.0 / tl - 1.0 / T))
        rows.append({"model": "ka3d", "N": 64, "T": T, "steps": args.steps, "every": args.every,
                     "wall_s": time.perf_counter() - t0, "ess_identity_to": ess, **md})
        print(rows[-1], flush=True)
        save("md_reference", {"rows": rows, "complete": False})
    flows = {r["T"]: r for r in json.loads((RESULTS / "flows.json").read_text())["rows"]
             if r["model"] == "ka3d" and r["N"] == 64}
    # MD cost per independent sample and whether it is converged (else a lower bound)
    md_cost = {0.6: (flows[0.6]["md_s_per_indep"], flows[0.6]["md_converged"])} if 0.6 in flows else {}
    md_cost.update({r["T"]: (r["md_s_per_indep"], r["md_converged"]) for r in rows})
    pools = {}  # target T -> (T_h, ESS/n, IS cost)
    for T, f in flows.items():
        if f.get("is_ess_fraction"):
            pools[T] = (f["prior_T"], f["is_ess_fraction"], f["is_s_per_indep"])
    for r in rows:
        for tl, e in r.get("ess_identity_to", {}).items():
            pools[float(tl)] = (r["T"], e, 0.0)
    for r in rows:
        th, ess, is_cost = pools.get(r["T"], (None, math.nan, math.nan))
        r["prior_T"], r["pool_ess_fraction"] = th, ess
        if th is None or th not in md_cost:
            r["pool_route_s_per_indep"], r["pool_route_firm"] = math.nan, False
        else:
            r["pool_route_s_per_indep"] = md_cost[th][0] / ess + is_cost
            r["pool_route_firm"] = bool(md_cost[th][1])
        firm = r["md_converged"] and r["pool_route_firm"]
        r["speedup_pool_route_vs_md"] = r["md_s_per_indep"] / r["pool_route_s_per_indep"]
        r["speedup_firm"] = bool(firm)
    path = save("md_reference", {"rows": rows, "complete": True,
                                 "definition": "tau = max(tau_U, tau_Q) in steps; s/indep = MD wall s (1 thread) x "
                                               "tau / sampling interval; pool route = MD s/indep(T_h) / ESS/n(T) "
                                               "+ IS s/indep(T), ESS and IS cost from flows.json"})
    print(table(rows, ["T", "md_tau_U_steps", "md_tau_Q_steps", "md_converged", "md_s_per_indep", "md_U_per_N",
                       "prior_T", "pool_ess_fraction", "pool_route_s_per_indep", "speedup_pool_route_vs_md",
                       "speedup_firm"]))
    print(f"saved {path}")


if __name__ == "__main__":
    main()
