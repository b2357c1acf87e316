"""StEP lattice model: the normalised Eshelby propagator (self term -1, sum -1, quadrupolar symmetry, the
reference Fourier form and the 1/r^2 far field),
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


def _reference_kernel(L: int, dim: int) -> list[list[np.ndarray]]:
    """K_ab(q) of REFERENCE.md section 7, written out here independently of glassgen.models.step."""
    q = 2 * np.pi * np.fft.fftfreq(L)
    if dim == 2:
        qx, qy = np.meshgrid(q, q, indexing="ij")
        q2 = qx**2 + qy**2
        q2[0, 0] = 1.0  # q = 0 is excluded by the caller
        cross = -2 * qx * qy * (qx**2 - qy**2) / q2**2
        return [[-4 * qx**2 * qy**2 / q2**2, cross], [cross, -((qx**2 - qy**2) ** 2) / q2**2]]
    qx, qy, qz = np.meshgrid(q, q, q, indexing="ij")
    q2 = qx**2 + qy**2 + qz**2
    q2[0, 0, 0] = 1.0
    return [[-(4 * qx**2 * qy**2 + q2 * qz**2) / q2**2]]


@pytest.mark.parametrize("L,dim", [(16, 2), (24, 2), (8, 3)])
def test_propagator_fourier_form_matches_reference(L: int, dim: int) -> None:
    """The real-space G, Fourier transformed, is c_a K_ab(q) at every q != 0 with ONE positive c_a per source
    component a (the self-term normalisation only rescales) and -delta_ab at q = 0 (strain conserved). The
    normalisation tests above hold for any kernel (the q = 0 term and the rescaling force them); this one
    fails for a wrong sign or a missing term of K (e.g. the cross term's sign, or 3D's q^2 qz^2)."""
    G = propagator(L, dim)
    neg = (-np.arange(L)) % L
    # A real G has a transform even under q -> -q: on the Nyquist planes of an even L, where the odd cross term
    # K(-pi, qy) = -K(pi, qy) sits on one lattice point, that is the even part (K(q) + K(-q)) / 2 (= 0 there).
    K = [[0.5 * (k + k[np.ix_(*([neg] * dim))]) for k in row] for row in _reference_kernel(L, dim)]
    nc = G.shape[0]
    shape = (L,) * dim
    nonzero = np.ones(shape, dtype=bool)
    nonzero[(0,) * dim] = False
    for a in range(nc):
        diag = np.fft.fftn(G[a, a].reshape(shape))
        big = nonzero & (np.abs(K[a][a]) > 1e-3)
        c_a = float(np.median(diag.real[big] / K[a][a][big]))
        assert c_a > 0  # a site that releases strain lowers it at its own wavevectors
        for b in range(nc):
            gq = np.fft.fftn(G[a, b].reshape(shape))
            assert np.max(np.abs(gq.imag)) < 1e-10  # G is even in space: a real transform
            assert np.allclose(gq.real[nonzero], c_a * K[a][b][nonzero], atol=1e-10, rtol=1e-9)
            assert gq.real[(0,) * dim] == pytest.approx(-1.0 if a == b else 0.0, abs=1e-10)


def test_propagator_far_field_decays_as_r_to_the_minus_d() -> None:
    """Eshelby far field of a 2D lattice: the xy->xy response falls as cos(4 theta) / r^2, so r^2 G is constant
    (within 6% for r = 4 ... 16 on L = 128, where periodic images are still far; measured 3%) along the axis
    and along the diagonal, with opposite signs."""
    L = 128
    g = propagator(L, 2)[0, 0].reshape(L, L)
    axis = np.array([r * r * g[r, 0] for r in (4, 8, 16)])
    diag = np.array([2 * k * k * g[k, k] for k in (3, 6, 11)])  # r = 4.2, 8.5, 15.6
    for vals in (axis, diag):
        assert np.all(vals > 0) or np.all(vals < 0)
        assert np.max(np.abs(vals)) / np.min(np.abs(vals)) < 1.06, vals
    assert axis[0] * diag[0] < 0  # cos(4 theta): antiphase at 0 and 45 degrees


def test_propagator_3d() -> None:
    L = 12
    G = propagator(L, 3)
    assert G.shape == (1, 1, L**3)
    assert G[0, 0, 0] == pytest.approx(-1.0, abs=1e-12)
    assert G[0, 0].sum() == pytest.approx(-1.0, abs=1e-10)
    g = G[0, 0].reshape(L, L, L)
    assert np.allclose(g, g.transpose(1, 0, 2))  # x <-> y


# REFERENCE.md section 7 (PRR parameters): eps_y Weibull, mean m0 + m1 S, shape w0 + w1 S + w2 S^2
PRR_YIELD_MEAN = (0.087261, -0.0049821)
PRR_YIELD_SHAPE = (2.0758, -0.024151, 0.0029429)


def test_weibull_yield_strain_law() -> None:
    """The default yield strains are the PRR Weibull law: mean 0.087261 - 0.0049821 S and shape
    2.0758 - 0.024151 S + 0.0029429 S^2 (KS test against scipy's weibull_min at three softnesses);
    negative control: a 10 % larger shape with the same mean is rejected."""
    p = StepParams()
    assert p.yield_mean == PRR_YIELD_MEAN and p.yield_shape == PRR_YIELD_SHAPE
    from scipy import stats

    rng = np.random.default_rng(0)
    u = rng.random(100_000)
    crit = 1.95 / math.sqrt(u.size)  # KS at alpha = 0.001
    for S in (-4.0, -1.66, 2.0):
        ey = np.array([yield_strain(S, uu, *PRR_YIELD_MEAN, *PRR_YIELD_SHAPE) for uu in u])
        mean = PRR_YIELD_MEAN[0] + PRR_YIELD_MEAN[1] * S
        shape = PRR_YIELD_SHAPE[0] + PRR_YIELD_SHAPE[1] * S + PRR_YIELD_SHAPE[2] * S * S
        for k, ok in ((shape, True), (1.1 * shape, False)):
            law = stats.weibull_min(c=k, scale=mean / math.gamma(1.0 + 1.0 / k))
            D = stats.kstest(ey, law.cdf).statistic
            assert (D < crit) == ok, (S, k, D, crit)


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


@pytest.mark.parametrize("dim, L", [(2, 8), (3, 6)])
def test_one_site_avalanche_against_a_frame_by_frame_numpy_replay(dim: int, L: int) -> None:
    """A single unstable site (every other one far from yield, no co-rearrangement, no restoring) releases its
    strain in ceil(|e|/release) frames. The kernel's final e, S and plastic strain equal a numpy replay of the
    documented rule: per frame e[x] += sum_a I_a G[a, :, x - i] with G placed by np.roll, S[x] += coupling
    Delta|e|^2, and the near-field change soft_nf . I at the chosen offsets. (The conservation test cannot
    see where the strain goes; this one can.)"""
    from glassgen._kernels.lattice import avalanche

    rng = np.random.default_rng(dim)
    n = L**dim
    G = propagator(L, dim)
    nc = G.shape[0]
    coords = np.stack(np.unravel_index(np.arange(n), (L,) * dim), 1).astype(np.int64)
    e = rng.normal(0.0, 0.01, (n, nc))
    S = rng.normal(-1.66, 2.0, n)
    u = np.full(n, 1.0 - 1e-9)  # yield strains ~0.4: nothing else yields
    i0 = n // 2 + 1
    e[i0] = [0.31, -0.12][:nc]
    u[i0] = 0.5
    m0, m1, w0, w1, w2 = 0.087261, -0.0049821, 2.0758, -0.024151, 0.0029429
    coupling, release = 101.3, 0.1
    soft_off = rng.integers(-2, 3, (5, dim)).astype(np.int64)
    soft_nf = rng.normal(0.0, 1.0, (5, nc))
    e0, S0 = e.copy(), S.copy()
    ep = np.zeros((n, nc))
    frames, events, sites, released, ok = avalanche(
        e, S, u, ep, coords, L, G, m0, m1, w0, w1, w2, coupling, release, np.zeros((1, dim), np.int64),
        np.ones(1), soft_off, soft_nf, np.zeros(5), np.full(5, -1, np.int64), 0.1, 0.0, 0.0, 0.0, np.zeros(1),
        0.0, 10_000, 7)
    nf = int(np.ceil(np.linalg.norm(e0[i0]) / release))
    assert (frames, events, sites, ok) == (nf, 1, 1, True) and nf >= 3
    assert released == pytest.approx(np.linalg.norm(e0[i0]), rel=1e-12)
    shifted = np.roll(G.reshape(nc, nc, *(L,) * dim), tuple(coords[i0]), axis=tuple(range(2, 2 + dim)))
    shifted = shifted.reshape(nc, nc, n)
    ref_e, ref_S, I = e0.copy(), S0.copy(), e0[i0] / nf
    near = [np.ravel_multi_index(tuple((coords[i0] + o) % L), (L,) * dim) for o in soft_off]
    for _ in range(nf):
        new = ref_e + np.einsum("a,abn->nb", I, shifted)
        ref_S += coupling * ((new**2).sum(1) - (ref_e**2).sum(1))
        ref_e = new
        for k, x in enumerate(near):
            ref_S[x] += soft_nf[k] @ I
    np.testing.assert_allclose(e, ref_e, rtol=0, atol=1e-13)
    np.testing.assert_allclose(S, ref_S, rtol=0, atol=1e-11)
    np.testing.assert_allclose(ep[i0], e0[i0], rtol=1e-12)
    assert np.all(ep[np.arange(n) != i0] == 0.0)
    assert np.abs(e - e0).max() > 0.01  # the release moved strain far beyond round-off


def test_shear_step_and_the_smallest_strain_to_yield() -> None:
    """shear_all against numpy; min_shear_to_yield against a per-site solve of |e + dg x|^2 = eps_y^2 at fixed
    softness: with coupling 0, 0.999 of it leaves every site stable and 1.000001 of it destabilises one."""
    from glassgen._kernels.lattice import min_shear_to_yield, shear_all

    mdl = StepModel(StepParams(L=16), seed=5)
    assert mdl.relax()[-1]  # the initial state relaxed: every site stable
    p = mdl.params
    e, S, u = mdl.e.copy(), mdl.S.copy(), mdl.u.copy()
    ey = np.array([yield_strain(s, uu, *p.yield_mean, *p.yield_shape) for s, uu in zip(S, u, strict=True)])
    assert np.all((e**2).sum(1) < ey**2)
    dist = np.sqrt(ey**2 - e[:, 1] ** 2) - e[:, 0]
    dg = min_shear_to_yield(e, S, u, *p.yield_mean, *p.yield_shape)
    assert dg == pytest.approx(dist.min(), rel=1e-12)

    def unstable(factor: float) -> int:
        e2, S2 = e.copy(), S.copy()
        shear_all(e2, S2, factor * dg, 0.0)
        return int(np.sum((e2**2).sum(1) > ey**2))

    assert unstable(0.999) == 0 and unstable(1.000001) == 1
    e2, S2 = e.copy(), S.copy()
    shear_all(e2, S2, 0.013, 101.3)
    moved = e.copy()
    moved[:, 0] += 0.013
    np.testing.assert_allclose(e2, moved, rtol=0, atol=1e-15)
    np.testing.assert_allclose(S2, S + 101.3 * ((moved**2).sum(1) - (e**2).sum(1)), rtol=1e-12, atol=1e-12)


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
    assert set(d) >= {"overshoot", "flow_fluctuation", "overshoot_peak", "localization", "ductility"}
    r3 = StepModel(StepParams(L=8, dim=3), seed=4).shear(0.02)
    assert r3.completed and r3.plastic_map.shape == (8, 8, 8)
    with pytest.raises(InputError):
        StepParams(L=15)


def _stress_drop(res, n_bins: int = 10) -> float:
    """(largest mean stress in n_bins equal strain windows of the first half - mean stress over the last
    quarter) / the latter: > 0 for an overshoot, < 0 for strain hardening."""
    g, s = res.gamma, res.stress_after
    edges = np.linspace(0.0, g[-1], n_bins + 1)
    binned = [s[(g > a) & (g <= b)].mean() for a, b in zip(edges[:-1], edges[1:], strict=True)]
    flow = float(s[g >= 0.75 * g[-1]].mean())
    return (max(binned[: n_bins // 2]) - flow) / flow


def _runs(L: int, gamma: float, s_mean: float, seeds: range, **kw) -> tuple[np.ndarray, np.ndarray]:
    drops, dS = [], []
    for seed in seeds:
        res = StepModel(StepParams(L=L, s_mean=s_mean, **kw), seed=seed).shear(gamma)
        assert res.completed
        drops.append(_stress_drop(res))
        dS.append(res.softness_mean[-1] - res.softness_initial.mean())
    return np.array(drops), np.array(dS)


def _mean_err(x: np.ndarray) -> tuple[float, float]:
    return float(x.mean()), float(x.std(ddof=1) / math.sqrt(x.size))


def test_prr_overshoot_depends_on_initial_softness() -> None:
    """PRR parameters (L = 32, shear to 0.4, 4 seeds): a low (well-annealed) initial mean softness -6
    softens under flow toward the PRR softness and gives a stress overshoot; a high one (+2) hardens
    toward it and has none; a start at the PRR distribution N(-1.66, 2^2) keeps its mean softness."""
    seeds = range(4)
    hard, dS_hard = _runs(32, 0.4, -6.0, seeds)
    soft, dS_soft = _runs(32, 0.4, 2.0, seeds)
    _, dS_ss = _runs(32, 0.4, -1.66, seeds)
    (h, eh), (s, es) = _mean_err(hard), _mean_err(soft)
    msg = {"hard": (h, eh), "soft": (s, es), "dS": (dS_hard.mean(), dS_soft.mean(), dS_ss.mean())}
    assert h > 0.1 and s < 0.03 and h - s > 4 * math.hypot(eh, es), msg
    # the steady state forgets the initial mean softness; a steady-state start is stationary
    assert dS_hard.mean() > 1.5 and dS_soft.mean() < -1.5, msg
    m, e = _mean_err(dS_ss)
    assert abs(m) < 0.25, msg


@pytest.mark.slow
def test_prr_overshoot_larger_lattice_and_reference_running_mean() -> None:
    """L = 48, shear to 0.5: the same contrast; and the negative control: with the reference code's
    running-mean target (restore_ema = 0.001) the mean softness is (nearly) conserved, so neither start
    forgets its initial softness and the hard start shows no overshoot."""
    seeds = range(4)
    hard, dS_hard = _runs(48, 0.5, -6.0, seeds)
    soft, _ = _runs(48, 0.5, 2.0, seeds)
    (h, eh), (s, es) = _mean_err(hard), _mean_err(soft)
    assert h > 0.1 and s < 0.03 and h - s > 4 * math.hypot(eh, es), (h, eh, s, es)
    assert dS_hard.mean() > 1.5
    ref_hard, ref_dS = _runs(32, 0.4, -6.0, seeds, restore_ema=0.001)
    assert abs(ref_dS.mean()) < 1.0 and ref_hard.mean() < 0.1, (ref_hard, ref_dS)


def test_restore_target_options() -> None:
    """restore_target = None / "sample" starts the running-mean target at the sample mean; bad values are
    InputErrors."""
    assert StepParams.from_dict({"restore_target": "sample"}).restore_target is None
    m = StepModel(StepParams(L=16, s_mean=-4.0, restore_target=None), seed=0)
    assert np.allclose(m.mavg, m.S.mean()) and m.mavg.size == 11  # bins round(r) for r < 10
    assert np.allclose(StepModel(StepParams(L=16, s_mean=-4.0), seed=0).mavg, -1.66)
    with pytest.raises(InputError):
        StepParams.from_dict({"restore_target": "mean"})
    with pytest.raises(InputError):
        StepParams(restore_ema=1.5)


def _synthetic(stress_after: np.ndarray, stress_before: np.ndarray, gamma: np.ndarray):
    from glassgen.models.step import StepResult

    n = gamma.size
    z = np.zeros(n)
    return StepResult(gamma=gamma, stress_before=stress_before, stress_after=stress_after,
                      aval_events=z.astype(np.int64), aval_sites=z.astype(np.int64),
                      aval_frames=z.astype(np.int64), aval_released=z,
                      softness_mean=z, softness_std=z, plastic_map=np.ones((8, 8)), softness_map=np.zeros((8, 8)),
                      softness_initial=np.zeros(64), frames_per_s=1.0, wall_s=1.0, completed=True)


def test_overshoot_is_a_window_mean_measured_against_the_flow_noise() -> None:
    """A flat noisy stress: the window overshoot stays within a few flow fluctuations, while the single
    largest pre-avalanche stress (overshoot_peak) is biased far above it. A real peak (1.5 at gamma = 0.1,
    flow 1) is found with its size and position."""
    rng = np.random.default_rng(0)
    g = np.linspace(0.0005, 0.4, 800)
    after = 1.0 + 0.05 * rng.standard_normal(g.size)
    flat = ductility(_synthetic(after, after + 0.05 * np.abs(rng.standard_normal(g.size)), g))
    assert abs(flat["overshoot"]) < 4 * flat["flow_fluctuation"] and flat["flow_fluctuation"] < 0.02, flat
    assert flat["overshoot_peak"] > 5 * abs(flat["overshoot"]), flat
    peaked = 1.0 + 0.5 * np.exp(-(((g - 0.1) / 0.03) ** 2)) + 0.01 * rng.standard_normal(g.size)
    d = ductility(_synthetic(peaked, peaked, g))
    assert 0.35 < d["overshoot"] < 0.55 and abs(d["gamma_peak"] - 0.1) <= 0.011, d


def test_step_params_that_would_hang_or_give_nan_are_refused() -> None:
    for bad in ({"co_range": -3}, {"max_frames": 0}, {"restore_amp": -1.0}):
        with pytest.raises(InputError):
            StepParams(**bad)
    with pytest.raises(InputError, match="eta"):
        StepModel(StepParams(L=16, restore_amp=20.0), seed=0)  # eta(0) = 20 * 0.1 = 2 > 1


def test_yield_law_must_stay_above_the_kernel_floors_over_the_initial_softness() -> None:
    """Weibull mean m0 + m1 S > 1e-4 and shape > 0.1 (where the kernel clamps them) for S in s_mean +- 3 s_std:
    with the PRR law the mean vanishes at S = 17.515, so s_mean < 17.515 - 6 = 11.515 for s_std = 2."""
    StepParams(s_mean=11.4)
    StepParams(s_mean=-100.0)  # hard: larger yield strains, fine
    StepParams(s_mean=5.0, s_std=4.0)  # 5 + 12 = 17 < 17.5
    for bad in ({"s_mean": 11.6}, {"s_mean": 100.0}, {"s_mean": 6.0, "s_std": 4.0}, {"yield_mean": (-0.01, 0.0)},
                {"yield_mean": (0.05, 0.01)}):  # increasing with S: the soft end is fine, the hard end is not
        with pytest.raises(InputError, match="mean yield strain"):
            StepParams(**bad)
    with pytest.raises(InputError, match="Weibull shape"):
        StepParams(yield_shape=(0.05, 0.0, 0.0))
    with pytest.raises(InputError, match="Weibull shape"):
        StepParams(yield_shape=(0.5, 0.0, -0.1), s_mean=0.0, s_std=1.0)  # 0.5 at S = 0, 0.5 - 0.9 < 0.1 at S = +-3
    with pytest.raises(InputError, match="Weibull shape"):  # a minimum inside the range, above 0.1 at both ends
        StepParams(yield_shape=(0.05, 0.0, 1.0), s_mean=0.0, s_std=1.0)
    StepParams(yield_shape=(0.2, 0.0, 0.0))


def test_interaction_ranges_must_fit_in_half_the_lattice() -> None:
    """co_range < L/2 (the 2 co_range + 1 box fits), r_soft and restore_range <= L/2 (no site nearer to a
    periodic image of the initiator); the PRR ranges fit L = 64 (and 60), not L = 32."""
    StepParams(L=64).check_ranges()
    StepParams(L=60).check_ranges()
    StepParams(L=8, co_range=3, r_soft=4.0, restore_range=4.0).check_ranges()
    for bad, word in (({"L": 32}, "r_soft = 30"), ({"L": 58}, "r_soft = 30"),
                      ({"L": 8, "co_range": 4, "r_soft": 4.0, "restore_range": 4.0}, "co_range = 4"),
                      ({"L": 8, "co_range": 3, "r_soft": 4.5, "restore_range": 4.0}, "r_soft = 4.5"),
                      ({"L": 8, "co_range": 3, "r_soft": 4.0, "restore_range": 4.5}, "restore_range = 4.5")):
        with pytest.raises(InputError, match=word):
            StepParams(**bad).check_ranges()


def test_step_runs_are_seeded_by_softness_and_resume_filters_the_output(tmp_path) -> None:
    """The run at a given initial softness is the same whatever the order of the --s-mean list; a resumed job
    with fewer values writes only those; a repeated value is refused."""
    import h5py

    from glassgen import api_models

    kw = dict(gamma_max=0.01, seed=3, params={"L": 8, "co_range": 3, "r_soft": 4.0, "restore_range": 4.0}, plot=False)
    api_models.step_model_run(tmp_path / "a.h5", s_mean=[-1.0, 2.0], **kw)
    api_models.step_model_run(tmp_path / "b.h5", s_mean=[2.0, -1.0], **kw)
    with h5py.File(tmp_path / "a.h5") as fa, h5py.File(tmp_path / "b.h5") as fb:
        for key in ("S_-1", "S_2"):
            np.testing.assert_array_equal(fa[key]["softness_initial"][()], fb[key]["softness_initial"][()])
            np.testing.assert_array_equal(fa[key]["stress_after"][()], fb[key]["stress_after"][()])
    # an interrupted job leaves S = -1 in its checkpoint; resumed asking for S = 2 only, it writes only S = 2
    from glassgen.models import step as step_module

    calls = {"n": 0}
    real_shear = step_module.StepModel.shear

    def interrupted(self, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        return real_shear(self, *args, **kwargs)

    out = tmp_path / "c.h5"
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(step_module.StepModel, "shear", interrupted)
        with pytest.raises(KeyboardInterrupt):
            api_models.step_model_run(out, s_mean=[-1.0, 2.0], **kw)
    assert api_models._ckpt(out).is_file() and not out.exists()
    api_models.step_model_run(out, s_mean=[2.0], **kw)
    with h5py.File(out) as f, h5py.File(tmp_path / "a.h5") as fa:
        assert set(f) == {"S_2"}
        np.testing.assert_array_equal(f["S_2/stress_after"][()], fa["S_2/stress_after"][()])
    with pytest.raises(InputError, match="twice"):
        api_models.step_model_run(tmp_path / "d.h5", s_mean=[1.0, 1.0], **kw)
