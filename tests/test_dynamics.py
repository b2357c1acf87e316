"""MD integrators and thermostats, FIRE, checkpoint/resume: physics checks."""

from __future__ import annotations

import math

import numpy as np
import pytest

from glassgen.dynamics.forces import ForceField
from glassgen.dynamics.initial import drift_test, random_state
from glassgen.dynamics.md import MDSimulation, degrees_of_freedom, run_md
from glassgen.dynamics.minimize import fire_minimize
from glassgen.errors import InputError
from glassgen.observables.thermo import block_average


def test_nve_second_order_and_bounded_drift(ka3d_n150):
    """Velocity Verlet: energy fluctuations scale as dt^2, drift per 10^4 steps bounded (shifted force)."""
    conf = ka3d_n150.with_model("ka3d_sf")
    stds, drifts = [], []
    for dt in (0.005, 0.0025):
        sim = MDSimulation(conf, T=0.8, dt=dt, ensemble="nve", seed=1)
        nsteps = int(round(50.0 / dt))
        r = sim.run(nsteps, thermo_every=10)
        e = r.thermo.conserved / conf.n
        stds.append(e.std())
        drifts.append(np.polyfit(r.thermo.step, e, 1)[0] * 1e4)  # per 10^4 steps, per particle
    assert 3.0 < stds[0] / stds[1] < 5.0  # (0.005/0.0025)^2 = 4
    assert abs(drifts[0]) < 2e-4 and stds[0] < 5e-4  # measured 7.8e-5 and 2.5e-4
    # momentum stays zero
    assert np.abs(sim.velocities.sum(0)).max() < 1e-10


@pytest.mark.parametrize("thermostat", ["nhc", "bussi", "langevin"])
def test_nvt_kinetic_temperature(ka3d_n150, thermostat):
    T = 0.8
    sim = MDSimulation(ka3d_n150, T=T, dt=0.005, ensemble="nvt", thermostat=thermostat, seed=7)
    sim.run(2000, thermo_every=100)  # equilibrate
    r = sim.run(30000, thermo_every=5)
    mean, err = block_average(r.thermo.temperature, 10)
    assert abs(mean - T) < 4 * err + 1e-12, (mean, err)
    # canonical kinetic-energy fluctuations: Var(T_kin) / T^2 = 2 / N_f (every thermostat, NHC included)
    rel = r.thermo.temperature.var() / T**2 * degrees_of_freedom(ka3d_n150.n, 3) / 2
    assert 0.8 < rel < 1.2, rel
    assert np.abs(sim.velocities.sum(0)).max() < 1e-9  # the centre of mass stays at rest (N_f = dN - d)


def test_given_velocities_lose_their_centre_of_mass_drift(ka3d_n150):
    rng = np.random.default_rng(2)
    v = rng.normal(size=ka3d_n150.positions.shape) + np.array([0.5, -0.2, 0.1])
    sim = MDSimulation(ka3d_n150.replace(velocities=v), T=0.8, dt=0.005, ensemble="nve", seed=1)
    assert np.abs(sim.velocities.sum(0)).max() < 1e-10
    assert np.allclose(sim.velocities, v - v.mean(0))  # equal masses: only the mean is removed


@pytest.mark.parametrize("thermostat", ["langevin", "bussi"])
def test_thermostat_temperature_of_a_few_free_particles(thermostat):
    """Four nearly free particles (3D, N_f = 9): T_kin averages T. A Langevin kick that also thermalises the
    centre of mass gives 12/9 T instead (seen before the kick was projected to zero momentum)."""
    from glassgen.dynamics.initial import random_state

    conf = random_state("ka3d", 4, density=0.002, seed=3)
    sim = MDSimulation(conf, T=1.0, dt=0.005, ensemble="nvt", thermostat=thermostat, tau=0.05, seed=5)
    r = sim.run(40000, thermo_every=10)
    mean, err = block_average(r.thermo.temperature, 20)
    assert abs(mean - 1.0) < 4 * err and err < 0.03, (mean, err)


def test_nhc_extended_energy_conserved(ka3d_n150):
    conf = ka3d_n150.with_model("ka3d_sf")
    sim = MDSimulation(conf, T=0.8, dt=0.0025, ensemble="nvt", thermostat="nhc", tau=0.5, seed=2)
    r = sim.run(8000, thermo_every=20)
    h = r.thermo.conserved / conf.n
    assert np.abs(h - h[0]).max() < 1e-3  # measured 4.4e-4
    # the bath does work: the physical energy U + K fluctuates far more than the extended energy drifts
    e = (r.thermo.potential + r.thermo.kinetic) / conf.n
    assert e.std() > 10 * np.abs(h - h[0]).max(), (e.std(), np.abs(h - h[0]).max())


