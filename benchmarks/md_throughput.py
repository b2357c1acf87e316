"""MD throughput of the Numba engine against LAMMPS, same state, same thermostat, same machine.

KA 3D (cut and shifted), N = 1000 and 4096, T = 0.5, NVT (Nose-Hoover chain, tau = 100 dt),
dt = 0.005, skin 0.3 in both engines; 1 and 2 threads. Reports particle-steps per second and the
ratio Numba / LAMMPS (target >= 1.0). Run: ``.venv/bin/python benchmarks/md_throughput.py``.
"""

from __future__ import annotations

import argparse
import time

import numba
from _common import save, table

from glassgen.dynamics.initial import random_state
from glassgen.dynamics.lammps_engine import lammps_available, run_md_lammps
from glassgen.dynamics.md import MDSimulation


def numba_rate(conf, threads: int, steps: int) -> float:
    numba.set_num_threads(threads)
    sim = MDSimulation(conf, T=0.5, dt=0.005, thermostat="nhc", seed=1, threads=threads)
    sim.step(200)  # warm-up (compilation is cached, this fills the caches)
    t0 = time.perf_counter()
    sim.step(steps)
    return conf.n * steps / (time.perf_counter() - t0)


def lammps_rate(conf, threads: int, steps: int) -> float:
    run_md_lammps(conf, T=0.5, dt=0.005, nsteps=50, seed=1, threads=threads, thermo_every=50)  # warm-up
    t0 = time.perf_counter()
    r = run_md_lammps(conf, T=0.5, dt=0.005, nsteps=steps, seed=1, threads=threads, thermo_every=steps)
    wall = time.perf_counter() - t0
    return float(r.info.get("particle_steps_per_s", conf.n * steps / wall))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--steps", type=int, default=3000)
    ap.add_argument("--sizes", type=int, nargs="+", default=[1000, 4096])
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    args = ap.parse_args()
    rows = []
    for n in args.sizes:
        conf = random_state("ka3d", n, T=0.5, seed=7)
        conf = MDSimulation(conf, T=0.5, seed=7).run(1000, thermo_every=1000).final  # melt the random state
        for th in args.threads:
            nb = numba_rate(conf, th, args.steps)
            lm = lammps_rate(conf, th, args.steps) if lammps_available() else float("nan")
            rows.append({"N": n, "threads": th, "numba_psps": nb, "lammps_psps": lm, "ratio_numba_lammps": nb / lm})
            print(rows[-1], flush=True)
    path = save("md_throughput", {"model": "ka3d", "T": 0.5, "dt": 0.005, "steps": args.steps, "rows": rows})
    print(table(rows, ["N", "threads", "numba_psps", "lammps_psps", "ratio_numba_lammps"]))
    print(f"saved {path}")


if __name__ == "__main__":
    main()
