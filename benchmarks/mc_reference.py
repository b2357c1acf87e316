"""Local Metropolis MC in small boxes: the Verlet list over images, and MC's cost per independent sample.

Two parts, one script:

* ``kernel``: ms per sweep of the same chain with the image sum (every particle, every one of the 3^d
  periodic images) and with the Verlet list over images (``MonteCarlo(neighbour_list=...)``, the default in
  boxes smaller than 2 r_c), KA 3D N = 32, 64, 128 at T = 0.6 from an equilibrated state, delta tuned to 40%
  acceptance. The two chains are checked to end in the same state; the ratio is image sum / list.
* ``reference``: long local-MC chains at KA 3D N = 64 (``--T T:sweeps:every``, repeatable), delta the one of
  largest mean squared displacement per sweep, started down a ladder (each temperature from the chain's last
  state above; a fifth of the sweeps of equilibration), in checkpointed chunks that resume. tau_U and tau_Q
  (self-overlap, a = 0.3) in sweeps as in ``md_reference.py``, CPU s per independent sample, U/N with its
  error; against the converged LAMMPS MD references of ``md_reference_lammps.json`` (N = 64, measured with
  the same tau definitions): the z-score of U/N (MC and MD are independent samplers of one ensemble) and
  MD s/indep / MC s/indep. ``--lammps T:steps:every`` reruns LAMMPS NVT MD in this script for a same-run
  baseline (T = 0.6: 4e6 steps, about 3 min).

Run: ``.venv/bin/python benchmarks/mc_reference.py --part kernel`` (about 1 min), or, as measured for
docs/flows.md, ``--part reference --T 0.6:4e5:100 --T 0.5:2e6:500 --lammps 0.6:4e6:200 --resume``.
Results: ``benchmarks/results/mc_reference.json`` (rows of both parts, merged by key).
"""

from __future__ import annotations

import argparse
import json
import math
import time

import numba
import numpy as np
from _common import RESULTS, save, table
from flows import equilibrated, tau_of

from glassgen.dynamics.mc import MonteCarlo
from glassgen.observables.thermo import mean_and_error

NAME = "mc_reference"


def kernel_rows(sweeps: int) -> list[dict]:
    rows = []
    for n in (32, 64, 128):
        mc0 = equilibrated("ka3d", n, 0.6, 2000, seed=1)
        conf, delta = mc0.configuration(), float(mc0.delta[0])
        cost, final = {}, {}
        for listed in (False, True):
            mc = MonteCarlo(conf, 0.6, delta=delta, seed=3, neighbour_list=listed)
            mc.sweep(20)  # compiled, warm
            t0 = time.process_time()
            mc.sweep(sweeps)
            cost[listed] = (time.process_time() - t0) / sweeps
            final[listed] = (mc.pos.copy(), mc.list_stats.copy(), mc.acceptance["displacement"], mc.shifts.shape[0])
        same = bool(np.array_equal(final[False][0], final[True][0]))
        trials = (sweeps + 20) * n
        rows.append({"part": "kernel", "model": "ka3d", "N": n, "T": 0.6, "delta": delta, "sweeps": sweeps,
                     "images": int(final[False][3]), "acceptance": final[True][2],
                     "ms_per_sweep_image_sum": 1e3 * cost[False], "ms_per_sweep_list": 1e3 * cost[True],
                     "speedup_list": cost[False] / cost[True], "same_chain": same,
                     "trials_beyond_skin_fraction": float(final[True][1][0]) / trials,
                     "rebuilds_per_sweep": float(final[True][1][1]) / (sweeps + 20)})
        print(rows[-1], flush=True)
    return rows


def best_delta(mc: MonteCarlo, sweeps: int = 200) -> tuple[float, dict[str, float]]:
    """delta of the largest mean squared displacement per sweep (short scan from the chain's state)."""
    conf, scan = mc.configuration(), {}
    for delta in (0.04, 0.06, 0.08, 0.10, 0.13, 0.16):
        trial = MonteCarlo(conf, mc.T, delta=delta, seed=11)
        res = trial.run(sweeps, sample_every=sweeps, traj_sweeps=[0, sweeps])
        d = res.trajectory.positions[-1] - res.trajectory.positions[0]
        scan[f"{delta:g}"] = float(np.mean(np.sum(d * d, axis=1))) / sweeps
    best = max(scan, key=scan.get)
    return float(best), scan


