"""KA 3D N = 32 at T = 0.5: is the gap between MD and the MC samplers an engine error or slow basins?

The predict-then-propose experiment and benchmarks/flows.py find MD's U/N well below every MC-family
sampler's at N = 32, T <= 0.6. This script runs, from one random start:
1. Metropolis MC (tuned step) for 5000 sweeps -> state A;
2. MD (NVT, Nose-Hoover chain, dt 0.005) from A for 3e5 steps -> state B (U/N over each half);
3. Metropolis MC from B and, as the control, from A, 12 000 sweeps each (U/N over each half).
If the engines disagreed about the ensemble, MC started from MD's state would climb back to MC's level;
if MC merely samples its basins slowly, it stays where MD left it. Energies are the same function in both
engines (tested: golden energies, ForceField vs MC bookkeeping).

Run: ``NUMBA_NUM_THREADS=1 .venv/bin/python benchmarks/ka3d_n32_basins.py`` (about 30 CPU s).
"""

from __future__ import annotations

import argparse
import os

import numpy as np
from _common import save

from glassgen.dynamics.initial import random_state
from glassgen.dynamics.mc import MonteCarlo
from glassgen.dynamics.md import run_md


def main() -> None:
    T, n = 0.5, 32
    mc = MonteCarlo(random_state("ka3d", n, seed=0), T, delta=0.1, seed=0)
    mc.tune_delta(sweeps=200, rounds=5)
    mc.sweep(5000)
    state_a = mc.configuration()
    delta = float(np.mean(mc.delta))
    md = run_md(state_a, T=T, dt=0.005, nsteps=300_000, seed=1, init_velocities=True, thermo_every=100, threads=1)
    u = np.asarray(md.thermo.potential) / n
    tk = np.asarray(md.thermo.temperature)
    out = {"T": T, "N": n, "model": "ka3d", "delta": delta,
           "md_from_mc_state": {"U_per_N_halves": [float(u[: u.size // 2].mean()), float(u[u.size // 2:].mean())],
                                "T_kin": float(tk[tk.size // 5:].mean()), "steps": 300_000}}
    for label, start in (("mc_from_md_state", md.final), ("mc_from_mc_state", state_a)):
        m = MonteCarlo(start, T, delta=delta, seed=7)
        us = []
        for _ in range(600):
            m.sweep(20)
            us.append(m.energy / n)
        us = np.asarray(us)
        out[label] = {"U_per_N_halves": [float(us[:300].mean()), float(us[300:].mean())], "sweeps": 12_000}
    out["loadavg"] = list(os.getloadavg())
    for k, v in out.items():
        print(k, v)
    print("saved", save("ka3d_n32_basins", out))


if __name__ == "__main__":
    argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter).parse_args()
    main()
