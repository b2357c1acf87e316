"""Torch pair energy and the Numba autograd bridge: golden KA values, forces, periodic images, soft core."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch

from glassgen.dynamics.forces import ForceField
from glassgen.flows import BoltzmannEnergy, NumbaPairEnergy, TorchPairEnergy
from glassgen.systems.configuration import random_configuration
from glassgen.systems.io import read_xyz
from glassgen.systems.model import load_model

DATA = Path(os.environ.get("GLASSGEN_DATA", Path(__file__).resolve().parents[1].parent / "shared" / "data"))
CONF = DATA / "configurations"
KA3D_FILE = CONF / "ka3d_N150_rho1.2.xyz"
KA2D_FILE = CONF / "ka2d_N1290_T0.231.xyz"


def _conf(path: Path, model: str):
    if not path.is_file():
        pytest.skip(f"reference configuration {path} missing (set GLASSGEN_DATA)")
    return read_xyz(path, model)


def _numba(conf, soft_core: float = 0.0):
    ff = ForceField(conf.model, conf.species, conf.box, skin=0.0, soft_core=soft_core, check_overlap=False)
    return ff.compute(conf.positions)


# ------------------------------------------------------------------------------------------- (a)
@pytest.mark.data
@pytest.mark.parametrize("path,model,golden,tol", [
    (KA3D_FILE, "ka3d", -6.723879766831, 1e-9),
    (KA2D_FILE, "ka2d", -2.676832, 1e-6),  # published to 6 decimals
    (KA3D_FILE, "ka3d_sf", None, None),
])
def test_golden_energy_and_numba_agreement(path, model, golden, tol):
    conf = _conf(path, model)
    te = TorchPairEnergy(model, conf.species, conf.box)
    assert te.n_images == 1  # both boxes have L >= 2 r_c: minimum-image path
    u = te(torch.as_tensor(conf.positions)).item()
    ref = _numba(conf).energy
    assert u == pytest.approx(ref, rel=1e-10, abs=0)
    if golden is not None:
        assert u / conf.n == pytest.approx(golden, abs=tol)
    # per-particle energies sum to U and match the Numba per-particle energies
    e = te.per_particle(torch.as_tensor(conf.positions)).numpy()
    ff = ForceField(conf.model, conf.species, conf.box, skin=0.0)
    np.testing.assert_allclose(e, ff.compute(conf.positions, per_particle=True).per_particle,
                               rtol=0, atol=1e-10)
    assert e.sum() == pytest.approx(u, rel=1e-12)


# ------------------------------------------------------------------------------------------- (b)
@pytest.mark.data
@pytest.mark.parametrize("path,model", [(KA3D_FILE, "ka3d"), (KA3D_FILE, "ka3d_sf"), (KA2D_FILE, "ka2d")])
def test_forces_autograd_numba_and_finite_differences(path, model):
    conf = _conf(path, model)
    x = torch.as_tensor(conf.positions)
    te = TorchPairEnergy(model, conf.species, conf.box)
    ne = NumbaPairEnergy(model, conf.species, conf.box)
    ft, fn = te.forces(x), ne.forces(x)
    torch.testing.assert_close(ft, fn, rtol=0, atol=1e-9)
    np.testing.assert_allclose(fn.numpy(), _numba(conf).forces, rtol=0, atol=1e-12)
    assert ft.abs().max() > 1.0  # a real force field, not zeros
    # central finite differences of the energy, h = 1e-6, on a few coordinates
    h = 1e-6
    rng = np.random.default_rng(3)
    for i, k in zip(rng.choice(conf.n, 4, replace=False), rng.integers(0, conf.dim, 4), strict=True):
        xp, xm = x.clone(), x.clone()
        xp[i, k] += h
        xm[i, k] -= h
        fd = -(te(xp) - te(xm)).item() / (2 * h)
        assert fd == pytest.approx(ft[i, k].item(), abs=2e-5, rel=1e-6)
        assert fd == pytest.approx(fn[i, k].item(), abs=2e-5, rel=1e-6)


# ------------------------------------------------------------------------------------------- (c)
def _u_cut_shift_soft(r, sig, eps, rc, rs):
    """Independent KA cut-and-shift pair energy with linear soft core (numpy, any r array)."""
    def lj(q):
        x6 = (sig / q) ** 6
        return 4 * eps * (x6 * x6 - x6)

    def dlj(q):
        x6 = (sig / q) ** 6
        return 4 * eps * (-12 * x6 * x6 + 6 * x6) / q

    shift = lj(rc)
    u = lj(np.maximum(r, rs)) - shift
    if rs > 0:
        u = np.where(r < rs, lj(rs) - shift + dlj(rs) * (r - rs), u)
    return np.where(r < rc, u, 0.0)


def _brute_image_energy(pos, species, box, model, soft_core, m=3):
    """U summed over every pair i <= j and every image n in [-m, m]^d (self pair: n != 0, weight 1/2)."""
    mdl = load_model(model)
    d = pos.shape[1]
    grids = np.meshgrid(*[np.arange(-m, m + 1)] * d, indexing="ij")
    shifts = np.stack([g.ravel() for g in grids], axis=1) * box  # (S, d)
    wrapped = pos - box * np.floor(pos / box)
    total = 0.0
    for i in range(len(pos)):
        for j in range(i, len(pos)):
            a, b = species[i], species[j]
            sig, eps = mdl.sigma[a, b], mdl.epsilon[a, b]
            r = np.linalg.norm(wrapped[j] + shifts - wrapped[i], axis=1)
            if i == j:
                r = r[r > 0]
            u = _u_cut_shift_soft(r, sig, eps, mdl.cutoff_factor * sig, soft_core * sig)
            total += 0.5 * u.sum() if i == j else u.sum()
    return total


@pytest.mark.parametrize("n,seed", [(32, 11), (8, 5)])
def test_small_box_image_sums(n, seed):
    conf = random_configuration("ka3d", n, seed=seed)  # density 1.2: L = 2.99 (N=32), 1.88 (N=8) < 2 r_c
    assert np.all(conf.box < 5.0)
    te = TorchPairEnergy("ka3d", conf.species, conf.box, soft_core=0.8)
    ne = NumbaPairEnergy("ka3d", conf.species, conf.box, soft_core=0.8)
    assert te.n_images > 1
    rng = np.random.default_rng(seed)
    x = torch.as_tensor(conf.positions + rng.normal(0, 0.3, (3, n, 3)))  # (3, N, 3), some unwrapped
    u_t, u_n = te(x), ne(x)
    torch.testing.assert_close(u_t, u_n, rtol=1e-10, atol=0)
    for b in range(3):
        ref = _brute_image_energy(x[b].numpy(), conf.species, conf.box, "ka3d", 0.8, m=3)
        assert u_t[b].item() == pytest.approx(ref, rel=1e-10)
    torch.testing.assert_close(te.forces(x), ne.forces(x), rtol=1e-10, atol=1e-9)
    # self-image energy alone: one particle in a tiny box interacts with its own images
    one = TorchPairEnergy("ka3d", np.array([0]), np.full(3, 1.5))
    ref1 = _brute_image_energy(np.zeros((1, 3)), np.array([0]), np.full(3, 1.5), "ka3d", 0.0, m=3)
    assert one(torch.zeros(1, 3, dtype=torch.float64)).item() == pytest.approx(ref1, rel=1e-12)
    assert ref1 != 0.0


# ------------------------------------------------------------------------------------------- (d)
def test_numba_bridge_gradient_matches_torch():
    conf = random_configuration("ka3d", 32, seed=2)
    te = TorchPairEnergy("ka3d", conf.species, conf.box, soft_core=0.8)
    ne = NumbaPairEnergy("ka3d", conf.species, conf.box, soft_core=0.8)
    rng = np.random.default_rng(0)
    x0 = torch.as_tensor(conf.positions + rng.normal(0, 0.1, (4, 32, 3))).reshape(4, -1)  # flattened
    w = torch.as_tensor(rng.normal(size=4))  # non-trivial grad_output
    grads = []
    for energy in (te, ne):
        x = x0.clone().requires_grad_(True)
        (energy(x) * w).sum().backward()
        grads.append(x.grad)
    assert grads[1].shape == x0.shape
    torch.testing.assert_close(grads[1], grads[0], rtol=1e-10, atol=1e-9)
    # gradcheck (finite differences vs backward) of the bridge on a tiny system
    small = random_configuration("ka3d", 6, seed=4)
    ne6 = NumbaPairEnergy("ka3d", small.species, small.box, soft_core=0.8)
    x6 = torch.as_tensor(small.positions)[None].repeat(2, 1, 1)
    x6 = (x6 + 0.05 * torch.arange(2, dtype=torch.float64)[:, None, None]).requires_grad_(True)
    assert torch.autograd.gradcheck(ne6, (x6,), eps=1e-6, atol=1e-5, rtol=1e-6)


# ------------------------------------------------------------------------------------------- (e)
@pytest.mark.data
def test_permutation_and_translation_invariance():
    conf = _conf(KA3D_FILE, "ka3d")
    te = TorchPairEnergy("ka3d", conf.species, conf.box)
    x = torch.as_tensor(conf.positions)
    u0 = te(x).item()
    rng = np.random.default_rng(7)
    perm = np.arange(conf.n)
    for s in range(conf.model.nsp):
        idx = np.flatnonzero(conf.species == s)
        perm[idx] = rng.permutation(idx)
    xp = x[torch.as_tensor(perm)]
    assert te(xp).item() == pytest.approx(u0, rel=1e-10)
    torch.testing.assert_close(te.per_particle(xp), te.per_particle(x)[torch.as_tensor(perm)],
                               rtol=0, atol=1e-10)
    for shift in (rng.normal(0, 1, 3), np.array([7.3, -12.1, 25.0])):  # small, and across many boxes
        assert te(x + torch.as_tensor(shift)).item() == pytest.approx(u0, rel=1e-10)
    # mixing species breaks the symmetry (the test can fail)
    swap = np.arange(conf.n)
    a, b = np.flatnonzero(conf.species == 0)[0], np.flatnonzero(conf.species == 1)[0]
    swap[[a, b]] = swap[[b, a]]
    assert abs(te(x[torch.as_tensor(swap)]).item() - u0) > 1e-3


def test_small_box_invariances():
    conf = random_configuration("ka3d", 32, seed=9)
    te = TorchPairEnergy("ka3d", conf.species, conf.box, soft_core=0.8)
    x = torch.as_tensor(conf.positions)
    u0 = te(x).item()
    perm = np.arange(32)
    idx = np.flatnonzero(conf.species == 0)
    perm[idx] = np.random.default_rng(1).permutation(idx)
    assert te(x[torch.as_tensor(perm)]).item() == pytest.approx(u0, rel=1e-10)
    assert te(x + torch.as_tensor([0.37, -4.2, 9.9])).item() == pytest.approx(u0, rel=1e-10)


# ------------------------------------------------------------------------------------------- (f)
def _dimer(r: np.ndarray) -> torch.Tensor:
    x = np.zeros((len(r), 2, 3))
    x[:, 0] = 1.0
    x[:, 1] = 1.0
    x[:, 1, 0] += r
    return torch.as_tensor(x)


def test_soft_core_continuity_and_exactness():
    box = np.full(3, 10.0)
    species = np.array([0, 1])  # an AB pair: sig = 0.8, r_s = 0.64
    soft = TorchPairEnergy("ka3d", species, box, soft_core=0.8)
    exact = TorchPairEnergy("ka3d", species, box)
    ne = NumbaPairEnergy("ka3d", species, box, soft_core=0.8)
    rs = 0.8 * 0.8
    # value and slope continuous at r_s
    dl = 1e-7
    x = _dimer(np.array([rs - dl, rs + dl]))
    u = soft(x)
    f = soft.forces(x)[:, 1, 0]  # force on particle 1 along the bond: -u'(r)
    slope = -f.mean().item()
    assert slope < -100  # steeply repulsive there
    assert (u[1] - u[0]).item() == pytest.approx(2 * dl * slope, rel=1e-5)
    assert (f[1] - f[0]).item() == pytest.approx(0.0, abs=1e-3 * abs(slope))
    # exact above r_s (to rounding), softer below, and linear below
    r_hi = np.linspace(rs, 2.1, 50)
    torch.testing.assert_close(soft(_dimer(r_hi)), exact(_dimer(r_hi)), rtol=1e-13, atol=1e-13)
    r_lo = np.array([0.0, 0.1, 0.3, 0.5, 0.6])
    u_lo = soft(_dimer(r_lo)).numpy()
    assert np.all(u_lo[1:] < exact(_dimer(r_lo[1:])).numpy())
    slope_lo = -f[0].item()  # the linear branch's slope u'(r_s)
    np.testing.assert_allclose(u_lo, u_lo[-1] + slope_lo * (r_lo - r_lo[-1]), rtol=1e-12)
    torch.testing.assert_close(soft(_dimer(r_lo)), ne(_dimer(r_lo)), rtol=1e-12, atol=0)
    # scan through r_s matches the Numba kernel, and gradients stay finite (even at r = 0)
    scan = np.linspace(0.0, 2.6, 200)
    torch.testing.assert_close(soft(_dimer(scan)), ne(_dimer(scan)), rtol=1e-12, atol=1e-12)
    g = soft.forces(_dimer(scan))
    assert torch.isfinite(g).all()
    assert g[0].abs().max().item() == 0.0  # coincident particles: no direction, force 0 as in Numba
    torch.testing.assert_close(g[1:], ne.forces(_dimer(scan))[1:], rtol=1e-10, atol=1e-10)
    assert soft(_dimer(np.array([2.0]))).item() == 0.0  # r_c,AB = 2.0


# --------------------------------------------------------------------------------- API details
def test_shapes_dtypes_and_boltzmann_energy():
    conf = random_configuration("ka2d", 12, seed=0)
    te = TorchPairEnergy("ka2d", conf.species, conf.box, soft_core=0.8)
    assert te.dim == 24 and te.event_shape == (12, 2)
    x = torch.as_tensor(conf.positions)
    u_single = te(x)
    assert u_single.shape == ()
    assert te(x.reshape(1, -1)).shape == (1,) and te(x[None]).shape == (1,)
    assert te.forces(x.reshape(1, -1)).shape == (1, 24)
    assert te.per_particle(x).shape == (12,)
    u32 = te(x.float())
    assert u32.dtype == torch.float32
    assert u32.item() == pytest.approx(u_single.item(), rel=1e-4)
    be = BoltzmannEnergy(te, 0.5)
    assert be.energy(x).item() == pytest.approx(2.0 * u_single.item(), rel=1e-14)
    torch.testing.assert_close(be.forces(x), 2.0 * te.forces(x))
    with pytest.raises(ValueError):
        te(torch.zeros(2, 11, 2, dtype=torch.float64))
    with pytest.raises(ValueError):
        BoltzmannEnergy(te, 0.0)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_matches_cpu():
    conf = random_configuration("ka3d", 32, seed=3)
    te = TorchPairEnergy("ka3d", conf.species, conf.box, soft_core=0.8)
    x = torch.as_tensor(conf.positions)[None]
    uc = te.to("cuda")(x.cuda())
    assert uc.device.type == "cuda"
    assert uc.item() == pytest.approx(te(x).item(), rel=1e-12)