def reference_row(mc: MonteCarlo, T: float, sweeps: int, every: int, resume: bool, chain_id: int = 0,
                  fixed_delta: float | None = None) -> tuple[dict, MonteCarlo]:
    """One long chain at T from ``mc``'s state: equilibration (sweeps / 5, checkpointed), then the run.
    ``chain_id`` > 0: another independent chain (own seeds and checkpoints); ``fixed_delta``: no scan."""
    delta, scan = (fixed_delta, {}) if fixed_delta else best_delta(mc)
    seed = int(1000 * T) + 7 + 100 * chain_id
    chain = MonteCarlo(mc.configuration(), T, delta=delta, seed=seed, origin=f"ladder start {T}")
    tag = f"_c{chain_id}" if chain_id else ""
    ck_eq = RESULTS / "ckpt" / f"{NAME}_T{T}{tag}_eq.h5"
    ck = RESULTS / "ckpt" / f"{NAME}_T{T}{tag}.h5"
    ck.parent.mkdir(parents=True, exist_ok=True)
    if not resume:
        for c in (ck_eq, ck):
            c.unlink(missing_ok=True)
    eq = sweeps // 5
    chain.run(eq, sample_every=max(1, eq // 10), checkpoint=ck_eq, checkpoint_every=max(1, eq // 20))
    run_chain = MonteCarlo(chain.configuration(), T, delta=delta, seed=seed + 1,
                           origin=f"after {eq} sweeps of equilibration at {T}")
    res = run_chain.run(sweeps, sample_every=every, traj_sweeps=np.arange(0, sweeps + 1, every), checkpoint=ck,
                        checkpoint_every=max(every, sweeps // 40))
    u = np.asarray(res.thermo.potential)
    tu, tq, conv = tau_of(u, res.trajectory.positions, run_chain.box)
    cps = res.info["cpu_s"] / sweeps
    mean, err = mean_and_error(u / run_chain.n)
    row = {"part": "reference", "chain": chain_id, "model": "ka3d", "N": run_chain.n, "T": T, "sweeps": sweeps,
           "every": every,
           "equilibration_sweeps": eq, "delta": delta, "delta_scan_msd_per_sweep": scan,
           "acceptance": run_chain.acceptance["displacement"], "list": bool(run_chain.use_list),
           "mc_tau_U_sweeps": tu * every, "mc_tau_Q_sweeps": tq * every, "mc_converged": conv,
           "mc_ms_per_sweep": 1e3 * cps, "mc_s_per_indep": cps * every * max(tu, tq),
           "mc_U_per_N": float(mean), "mc_U_per_N_err": float(err), "cpu_s": float(res.info["cpu_s"])}
    return row, run_chain


def pool_chains(rows: list[dict]) -> None:
    """Replace the ``reference_pooled`` rows: per T with two or more chains, the mean of the chain means with
    the larger of the combined within-chain error and the chain-to-chain standard error (chains of N = 64
    have slow energy fluctuations that one chain's own tau underestimates, see docs/flows.md)."""
    rows[:] = [r for r in rows if r["part"] != "reference_pooled"]
    by_t: dict[float, list[dict]] = {}
    for r in rows:
        if r["part"] == "reference" and r["N"] == 64:
            by_t.setdefault(r["T"], []).append(r)
    for T, rs in sorted(by_t.items(), reverse=True):
        if len(rs) < 2:
            continue
        m = np.array([r["mc_U_per_N"] for r in rs])
        within = math.sqrt(sum(r["mc_U_per_N_err"] ** 2 for r in rs)) / len(rs)
        spread = float(m.std(ddof=1) / math.sqrt(len(rs)))
        cpu = sum(r["cpu_s"] for r in rs)
        # cost per independent sample of the pooled chains: CPU s / sum over chains of sweeps / tau
        indep = sum(r["sweeps"] / max(r["mc_tau_U_sweeps"], r["mc_tau_Q_sweeps"]) for r in rs)
        rows.append({"part": "reference_pooled", "chain": -1, "model": "ka3d", "N": 64, "T": T, "chains": len(rs),
                     "mc_U_per_N": float(m.mean()), "mc_U_per_N_err": max(within, spread),
                     "mc_U_per_N_err_within": within, "mc_U_per_N_err_spread": spread,
                     "mc_converged": all(r["mc_converged"] for r in rs), "mc_s_per_indep": cpu / indep,
                     "cpu_s": cpu})


def compare_with_md(rows: list[dict]) -> None:
    """Add the LAMMPS MD references (stored, and any rerun in this script) to the reference rows."""
    pool_chains(rows)
    stored = RESULTS / "md_reference_lammps.json"
    md = {r["T"]: r for r in json.loads(stored.read_text())["rows"]} if stored.exists() else {}
    same_run = {r["T"]: r for r in rows if r["part"] == "lammps"}
    for r in rows:
        if r["part"] not in ("reference", "reference_pooled") or r["N"] != 64:
            continue
        for key, src in (("md", md), ("md_same_run", same_run)):
            m = src.get(r["T"])
            if m is None:
                continue
            r[f"{key}_s_per_indep"] = m["md_s_per_indep"]
            r[f"{key}_converged"] = m["md_converged"]
            r[f"{key}_U_per_N"] = m["md_U_per_N"]
            r[f"{key}_over_mc"] = m["md_s_per_indep"] / r["mc_s_per_indep"]
            r[f"{key}_U_z"] = (r["mc_U_per_N"] - m["md_U_per_N"]) / math.hypot(r["mc_U_per_N_err"],
                                                                               m["md_U_per_N_err"])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--part", choices=["kernel", "reference"], default="kernel")
    ap.add_argument("--kernel-sweeps", type=int, default=2000)
    ap.add_argument("--T", action="append", default=[], help="T:sweeps:every for --part reference (repeatable)")
    ap.add_argument("--lammps", action="append", default=[], help="T:steps:every, LAMMPS MD rerun in this script")
    ap.add_argument("--resume", action="store_true")
    ap.add_argument("--chain", type=int, default=0, help="chain index (0: the ladder chain; k > 0: another "
                                                         "independent chain, own seeds, start and checkpoints)")
    ap.add_argument("--delta", type=float, default=None, help="fixed MC step (default: scanned per T)")
    args = ap.parse_args()
    numba.set_num_threads(1)
    out = RESULTS / f"{NAME}.json"
    rows = json.loads(out.read_text())["rows"] if out.exists() else []

    def keep(new: list[dict]) -> None:  # re-read first: another process of this script may have saved rows
        def key(r: dict) -> tuple:
            return r["part"], r["N"], r["T"], r.get("chain", 0)

        keys = {key(r) for r in new}
        current = json.loads(out.read_text())["rows"] if out.exists() else []
        rows[:] = [r for r in current if key(r) not in keys] + new
        compare_with_md(rows)
        save(NAME, {"rows": rows})

    if args.part == "kernel":
        keep(kernel_rows(args.kernel_sweeps))
    else:
        specs = []
        for t in args.T:
            try:
                T, sweeps, every = t.split(":")
                specs.append((float(T), int(float(sweeps)), int(every)))
            except ValueError:
                ap.error(f"--T {t!r}: expected T:sweeps:every")
        specs.sort(reverse=True)
        if specs:
            mc = equilibrated("ka3d", 64, specs[0][0], 4000, seed=7 + args.chain)
            for T, sweeps, every in specs:
                done = [r for r in rows if r["part"] == "reference" and r["T"] == T and r["sweeps"] == sweeps
                        and r.get("chain", 0) == args.chain]
                row, mc = reference_row(mc, T, sweeps, every, args.resume, args.chain, args.delta)
                if done and args.resume:  # a finished chain reloaded: its CPU time is that of the first run
                    cps = 1e-3 * done[0]["mc_ms_per_sweep"]
                    row = {**done[0], **row, "mc_ms_per_sweep": done[0]["mc_ms_per_sweep"], "cpu_s": done[0]["cpu_s"],
                           "mc_s_per_indep": cps * max(row["mc_tau_U_sweeps"], row["mc_tau_Q_sweeps"])}
                print(row, flush=True)
                keep([row])
        for t in args.lammps:
            from md_reference import run_md_lammps_chunked

            T, steps, every = t.split(":")
            T, steps, every = float(T), int(float(steps)), int(every)
            mc = equilibrated("ka3d", 64, T, 4000, seed=7)
            t0 = time.perf_counter()
            md = run_md_lammps_chunked(mc, T, steps, every, 2_000_000, args.resume, tag="_mc_reference")
            keep([{"part": "lammps", "model": "ka3d", "N": 64, "T": T, "steps": steps, "every": every,
                   "wall_s": time.perf_counter() - t0, **md}])
    print(table([r for r in rows if r["part"] == "kernel"],
                ["N", "images", "delta", "ms_per_sweep_image_sum", "ms_per_sweep_list", "speedup_list", "same_chain",
                 "trials_beyond_skin_fraction", "rebuilds_per_sweep"]))
    print(table([r for r in rows if r["part"] in ("reference", "reference_pooled")],
                ["T", "part", "chain", "delta", "mc_tau_U_sweeps", "mc_tau_Q_sweeps", "mc_converged", "mc_ms_per_sweep",
                 "mc_s_per_indep", "mc_U_per_N", "mc_U_per_N_err", "md_s_per_indep", "md_over_mc", "md_U_z",
                 "md_same_run_s_per_indep", "md_same_run_over_mc"]))
    print(f"saved {out}")


if __name__ == "__main__":
    main()
