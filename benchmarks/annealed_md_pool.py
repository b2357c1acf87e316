"""Annealed importance sampling from a long MD trajectory at T_h: ESS from thousands of pool samples.

``benchmarks/annealed.py`` anneals 512 configurations of the shipped generators' pools. Kish ESS/n
estimated from a few hundred heavy-tailed weights is biased upwards (the rare low-energy configurations
that dominate the weights are missing from small samples). This script takes the pool from the long
LAMMPS reference run of ``benchmarks/md_reference.py --engine lammps`` (its checkpoint
``benchmarks/results/ckpt/md_reference_lammps_T<T_h>.npz``, frames every ``every`` steps), keeps every
``--stride``-th frame, anneals each one from T_h to T in K steps of one Metropolis sweep
(:func:`glassgen.sampling.annealed.anneal`; K = 1 with no sweep = plain reweighting) and reports:

- Kish ESS/n with a block-bootstrap 68% interval (blocks of consecutive frames, so the MD correlation of
  the pool is respected);
- the reweighted U/N with its error, CPU ms per annealed sample (one thread).

``md_reference.py --engine lammps --resume`` then prices the route: (MD s/indep at T_h + annealing s per
sample) / ESS/n, with both MD costs from the same LAMMPS run.

Run (after the LAMMPS reference run): ``NUMBA_NUM_THREADS=1 .venv/bin/python benchmarks/annealed_md_pool.py
--T-h 0.6 --T 0.5 --steps 1 50 200`` (about 10 CPU minutes with the default stride).
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
from _common import RESULTS, save, table

from glassgen.dynamics.initial import random_state
from glassgen.flows.weights import kish_ess_fraction, reweighted_mean
from glassgen.sampling.annealed import anneal


def bootstrap_ess(lw: np.ndarray, blocks: int = 20, reps: int = 400, seed: int = 0) -> tuple[float, float]:
    """16th and 84th percentiles of Kish ESS/n over block-bootstrap resamples of ``lw`` (n,)."""
    rng = np.random.default_rng(seed)
    parts = np.array_split(lw, blocks)
    vals = []
    for _ in range(reps):
        pick = rng.integers(0, blocks, blocks)
        vals.append(kish_ess_fraction(np.concatenate([parts[k] for k in pick])))
    lo, hi = np.percentile(vals, [16, 84])
    return float(lo), float(hi)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--T-h", type=float, default=0.6, help="temperature of the MD pool")
    ap.add_argument("--T", type=float, default=0.5, help="target temperature")
    ap.add_argument("--steps", type=int, nargs="+", default=[1, 50, 200], help="K values (1 = plain reweighting)")
    ap.add_argument("--stride", type=int, default=10, help="keep every stride-th MD frame")
    ap.add_argument("--every", type=int, default=200,
                    help="MD steps between the checkpoint's frames (read from checkpoints that store it)")
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    ck = RESULTS / "ckpt" / f"md_reference_lammps_T{args.T_h}.npz"
    if not ck.exists():
        raise SystemExit(f"error: {ck} not found; run benchmarks/md_reference.py --engine lammps first")
    z = np.load(ck)
    frames = z["frames"][:: args.stride]
    conf = random_state("ka3d", 64, T=args.T_h, seed=7)  # the model, and species/box of older checkpoints
    species, box, model = conf.species, conf.box, conf.model
    if "species" in z:  # checkpoints written since the species and box were stored
        species, box = z["species"], z["box"]
    every = int(z["every"]) if "every" in z else args.every
    x0 = frames - box * np.floor(frames / box)
    n = x0.shape[0]
    out = RESULTS / "annealed_md_pool.json"  # rows of other (T, T_h, K) are kept
    keep = [r for r in (json.loads(out.read_text())["rows"] if out.exists() else [])
            if not (r["T"] == args.T and r["T_h"] == args.T_h and r["steps"] in args.steps)]
    rows: list[dict] = []
    for k in args.steps:
        sweeps = 0 if k == 1 else 1
        t0 = time.process_time()
        _, lw, u = anneal(x0, species, box, model, args.T_h, args.T, k, sweeps=sweeps, seed=args.seed)
        cpu = time.process_time() - t0
        ess = kish_ess_fraction(lw)
        lo, hi = bootstrap_ess(lw)
        m, e = reweighted_mean(u / 64, lw)
        rows.append({"model": "ka3d", "N": 64, "T": args.T, "T_h": args.T_h, "pool": ck.name, "pool_samples": n,
                     "pool_spacing_steps": args.stride * every,
                     "steps": k, "sweeps_per_step": sweeps, "ess_fraction": ess, "ess_fraction_68": [lo, hi],
                     "U_per_N": float(m), "U_per_N_err": float(e), "ms_per_sample": 1e3 * cpu / n})
        print(rows[-1], flush=True)
        save("annealed_md_pool", {"rows": keep + rows, "args": vars(args), "complete": False})
    print(table(rows, ["T", "T_h", "pool_samples", "steps", "ess_fraction", "ess_fraction_68", "U_per_N",
                       "U_per_N_err", "ms_per_sample"]))
    print("saved", save("annealed_md_pool", {"rows": keep + rows, "args": vars(args), "complete": True}))


if __name__ == "__main__":
    main()
