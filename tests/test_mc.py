"""Detailed balance of every Monte Carlo move: sampled histograms against exact distributions."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from scipy import stats

from glassgen.dynamics.forces import ForceField
from glassgen.dynamics.mc import MonteCarlo
from glassgen.errors import InputError
from glassgen.systems.configuration import Configuration
from glassgen.systems.model import load_model


def _chi2_pvalue(counts: np.ndarray, probs: np.ndarray) -> float:
    expected = probs / probs.sum() * counts.sum()
    keep = expected > 5
    chi2 = float((((counts - expected) ** 2 / expected)[keep]).sum())
    return float(stats.chi2.sf(chi2, keep.sum() - 1))


def test_displacement_two_particles_radial_distribution():
    """Two A particles in a periodic cube: p(r) ~ r^2 exp(-v(r)/T) for r < L/2 (exact)."""
    model = load_model("ka3d")
    L, T = 6.0, 1.5
    conf = Configuration(np.array([[1.0, 1.0, 1.0], [2.5, 1.0, 1.0]]), np.array([0, 0]), np.full(3, L), model)
    mc = MonteCarlo(conf, T, delta=3.0, seed=11)
    rs = []
    for _ in range(40000):
        mc.sweep(3)
        d = mc.pos[1] - mc.pos[0]
        d -= L * np.round(d / L)
        rs.append(np.linalg.norm(d))
    rs = np.array(rs)
    rs = rs[rs < L / 2]
    edges = np.linspace(0.8, L / 2, 30)
    counts, _ = np.histogram(rs, edges)
    rr = np.linspace(0.8, L / 2, 20001)
    ff = ForceField(model, np.array([0, 0]), np.full(3, L), skin=0.0, check_overlap=False)
    u = np.array([ff.energy(np.array([[0.0, 0, 0], [r, 0, 0]])) for r in rr])
    dens = rr**2 * np.exp(-u / T)
    cum = np.concatenate([[0], np.cumsum(0.5 * (dens[1:] + dens[:-1]) * np.diff(rr))])
    probs = np.diff(np.interp(edges, rr, cum))
    assert _chi2_pvalue(counts, probs) > 1e-3
    # the test has power: the same histogram is rejected against twice the temperature
    dens_w = rr**2 * np.exp(-u / (2 * T))
    cum_w = np.concatenate([[0], np.cumsum(0.5 * (dens_w[1:] + dens_w[:-1]) * np.diff(rr))])
    assert _chi2_pvalue(counts, np.diff(np.interp(edges, rr, cum_w))) < 1e-6


@pytest.mark.parametrize("T", [0.7, 1.0])
def test_metropolis_matches_the_exact_three_particle_energy(T):
    """KA2D's A, B and C in a periodic box of side 3.16 (density 0.3, smaller than 2 r_c: image sums): <U> of
    4 Metropolis chains of 30 000 sweeps agrees within 4 sigma with the exact <U> by quadrature
    (tests/exact_three_body.py: -1.471099 at T = 0.7, -1.251580 at T = 1.0); the quadrature is converged
    (128^2 and 256^2 grids agree to 1e-8), and the test can fail: a temperature 10% off moves <U> by > 6 sigma."""
    from exact_three_body import exact_mean_energy
    from glassgen.observables.thermo import mean_and_error_of_chains
    from glassgen.systems.configuration import random_configuration

    exact = exact_mean_energy("ka2d", 0.3, T)
    assert abs(exact_mean_energy("ka2d", 0.3, T, grid=128) - exact) < 1e-7  # measured 6.5e-9
    chains, sweeps = 4, 30000
    u = np.empty((chains, sweeps))
    for c in range(chains):
        conf = random_configuration("ka2d", 3, density=0.3, seed=20 + c)
        assert sorted(conf.species.tolist()) == [0, 1, 2]
        mc = MonteCarlo(conf, T=T, delta=0.3, seed=20 + c)
        mc.sweep(500)
        for k in range(sweeps):
            mc.sweep(1)
            u[c, k] = mc.energy
    mean, err = mean_and_error_of_chains(u.ravel(), chains)
    assert err < 0.01 and abs(mean - exact) < 4 * err, (mean, err, exact)
    assert abs(exact_mean_energy("ka2d", 0.3, 1.1 * T) - exact) > 6 * err


def test_swap_moves_sample_exact_species_distribution():
    """Frozen positions, swaps only: the 30 species assignments of KA2D N=5 (1A, 2B, 2C) follow
    exp(-U/T) exactly."""
    model = load_model("ka2d")
    pos = np.array([[0.0, 0.0], [1.1, 0.1], [0.2, 1.05], [1.3, 1.2], [2.4, 0.5]])
    box = np.array([6.0, 6.0])
    species0 = np.array([0, 1, 1, 2, 2])
    T = 1.0
    states = sorted(set(itertools.permutations(species0.tolist())))
    energies = np.array([ForceField(model, np.array(s), box, skin=0.0).energy(pos) for s in states])
    probs = np.exp(-(energies - energies.min()) / T)
    conf = Configuration(pos, species0, box, model)
    mc = MonteCarlo(conf, T, delta=1e-300, swap_fraction=1.0, seed=5)
    index = {s: k for k, s in enumerate(states)}
    counts = np.zeros(len(states))
    for _ in range(30000):
        mc.sweep(1)
        counts[index[tuple(int(x) for x in mc.species)]] += 1
    assert _chi2_pvalue(counts, probs) > 1e-3
    assert abs(mc.energy - ForceField(model, mc.species, box, skin=0.0).energy(pos)) < 1e-9


def test_small_box_image_sums_and_bookkeeping():
    """KA 3D N=32 (L < 2 r_c): accumulated dE equals a fresh total energy; swaps in KA2D too."""
    from glassgen.dynamics.initial import random_state

    for model, n, swap in [("ka3d", 32, 0.0), ("ka2d", 60, 0.3), ("ka2", 80, 0.2)]:
        conf = random_state(model, n, seed=1)
        mc = MonteCarlo(conf, 0.8, delta=0.15, swap_fraction=swap, seed=2)
        mc.sweep(50)
        fresh = ForceField(load_model(model), mc.species, conf.box, skin=0.0).energy(mc.pos)
        assert abs(mc.energy - fresh) < 1e-8 * max(1.0, abs(fresh))
        assert abs(mc.recompute_energy() - fresh) < 1e-8 * max(1.0, abs(fresh))


def test_minimum_image_mode_gives_the_image_sum_chain():
    """KA2D N = 43 (2 r_c <= L < 3 r_c) runs in the minimum-image mode; with the same random numbers its
    displacement + swap chain equals, move for move, the chain of the explicit sum over 3^2 images."""
    from glassgen._kernels.neighbors import image_shifts
    from glassgen.dynamics.initial import random_state

    conf = random_state("ka2d", 43, seed=3)
    a = MonteCarlo(conf, 0.5, delta=0.12, swap_fraction=0.3, seed=4)
    b = MonteCarlo(conf, 0.5, delta=0.12, swap_fraction=0.3, seed=4)
    assert not a.use_cells and a.shifts.shape == (1, 2)
    b.shifts = image_shifts(conf.box, 1)
    a.sweep(100)
    b.sweep(100)
    assert np.array_equal(a.pos, b.pos) and np.array_equal(a.species, b.species)
    assert not np.array_equal(a.species, conf.species)  # swaps were accepted
    fresh = ForceField(conf.model, a.species, conf.box, skin=0.0).energy(a.pos)
    assert abs(a.energy - fresh) < 1e-9 * abs(fresh) and abs(b.energy - fresh) < 1e-9 * abs(fresh)


def test_image_list_gives_the_image_sum_chain():
    """Boxes smaller than 2 r_c use a Verlet list over images; with a small skin (many trials beyond skin/2,
    evaluated with the image sum, and many rebuilds) the chain equals, move for move, the chain of the image
    sum, and the accumulated energy a fresh total energy. Every compiled pair variant of the list path: cut
    and shifted (KA 3D, KA2 with swaps), shifted force, quartic (KA2D with swaps), soft core (every term)."""
    from glassgen.dynamics.initial import random_state

    cases = [("ka3d", 64, 0.0, 0.0, 0), ("ka2", 48, 0.3, 0.0, 0), ("ka3d_sf", 64, 0.0, 0.0, 2),
             ("ka2d", 24, 0.3, 0.0, 4), ("ka3d", 64, 0.0, 0.9, 7)]
    for model, n, swap, soft, variant in cases:
        conf = random_state(model, n, seed=3)
        a = MonteCarlo(conf, 0.6, delta=0.1, swap_fraction=swap, seed=4, list_skin=0.15, soft_core=soft)
        b = MonteCarlo(conf, 0.6, delta=0.1, swap_fraction=swap, seed=4, neighbour_list=False, soft_core=soft)
        assert a.use_list and not b.use_list and a.shifts.shape[0] > 1
        assert a._variant == variant or (variant == 7 and a._variant in (1, 3, 5, 7))
        a.sweep(150)
        b.sweep(150)
        assert np.array_equal(a.pos, b.pos) and np.array_equal(a.species, b.species)
        assert a.list_stats[0] > 100 and a.list_stats[1] > 10  # both paths and the rebuilds were exercised
        if swap:
            assert not np.array_equal(a.species, conf.species)
        fresh = ForceField(conf.model, a.species, conf.box, skin=0.0, soft_core=soft).energy(a.pos)
        assert abs(a.energy - fresh) < 1e-9 * abs(fresh) and abs(a.recompute_energy() - fresh) < 1e-9 * abs(fresh)


def test_image_list_energies_and_its_validity_radius():
    """Listed particle energies equal the image sum while every particle is within skin/2 of its position
    at the build (positions wrapped across the boundary in between); a particle moved by more than the skin
    without a rebuild gives wrong energies (negative control: the validity rule matters)."""
    from glassgen._kernels.mc import particle_energy, particle_energy_listed
    from glassgen.dynamics.initial import random_state

    conf = random_state("ka3d", 64, seed=5)
    mc = MonteCarlo(conf, 0.6, delta=0.1, seed=1, list_skin=0.4)
    p = mc.params
    pp = (p.sig2, p.eps4, p.rc2, p.c0, p.c1, p.c2, p.c4, p.rs2)
    rng = np.random.default_rng(0)

    def energies(pos):
        img = [particle_energy(i, pos[i], mc.species[i], pos, mc.species, mc.box, p.nsp, *pp, False, mc.ncell,
                               mc.cells, mc.cell_count, mc.shifts) for i in range(mc.n)]
        lst = [particle_energy_listed(i, pos[i], mc.species[i], pos, mc.species, mc.box, p.nsp, *pp, mc.nb_j,
                                      mc.nb_r, mc.nb_n, mc._variant) for i in range(mc.n)]
        return np.array(img), np.array(lst)

    step = rng.normal(size=mc.pos.shape)
    step *= (0.2 * rng.random(mc.n) / np.linalg.norm(step, axis=1))[:, None]  # |step| < skin/2
    pos = mc.pos + step
    pos -= mc.box * np.floor(pos / mc.box)
    img, lst = energies(pos)
    assert np.max(np.abs(img - lst)) < 1e-10
    far = mc.pos.copy()
    far[0] += 1.0  # > skin from its build position: its list misses pairs
    far -= mc.box * np.floor(far / mc.box)
    img, lst = energies(far)
    assert np.max(np.abs(img - lst)) > 1e-3


def test_image_list_checkpoint_resume_is_identical(tmp_path):
    """A list-mode chain resumed from its checkpoint (the list stored with it) ends in the uninterrupted state."""
    from glassgen.dynamics.initial import random_state

    conf = random_state("ka3d", 32, seed=3)
    ck = tmp_path / "mc.ckpt.h5"
    a = MonteCarlo(conf, 0.7, delta=0.1, seed=9, list_skin=0.2)
    ra = a.run(100, sample_every=10, checkpoint=ck, checkpoint_every=40)
    assert a.use_list and a.list_stats[1] > 0
    b = MonteCarlo(conf, 0.7, delta=0.1, seed=9, list_skin=0.2)
    rb = b.run(100, sample_every=10, checkpoint=ck)
    assert np.array_equal(ra.final.positions, rb.final.positions)
    assert np.array_equal(ra.thermo.potential, rb.thermo.potential)
    assert np.array_equal(a.list_stats, b.list_stats)


def test_image_list_input_checks():
    from glassgen.dynamics.initial import random_state

    with pytest.raises(InputError, match="uses cells"):
        MonteCarlo(random_state("ka3d", 1000, seed=1), 0.6, neighbour_list=True)
    for skin in (0.0, -0.1, 2.0):
        with pytest.raises(InputError, match="list_skin"):
            MonteCarlo(random_state("ka3d", 64, seed=1), 0.6, list_skin=skin)


def test_checkpoint_resume_is_identical(tmp_path):
    """An MC run resumed from its checkpoint ends in exactly the state of an uninterrupted run."""
    from glassgen.dynamics.initial import random_state

    conf = random_state("ka2d", 60, seed=3)
    ck = tmp_path / "mc.ckpt.h5"
    a = MonteCarlo(conf, 0.8, delta=0.15, swap_fraction=0.2, seed=9)
    ra = a.run(100, sample_every=10, traj_sweeps=[0, 30, 100], checkpoint=ck, checkpoint_every=40)
    assert ck.is_file()  # state at sweep 80
    # another box (density) or another start (the caller's origin) is another run: refused
    other = conf.replace(positions=conf.positions * 1.05, box=conf.box * 1.05)
    for mc_other in (MonteCarlo(other, 0.8, delta=0.15, swap_fraction=0.2, seed=9),
                     MonteCarlo(conf, 0.8, delta=0.15, swap_fraction=0.2, seed=9, origin="another input")):
        with pytest.raises(InputError, match="different run"):
            mc_other.run(100, sample_every=10, traj_sweeps=[0, 30, 100], checkpoint=ck)
    with pytest.raises(InputError, match="longer run"):  # named as such, not as another schedule
        MonteCarlo(conf, 0.8, delta=0.15, swap_fraction=0.2, seed=9).run(55, sample_every=10, checkpoint=ck)
    for traj, every in (([0, 50, 100], 10), ([0, 30, 100], 20)):  # another schedule: refused, the file kept
        c = MonteCarlo(conf, 0.8, delta=0.15, swap_fraction=0.2, seed=9)
        with pytest.raises(InputError, match="another (trajectory schedule|sampling interval)"):
            c.run(100, sample_every=every, traj_sweeps=traj, checkpoint=ck)
    b = MonteCarlo(conf, 0.8, delta=0.15, swap_fraction=0.2, seed=9)
    rb = b.run(100, sample_every=10, traj_sweeps=[0, 30, 100], checkpoint=ck)
    assert np.array_equal(ra.final.positions, rb.final.positions)
    assert np.array_equal(ra.final.species, rb.final.species)
    assert np.array_equal(ra.thermo.potential, rb.thermo.potential)
    assert np.array_equal(ra.trajectory.positions, rb.trajectory.positions)


def test_equilibration_is_checkpointed_and_resumes_identically(tmp_path):
    """run_mc with an equilibration checkpoint: the chain equals the one without (same random stream); a run
    interrupted in its equilibration (here: the checkpoint of sweep 80 of 100 left behind, no production
    checkpoint) resumes there, without redoing the delta tuning, and ends in the same state."""
    from glassgen.dynamics.initial import random_state
    from glassgen.dynamics.mc import run_mc

    conf = random_state("ka2d", 40, seed=3)
    kw = dict(T=0.8, n_sweeps=50, delta=0.1, swap_fraction=0.2, seed=9, sample_every=10, traj_sweeps=[0, 20, 50],
              tune_sweeps=50, equilibrate_sweeps=100, checkpoint_every=40)
    plain = run_mc(conf, **kw)
    eq_ck, ck = tmp_path / "eq.ckpt.h5", tmp_path / "run.ckpt.h5"
    full = run_mc(conf, checkpoint=ck, equilibrate_checkpoint=eq_ck, **kw)
    assert np.array_equal(plain.final.positions, full.final.positions)
    assert np.array_equal(plain.trajectory.positions, full.trajectory.positions)
    assert eq_ck.is_file()  # the equilibration's last checkpoint (sweep 80 of 100), as after a Ctrl-C there
    ck.unlink()
    resumed = run_mc(conf, checkpoint=ck, equilibrate_checkpoint=eq_ck, **kw)
    assert np.array_equal(resumed.final.positions, full.final.positions)
    assert np.array_equal(resumed.final.species, full.final.species)
    assert np.array_equal(resumed.thermo.potential, full.thermo.potential)
    assert np.array_equal(resumed.trajectory.positions, full.trajectory.positions)
    assert resumed.info["delta"] == full.info["delta"]


def test_resume_after_delta_tuning_and_with_a_shorter_length(tmp_path):
    """Tuning sweeps before the run are not counted as run sweeps when resuming (they once shifted the resumed
    samples by the tuning length); a checkpoint beyond the length asked for now is refused."""
    import pytest

    from glassgen.dynamics.initial import random_state
    from glassgen.dynamics.mc import run_mc
    from glassgen.errors import InputError

    conf = random_state("ka2d", 43, seed=3)
    ck = tmp_path / "mc.ckpt.h5"
    kw = dict(T=0.8, n_sweeps=100, delta=0.1, seed=9, sample_every=10, tune_sweeps=50)
    ra = run_mc(conf, **kw, checkpoint=ck, checkpoint_every=40)  # leaves the checkpoint of sweep 80
    rb = run_mc(conf, **kw, checkpoint=ck)
    assert np.array_equal(rb.thermo.step, np.arange(0, 101, 10))
    assert np.array_equal(ra.final.positions, rb.final.positions)
    assert np.array_equal(ra.thermo.potential, rb.thermo.potential)
    with pytest.raises(InputError, match="longer run"):
        run_mc(conf, **{**kw, "n_sweeps": 50}, checkpoint=ck)


def test_set_positions_equals_a_fresh_chain():
    """After set_positions (a jump, given in another periodic image) the chain is the chain a fresh
    MonteCarlo would be at those positions: same energy, cell lists and, with the same random numbers,
    the same trajectory. Cell mode (KA2D N=100) and image-sum mode (KA3D N=8 at low density)."""
    import pytest

    from glassgen.dynamics.initial import random_state
    from glassgen.errors import InputError

    for model, n, density in [("ka2d", 100, None), ("ka3d", 8, 0.1)]:
        a = random_state(model, n, density=density, seed=4)
        b = random_state(model, n, density=density, seed=5)
        mc = MonteCarlo(a, 0.8, delta=0.15, seed=6)
        mc.run(5, traj_sweeps=[0, 5])  # also starts the unwrapped-displacement bookkeeping
        image = np.random.default_rng(0).integers(-2, 3, b.positions.shape) * b.box
        mc.set_positions(b.positions + image)
        assert np.all((mc.pos >= 0) & (mc.pos < b.box))
        exact = ForceField(load_model(model), b.species, b.box, skin=0.0).energy(b.positions)
        assert abs(mc.energy - exact) < 1e-9 * max(1.0, abs(exact))
        fresh = MonteCarlo(b, 0.8, delta=0.15, seed=7)
        assert np.allclose(fresh.pos, mc.pos, rtol=0, atol=1e-12)
        if mc.use_cells:
            assert np.array_equal(fresh.cell_of, mc.cell_of) and np.array_equal(fresh.cell_count, mc.cell_count)
        fresh.pos[:] = mc.pos  # identical bits, then identical random numbers
        fresh.rng.bit_generator.state = mc.rng.bit_generator.state
        mc.sweep(20)
        fresh.sweep(20)
        assert np.array_equal(mc.pos, fresh.pos)
        assert abs(mc.energy - fresh.energy) < 1e-9 * max(1.0, abs(exact))
        assert abs(mc.energy - mc.recompute_energy()) < 1e-9 * max(1.0, abs(exact))
        # the unwrapped bookkeeping restarts at the new positions as given (no displacement carried over)
        mc2 = MonteCarlo(a, 0.8, delta=0.15, seed=8)
        mc2.run(5, traj_sweeps=[5])
        mc2.set_positions(b.positions + image)
        traj = mc2.run(3, traj_sweeps=[0, 3]).trajectory.positions
        assert np.array_equal(traj[0], b.positions + image)
        assert np.allclose(traj[1] - b.box * np.floor(traj[1] / b.box), mc2.pos, rtol=0, atol=1e-9)
        start = b.positions - b.box * np.floor(b.positions / b.box)
        dr = mc2.pos - start
        assert np.allclose(traj[1] - traj[0], dr - b.box * np.round(dr / b.box), rtol=0, atol=1e-9)
        with pytest.raises(InputError):
            mc.set_positions(b.positions[:-1])
        with pytest.raises(InputError):
            mc.set_positions(np.full_like(b.positions, np.nan))


def test_chunked_sweeps_equal_single_sweeps_and_track_unwrapped_positions():
    """``sweep(k)`` runs k sweeps in one kernel call with the random numbers drawn sweep by sweep, so it is
    the chain of k calls of ``sweep(1)``; the kernel's unwrapped positions equal the wrapped ones up to box
    vectors and follow the minimum-image unwrapping done sweep by sweep (the former ``run`` loop)."""
    from glassgen.dynamics.initial import random_state

    conf = random_state("ka2d", 43, seed=3)
    a = MonteCarlo(conf, 0.5, delta=0.15, swap_fraction=0.2, seed=11)
    b = MonteCarlo(conf, 0.5, delta=0.15, swap_fraction=0.2, seed=11)
    unwrapped = a.pos.copy()
    a.sweep(300, unwrapped=unwrapped)
    by_hand = b.pos.copy()
    for _ in range(300):
        prev = b.pos.copy()
        b.sweep(1)
        dx = b.pos - prev
        by_hand += dx - b.box * np.round(dx / b.box)
    assert a.sweeps == b.sweeps == 300
    np.testing.assert_array_equal(a.species, b.species)
    np.testing.assert_allclose(a.pos, b.pos, rtol=0, atol=1e-12)
    assert abs(a.energy - b.energy) < 1e-9
    np.testing.assert_allclose(unwrapped, by_hand, rtol=0, atol=1e-10)
    images = (unwrapped - a.pos) / a.box
    np.testing.assert_allclose(images, np.round(images), rtol=0, atol=1e-10)
    assert np.abs(unwrapped - conf.positions).max() > 0.3  # the particles did move


def test_swap_runs_store_every_frames_species(tmp_path):
    """With species swaps each stored frame carries its own species (a reviewer found the final species
    written for every frame: frame energies with them were wrong by ~2.7 per particle); the energy of every
    frame with its species is the run's thermo energy at that sweep; resumed runs keep them too."""
    from glassgen.api import write_run
    from glassgen.dynamics.initial import random_state
    from glassgen.observables import read_trajectory

    conf = random_state("ka2d", 60, seed=3)
    ck = tmp_path / "mc.ckpt.h5"
    r = MonteCarlo(conf, 0.8, delta=0.15, swap_fraction=0.3, seed=9).run(
        100, sample_every=10, traj_sweeps=[0, 30, 60, 100], checkpoint=ck, checkpoint_every=40)
    resumed = MonteCarlo(conf, 0.8, delta=0.15, swap_fraction=0.3, seed=9).run(
        100, sample_every=10, traj_sweeps=[0, 30, 60, 100], checkpoint=ck)
    assert np.array_equal(r.trajectory.species, resumed.trajectory.species)
    write_run(tmp_path / "mc.h5", r, {"model": "ka2d"})
    data = read_trajectory(tmp_path / "mc.h5")
    spf = data.trajectory.species
    assert spf.shape == (4, 60) and np.array_equal(data.species, spf[0])
    assert not np.array_equal(spf[0], spf[-1])  # swaps were accepted
    assert np.array_equal(spf[-1], r.final.species)
    for k, sweep in enumerate(data.trajectory.steps):
        u = ForceField(conf.model, spf[k], conf.box, skin=0.0).energy(data.trajectory.positions[k])
        u_run = r.thermo.potential[list(r.thermo.step).index(sweep)]
        assert abs(u - u_run) < 1e-9 * abs(u_run), (sweep, u, u_run)
    u_final_labels = ForceField(conf.model, r.final.species, conf.box, skin=0.0).energy(data.trajectory.positions[1])
    assert abs(u_final_labels - r.thermo.potential[3]) > 1.0  # the labels matter: the check above can fail


