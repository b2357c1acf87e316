"""NVE energy conservation of the Numba velocity-Verlet integrator, per model and time step.

Reports, per particle: the drift of E = K + U per 10^4 steps (linear fit) and the rms fluctuation,
for dt = 0.005 and 0.0025 (the fluctuation of a second-order symplectic integrator scales as dt^2).
Cut-and-shifted KA has a force jump at r_c and drifts more than the shifted-force and quartic models.
Run: ``.venv/bin/python benchmarks/nve_drift.py``.
"""

from __future__ import annotations

import argparse

import numpy as np
from _common import save, table

from glassgen.config import data_dir
from glassgen.dynamics.initial import random_state
from glassgen.dynamics.md import MDSimulation
from glassgen.systems.io import read_xyz


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--steps", type=int, default=20000)
    args = ap.parse_args()
    cases = [("ka3d", 1000, 0.8), ("ka3d_sf", 1000, 0.8), ("ka2d", 1290, 0.4)]
    rows = []
    for model, n, T in cases:
        if model == "ka2d":
            conf = read_xyz(data_dir() / "configurations" / "ka2d_N1290_T0.231.xyz", "ka2d")
        else:
            conf = random_state(model, n, T=T, seed=3)
        conf = MDSimulation(conf, T=T, seed=3).run(4000, thermo_every=4000).final  # NVT equilibration
        for dt in (0.005, 0.0025):
            nsteps = int(args.steps * 0.005 / dt)
            sim = MDSimulation(conf, T=T, dt=dt, ensemble="nve", seed=4)
            r = sim.run(nsteps, thermo_every=max(1, nsteps // 2000))
            e = r.thermo.conserved / conf.n
            drift = float(np.polyfit(r.thermo.step, e, 1)[0] * 1e4)
            rows.append({"model": model, "N": conf.n, "T": T, "dt": dt, "steps": nsteps,
                         "drift_per_N_per_1e4_steps": drift, "rms_per_N": float(e.std()),
                         "T_kin": float(r.thermo.temperature.mean())})
            print(rows[-1], flush=True)
    path = save("nve_drift", {"rows": rows})
    print(table(rows, ["model", "N", "dt", "steps", "drift_per_N_per_1e4_steps", "rms_per_N", "T_kin"]))
    print(f"saved {path}")


if __name__ == "__main__":
    main()
