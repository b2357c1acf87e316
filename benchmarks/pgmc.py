"""tau_alpha of policy-guided MC against Metropolis (best fixed step) and uniform swap MC, same states.

Cases: KA2D N = 43 and 1290 at T = 0.5, 0.4, 0.3 and KA 3D (N = 600, cell lists) at T = 0.6, 0.5.
For each case one equilibrated start (swap MC for KA2D, Metropolis for KA 3D) is shared by every method:

- ``metropolis``: mc.py, displacement only, delta from a short scan maximising the mean squared
  displacement per sweep (the "best fixed step");
- ``swap``: mc.py with uniform swaps (swap_fraction 0.2, same delta), KA2D only (KA has no useful swap);
- ``pgmc``: policy learned in burn-in (per-species Gaussian widths; KA2D: + biased swaps through C at
  fraction ``--swap-fraction-2d`` (0.2) and environment-aware displacements at fraction
  ``--local-fraction-2d`` (default: 0.8 for N <= 100, 0.3 above, the best of the seed studies
  pgmc_seeds_lf08*.json and pgmc_n1290_t03*.json); KA 3D: + environment-aware displacements at fraction
  ``--local-fraction-3d`` (default 1.0; 0.3 before 2026-12-05)), then frozen. ``--flip-2d C`` (default 0.5)
  starts the single-flip selection coefficients at phi = -C / T (0.5 = weights exp(-dE / 2T) of the energy
  change dE of flipping each particle alone; 0 = off), learned with theta.
  Biased selection draws from sum trees per (swap pair, side); the cost per sweep of the same policy with the
  member scan (the previous kernel) is measured on one chain as ``cpu_per_sweep_scan``.

tau_alpha: F_s(q, t) of ALL particles (labels kept through swaps), q = 2 pi (2D) or 7.25 (3D), time
origin = start of the production run, pooled over chains, first crossing of 1/e (interpolated in log t),
in sweeps and in CPU seconds per chain (process time / chains). NaN = not reached in the budget ("converged":
false). Training CPU time of PGMC is reported separately. One run, one seed: no error bars.

Seed noise: ``--seeds K`` repeats every case with K seeds (independent equilibrated starts, baselines and
learned policies) and saves ``pgmc_seeds.json`` with the mean and standard error of tau_alpha per method
and the ratio of the means, e.g. ``--seeds 3 --case ka2d:43:0.4:4:8000:2000``.

Run: ``.venv/bin/python benchmarks/pgmc.py --quick`` (every case of the grid with short budgets, about 80 CPU
minutes on the 2-core machine) or without ``--quick`` for every case with longer runs (hours).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import time
from pathlib import Path

import numpy as np
from _common import save, table

from glassgen.api_pgmc import default_q
from glassgen.dynamics.initial import random_state
from glassgen.dynamics.mc import MonteCarlo
from glassgen.observables.dynamics import SelfIntermediateScattering, tau_alpha
from glassgen.observables.schedule import log_spaced_steps
from glassgen.sampling.pgmc import PGMC, PGMCTarget
from glassgen.sampling.policies import Policy, default_local_fraction


def fs_tau(sweeps: np.ndarray, frames: list[np.ndarray], q: float) -> tuple[float, float, np.ndarray]:
    """(tau_alpha in sweeps, final F_s, F_s curve) from unwrapped frames (F, N, d) of each chain."""
    fs = SelfIntermediateScattering(q)
    t = sweeps.astype(np.float64)
    for c, fr in enumerate(frames):
        fs.compute(t - t[0], fr, None, reset=(c == 0))
    return float(tau_alpha(fs.lag_times, fs.fs)), float(fs.fs[-1]), fs.fs


def best_delta(conf, T: float, sweeps: int = 60) -> tuple[float, dict[str, float]]:
    scan = {}
    for delta in (0.05, 0.08, 0.12, 0.16, 0.22):
        mc = MonteCarlo(conf, T, delta=delta, seed=11)
        prev = mc.pos.copy()
        msd = 0.0
        for _ in range(sweeps):
            mc.sweep(1)
            dx = mc.pos - prev
            dx -= conf.box * np.round(dx / conf.box)
            msd += float(np.mean(np.sum(dx * dx, axis=1)))
            prev = mc.pos.copy()
        scan[f"{delta:g}"] = msd / sweeps
    best = max(scan, key=scan.get)
    return float(best), scan


def run_mc(conf, T: float, delta: float, swap: float, chains: int, sweeps: int, q: float, seed: int) -> dict:
    frames_at = log_spaced_steps(sweeps, 8)
    frames, cpu = [], 0.0
    for c in range(chains):
        mc = MonteCarlo(conf, T, delta=delta, swap_fraction=swap, seed=seed + c)
        res = mc.run(sweeps, sample_every=max(1, sweeps // 50), traj_sweeps=frames_at)
        # the sweeps alone, as PGMC's cpu_s; until 2026-12-04 this was the whole run() (its per-sweep Python
        # unwrapping and sampling: 1.2-1.4x the sweeps), which flattered PGMC's per-CPU speed-ups
        cpu += res.info["cpu_s"]
        frames.append(res.trajectory.positions)
    tau, f_end, _ = fs_tau(np.asarray(res.trajectory.steps), frames, q)
    return {"tau_sweeps": tau, "fs_final": f_end, "cpu_per_sweep": cpu / chains / sweeps,
            "acceptance": mc.acceptance}


def learn_policy(conf, T: float, sigma0: float, chains: int, seed: int, learn_iters: int, local_2d: float = 0.0,
                 biased: bool = True, hidden: int = 8, swap_2d: float = 0.2, flip_2d: float = 0.0,
                 feature_updates: str = "deferred", anisotropic: bool = False,
                 local_3d: float = 0.3) -> tuple[PGMC, float]:
    """(PGMC whose policy was learned in ``learn_iters`` burn-in iterations from ``chains`` copies of ``conf``,
    training CPU seconds). KA2D (3 species): Gaussian, environment-aware (fraction ``local_2d``) and swap moves
    through C (``swap_2d``; single-flip selection phi = -flip_2d / T if ``biased``); KA 3D: Gaussian and
    environment-aware (``local_3d``) displacements."""
    m = conf.model
    if m.nsp == 3:
        pol = Policy.default(3, m.dim, sigma=sigma0, swap_fraction=swap_2d, swap_pairs=[(0, 2), (1, 2)], biased=biased,
                             counts=np.bincount(conf.species, minlength=3), local_fraction=local_2d, hidden=hidden,
                             phi=-flip_2d / T, anisotropic=anisotropic)
    else:
        pol = Policy.default(m.nsp, m.dim, sigma=sigma0, local_fraction=local_3d, anisotropic=anisotropic)
    pg = PGMC(PGMCTarget.from_model(m, conf.box, T), pol, [conf] * chains, seed=seed, feature_updates=feature_updates)
    t0 = time.process_time()
    # 2000 trials per iteration in all (before 2026-12-03 divided by N // 200 at large N: ~100 local trials for
    # the 66 local-network parameters, and the natural gradient then made the local policy collapse in some runs)
    pg.learn(learn_iters, trials_per_chain=max(50, 2000 // chains), optimizer="natural", lr=0.1)
    train_cpu = time.process_time() - t0
    pg.reset_stats()
    return pg, train_cpu


def run_pgmc(conf, T: float, sigma0: float, chains: int, sweeps: int, q: float, seed: int, learn_iters: int,
             local_2d: float = 0.0, biased: bool = True, hidden: int = 8, swap_2d: float = 0.2,
             flip_2d: float = 0.0, feature_updates: str = "deferred", anisotropic: bool = False,
             local_3d: float = 0.3) -> dict:
    pg, train_cpu = learn_policy(conf, T, sigma0, chains, seed, learn_iters, local_2d, biased, hidden, swap_2d,
                                 flip_2d, feature_updates, anisotropic, local_3d)
    pg_prod = PGMC(pg.target, pg.freeze(), [conf] * chains, seed=seed + 1,  # same start as the baselines
                   feature_updates=feature_updates)
    res = pg_prod.run(sweeps, sample_every=max(1, sweeps // 50), frame_sweeps=log_spaced_steps(sweeps, 8))
    tau, f_end, _ = fs_tau(res.frame_sweeps, [res.frames[:, c] for c in range(chains)], q)
    out = {"tau_sweeps": tau, "fs_final": f_end, "cpu_per_sweep": res.info["cpu_s"] / chains / sweeps,
           "acceptance": res.acceptance, "sigma": pg_prod.policy.sigma.tolist(),
           "theta": pg_prod.policy.theta.tolist(), "phi": pg_prod.policy.phi.tolist(), "train_cpu_s": train_cpu}
    if anisotropic:  # the learned network, to read its widths along and across b afterwards
        out["local_network"] = {k: v for k, v in pg_prod.policy.to_dict().items()
                                if k in ("ls0", "W1", "b1", "W2", "b2")}
    if pg_prod.policy.biased:  # the same frozen policy with the O(N_a + N_b) member scan instead of the trees
        scan = PGMC(pg.target, pg_prod.policy, [conf], seed=seed + 2, selection_tree=False,
                    feature_updates=feature_updates)
        k = max(20, sweeps // 40)
        scan.sweep(2)
        t0 = time.process_time()
        scan.sweep(k)
        out["cpu_per_sweep_scan"] = (time.process_time() - t0) / k
    return out


def seed_summary(rows: list[dict]) -> list[dict]:
    """Per (model, N, T): mean +- standard error over seeds of tau_alpha (sweeps) of every method, and the
    ratio best baseline / PGMC of the means with its first-order error; cases where some seed did not
    reach tau_alpha are reported with NaN."""
    out = []
    for key in sorted({(r["model"], r["N"], r["T"]) for r in rows}):
        sel = [r for r in rows if (r["model"], r["N"], r["T"]) == key]
        s = {"model": key[0], "N": key[1], "T": key[2], "seeds": len(sel)}
        means = {}
        for m in ("metropolis", "swap", "pgmc"):
            v = np.array([r.get(f"tau_{m}", np.nan) for r in sel], dtype=float)
            if np.all(np.isnan(v)) and m == "swap" and key[0] != "ka2d":
                continue
            sem = float(v.std(ddof=1) / math.sqrt(len(v))) if len(v) > 1 else math.nan
            means[m] = (float(v.mean()), sem)
            s[f"tau_{m}"], s[f"tau_{m}_err"] = means[m]
        base = min((means[m] for m in ("metropolis", "swap") if m in means and math.isfinite(means[m][0])),
                   default=(math.nan, math.nan))
        pg = means["pgmc"]
        s["ratio_sweeps"] = base[0] / pg[0]
        s["ratio_sweeps_err"] = s["ratio_sweeps"] * math.hypot(base[1] / base[0], pg[1] / pg[0])
        cpu = {m: float(np.mean([r.get(f"tau_cpu_{m}", np.nan) for r in sel])) for m in means}
        base_cpu = min((cpu[m] for m in ("metropolis", "swap") if m in cpu and math.isfinite(cpu[m])), default=math.nan)
        s["ratio_cpu"] = base_cpu / cpu["pgmc"]  # CPU seconds per chain; timings of a shared, noisy machine
        out.append(s)
    return out


def local_fraction_2d(requested: float | None, n: int) -> float:
    """KA2D fraction of environment-aware displacements: the requested value, else the package default
    (:func:`glassgen.sampling.policies.default_local_fraction`: 0.8 for N <= 100, 0.3 above; N = 43, T = 0.3:
    0.8 beats 0.3; N = 1290, T = 0.3: 0.3 beats 0.8, see docs/pgmc.md)."""
    if requested is not None:
        return requested
    return default_local_fraction(2, n)


def equilibrated(model: str, n: int, T: float, sweeps: int, seed: int = 1):
    conf = random_state(model, n, seed=seed)
    swap = 0.2 if model == "ka2d" else 0.0
    mc = MonteCarlo(conf, T, delta=0.1, swap_fraction=swap, seed=seed)
    mc.tune_delta(sweeps=max(1, sweeps // 20), rounds=5)
    mc.sweep(sweeps)
    return mc.configuration()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true", help="The whole grid with short budgets (~80 CPU min).")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--case", action="append", default=[], metavar="MODEL:N:T:CHAINS:SWEEPS:EQ",
                    help="Run only these cases (repeatable), e.g. ka2d:1290:0.5:2:6000:1000; their rows replace "
                         "rows of the same (model, N, T) in the saved JSON, the other rows are kept.")
    ap.add_argument("--seeds", type=int, default=1,
                    help="Repeat every case with this many seeds; > 1 saves pgmc_seeds.json with means and errors.")
    ap.add_argument("--local-fraction-2d", type=float, default=None,
                    help="KA2D PGMC: fraction of environment-aware displacements (0: Gaussian + swaps only; "
                         "default 0.8 for N <= 100, 0.3 above)")
    ap.add_argument("--local-fraction-3d", type=float, default=default_local_fraction(3, 600),
                    help="KA 3D PGMC: fraction of environment-aware displacements, the rest Gaussian (default "
                         f"{default_local_fraction(3, 600)}, the package's; the studies before 2026-12-05 used 0.3)")
    ap.add_argument("--learn-iters", type=int, default=None,
                    help="PGMC learning iterations in burn-in (default 60 with --case/--quick, 200 for the full grid)")
    ap.add_argument("--uniform-selection", action="store_true",
                    help="KA2D PGMC: uniform swap selection (no learned bias, no feature tracking)")
    ap.add_argument("--swap-fraction-2d", type=float, default=0.2,
                    help="KA2D PGMC: fraction of swap moves (the swap-MC baseline keeps 0.2)")
    ap.add_argument("--flip-2d", type=float, default=0.5, metavar="C",
                    help="KA2D PGMC: start the single-flip selection coefficients at phi = -C / T (0.5: weights "
                         "exp(-dE/2T) of the single-flip energy changes; 0: off), then learn them with theta")
    ap.add_argument("--hidden", type=int, default=8, help="KA2D PGMC: hidden units of the local-policy network")
    ap.add_argument("--feature-updates", choices=("deferred", "incremental"), default="deferred",
                    help="PGMC selection features: recomputed before the swaps of each sweep (deferred, default) or "
                         "updated by every move (incremental, the kernel of the results before 2026-12-03)")
    ap.add_argument("--anisotropic", action="store_true",
                    help="PGMC: local policy with a learned width along the environment's direction b")
    ap.add_argument("--tag", default="", help="suffix of the results name (pgmc[_seeds]_<tag>.json)")
    args = ap.parse_args()
    name = ("pgmc" if args.seeds == 1 else "pgmc_seeds") + (f"_{args.tag}" if args.tag else "")
    previous: list[dict] = []
    if args.case:
        cases = []
        for c in args.case:
            m, n, t, ch, sw, eq = c.split(":")
            cases.append((m, int(n), float(t), int(ch), int(sw), int(eq)))
        learn_iters = 60
        old = Path(__file__).resolve().parent / "results" / f"{name}.json"
        if old.exists():
            keys = {(m, n, t) for m, n, t, *_ in cases}
            previous = [r for r in json.loads(old.read_text())["rows"] if (r["model"], r["N"], r["T"]) not in keys]
    elif args.quick:
        # the whole grid of the issue in one run, with budgets a quiet 2-core machine affords (~80 CPU min)
        cases = [("ka2d", 43, 0.5, 4, 4000, 2000), ("ka2d", 43, 0.4, 4, 8000, 2000), ("ka2d", 43, 0.3, 4, 12000, 2000),
                 ("ka2d", 1290, 0.5, 2, 4000, 2000), ("ka2d", 1290, 0.4, 2, 4000, 3000),
                 ("ka2d", 1290, 0.3, 2, 12000, 3000), ("ka3d", 600, 0.6, 2, 3000, 2000),
                 ("ka3d", 600, 0.5, 2, 3000, 3000)]
        learn_iters = 60
    else:
        cases = [("ka2d", 43, T, 8, 100_000, 5000) for T in (0.5, 0.4, 0.3)]
        cases += [("ka2d", 1290, T, 2, 20_000, 3000) for T in (0.5, 0.4, 0.3)]
        cases += [("ka3d", 600, T, 2, 20_000, 3000) for T in (0.6, 0.5)]
        learn_iters = 200
    learn_iters = args.learn_iters or learn_iters
    mode = "cases" if args.case else ("quick" if args.quick else "full")
    rows = []
    t_start = time.process_time()
    runs = [(c, args.seed + 1000 * k) for c in cases for k in range(args.seeds)]
    for (model, n, T, chains, sweeps, eq), seed in runs:
        q = default_q(2 if model == "ka2d" else 3)
        conf = equilibrated(model, n, T, eq, seed)
        delta, scan = best_delta(conf, T)
        row = {"model": model, "N": n, "T": T, "seed": seed, "chains": chains, "sweeps": sweeps, "q": q,
               "delta_best": delta, "delta_scan_msd_per_sweep": scan, "equilibration_sweeps": eq}
        if model == "ka2d":
            row["local_fraction_2d"] = local_fraction_2d(args.local_fraction_2d, n)
            row["flip_2d"] = args.flip_2d
        else:
            row["local_fraction_3d"] = args.local_fraction_3d
        res = {"metropolis": run_mc(conf, T, delta, 0.0, chains, sweeps, q, seed + 10)}
        if model == "ka2d":
            res["swap"] = run_mc(conf, T, delta, 0.2, chains, sweeps, q, seed + 20)
        res["pgmc"] = run_pgmc(conf, T, delta / math.sqrt(3), chains, sweeps, q, seed + 30, learn_iters,
                               local_fraction_2d(args.local_fraction_2d, n), biased=not args.uniform_selection,
                               hidden=args.hidden, swap_2d=args.swap_fraction_2d, flip_2d=args.flip_2d,
                               feature_updates=args.feature_updates, anisotropic=args.anisotropic,
                               local_3d=args.local_fraction_3d)
        row["methods"] = res
        for k, v in res.items():
            v["converged"] = bool(math.isfinite(v["tau_sweeps"]))
            v["tau_cpu_s"] = v["tau_sweeps"] * v["cpu_per_sweep"]
            row[f"tau_{k}"] = v["tau_sweeps"]
            row[f"fs_end_{k}"] = v["fs_final"]
            row[f"tau_cpu_{k}"] = v["tau_cpu_s"]
        base = [res[k] for k in ("metropolis", "swap") if k in res]
        best_sw = min((b["tau_sweeps"] for b in base if b["converged"]), default=math.nan)
        best_cpu = min((b["tau_cpu_s"] for b in base if b["converged"]), default=math.nan)
        row["speedup_sweeps"] = best_sw / res["pgmc"]["tau_sweeps"] if res["pgmc"]["converged"] else math.nan
        row["speedup_cpu"] = best_cpu / res["pgmc"]["tau_cpu_s"] if res["pgmc"]["converged"] else math.nan
        row["loadavg"] = list(os.getloadavg())
        rows.append(row)
        print({k: v for k, v in row.items() if k not in ("methods", "delta_scan_msd_per_sweep")}, flush=True)
        save(name, {"mode": mode, "args": vars(args), "rows": previous + rows, "complete": False,
                    "cpu_s_total": time.process_time() - t_start})
    rows = previous + rows
    extra = {"summary": seed_summary(rows)} if args.seeds > 1 else {}
    path = save(name, {"mode": mode, "args": vars(args), "rows": rows, "complete": True, **extra,
                         "cpu_s_total": time.process_time() - t_start, "loadavg_end": list(os.getloadavg()),
                         "definition": "tau_alpha: F_s(q,t) of all particles = 1/e, origin = start of production, "
                                       "pooled over chains; sweeps and CPU s per chain; NaN = not reached"})
    cols = ["model", "N", "T", "tau_metropolis", "tau_swap", "tau_pgmc", "fs_end_metropolis", "fs_end_swap",
            "fs_end_pgmc", "speedup_sweeps", "speedup_cpu"]
    print(table(rows, cols))
    if extra:
        print(table(extra["summary"], ["model", "N", "T", "seeds", "tau_metropolis", "tau_swap", "tau_pgmc",
                                       "ratio_sweeps", "ratio_sweeps_err", "ratio_cpu"]))
    print(f"saved {path}")


if __name__ == "__main__":
    main()
