"""Golden energies, finite-difference forces, neighbour lists vs brute force, periodic images, virial."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from glassgen.dynamics.forces import ForceField, potential_energy
from glassgen.errors import PhysicsError
from glassgen.systems.configuration import Configuration, random_configuration
from glassgen.systems.model import load_model


def brute_energy(conf: Configuration, m_img: int = 3, soft_core: float = 0.0) -> float:
    """Independent numpy reference: every pair, every image n in [-m, m]^d, formulas of REFERENCE.md."""
    model = conf.model
    x, s, box = conf.positions, conf.species, conf.box
    sig, eps, rc = model.sigma, model.epsilon, model.rcut
    C0, C2, C4 = model.quartic
    scheme = model.cutoff_scheme

    def v(r, a, b):
        sg, ep, c = sig[a, b], eps[a, b], rc[a, b]

        def lj(rr):
            return 4 * ep * ((sg / rr) ** 12 - (sg / rr) ** 6)

        def dlj(rr):
            return 4 * ep * (-12 * sg**12 / rr**13 + 6 * sg**6 / rr**7)

        def exact(rr):
            if scheme == "cut":
                return lj(rr)
            if scheme == "cut_shift":
                return lj(rr) - lj(c)
            if scheme == "shifted_force":
                xx = sg / rr
                c0 = 2.5**-12 - 2.5**-6
                c1 = -12 * 2.5**-13 + 6 * 2.5**-7
                return 4 * ep * (xx**12 - xx**6 - c0 - (rr / sg - 2.5) * c1)
            return 4 * ep * ((sg / rr) ** 12 - (sg / rr) ** 6 + C0 + C2 * (rr / sg) ** 2 + C4 * (rr / sg) ** 4)

        rs = soft_core * sg
        if r < rs:
            h = 1e-7 * rs
            slope = (exact(rs + h) - exact(rs - h)) / (2 * h)
            return exact(rs) + slope * (r - rs)
        return exact(r) if r < c else 0.0

    e = 0.0
    n, d = x.shape
    imgs = [np.array(t) for t in itertools.product(range(-m_img, m_img + 1), repeat=d)]
    for i in range(n):
        for j in range(i, n):
            for img in imgs:
                if i == j and not np.any(img):
                    continue
                r = np.linalg.norm(x[j] + img * box - x[i])
                w = 0.5 if i == j else 1.0
                e += w * v(r, s[i], s[j])
    return e


def test_golden_ka3d_n150(ka3d_n150):
    r = potential_energy(ka3d_n150)
    assert abs(r.energy / ka3d_n150.n - (-6.723879766831)) < 1e-6


def test_golden_ka2d_n1290(ka2d_n1290, data):
    r = potential_energy(ka2d_n1290)
    assert abs(r.energy / ka2d_n1290.n - (-2.676832)) < 1e-6
    # the file's header names ParticlesMC's model "JBB": read without --model, it is our ka2d
    from glassgen.systems.io import read_xyz

    named = read_xyz(data / "configurations" / "ka2d_N1290_T0.231.xyz")
    assert named.model.name == "ka2d" and named.metadata["Model"] == "JBB"
    assert potential_energy(named).energy == r.energy


@pytest.mark.parametrize("model", ["ka3d", "ka3d_sf", "ka2d", "ka2"])
def test_kernel_matches_independent_formulas(model):
    conf = random_configuration(model, 40, seed=3)
    ff = ForceField.for_configuration(conf, skin=0.0, soft_core=0.8, check_overlap=False)
    e = ff.compute(conf.positions).energy
    ref = brute_energy(conf, m_img=2, soft_core=0.8)
    assert abs(e - ref) < 1e-9 * max(1.0, abs(ref))


FD_CASES = [("ka3d", 0.0), ("ka3d_sf", 0.0), ("ka2d", 0.0), ("ka2", 0.0)]


def _check_finite_difference_forces(conf: Configuration, soft: float) -> None:
    """Central differences (h = 1e-6) of the energy at 6 random coordinates equal the kernel's forces."""
    ff = ForceField.for_configuration(conf, skin=0.0, soft_core=soft)
    res = ff.compute(conf.positions)
    rng = np.random.default_rng(0)
    h = 1e-6
    for _ in range(6):
        i, k = int(rng.integers(conf.n)), int(rng.integers(conf.dim))
        xp = conf.positions.copy()
        xm = conf.positions.copy()
        xp[i, k] += h
        xm[i, k] -= h
        fd = -(ff.compute(xp).energy - ff.compute(xm).energy) / (2 * h)
        assert abs(fd - res.forces[i, k]) < 1e-5 * max(1.0, abs(fd))
    # Newton's third law: forces sum to zero
    assert np.abs(res.forces.sum(0)).max() < 1e-9


