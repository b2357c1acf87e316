"""StEP lattice model: the normalised Eshelby propagator (self term -1, sum -1, quadrupolar symmetry),
Weibull yield strains, strain bookkeeping of an avalanche, AQS shear, and the stress overshoot."""

from __future__ import annotations

import math

import numpy as np
import pytest

from glassgen._kernels.lattice import yield_strain
from glassgen.errors import InputError
from glassgen.models.step import StepModel, StepParams, ductility, propagator


@pytest.mark.parametrize("L", [16, 32])
def test_propagator_2d_normalisation(L: int) -> None:
    G = propagator(L, 2)
    n = L * L
    for a in range(2):
        assert G[a, a, 0] == pytest.approx(-1.0, abs=1e-12)
        assert G[a, a].sum() == pytest.approx(-1.0, abs=1e-10)
    assert abs(G[0, 1].sum()) < 1e-10 and abs(G[1, 0].sum()) < 1e-10
    assert abs(G[0, 1, 0]) < 1e-12
    # the unnormalised inverse FFT has neither property (negative control of the normalisation)
    f = np.fft.fftfreq(L)
    q2 = f[:, None] ** 2 + f[None, :] ** 2
    with np.errstate(invalid="ignore", divide="ignore"):
        raw = np.fft.ifftn(np.nan_to_num(-4 * f[:, None] ** 2 * f[None, :] ** 2 / q2**2)).real
    assert abs(raw.ravel()[0] + 1) > 0.1 and abs(raw.sum() + 1) > 0.1
    assert n == G.shape[-1]


def test_propagator_quadrupolar_symmetry() -> None:
    L = 32
    G = propagator(L, 2)
    gxy = G[0, 0].reshape(L, L)
    gdev = G[1, 1].reshape(L, L)
    gx = G[0, 1].reshape(L, L)
    idx = np.arange(L)
    neg = (-idx) % L
    # xy->xy: even in x, even in y, symmetric under x <-> y
    assert np.allclose(gxy, gxy[neg][:, idx]) and np.allclose(gxy, gxy[:, neg]) and np.allclose(gxy, gxy.T)
    # dev->dev: even, and odd under x <-> y only through the 45-degree rotation: symmetric too
    assert np.allclose(gdev, gdev.T)
    # the cross term is antisymmetric under x <-> y and odd in x
    assert np.allclose(gx, -gx.T) and np.allclose(gx, -gx[neg][:, idx])
    # four-fold (cos 4 theta) angular pattern on a ring r ~ 8: xy->xy and dev->dev in antiphase
    th = np.linspace(0, 2 * np.pi, 64, endpoint=False)
    ring = [(int(round(8 * math.cos(t))) % L, int(round(8 * math.sin(t))) % L) for t in th]
    vxy = np.array([gxy[i, j] for i, j in ring])
    vdev = np.array([gdev[i, j] for i, j in ring])
    c4 = np.abs(np.fft.rfft(vxy))
    assert np.argmax(c4[1:]) + 1 == 4
    assert np.corrcoef(vxy, vdev)[0, 1] < -0.9


def test_propagator_3d() -> None:
    L = 12
    G = propagator(L, 3)
    assert G.shape == (1, 1, L**3)
    assert G[0, 0, 0] == pytest.approx(-1.0, abs=1e-12)
    assert G[0, 0].sum() == pytest.approx(-1.0, abs=1e-10)
    g = G[0, 0].reshape(L, L, L)
    assert np.allclose(g, g.transpose(1, 0, 2))  # x <-> y


def test_weibull_yield_strain_mean() -> None:
    """Mean of the yield strain over u ~ U(0, 1) is 0.087261 - 0.0049821 S (PRR law)."""
    p = StepParams()
    rng = np.random.default_rng(0)
    u = rng.random(200_000)
    for S in (-4.0, -1.66, 2.0):
        ey = np.array([yield_strain(S, uu, *p.yield_mean, *p.yield_shape) for uu in u])
        mean = p.yield_mean[0] + p.yield_mean[1] * S
        assert abs(ey.mean() - mean) < 5 * ey.std() / math.sqrt(u.size)
        assert abs(ey.mean() - 1.02 * mean) > 5 * ey.std() / math.sqrt(u.size)


def test_avalanche_strain_bookkeeping() -> None:
    """With the kernel summing to -1, each released unit of strain lowers the total e by exactly 1:
    sum e after = sum e before - sum of released plastic strain (both components)."""
    mdl = StepModel(StepParams(L=16), seed=2)
    mdl.e[:, 0] += 0.2  # load well beyond yield: a large avalanche
    before_e = mdl.e.sum(0).copy()
    before_p = mdl.ep.sum(0).copy()
    frames, events, sites, released, ok = mdl.relax()
    assert ok and events > 0 and frames > 0
    assert np.allclose(mdl.e.sum(0) - before_e, -(mdl.ep.sum(0) - before_p), atol=1e-9)
    # every site stable afterwards
    p = mdl.params
    ey = np.array([yield_strain(s, u, *p.yield_mean, *p.yield_shape) for s, u in zip(mdl.S, mdl.u, strict=True)])
    assert np.all(np.sum(mdl.e**2, 1) <= ey**2 + 1e-15)


def test_aqs_shear_run_and_outputs() -> None:
    res = StepModel(StepParams(L=16), seed=3).shear(0.05)
    assert res.completed and res.gamma[-1] == pytest.approx(0.05, abs=1e-9)
    assert np.all(np.diff(res.gamma) > 0)
    dg = np.diff(np.concatenate([[0.0], res.gamma]))
    assert np.all(res.aval_events[:-1][dg[:-1] < 0.999e-3] >= 1)  # a step below the cap (not the last) yields
    assert np.any(res.aval_events > 0)
    assert np.all(res.stress_after <= res.stress_before + 1e-12)
    assert res.plastic_map.shape == (16, 16)
    d = ductility(res)
    assert set(d) >= {"overshoot", "overshoot_binned", "localization", "ductility"}
    r3 = StepModel(StepParams(L=8, dim=3), seed=4).shear(0.02)
    assert r3.completed and r3.plastic_map.shape == (8, 8, 8)
    with pytest.raises(InputError):
        StepParams(L=15)


@pytest.mark.slow
@pytest.mark.xfail(strict=True, reason="not reproduced: with the PRR parameters and glassgen's reading of the "
                   "restoring rule the mean softness is conserved and no overshoot appears for any initial mean "
                   "softness (see the report of issue 7)")
def test_prr_overshoot_depends_on_initial_softness() -> None:
    """PRR parameters: a low (stable) initial softness gives a stress overshoot, a high one does not."""
    over = {}
    for sm in (-6.0, 2.0):
        vals = [ductility(StepModel(StepParams(L=48, s_mean=sm), seed=s).shear(0.2))["overshoot_binned"]
                for s in range(3)]
        over[sm] = (float(np.mean(vals)), float(np.std(vals) / math.sqrt(len(vals))))
    (hard, eh), (soft, es) = over[-6.0], over[2.0]
    assert hard > 0.1 and soft < 0.05 and hard - soft > 3 * math.hypot(eh, es), over
