"""CPU cost per trial move of PGMC policies against Metropolis and uniform swap MC, same configuration.

One KA2D chain (N = 43: image sums; N = 1290: cell lists) equilibrated by swap MC at T = 0.5, run at T = 0.3
with frozen policies (random local-network weights of the trained size; the cost does not depend on the
values): Gaussian displacements; environment-aware ("local") displacements; uniform and biased swaps; and
the production mixtures (local fraction 0.8 at N = 43, 0.3 at N = 1290, 20% single-flip swaps) with the
selection features updated by every move ("incremental") or recomputed before the swaps of each sweep
("deferred", the default); the biased swaps and the deferred mixture also with every single-flip energy
e^t kept ("every e^t", ``flip_energies="all"``, the kernels before 2026-12-05) instead of those of the swap
partners only (the default). Each case: the best of ``--repeats`` timings (process time; round robin over the
cases, so that a slow spell of a shared machine hits them alike), in microseconds per trial move, and its
ratio to uniform swap MC (mc.py, swap fraction 0.2) timed the same way in the same process. At N = 43
(no cell lists, r_c <= L/2) the kernels take the minimum image; one more row times the same swap MC with the
explicit sum over the 3^2 periodic images (the kernels before 2026-12-03, 15:30).

Run: ``.venv/bin/python benchmarks/pgmc_cost.py`` (about 6 CPU minutes; run it alone: the timings are the
point).
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from _common import save, table

from glassgen._kernels.neighbors import image_shifts
from glassgen.dynamics.initial import random_state
from glassgen.dynamics.mc import MonteCarlo
from glassgen.sampling.pgmc import PGMC, PGMCTarget
from glassgen.sampling.policies import Policy

T = 0.3


def policy(conf, local: float, swap: float, biased: bool) -> Policy:
    p = Policy.default(3, 2, sigma=0.05, swap_fraction=swap, swap_pairs=[(0, 2), (1, 2)], biased=biased,
                       counts=np.bincount(conf.species, minlength=3), local_fraction=local, hidden=8,
                       phi=-0.5 / T)
    p.W1[:] = np.random.default_rng(0).normal(0, 0.3, p.W1.shape)
    return p


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--sizes", type=int, nargs="+", default=[43, 1290])
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    rows = []
    for n in args.sizes:
        conf = random_state("ka2d", n, seed=3)
        mc = MonteCarlo(conf, 0.5, delta=0.1, swap_fraction=0.2, seed=1)
        mc.sweep(300)
        conf = mc.configuration()
        sweeps = 100 if n < 100 else 10
        lf = 0.8 if n < 100 else 0.3
        steppers = {}  # (case, feature_updates) -> sweep function
        for name, swap in (("metropolis", 0.0), ("swap MC", 0.2)):
            steppers[(name, "")] = MonteCarlo(conf, T, delta=0.08, swap_fraction=swap, seed=1).sweep
        if not steppers[("swap MC", "")].__self__.use_cells and n < 100:
            # the same swap MC with the explicit sum over 3^d periodic images instead of the minimum image
            img = MonteCarlo(conf, T, delta=0.08, swap_fraction=0.2, seed=1)
            img.shifts = image_shifts(conf.box, 1)
            steppers[("swap MC, 3^d image sum", "")] = img.sweep
        mix = f"local {lf} + 20% single-flip swaps"
        cases = [("gauss", 0.0, 0.0, False, "deferred", "partners"), ("local", 1.0, 0.0, False, "deferred", "partners"),
                 ("uniform swaps", 0.0, 1.0, False, "deferred", "partners"),
                 ("biased swaps", 0.0, 1.0, True, "deferred", "partners"),
                 ("biased swaps", 0.0, 1.0, True, "deferred", "all"),
                 (mix, lf, 0.2, True, "incremental", "partners"),
                 (mix, lf, 0.2, True, "deferred", "partners"), (mix, lf, 0.2, True, "deferred", "all")]
        for name, local, swap, biased, fu, fe in cases:
            pg = PGMC(PGMCTarget.from_model(conf.model, conf.box, T), policy(conf, local, swap, biased), [conf], seed=1,
                      feature_updates=fu, flip_energies=fe)
            steppers[(name, (fu + (", every e^t" if fe == "all" else "")) if biased else "")] = pg.sweep
        for step in steppers.values():  # compile and warm up
            step(max(1, sweeps // 10))
        # round robin: every repeat times every case once, so a slow spell of the machine hits all cases alike
        best = dict.fromkeys(steppers, np.inf)
        for _ in range(args.repeats):
            for key, step in steppers.items():
                t0 = time.process_time()
                step(sweeps)
                best[key] = min(best[key], (time.process_time() - t0) / sweeps / n)
        for (name, fu), cost in best.items():
            rows.append({"N": n, "case": name, "feature_updates": fu, "us_per_move": cost * 1e6,
                         "vs_swap_mc": cost / best[("swap MC", "")]})
            print(rows[-1], flush=True)
    cols = ["N", "case", "feature_updates", "us_per_move", "vs_swap_mc"]
    print(table(rows, cols))
    path = save("pgmc_cost", {"args": vars(args), "T": T, "rows": rows,
                              "definition": "process time per trial move, best of round-robin repeats, one chain"})
    print(f"saved {path}")


if __name__ == "__main__":
    main()
