"""Ablation of the biased swap selection: the same learned PGMC policy with biased and with uniform selection.

KA2D N = 43 (default T = 0.4), several seeds. For each seed: one equilibrated start, uniform swap MC with
the best fixed step (baseline), a PGMC policy learned in burn-in (per-species widths + biased swaps,
as in ``benchmarks/pgmc.py``), then two frozen production runs from the same start and random seed:
``biased`` (the learned theta) and ``uniform`` (theta ignored, same widths). Reported per method:
tau_alpha in sweeps (F_s of all particles = 1/e, pooled over chains), swap acceptance, and, over a
1000-sweep window of one chain, the species changes seen sweep to sweep and the species persistence
(fraction of particles holding their initial species at the end): swaps that keep undoing each other
change species often but leave the persistence high. Saves ``benchmarks/results/pgmc_selection.json``.

``--flip`` adds a third frozen run, ``flip``: the same widths, theta = 0 and the single-flip coefficients
phi = -1 / (2T) (partners weighted by exp(-dE / 2T) of the energy change dE of flipping each particle alone, not
learned), and saves ``pgmc_selection_flip.json``. The learned policy then learns phi (from 0) with theta.

Run: ``.venv/bin/python benchmarks/pgmc_selection.py [--T 0.4] [--seeds 3] [--sweeps 6000] [--flip]`` (~5 CPU
min; ~10 with ``--flip``).
"""

from __future__ import annotations

import argparse
import math
import time

import numpy as np
from _common import save, table
from pgmc import best_delta, equilibrated, fs_tau, run_mc

from glassgen.api_pgmc import default_q
from glassgen.observables.schedule import log_spaced_steps
from glassgen.sampling.pgmc import PGMC, PGMCTarget
from glassgen.sampling.policies import Policy


def species_mixing(species_frames: np.ndarray) -> tuple[int, float]:
    """(species changes between consecutive frames, fraction of particles with their first-frame species at
    the last frame) of species_frames (F, N)."""
    changes = int((species_frames[1:] != species_frames[:-1]).sum())
    return changes, float(np.mean(species_frames[-1] == species_frames[0]))


def production(target, policy, conf, chains, sweeps, q, seed) -> dict:
    pg = PGMC(target, policy, [conf] * chains, seed=seed)
    res = pg.run(sweeps, sample_every=max(1, sweeps // 50), frame_sweeps=log_spaced_steps(sweeps, 8))
    tau, f_end, _ = fs_tau(res.frame_sweeps, [res.frames[:, c] for c in range(chains)], q)
    # species every sweep over a short window: which particles take part in accepted swaps
    probe = PGMC(target, policy, [conf], seed=seed + 7)
    frames = [probe.chains[0].species.copy()]
    for _ in range(1000):
        probe.sweep(1)
        frames.append(probe.chains[0].species.copy())
    changes, persistence = species_mixing(np.array(frames))
    return {"tau_sweeps": tau, "fs_final": f_end, "swap_acceptance": float(res.acceptance["swap"]),
            "species_changes": changes, "species_persistence": persistence}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--T", type=float, default=0.4)
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--sweeps", type=int, default=6000)
    ap.add_argument("--chains", type=int, default=4)
    ap.add_argument("--flip", action="store_true", help="add the frozen single-flip selection run")
    args = ap.parse_args()
    methods = ("swap_mc", "biased", "uniform") + (("flip",) if args.flip else ())
    n, T, q = 43, args.T, default_q(2)
    rows = []
    t0 = time.process_time()
    for k in range(args.seeds):
        seed = 1 + k
        conf = equilibrated("ka2d", n, T, 2000, seed)
        delta, _ = best_delta(conf, T)
        sw = run_mc(conf, T, delta, 0.2, args.chains, args.sweeps, q, seed + 20)
        pol = Policy.default(3, 2, sigma=delta / math.sqrt(3), swap_fraction=0.2, swap_pairs=[(0, 2), (1, 2)],
                             biased=True, counts=np.bincount(conf.species, minlength=3))
        pg = PGMC(PGMCTarget.from_model(conf.model, conf.box, T), pol, [conf] * args.chains, seed=seed + 30)
        pg.learn(60, trials_per_chain=max(50, 2000 // args.chains), optimizer="natural", lr=0.1)
        frozen = pg.freeze()
        uniform = frozen.copy()
        uniform.biased = False
        if not args.flip:  # the ablation as first run: theta only
            frozen.phi[:] = 0.0
        row = {"seed": seed, "T": T, "N": n, "delta_best": delta, "sigma": frozen.sigma.tolist(),
               "theta": frozen.theta.tolist(),
               "swap_mc": {"tau_sweeps": sw["tau_sweeps"], "fs_final": sw["fs_final"],
                           "swap_acceptance": float(sw["acceptance"]["swap"])},
               "biased": production(pg.target, frozen, conf, args.chains, args.sweeps, q, seed + 1),
               "uniform": production(pg.target, uniform, conf, args.chains, args.sweeps, q, seed + 1)}
        if args.flip:
            flip = frozen.copy()
            flip.theta[:] = 0.0
            flip.phi[:] = -0.5 / T
            row["phi_learned"] = frozen.phi.tolist()
            row["flip"] = production(pg.target, flip, conf, args.chains, args.sweeps, q, seed + 1)
        print({k: v for k, v in row.items() if k not in ("sigma", "theta")}, flush=True)
        rows.append(row)
    summary = []
    for m in methods:
        tau = np.array([r[m]["tau_sweeps"] for r in rows])
        acc = np.array([r[m]["swap_acceptance"] for r in rows])
        s = {"method": m, "tau_sweeps": float(tau.mean()),
             "tau_err": float(tau.std(ddof=1) / math.sqrt(len(tau))) if len(tau) > 1 else math.nan,
             "swap_acceptance": float(acc.mean())}
        if m != "swap_mc":
            s["species_changes"] = float(np.mean([r[m]["species_changes"] for r in rows]))
            s["species_persistence"] = float(np.mean([r[m]["species_persistence"] for r in rows]))
        summary.append(s)
    name = "pgmc_selection" + ("_flip" if args.flip else "")
    path = save(name, {"rows": rows, "summary": summary, "cpu_s_total": time.process_time() - t0,
                       "definition": "tau_alpha in sweeps (F_s all particles = 1/e); mean +- standard error over "
                                     "seeds"})
    print(table(summary, ["method", "tau_sweeps", "tau_err", "swap_acceptance", "species_changes",
                                 "species_persistence"]))
    print(f"saved {path}")


if __name__ == "__main__":
    main()