def test_checkpoint_resume_is_bitwise(ka3d_n150, tmp_path):
    ck = tmp_path / "run.ckpt.h5"
    a = MDSimulation(ka3d_n150, T=0.7, seed=3, thermostat="bussi")
    ra = a.run(1000, thermo_every=50, traj_steps=[0, 100, 700, 1000], checkpoint=ck, checkpoint_every=400)
    assert ck.is_file()  # holds the state at step 800
    b = MDSimulation(ka3d_n150, T=0.7, seed=3, thermostat="bussi")
    rb = b.run(1000, thermo_every=50, traj_steps=[0, 100, 700, 1000], checkpoint=ck)
    assert np.array_equal(ra.final.positions, rb.final.positions)
    assert np.array_equal(ra.thermo.potential, rb.thermo.potential)
    assert np.array_equal(ra.trajectory.positions, rb.trajectory.positions)
    assert ra.info["steps_run"] == 1000 and rb.info["steps_run"] == 200  # the throughput counts this call's steps
    # a checkpoint of another run is refused with a clear error
    c = MDSimulation(ka3d_n150, T=0.9, seed=3, thermostat="bussi")
    with pytest.raises(InputError, match="different run"):
        c.run(1000, checkpoint=ck)
    # ... and so is one whose frames or samples were taken on another schedule (they would mix in one file)
    for traj, every in (([0, 200, 700, 1000], 50), ([0, 100, 700, 1000], 40)):
        d = MDSimulation(ka3d_n150, T=0.7, seed=3, thermostat="bussi")
        with pytest.raises(InputError, match="another (trajectory schedule|sampling interval)"):
            d.run(1000, thermo_every=every, traj_steps=traj, checkpoint=ck)
    # a frame asked for beyond the checkpoint's step only is no conflict
    e = MDSimulation(ka3d_n150, T=0.7, seed=3, thermostat="bussi")
    re = e.run(1000, thermo_every=50, traj_steps=[0, 100, 700, 900, 1000], checkpoint=ck)
    assert re.trajectory.positions.shape[0] == 5


def test_fire_reaches_tight_tolerance(ka3d_n150):
    r = fire_minimize(ka3d_n150, ftol=1e-9)
    assert r.converged and r.max_force < 1e-8
    e0 = ForceField.for_configuration(ka3d_n150, skin=0.0).energy(ka3d_n150.positions)
    assert r.energy < e0
    # a minimum: random small displacements never lower the energy (to second order)
    ff = ForceField.for_configuration(r.configuration, skin=0.0)
    rng = np.random.default_rng(0)
    for _ in range(5):
        d = rng.normal(size=r.configuration.positions.shape) * 1e-4
        assert ff.energy(r.configuration.positions + d) > r.energy - 1e-12


def test_random_state_has_no_overlaps():
    conf = random_state("ka2d", 200, T=1.0, seed=4)
    res = ForceField.for_configuration(conf, skin=0.0).compute(conf.positions)
    assert res.min_distance_ratio > 0.7 and np.isfinite(res.energy)
    assert conf.velocities is not None


def test_drift_test_detects_trends():
    rng = np.random.default_rng(0)
    flat = rng.normal(size=8) * 0.01
    assert drift_test(flat)[2]
    assert not drift_test(flat + 0.05 * np.arange(8))[2]


def test_check_temperature_accepts_only_finite_positive_numbers() -> None:
    from glassgen.errors import T_MAX, T_MIN, check_temperature

    assert check_temperature(np.float64(0.45)) == 0.45 and check_temperature(2) == 2.0
    assert check_temperature(T_MAX) == T_MAX and check_temperature(T_MIN) == T_MIN
    for bad in (0, -1.0, math.nan, math.inf, 1.0001 * T_MAX, 1e308, 0.9999 * T_MIN, 1e-300):
        with pytest.raises(InputError, match="temperature must be positive and finite"):
            check_temperature(bad)
    for bad in ("0.5", True, None, [0.5]):
        with pytest.raises(InputError, match="temperature must be a number"):
            check_temperature(bad)


def test_bad_inputs_are_clear(ka3d_n150):
    with pytest.raises(InputError, match="temperature must be positive"):
        MDSimulation(ka3d_n150, T=-1.0)
    with pytest.raises(InputError, match="unknown thermostat"):
        MDSimulation(ka3d_n150, T=1.0, thermostat="berendsen")
    with pytest.raises(InputError, match="unknown engine"):
        run_md(ka3d_n150, T=1.0, nsteps=1, engine="gromacs")
