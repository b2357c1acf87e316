"""Importance-weight metrics against exactly solvable Gaussian targets and proposals."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import stats

from glassgen.errors import InputError
from glassgen.flows.weights import (
    WeightSummary,
    forward_ess,
    gaussian_log_weight_theory,
    harmonic_reweighting_ess_fraction,
    kish_ess,
    kish_ess_fraction,
    log_partition,
    log_weights,
    reweighted_histogram,
    reweighted_mean,
    summarize,
)

# target p~(x) = exp(-|x|^2 / 2) (beta U = |x|^2 / 2, Z = (2 pi)^(d/2)); proposal q = N(mu, sigma^2 I)


def _log_q(x: np.ndarray, mu: float, sigma: float) -> np.ndarray:
    d = x.shape[1]
    return (-0.5 * np.sum((x - mu) ** 2, axis=1) / sigma**2 - d * math.log(sigma) - 0.5 * d * math.log(2 * math.pi))


def _gauss_log_w(x: np.ndarray, mu: float, sigma: float) -> np.ndarray:
    return log_weights(1.0, 0.5 * np.sum(x**2, axis=1), _log_q(x, mu, sigma))


def _exact_ess_fraction(mu: float, sigma: float, d: int) -> float:
    """1 / E_q[(w / Z)^2] = 1 / integral p^2 / q for p = N(0, 1), q = N(mu, sigma^2) per axis (sigma^2 > 1/2)."""
    a = 1.0 - 1.0 / (2.0 * sigma**2)
    one_axis = sigma / math.sqrt(2.0 * a) * math.exp(mu**2 / (4.0 * a * sigma**4) + mu**2 / (2.0 * sigma**2))
    return one_axis ** (-d)


def _delta_se_kish(lw: np.ndarray) -> float:
    """Delta-method standard error of the Kish ESS / n = m1^2 / m2 (m_k = mean w^k)."""
    w = np.exp(lw - lw.max())
    m1, m2 = w.mean(), (w * w).mean()
    g = np.array([2 * m1 / m2, -m1**2 / m2**2])
    cov = np.cov(np.stack([w, w * w])) / w.size
    return float(np.sqrt(g @ cov @ g))


def test_exact_ess_formula_against_quadrature():
    mu, sigma = 0.5, 1.3
    x = np.linspace(-15, 15, 200001)
    p = stats.norm.pdf(x)
    q = stats.norm.pdf(x, mu, sigma)
    assert np.trapezoid(p * p / q, x) ** -1 == pytest.approx(_exact_ess_fraction(mu, sigma, 1), rel=1e-8)


def test_kish_ess_converges_to_analytic_value():
    # sigma^2 > 3/4: E_q[w^4] finite, so the estimator is asymptotically normal with the delta-method error
    mu, sigma, d, n = 0.5, 1.3, 2, 400_000
    rng = np.random.default_rng(1)
    x = rng.normal(mu, sigma, (n, d))
    lw = _gauss_log_w(x, mu, sigma)
    exact = _exact_ess_fraction(mu, sigma, d)
    se = _delta_se_kish(lw)
    assert se < 0.01 * exact  # the check below has teeth
    assert abs(kish_ess_fraction(lw) - exact) < 4 * se
    assert kish_ess(lw) == pytest.approx(n * kish_ess_fraction(lw), rel=1e-12)
    # a different proposal would be detected
    assert abs(kish_ess_fraction(lw) - _exact_ess_fraction(0.6, sigma, d)) > 4 * se


def test_forward_ess_converges_to_analytic_value():
    # sigma^2 in (0.8, 4/3): E_p[w^4] and E_p[w^-4] finite, so the delta-method error below is itself reliable
    mu, sigma, d, n = 0.5, 1.1, 2, 400_000
    rng = np.random.default_rng(2)
    x = rng.normal(0.0, 1.0, (n, d))  # reference samples from the target
    lw = _gauss_log_w(x, mu, sigma) + 17.0  # unknown normalisation
    w = np.exp(lw - lw.max())
    ma, mb = w.mean(), (1 / w).mean()
    g = np.array([-1 / (ma**2 * mb), -1 / (ma * mb**2)])
    se = float(np.sqrt(g @ (np.cov(np.stack([w, 1 / w])) / n) @ g))
    exact = _exact_ess_fraction(mu, sigma, d)
    assert se < 0.01 * exact
    assert abs(forward_ess(lw) - exact) < 4 * se


def test_gaussian_log_weights_give_exp_minus_s2():
    s2, n = 1.0, 1_000_000
    lw = np.random.default_rng(3).normal(3.0, math.sqrt(s2), n)
    theory = gaussian_log_weight_theory(s2)
    assert abs(kish_ess_fraction(lw) - theory["ess_fraction"]) < 4 * _delta_se_kish(lw)
    # shifted unit Gaussians: log w = -mu x + mu^2/2 is exactly Gaussian with s2 = d mu^2
    mu, d = 0.6, 3
    x = np.random.default_rng(4).normal(mu, 1.0, (n, d))
    lw = _gauss_log_w(x, mu, 1.0)
    assert np.var(lw) == pytest.approx(d * mu**2, rel=0.01)
    assert abs(kish_ess_fraction(lw) - math.exp(-d * mu**2)) < 4 * _delta_se_kish(lw)


def test_gaussian_theory_imh_acceptance_by_simulation():
    """E[min(1, w'/w)] with log w' ~ N(0, s2) (proposal) and log w ~ N(s2, s2) (stationary, tilted)."""
    rng = np.random.default_rng(5)
    for s2 in (0.5, 2.0, 6.0):
        th = gaussian_log_weight_theory(s2)
        acc = np.minimum(1.0, np.exp(rng.normal(0, math.sqrt(s2), 10**6) - rng.normal(s2, math.sqrt(s2), 10**6)))
        assert abs(acc.mean() - th["imh_acceptance"]) < 5 * acc.std() / 1e3
        assert th["ess_fraction"] == math.exp(-s2)
    assert gaussian_log_weight_theory(0.0)["imh_acceptance"] == 1.0
    with pytest.raises(InputError):
        gaussian_log_weight_theory(-1.0)


def test_log_partition_and_its_error_bar():
    mu, sigma, d, n, repeats = 0.3, 1.2, 3, 20_000, 200
    exact = 0.5 * d * math.log(2 * math.pi)
    rng = np.random.default_rng(6)
    z = []
    for _ in range(repeats):
        lw = _gauss_log_w(rng.normal(mu, sigma, (n, d)), mu, sigma)
        lz, err = log_partition(lw)
        z.append((lz - exact) / err)
    z = np.array(z)
    assert abs(z.mean()) < 4 / math.sqrt(repeats)  # unbiased (bias O(1/n) is far below the error)
    assert 0.8 < z.std() < 1.2  # and the reported error bar is the right size
    # not vacuous: the error bar is small
    assert err < 0.02


def test_reweighted_moments_and_error_bars():
    mu, sigma, n, repeats = 0.7, 1.4, 5_000, 300
    rng = np.random.default_rng(7)
    zs = []
    for _ in range(repeats):
        x = rng.normal(mu, sigma, (n, 1))
        lw = _gauss_log_w(x, mu, sigma)
        mean, err = reweighted_mean(np.column_stack([x[:, 0], x[:, 0] ** 2]), lw)
        assert mean.shape == err.shape == (2,) and mean.dtype == np.float64
        zs.append((mean - np.array([0.0, 1.0])) / err)
    zs = np.array(zs)
    assert np.all(np.abs(zs.mean(axis=0)) < 4 / math.sqrt(repeats))
    assert np.all((zs.std(axis=0) > 0.8) & (zs.std(axis=0) < 1.2))
    m1, e1 = reweighted_mean(x[:, 0], lw)  # (n,) values -> floats, same as column 0
    assert isinstance(m1, float) and isinstance(e1, float)
    assert m1 == pytest.approx(mean[0], rel=1e-12) and e1 == pytest.approx(err[0], rel=1e-12)


def test_grouped_error_covers_correlated_chains():
    """Samples from 16 correlated chains (AR(1), stationary law N(mu, sigma^2), phi = 0.95) reweighted to
    N(0, 1): the delta-method error assumes independence and is too small (z spread ~5); with the chain
    of each sample as its group the error covers the scatter (z spread near 1), and equals the
    delta-method error when that is the larger."""
    from scipy.signal import lfilter

    mu, sigma, phi, chains, n, repeats = 0.5, 1.3, 0.95, 16, 1000, 200
    rng = np.random.default_rng(17)
    groups = np.repeat(np.arange(chains), n)
    z_plain, z_grouped = [], []
    for _ in range(repeats):
        e = rng.normal(size=(chains, n + 200))
        x = lfilter([np.sqrt(1 - phi**2)], [1.0, -phi], e, axis=1)[:, 200:].reshape(-1) * sigma + mu
        lw = _gauss_log_w(x[:, None], mu, sigma)
        m, err = reweighted_mean(x, lw)
        mg, errg = reweighted_mean(x, lw, groups)
        assert mg == m and errg >= err
        z_plain.append(m / err)
        z_grouped.append(m / errg)
    assert np.std(z_plain) > 3.0
    assert 0.8 < np.std(z_grouped) < 1.3
    x = rng.normal(size=400)
    lw = np.zeros(400)
    m, err = reweighted_mean(x, lw)
    assert reweighted_mean(x, lw, np.repeat([0, 1], 200))[1] >= err
    with pytest.raises(InputError, match="groups"):
        reweighted_mean(x, lw, np.zeros(3))


def test_reweighted_histogram_matches_target_density():
    mu, sigma, n = 0.5, 1.3, 200_000
    x = np.random.default_rng(8).normal(mu, sigma, (n, 1))
    lw = _gauss_log_w(x, mu, sigma)
    edges, dens, err = reweighted_histogram(x[:, 0], lw, bins=np.linspace(-2.5, 2.5, 26))
    exact = np.diff(stats.norm.cdf(edges)) / np.diff(edges)
    z = (dens - exact) / err
    assert np.all(np.abs(z) < 5)
    assert 0.4 < np.mean(z**2) < 1.8  # 25 bins: mean of chi^2_1 within ~3 sigma of 1
    assert np.sum(dens * np.diff(edges)) == pytest.approx(stats.norm.cdf(2.5) - stats.norm.cdf(-2.5), abs=0.01)
    # the unweighted histogram is the proposal's, and is rejected
    _, d0, _ = reweighted_histogram(x[:, 0], np.zeros(n), bins=edges)
    assert np.max(np.abs(d0 - exact) / err) > 10
    ref, _ = np.histogram(x[:, 0], bins=edges)
    assert np.allclose(d0, ref / n / np.diff(edges))


def test_every_metric_is_invariant_under_a_constant_shift():
    rng = np.random.default_rng(9)
    x = rng.normal(0.5, 1.3, (5000, 2))
    lw = _gauss_log_w(x, 0.5, 1.3)
    vals = x**2
    for c in (-1e4, -50.0, 3.0, 1e4):
        s = lw + c
        assert kish_ess(s) == pytest.approx(kish_ess(lw), rel=1e-9)
        assert forward_ess(s) == pytest.approx(forward_ess(lw), rel=1e-9)
        lz, e = log_partition(s)
        lz0, e0 = log_partition(lw)
        assert lz == pytest.approx(lz0 + c, rel=1e-12, abs=1e-9) and e == pytest.approx(e0, rel=1e-9)
        for a, b in zip(reweighted_mean(vals, s), reweighted_mean(vals, lw), strict=True):
            assert np.allclose(a, b, rtol=1e-9)
        for a, b in zip(reweighted_histogram(x[:, 0], s, 20), reweighted_histogram(x[:, 0], lw, 20), strict=True):
            assert np.allclose(a, b, rtol=1e-9)
        assert summarize(s).ess_fraction == pytest.approx(summarize(lw).ess_fraction, rel=1e-9)
        assert summarize(s).max_weight_fraction == pytest.approx(summarize(lw).max_weight_fraction, rel=1e-9)


def test_zero_weights():
    # log_weights: non-finite energies give -inf, never NaN
    lw = log_weights(2.0, np.array([1.0, np.inf, np.nan, -np.inf, 0.5]), np.zeros(5))
    assert np.array_equal(lw, [-2.0, -np.inf, -np.inf, -np.inf, -1.0])
    assert not np.any(np.isnan(lw))
    # -inf samples count in n but carry no weight
    base = np.array([0.3, -1.0, 2.0, 0.0])
    full = np.concatenate([base, [-np.inf, -np.inf]])
    assert kish_ess(full) == pytest.approx(kish_ess(base), rel=1e-12)
    assert kish_ess_fraction(full) == pytest.approx(kish_ess(base) / 6, rel=1e-12)
    assert log_partition(full)[0] == pytest.approx(log_partition(base)[0] + math.log(4 / 6), rel=1e-12)
    vals = np.array([1.0, 2.0, 3.0, 4.0, np.nan, np.inf])  # values of zero-weight samples are ignored
    assert reweighted_mean(vals, full) == pytest.approx(reweighted_mean(vals[:4], base), rel=1e-12)
    assert forward_ess(full) == 0.0  # a reference sample the flow cannot produce
    s = summarize(full)
    assert s.n == 6 and s.ess == pytest.approx(kish_ess(base))
    # all weights zero
    none = np.full(3, -np.inf)
    assert kish_ess(none) == 0.0
    lz, err = log_partition(none)
    assert lz == -math.inf and math.isnan(err)
    with pytest.raises(InputError):
        reweighted_mean(np.ones(3), none)
    with pytest.raises(InputError):
        reweighted_histogram(np.ones(3), none, 5)
    with pytest.raises(InputError):  # a finite-weight sample with a NaN value is an error
        reweighted_mean(np.array([1.0, np.nan]), np.zeros(2))


def test_float64_policy_for_float32_and_torch_input():
    """Inputs of any float dtype are converted to float64 before any arithmetic; outputs are float64."""
    rng = np.random.default_rng(10)
    lw64 = rng.normal(0.0, 2.0, 1000) + 80.0  # exp(2 * 80 + ...) overflows float32
    lw32 = lw64.astype(np.float32)
    ref = lw32.astype(np.float64)
    assert kish_ess(torch.from_numpy(lw32)) == kish_ess(ref)
    assert kish_ess(lw32) == kish_ess(ref)
    assert isinstance(kish_ess(lw32), float)
    lz, err = log_partition(torch.from_numpy(lw32))
    assert isinstance(lz, float) and math.isfinite(lz) and lz == log_partition(ref)[0]
    m, e = reweighted_mean(torch.from_numpy(np.ones((1000, 3), dtype=np.float32)), lw32)
    assert m.dtype == np.float64 and np.allclose(m, 1.0)
    # log_weights: torch in -> float64 torch out (same device); numpy in -> float64 numpy out
    u = torch.tensor([1.0, 2.0, float("inf")], dtype=torch.float32)
    out = log_weights(0.5, u, torch.zeros(3, dtype=torch.float32))
    assert out.dtype == torch.float64 and out.device == u.device
    assert torch.equal(out, torch.tensor([-0.5, -1.0, -math.inf], dtype=torch.float64))
    outn = log_weights(0.5, np.array([1.0], dtype=np.float32), np.array([0.25], dtype=np.float32))
    assert isinstance(outn, np.ndarray) and outn.dtype == np.float64 and outn[0] == -0.75


def test_summarize():
    lw = np.log(np.array([1.0, 1.0, 2.0]))
    s = summarize(lw)
    assert isinstance(s, WeightSummary)
    assert s.n == 3 and s.ess == pytest.approx(16 / 6) and s.ess_fraction == pytest.approx(16 / 18)
    assert s.max_weight_fraction == pytest.approx(0.5)
    assert s.log_z == pytest.approx(math.log(4 / 3))
    with pytest.raises(AttributeError):
        s.n = 4  # type: ignore[misc]


@pytest.mark.parametrize("bad", [np.array([0.0, np.nan]), np.array([0.0, np.inf]), np.zeros((2, 2)), np.array([])])
def test_bad_log_weights_raise(bad):
    for fn in (kish_ess, kish_ess_fraction, forward_ess, log_partition, summarize):
        with pytest.raises(InputError):
            fn(bad)


def test_bad_inputs_raise():
    with pytest.raises(InputError):
        log_weights(0.0, np.zeros(2), np.zeros(2))
    with pytest.raises(InputError):
        log_weights(float("nan"), np.zeros(2), np.zeros(2))
    with pytest.raises(InputError):
        log_weights(1.0, np.zeros(2), np.zeros(3))
    with pytest.raises(InputError):
        log_weights(1.0, np.zeros(2), np.array([0.0, np.nan]))
    with pytest.raises(InputError):
        reweighted_mean(np.zeros(3), np.zeros(2))
    with pytest.raises(InputError):
        reweighted_histogram(np.zeros(3), np.zeros(2), 4)


@pytest.mark.parametrize("T,T_h,n_modes,resolves_one_mode", [(0.45, 0.5, 30, True), (0.4, 0.6, 12, True),
                                                              (0.6, 0.5, 20, False)])
def test_harmonic_reweighting_ess_matches_sampled_harmonic_solid(T, T_h, n_modes, resolves_one_mode):
    """The closed-form ESS of reweighting a harmonic solid equals the Kish ESS of sampled oscillators with
    unequal stiffnesses at T_h reweighted to T (the formula does not depend on the stiffnesses)."""
    rng = np.random.default_rng(5)
    kappa = rng.uniform(1.0, 50.0, n_modes)
    x = rng.normal(0.0, np.sqrt(T_h / kappa), (200_000, n_modes))
    u = 0.5 * (kappa * x * x).sum(1)
    sampled = kish_ess_fraction(-(1 / T - 1 / T_h) * u)
    exact = harmonic_reweighting_ess_fraction(T, T_h, n_modes)
    assert 0.05 < exact < 0.95
    lw = -(1 / T - 1 / T_h) * u
    assert abs(sampled - exact) < 4 * _delta_se_kish(lw), (sampled, exact, _delta_se_kish(lw))
    # one mode more (d N instead of d (N - 1)) moves the exact value by more than the test resolves (not when
    # reweighting to a higher T: heavy-tailed weights, 3 sigma only)
    if resolves_one_mode:
        assert abs(harmonic_reweighting_ess_fraction(T, T_h, n_modes + 1) - sampled) > 4 * _delta_se_kish(lw)
    assert harmonic_reweighting_ess_fraction(T_h, T_h, n_modes) == 1.0
    with pytest.raises(InputError):
        harmonic_reweighting_ess_fraction(-T, T_h, n_modes)