def test_runs_without_swaps_store_one_species_array(tmp_path):
    from glassgen.api import write_run
    from glassgen.dynamics.initial import random_state
    from glassgen.observables import read_trajectory

    conf = random_state("ka2d", 60, seed=3)
    r = MonteCarlo(conf, 0.8, delta=0.15, seed=9).run(40, sample_every=10, traj_sweeps=[0, 20, 40])
    write_run(tmp_path / "mc.h5", r, {"model": "ka2d"})
    data = read_trajectory(tmp_path / "mc.h5")
    assert data.trajectory.species is None and np.array_equal(data.species, conf.species)


def test_equilibration_sweeps_are_not_in_the_reported_acceptance():
    from glassgen.dynamics.initial import random_state
    from glassgen.dynamics.mc import run_mc

    conf = random_state("ka2d", 40, seed=2)
    res = run_mc(conf, T=0.5, n_sweeps=5, equilibrate_sweeps=50, seed=1)
    mc = MonteCarlo(conf, 0.5, seed=1)
    mc.sweep(50)
    mc.stats[:] = 0
    assert res.info["acceptance"]["displacement"] == mc.run(5).info["acceptance"]["displacement"]
    assert res.info["sweeps"] == 5 and res.info["sweeps_before_run"] == 50


def test_a_swap_checkpoint_without_frame_species_is_refused(tmp_path):
    """Checkpoints written before frames kept their species would silently label every frame with the final
    species again: refused with a one-line error."""
    import h5py

    from glassgen.dynamics.initial import random_state
    from glassgen.errors import InputError

    conf = random_state("ka2d", 40, seed=2)
    ck = tmp_path / "mc.ckpt.h5"
    MonteCarlo(conf, 0.8, swap_fraction=0.2, seed=9).run(60, sample_every=10, traj_sweeps=[0, 30, 60],
                                                         checkpoint=ck, checkpoint_every=40)
    with h5py.File(ck, "a") as f:
        del f["frames/species"]
    with pytest.raises(InputError, match="before MC runs with swaps kept each frame's species"):
        MonteCarlo(conf, 0.8, swap_fraction=0.2, seed=9).run(60, sample_every=10, traj_sweeps=[0, 30, 60],
                                                             checkpoint=ck)