@pytest.mark.parametrize("model,soft", FD_CASES)
def test_forces_finite_difference(model, soft):
    """Data-free: random configurations without overlaps (N = 200, every model)."""
    from glassgen.dynamics.initial import random_state

    _check_finite_difference_forces(random_state(model, 200, seed=5), soft)


@pytest.mark.parametrize("model,soft", FD_CASES)
def test_forces_finite_difference_reference_configurations(model, soft, request):
    """The shared reference configurations (KA 3D N = 150, KA2D N = 1290), relabelled to each model."""
    conf = request.getfixturevalue("ka2d_n1290" if model == "ka2d" else "ka3d_n150").with_model(model)
    _check_finite_difference_forces(conf, soft)


@pytest.mark.parametrize("model", ["ka3d", "ka2d"])
def test_forces_finite_difference_inside_the_soft_core(model):
    """Random (overlapping) positions with the soft core at 0.8 sigma: central differences at the particles of
    the closest pairs, whose separations lie inside the core, equal the kernel's forces. (The equilibrated
    configurations have no pair closer than ~0.94 sigma, so they never reach the core.)"""
    conf = random_configuration(model, 40, seed=3)
    ff = ForceField.for_configuration(conf, skin=0.0, soft_core=0.8, check_overlap=False)
    res = ff.compute(conf.positions)
    m = conf.model
    d = conf.positions[:, None] - conf.positions[None]
    d -= conf.box * np.round(d / conf.box)
    sig = np.array(m.sigma)[conf.species[:, None], conf.species[None]]
    x = np.sqrt((d**2).sum(-1)) / sig
    np.fill_diagonal(x, np.inf)
    close = np.unique(np.nonzero(x < 0.8)[0])
    assert close.size >= 4  # several particles sit inside another's core
    h = 1e-6
    for i in close[:6]:
        for k in range(conf.dim):
            xp, xm = conf.positions.copy(), conf.positions.copy()
            xp[i, k] += h
            xm[i, k] -= h
            fd = -(ff.compute(xp).energy - ff.compute(xm).energy) / (2 * h)
            assert abs(fd - res.forces[i, k]) < 1e-5 * max(1.0, abs(fd)), (i, k, fd, res.forces[i, k])


def test_neighbour_list_with_skin_equals_rebuild(ka3d_n150):
    """Energies through a Verlet list with skin (no rebuild) equal a fresh list after small moves."""
    ff = ForceField.for_configuration(ka3d_n150, skin=0.4, check_overlap=False)
    ff.compute(ka3d_n150.positions)
    rng = np.random.default_rng(1)
    x = ka3d_n150.positions + rng.uniform(-0.09, 0.09, ka3d_n150.positions.shape)  # < skin/2 per particle
    builds = ff.builds
    e_skin = ff.compute(x).energy
    assert ff.builds == builds  # no rebuild happened
    e_fresh = ForceField.for_configuration(ka3d_n150, skin=0.0).compute(x).energy
    assert abs(e_skin - e_fresh) < 1e-10 * abs(e_fresh)
    # a large move triggers a rebuild and stays exact; unwrapped coordinates are fine
    x2 = x + rng.uniform(-0.5, 0.5, x.shape) + 3 * ka3d_n150.box
    e2 = ff.compute(x2).energy
    assert ff.builds == builds + 1
    ref2 = ForceField.for_configuration(ka3d_n150, skin=0.0, check_overlap=False).compute(x2).energy
    assert abs(e2 - ref2) < 1e-9 * max(1.0, abs(ref2))


@pytest.mark.parametrize("n", [4, 32, 64])
def test_small_boxes_sum_all_images(n):
    """KA 3D at rho=1.2 with L < 2 r_c: the image sum matches the independent reference."""
    conf = random_configuration("ka3d", n, seed=n)
    ff = ForceField.for_configuration(conf, skin=0.0, soft_core=0.8, check_overlap=False)
    e = ff.compute(conf.positions).energy
    assert abs(e - brute_energy(conf, m_img=2, soft_core=0.8)) < 1e-9 * max(1, abs(e))


