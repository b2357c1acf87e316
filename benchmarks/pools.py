"""Are a generator's prior pools in equilibrium? Pool U/N against long LAMMPS MD references.

A Boltzmann-prior generator reweights its pool at T_h to the target T (log w = -U/T + U/T_h + log|det J|),
which is exact only if the pool *is* Boltzmann at T_h. This script checks each pool of one or more flow
checkpoints (default: the shipped KA 3D N = 64 generator):

* pool U/N (error: the larger of the autocorrelation error and the chain-to-chain spread) against the converged
  LAMMPS MD reference of ``benchmarks/md_reference.py --engine lammps`` (``md_reference_lammps.json``:
  6e7 steps at T = 0.5, 1.2e8 at 0.45) or, for KA2D N = 43, the swap-MC reference of
  ``benchmarks/swap_reference.py`` (``swap_reference.json``), as a z-score;
* drift: the first against the second half of every chain (equilibration not finished shows as a
  positive first-minus-second difference);
* consistency down the ladder: the pool at T_h reweighted to the next pool's T (identity map; chain-aware
  error, see :func:`glassgen.flows.weights.reweighted_mean`), against that pool's own mean.

Compare an older checkpoint with ``--checkpoint old=PATH`` (e.g. ``git show REV:src/glassgen/data/flows/
ka3d_n64.pt > /tmp/old.pt``). Run: ``.venv/bin/python benchmarks/pools.py --checkpoint old=/tmp/old.pt
--checkpoint shipped`` (seconds). Writes ``benchmarks/results/pools.json``.
"""

from __future__ import annotations

import argparse
import json
import math

import numpy as np
from _common import RESULTS, save, table

from glassgen.dynamics.forces import ForceField
from glassgen.flows.generator import BoltzmannGenerator
from glassgen.flows.weights import kish_ess_fraction, reweighted_mean
from glassgen.observables.thermo import mean_and_error_of_chains


def pool_rows(label: str, path: str, reference: dict[tuple, tuple[float, float]]) -> list[dict]:
    import torch

    ck = torch.load(path, map_location="cpu", weights_only=False)
    gen = BoltzmannGenerator.from_state(ck)
    cfg = (ck.get("training") or {}).get("config", {})
    chains = int(cfg.get("data_chains", 1))
    n = gen.system.n
    ff = ForceField(gen.system.model, np.asarray(gen.system.species), np.asarray(gen.system.box), skin=0.0)
    energies = {float(t): np.array([ff.energy(x) for x in p]) for t, p in ck["prior_pool"].items()}
    temps = sorted(energies, reverse=True)
    rows = []
    for i, T in enumerate(temps):
        u = energies[T] / n
        m, e = mean_and_error_of_chains(u, chains)
        halves = [np.array_split(p, 2) for p in np.array_split(u, chains)]
        m1, e1 = mean_and_error_of_chains(np.concatenate([h[0] for h in halves]), chains)
        m2, e2 = mean_and_error_of_chains(np.concatenate([h[1] for h in halves]), chains)
        row = {"checkpoint": label, "model": gen.system.model, "N": n, "T_pool": T, "pool_size": u.size,
               "chains": chains, "data_source": cfg.get("data_source"),
               "equilibration": cfg.get("data_equilibration"), "every": cfg.get("data_every"),
               "U_per_N": m, "U_per_N_err": e, "drift_first_minus_second": m1 - m2,
               "drift_sigma": (m1 - m2) / math.hypot(e1, e2)}
        if (gen.system.model, n, T) in reference:
            r, re = reference[(gen.system.model, n, T)]
            row.update(U_per_N_md=r, U_per_N_md_err=re, z_vs_md=(m - r) / math.hypot(e, re))
        if i + 1 < len(temps):  # reweight this pool to the next (colder) pool's temperature
            tl = temps[i + 1]
            lw = -energies[T] * (1.0 / tl - 1.0 / T)
            per_chain = -(-u.size // chains)
            est, err_is = reweighted_mean(u, lw, np.arange(u.size) // per_chain if chains > 1 else None)
            ess = kish_ess_fraction(lw)
            mt, et = mean_and_error_of_chains(energies[tl] / n, chains)
            row.update(reweighted_to=tl, ess_fraction_to_next=ess, U_per_N_reweighted=est,
                       U_per_N_reweighted_err=err_is, z_reweighted_vs_pool=(est - mt) / math.hypot(err_is, et))
        rows.append(row)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--checkpoint", action="append", default=None, metavar="[LABEL=]PATH",
                    help="flow checkpoint to check (repeatable; 'shipped' = the package's KA 3D N = 64 generator, "
                         "'shipped:MODEL:N' another shipped one)")
    args = ap.parse_args()
    from glassgen.api import shipped_flow

    ref_file = RESULTS / "md_reference_lammps.json"
    reference = {}
    if ref_file.exists():
        reference = {(r["model"], r["N"], r["T"]): (r["md_U_per_N"], r["md_U_per_N_err"])
                     for r in json.loads(ref_file.read_text())["rows"] if r.get("md_converged")}
    swap_file = RESULTS / "swap_reference.json"
    if swap_file.exists():
        reference.update({(r["model"], r["N"], r["T"]): (r["U_per_N"], r["U_per_N_err"])
                          for r in json.loads(swap_file.read_text())["rows"] if r.get("converged")})
    rows = []
    for spec in args.checkpoint or ["shipped"]:
        label, _, path = spec.rpartition("=")
        label = label or path
        if path.startswith("shipped"):
            _, model, n = (path.split(":") + ["ka3d", "64"])[:3] if path == "shipped" else path.split(":")
            path = str(shipped_flow(model, int(n)))
        try:
            rows += pool_rows(label, path, reference)
        except FileNotFoundError:
            ap.error(f"checkpoint not found: {path}")
    print(table(rows, ["checkpoint", "T_pool", "pool_size", "chains", "U_per_N", "U_per_N_err", "U_per_N_md",
                       "z_vs_md", "drift_sigma", "reweighted_to", "ess_fraction_to_next", "z_reweighted_vs_pool"]))
    save("pools", {"rows": rows})


if __name__ == "__main__":
    main()
