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

Engines: ``--engine numba`` (default; ``md_reference.json``) or ``--engine lammps`` (LAMMPS ``fix nvt``,
Nose-Hoover chain with tau = 0.5, same dt; ``md_reference_lammps.json``). Both sides of every ratio (MD at T
and the pool's MD at T_h) use the engine of the run, so the ratio is that of the autocorrelation times in
steps, weighted by the ESS; the engine sets only the seconds. The LAMMPS runs go in chunks of ``--chunk``
steps; after each chunk the state (positions, velocities, the sampled energies and frames) is saved to
``benchmarks/results/ckpt/`` and ``--resume`` continues from it (the thermostat's chain variables restart at
each chunk, the particles do not).

Annealed route: the pool's configurations annealed from T_h to T in K Metropolis sweeps (a stochastic
normalizing flow with identity deterministic layers): (MD s/indep(T_h) + annealing s per sample) / ESS/n,
best K. ESS/n and the annealing cost come from ``annealed.json`` / ``annealed_long.json`` (512 samples of
the shipped pools) for the Numba engine, and from ``annealed_md_pool.json`` (thousands of samples of this
run's own LAMMPS pool) for the LAMMPS engine.

Rows are saved after each temperature; ``--resume`` skips temperatures already in the JSON (and recomputes
the routes). Run: ``.venv/bin/python benchmarks/md_reference.py`` (about 15 min on one core), or, as
measured for the README, ``--engine lammps --T 0.7:4e6:200 --T 0.6:4e6:200 --T 0.5:6e7:2000
--T 0.45:1.2e8:5000 --resume`` (about 2 h on one core), then ``annealed_md_pool.py`` (0.6 -> 0.5 and
``--T-h 0.5 --T 0.45 --every 2000 --stride 15``) and the same command again to price the routes.
``--N 32`` runs the same at N = 32 (``md_reference_lammps_n32.json``, checkpoints tagged ``_n32``): the reference
of the N = 32 generator, e.g. ``--engine lammps --N 32 --T 0.7:1e7:500 --T 0.6:2e7:1000 --resume``.
``--model ka2d --N 43`` runs the Numba MD of KA2D N = 43 (``md_reference_ka2d_n43.json``), the MD side of the
KA2D comparison in ``swap_reference.py``, e.g. ``--model ka2d --N 43 --T 0.5:2e7:500 --T 0.4:6e7:1000
--T 0.35:2e8:2000 --resume`` (the 0.35 run: about 65 CPU minutes).
"""

from __future__ import annotations

import argparse
import json
import math
import time

import numba
import numpy as np
from _common import RESULTS, save, table
from flows import equilibrated, run_md, tau_of

from glassgen.flows.weights import kish_ess_fraction
from glassgen.observables.thermo import mean_and_error
from glassgen.provenance import atomic_path
from glassgen.systems.configuration import Configuration


def run_md_lammps_chunked(mc, T: float, steps: int, every: int, chunk: int, resume: bool,
                          energies: list | None = None, tag: str = "") -> dict:
    """``run_md``'s row entries from LAMMPS NVT MD, run in checkpointed chunks (steps/5 of equilibration first,
    also in checkpointed chunks)."""
    from glassgen.dynamics.lammps_engine import run_md_lammps

    ck = RESULTS / "ckpt" / f"md_reference_lammps{tag}_T{T}.npz"
    model, species, box = mc.model, mc.species, mc.box
    eq_steps = steps // 5
    if resume and ck.exists():
        z = np.load(ck)
        pos, vel, u, frames = z["positions"], z["velocities"], list(z["u"]), list(z["frames"])
        done, wall = int(z["done"]), float(z["wall_s"])
        eq_done = int(z["eq_done"]) if "eq_done" in z else eq_steps
    else:
        conf = mc.configuration()
        pos, vel, u, frames, done, wall, eq_done = conf.positions, None, [], [], 0, 0.0, 0

    def save_state() -> None:
        with atomic_path(ck) as tmp:
            with open(tmp, "wb") as fh:
                np.savez(fh, positions=pos, velocities=np.zeros_like(pos) if vel is None else vel, u=np.asarray(u),
                         frames=np.asarray(frames).reshape(-1, *pos.shape), done=done, wall_s=wall,
                         eq_done=eq_done, every=every, species=species, box=box)

    while eq_done < eq_steps:  # equilibration, checkpointed too
        n = min(chunk, eq_steps - eq_done)
        res = run_md_lammps(Configuration(pos, species, box, model, velocities=vel), T=T, dt=0.005, nsteps=n,
                            tau=0.5, thermo_every=n, seed=1 + eq_done, init_velocities=vel is None)
        pos, vel, eq_done = res.final.positions, res.final.velocities, eq_done + n
        save_state()
        print(f"T={T}: equilibration {eq_done}/{eq_steps} steps", flush=True)
    while done < steps:
        n = min(chunk, steps - done)
        n -= n % every
        conf = Configuration(pos, species, box, model, velocities=vel)
        t0 = time.perf_counter()
        res = run_md_lammps(conf, T=T, dt=0.005, nsteps=n, tau=0.5, thermo_every=every,
                            traj_steps=np.arange(every, n + 1, every), seed=1 + done)
        wall += time.perf_counter() - t0
        u.extend(res.thermo.potential[1:])
        frames.extend(res.trajectory.positions)
        pos, vel, done = res.final.positions, res.final.velocities, done + n
        save_state()
        print(f"T={T}: {done}/{steps} steps, {wall:.0f} s", flush=True)
    ua, fa = np.asarray(u), np.asarray(frames)
    if energies is not None:
        energies.append(ua)
    tu, tq, conv = tau_of(ua, fa, box)
    return {"md_tau_U_steps": tu * every, "md_tau_Q_steps": tq * every, "md_converged": conv,
            "md_s_per_indep": wall / ua.size * max(tu, tq), "md_U_per_N": float(ua.mean() / mc.n),
            "md_U_per_N_err": float(mean_and_error(ua / mc.n)[1]), "engine": "lammps"}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=4_000_000)
    ap.add_argument("--every", type=int, default=200)
    ap.add_argument("--T", action="append", default=[],
                    help="temperature, repeatable, as T or T:steps or T:steps:every (default 0.7 0.6 0.5 0.45 0.4 "
                         "with --steps and --every)")
    ap.add_argument("--resume", action="store_true")
    ap.add_argument("--N", type=int, default=64, help="particles (results of N != 64 go to *_n<N>.json)")
    ap.add_argument("--model", default="ka3d", help="ka3d (default) or ka2d (results go to *_ka2d_n<N>.json; "
                                                    "its pool routes are priced in swap_reference.py)")
    ap.add_argument("--engine", choices=["numba", "lammps"], default="numba")
    ap.add_argument("--chunk", type=int, default=2_000_000, help="LAMMPS steps between checkpoints")
    args = ap.parse_args()
    numba.set_num_threads(1)
    spec = {}  # T -> (steps, every)
    for t in args.T or ["0.7", "0.6", "0.5", "0.45", "0.4"]:
        parts = t.split(":")
        try:
            if not 1 <= len(parts) <= 3:
                raise ValueError
            T, steps, every = (float(parts[0]), int(float(parts[1])) if len(parts) > 1 else args.steps,
                               int(parts[2]) if len(parts) > 2 else args.every)
            if not (T > 0 and steps > 0 and every > 0 and steps >= every):
                raise ValueError
        except ValueError:
            ap.error(f"--T {t!r}: expected T[:steps[:every]] with T > 0 and steps >= every > 0")
        spec[T] = (steps, every)
    temps = sorted(spec, reverse=True)
    tag = ("" if args.N == 64 else f"_n{args.N}") if args.model == "ka3d" else f"_{args.model}_n{args.N}"
    name = ("md_reference" if args.engine == "numba" else "md_reference_lammps") + tag
    out = RESULTS / f"{name}.json"
    rows = json.loads(out.read_text())["rows"] if args.resume and out.exists() else []
    done = {r["T"] for r in rows}
    for T in temps:
        if T in done:
            continue
        mc = equilibrated(args.model, args.N, T, 4000, seed=7)
        t0 = time.perf_counter()
        u: list = []
        steps, every = spec[T]
        if args.engine == "numba":
            md, _, _ = run_md(mc, T, steps, every, energies=u)
        else:
            md = run_md_lammps_chunked(mc, T, steps, every, args.chunk, args.resume, energies=u, tag=tag)
        lower = [t for t in temps if t < T]
        ess = {}
        if lower:  # reweight this run's samples (a pool at T) to the next lower temperature: identity map
            tl = max(lower)
            ess[str(tl)] = kish_ess_fraction(-u[0] * (1.0 / tl - 1.0 / T))
        rows.append({"model": args.model, "N": args.N, "T": T, "steps": steps, "every": every,
                     "wall_s": time.perf_counter() - t0, "ess_identity_to": ess, **md})
        print(rows[-1], flush=True)
        save(name, {"rows": rows, "complete": False})
    flows = {r["T"]: r for r in json.loads((RESULTS / "flows.json").read_text())["rows"]
             if r["model"] == args.model and r["N"] == args.N}
    # MD cost per independent sample and whether it is converged (else a lower bound)
    md_cost = ({0.6: (flows[0.6]["md_s_per_indep"], flows[0.6]["md_converged"])}
               if 0.6 in flows and args.engine == "numba" else {})
    md_cost.update({r["T"]: (r["md_s_per_indep"], r["md_converged"]) for r in rows})
    pools = {}  # target T -> (T_h, ESS/n, IS cost)
    for T, f in flows.items():
        if f.get("is_ess_fraction"):
            pools[T] = (f["prior_T"], f["is_ess_fraction"], f["is_s_per_indep"])
    if args.engine == "lammps" and (RESULTS / "annealed_md_pool.json").exists():  # identity on this run's pools
        for a in json.loads((RESULTS / "annealed_md_pool.json").read_text())["rows"]:
            if a["steps"] == 1 and a["sweeps_per_step"] == 0 and a.get("N", 64) == args.N:
                pools[a["T"]] = (a["T_h"], a["ess_fraction"], 1e-3 * a["ms_per_sample"] / a["ess_fraction"])
    for r in rows:  # identity from this run's whole trajectory at T_h: the most samples, preferred
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
    # annealed route: the pool's configurations annealed from T_h to T in K Metropolis sweeps
    # (benchmarks/annealed.py); cost (MD s/indep(T_h) + annealing s per sample) / ESS/n, best K
    ais = []
    # LAMMPS: only the annealing of this run's own MD pool (thousands of samples); Numba: the shipped pools
    sources = ("annealed_md_pool.json",) if args.engine == "lammps" else ("annealed.json", "annealed_long.json")
    for fname in sources:
        if (RESULTS / fname).exists():
            ais += [a for a in json.loads((RESULTS / fname).read_text())["rows"]
                    if a["model"] == args.model and a["N"] == args.N and a["sweeps_per_step"] > 0]
    for r in rows:
        best = None
        for a in ais:
            if a["T"] == r["T"] and a["T_h"] in md_cost:
                cost = (md_cost[a["T_h"]][0] + 1e-3 * a["ms_per_sample"]) / a["ess_fraction"]
                if best is None or cost < best[0]:
                    best = (cost, a)
        if best is not None:
            cost, a = best
            r.update({"ais_T_h": a["T_h"], "ais_steps": a["steps"], "ais_ess_fraction": a["ess_fraction"],
                      "ais_ms_per_sample": a["ms_per_sample"], "ais_route_s_per_indep": cost,
                      "speedup_ais_route_vs_md": r["md_s_per_indep"] / cost,
                      "ais_speedup_firm": bool(r["md_converged"] and md_cost[a["T_h"]][1])})
    path = save(name, {"rows": rows, "complete": True,
                                 "definition": "tau = max(tau_U, tau_Q) in steps; s/indep = MD wall s (1 thread) x "
                                               "tau / sampling interval; pool route = MD s/indep(T_h) / ESS/n(T) "
                                               "+ IS s/indep(T), ESS and IS cost from flows.json or this run's "
                                               "identity reweighting; annealed route = (MD s/indep(T_h) + annealing "
                                               "s per sample) / ESS/n, from annealed*.json, best K"})
    print(table(rows, ["T", "md_tau_U_steps", "md_tau_Q_steps", "md_converged", "md_s_per_indep", "md_U_per_N",
                       "prior_T", "pool_ess_fraction", "pool_route_s_per_indep", "speedup_pool_route_vs_md",
                       "speedup_firm", "ais_steps", "ais_ess_fraction", "ais_route_s_per_indep",
                       "speedup_ais_route_vs_md", "ais_speedup_firm"]))
    print(f"saved {path}")


if __name__ == "__main__":
    main()
