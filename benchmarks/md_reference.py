"""Long MD references for the Boltzmann-generator benchmark: MD cost per independent sample, converged.

``benchmarks/flows.py`` runs 400 000 MD steps per state point. Below T = 0.6 the Sokal window of the
self-overlap time tau_Q is not reached there, so MD's cost per independent sample is only a lower bound,
and so is the "pool route" comparison of issue 3. This script runs the same MD (``flows.run_md``: NVT,
Nose-Hoover chain, dt = 0.005, one thread, start from an equilibrated MC state plus steps/5 of MD) for
``--steps`` steps at KA 3D N = 64 and T = 0.5, 0.45, 0.4. It reports tau_U, tau_Q, whether the window
was reached, and wall seconds per independent sample, tau = max(tau_U, tau_Q).

It then recomputes, with the ESS/n and importance-sampling cost of ``benchmarks/results/flows.json``, the
cost of an independent sample at T drawn from the pool at T_h with the pool's MD paid for:
pool route(T) = MD s/indep(T_h) / ESS/n(T) + IS s/indep(T), and speed-up = MD s/indep(T) / pool route(T).
MD at T_h = 0.6 comes from flows.json (converged there); the others come from this run.

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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=4_000_000)
    ap.add_argument("--every", type=int, default=200)
    ap.add_argument("--T", type=float, action="append", default=[], help="temperatures (default 0.5 0.45 0.4)")
    ap.add_argument("--resume", action="store_true")
    args = ap.parse_args()
    numba.set_num_threads(1)
    temps = args.T or [0.5, 0.45, 0.4]
    out = RESULTS / "md_reference.json"
    rows = json.loads(out.read_text())["rows"] if args.resume and out.exists() else []
    done = {r["T"] for r in rows}
    for T in temps:
        if T in done:
            continue
        mc = equilibrated("ka3d", 64, T, 4000, seed=7)
        t0 = time.perf_counter()
        md, _, _ = run_md(mc, T, args.steps, args.every)
        rows.append({"model": "ka3d", "N": 64, "T": T, "steps": args.steps, "every": args.every,
                     "wall_s": time.perf_counter() - t0, **md})
        print(rows[-1], flush=True)
        save("md_reference", {"rows": rows, "complete": False})
    flows = {r["T"]: r for r in json.loads((RESULTS / "flows.json").read_text())["rows"]
             if r["model"] == "ka3d" and r["N"] == 64}
    md_cost = {0.6: flows[0.6]["md_s_per_indep"]} if flows.get(0.6, {}).get("md_converged") else {}
    md_cost.update({r["T"]: r["md_s_per_indep"] for r in rows if r["md_converged"]})
    for r in rows:
        f = flows.get(r["T"], {})
        th = f.get("prior_T")
        r["prior_T"] = th
        if th is None or th not in md_cost or not f.get("is_ess_fraction"):
            r["pool_route_s_per_indep"] = math.nan
        else:
            r["pool_route_s_per_indep"] = md_cost[th] / f["is_ess_fraction"] + f["is_s_per_indep"]
        r["is_ess_fraction"] = f.get("is_ess_fraction", math.nan)
        firm = r["md_converged"] and math.isfinite(r["pool_route_s_per_indep"])
        r["speedup_pool_route_vs_md"] = r["md_s_per_indep"] / r["pool_route_s_per_indep"] if firm else math.nan
    path = save("md_reference", {"rows": rows, "complete": True,
                                 "definition": "tau = max(tau_U, tau_Q) in steps; s/indep = MD wall s (1 thread) x "
                                               "tau / sampling interval; pool route = MD s/indep(T_h) / ESS/n(T) "
                                               "+ IS s/indep(T), ESS and IS cost from flows.json"})
    print(table(rows, ["T", "md_tau_U_steps", "md_tau_Q_steps", "md_converged", "md_s_per_indep", "md_U_per_N",
                       "prior_T", "is_ess_fraction", "pool_route_s_per_indep", "speedup_pool_route_vs_md"]))
    print(f"saved {path}")


if __name__ == "__main__":
    main()
