"""Where the importance-sampling ESS of the shipped Boltzmann-prior generators goes: vibrations or basins.

The shipped generators serve a temperature T from an equilibrium pool at T_h > T (MD or swap MC), and their
trained maps do no better than the identity (README, "What the trained map adds"). With the identity map,
log w = -(1/T - 1/T_h) U. Split each pool configuration's energy at its inherent structure (FIRE quench),
U = U_IS + U_vib, and the weight factorises into a basin part exp(-db U_IS) and a vibrational part
exp(-db U_vib). This script measures, per pool and target T:

- ``ess_identity``: Kish ESS / n of the identity map on the whole pool (what the flows table calls
  "identity ESS/n");
- ``ess_harmonic``: the closed form for a harmonic solid with d (N - 1) modes
  (:func:`glassgen.flows.weights.harmonic_reweighting_ess_fraction`);
- on a random subsample of ``--quench`` pool configurations, quenched: ``ess_sub`` (identity, the same
  subsample), ``ess_vibrational`` (weights from U_vib alone), ``ess_basin`` (from U_IS alone), and the
  correlation of U_IS and U_vib. Bootstrap standard errors (200 resamples).

``ess_basin`` is what a map that contracts every vibration about its basin's minimum by sqrt(T / T_h) would
reach if the vibrations were harmonic (then -U(y)/T + U(x)/T_h + log|det J| = -db U_IS + const): the
headroom a cooling flow has over temperature reweighting. Run: ``.venv/bin/python
benchmarks/flows_vibrational.py`` (about 4 CPU minutes with the default 256 quenches per pool).
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from _common import save, table

from glassgen.config import repo_root
from glassgen.dynamics.batch import model_energy
from glassgen.dynamics.forces import ForceField
from glassgen.dynamics.minimize import fire_minimize
from glassgen.flows.weights import harmonic_reweighting_ess_fraction, kish_ess_fraction
from glassgen.systems.configuration import Configuration
from glassgen.systems.model import load_model

#: shipped checkpoint -> the (T, T_h) pairs: the temperatures it serves in the flows benchmark, each from the
#: coldest pool above it (T_h None), and, for N = 64, T = 0.45 and 0.4 from the hottest pool (a cheaper pool,
#: a larger step)
SHIPPED = {"ka3d_n64.pt": ((0.5, None), (0.45, None), (0.4, None), (0.45, 0.6), (0.4, 0.6)),
           "ka3d_n32.pt": ((0.6, None), (0.5, None), (0.45, None), (0.4, None)),
           "ka2d_n43.pt": ((0.5, None), (0.4, None), (0.3, None))}


def ess_error(energies: np.ndarray, db: float, idx_sets: list[np.ndarray]) -> float:
    """Bootstrap standard error of the Kish ESS / n of the weights exp(-db * energies)."""
    return float(np.std([kish_ess_fraction(-db * energies[i]) for i in idx_sets]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quench", type=int, default=256, help="pool configurations quenched per pool (default 256)")
    ap.add_argument("--ftol", type=float, default=1e-8, help="FIRE force tolerance of the quench")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--only", default=None, help="one checkpoint name, e.g. ka3d_n64.pt")
    args = ap.parse_args()
    rng = np.random.default_rng(args.seed)
    rows = []
    t0 = time.process_time()
    for name, temps in SHIPPED.items():
        if args.only and name != args.only:
            continue
        ck = torch.load(repo_root() / "src" / "glassgen" / "data" / "flows" / name, map_location="cpu",
                        weights_only=False)
        sysd = ck["system"]
        model = load_model(sysd["model"])
        species = np.asarray(sysd["species"], dtype=np.int32)
        box = np.asarray(sysd["box"], dtype=np.float64)
        pools = {float(t): np.asarray(p, dtype=np.float64) for t, p in ck["prior_pool"].items()}
        n, d = species.size, box.size
        energy = model_energy(model, species, box)
        ff = ForceField(model, species, box, skin=0.3)
        cache: dict[float, dict[str, np.ndarray]] = {}
        for T, T_h in temps:
            T_h = T_h or min(t for t in pools if t > T)
            if T_h not in cache:
                pool = pools[T_h]
                u = energy(pool)
                sub = rng.choice(pool.shape[0], min(args.quench, pool.shape[0]), replace=False)
                u_is = np.empty(sub.size)
                iters = []
                for k, i in enumerate(sub):
                    res = fire_minimize(Configuration(pool[i], species, box, model), ftol=args.ftol, forcefield=ff)
                    if not res.converged:
                        raise RuntimeError(f"{name} T_h={T_h}: quench {i} did not converge")
                    u_is[k] = res.energy
                    iters.append(res.iterations)
                cache[T_h] = {"u": u, "sub": sub, "u_is": u_is, "iters": np.asarray(iters)}
                print(f"{name} T_h={T_h}: {sub.size} quenches, median {int(np.median(iters))} FIRE steps, "
                      f"{time.process_time() - t0:.0f} CPU s so far", flush=True)
            c = cache[T_h]
            db = 1.0 / T - 1.0 / T_h
            u_sub, u_is = c["u"][c["sub"]], c["u_is"]
            u_vib = u_sub - u_is
            boot = [rng.integers(0, u_sub.size, u_sub.size) for _ in range(200)]
            boot_all = [rng.integers(0, c["u"].size, c["u"].size) for _ in range(200)]
            row = {"system": name.removesuffix(".pt"), "model": sysd["model"], "N": n, "T": T, "T_h": T_h,
                   "pool": int(c["u"].size), "quenched": int(u_sub.size),
                   "ess_identity": kish_ess_fraction(-db * c["u"]),
                   "ess_identity_err": ess_error(c["u"], db, boot_all),
                   "ess_harmonic": harmonic_reweighting_ess_fraction(T, T_h, d * (n - 1)),
                   "ess_sub": kish_ess_fraction(-db * u_sub),
                   "ess_vibrational": kish_ess_fraction(-db * u_vib),
                   "ess_vibrational_err": ess_error(u_vib, db, boot),
                   "ess_basin": kish_ess_fraction(-db * u_is),
                   "ess_basin_err": ess_error(u_is, db, boot),
                   "corr_u_is_u_vib": float(np.corrcoef(u_is, u_vib)[0, 1]),
                   "u_vib_mean_over_harmonic": float(u_vib.mean() / (0.5 * d * (n - 1) * T_h)),
                   "u_is_per_n_mean": float(u_is.mean() / n), "u_is_per_n_std": float(u_is.std() / n),
                   "fire_steps_median": float(np.median(c["iters"]))}
            row["headroom"] = row["ess_basin"] / row["ess_sub"]
            rows.append(row)
    cols = ["system", "T", "T_h", "ess_identity", "ess_harmonic", "ess_sub", "ess_vibrational", "ess_basin",
            "headroom", "corr_u_is_u_vib", "u_vib_mean_over_harmonic"]
    print(table(rows, cols))
    path = save("flows_vibrational", {"args": vars(args), "rows": rows, "cpu_s_total": time.process_time() - t0})
    print(f"saved {path}")


if __name__ == "__main__":
    main()