@pytest.mark.parametrize("cells_per_cutoff", [1, 2])
def test_cell_lists_match_tiled_small_box(ka3d_n150, monkeypatch, cells_per_cutoff):
    """The 2x2x2 tiling of the N=150 box goes through cell lists (both stencils) and must give 8x the
    energy (the small box, all-pairs list) and the tiled forces; also through a moved, unwrapped state."""
    import glassgen.dynamics.forces as forces_module

    monkeypatch.setattr(forces_module, "CELLS_PER_CUTOFF", cells_per_cutoff)
    conf = ka3d_n150
    shifts = np.array(list(itertools.product([0, 1], repeat=3)), dtype=float) * conf.box
    big = conf.replace(positions=np.concatenate([conf.positions + sh for sh in shifts]),
                       species=np.tile(conf.species, len(shifts)), box=2 * conf.box, velocities=None)
    ff = ForceField.for_configuration(big, skin=0.3)
    assert ff._use_cells
    small = ForceField.for_configuration(conf, skin=0.0).compute(conf.positions)
    res = ff.compute(big.positions)
    assert abs(res.energy - 8 * small.energy) < 1e-9 * abs(res.energy)
    np.testing.assert_allclose(res.forces, np.tile(small.forces, (8, 1)), atol=1e-9)
    # slightly moved positions (within the skin: no rebuild), then unwrapped ones, against fresh lists
    rng = np.random.default_rng(3)
    x = big.positions + rng.uniform(-0.05, 0.05, big.positions.shape)
    builds = ff.builds
    for pos in (x, x + 3 * big.box):
        e_skin = ff.compute(pos)
        fresh = ForceField.for_configuration(big, skin=0.0).compute(pos)
        assert abs(e_skin.energy - fresh.energy) < 1e-9 * abs(fresh.energy)
        np.testing.assert_allclose(e_skin.forces, fresh.forces, atol=1e-9)
        assert ff.builds == builds
        builds += 1  # the jump by whole boxes rebuilds


def test_per_particle_energies_sum_and_virial(ka3d_n150):
    conf = ka3d_n150
    ff = ForceField.for_configuration(conf, skin=0.0)
    r = ff.compute(conf.positions, per_particle=True)
    assert abs(r.per_particle.sum() - r.energy) < 1e-9
    # virial W = -dU/dlambda under x -> lambda x, L -> lambda L
    h = 1e-6

    def u(lam):
        c = conf.replace(positions=conf.positions * lam, box=conf.box * lam)
        return ForceField.for_configuration(c, skin=0.0).compute(c.positions).energy

    w_fd = -(u(1 + h) - u(1 - h)) / (2 * h)
    assert abs(w_fd - r.virial) < 1e-5 * abs(w_fd)


def test_cutoff_schemes_are_smooth():
    """Shifted force: V, V' vanish at r_c; quartic: V, V', V'' vanish at r_c (REFERENCE.md)."""
    from glassgen._kernels.pair import pair_energy_array

    # quartic: the published C0, C2, C4 have 11 significant digits, so V(r_c) ~ 1e-9, not 1e-15
    for name, nderiv, tol in [("ka3d_sf", 2, 1e-12), ("ka2d", 3, 1e-8), ("ka3d", 1, 1e-12)]:
        m = load_model(name)
        p = m.kernel_params()
        for a in range(m.nsp):
            for b in range(m.nsp):
                ab = a * m.nsp + b
                rc = m.rcut[a, b]
                h = 1e-5
                r = np.array([rc - 2 * h, rc - h, rc * (1 - 1e-12)])
                u, du = pair_energy_array(r, ab, *p.as_tuple()[:2], p.rc2, *p.as_tuple()[3:])
                assert abs(u[-1]) < tol
                if nderiv >= 2:
                    assert abs(du[-1]) < 10 * tol
                if nderiv >= 3:
                    assert abs((du[1] - du[0]) / h) < 1e-3


def test_overlap_and_nan_are_errors(ka3d_n150):
    x = ka3d_n150.positions.copy()
    x[1] = x[0] + 0.1
    with pytest.raises(PhysicsError, match="overlapping"):
        potential_energy(ka3d_n150.replace(positions=x))


def test_threads_give_identical_results(ka3d_n150):
    import numba

    if numba.config.NUMBA_NUM_THREADS < 2:
        pytest.skip("NUMBA_NUM_THREADS=1: the threaded force loop cannot run here")
    a = ForceField.for_configuration(ka3d_n150, skin=0.0, threads=1).compute(ka3d_n150.positions)
    ffb = ForceField.for_configuration(ka3d_n150, skin=0.0, threads=2)
    assert ffb.threads == 2  # the threaded loop, whatever numba's current thread count
    b = ffb.compute(ka3d_n150.positions)
    assert abs(a.energy - b.energy) < 1e-10 * abs(a.energy)
    assert np.abs(a.forces - b.forces).max() < 1e-10
