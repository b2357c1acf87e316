"""Trap models by KMC: exact results (Monthus-Bouchaud, Gaussian barriers, softness trap model),
stationarity of P(S) with and without facilitation (with negative controls), and the physics trends
(D*tau_alpha, chi_4, excess wing). Tolerances come from the sampling error of each estimator."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from glassgen._kernels.kmc import kick_amplitude, reversible_kick, sample_redraw
from glassgen._kernels.sumtree import tree_build, tree_sample, tree_set, tree_set_leaves, tree_total
from glassgen.errors import InputError
from glassgen.models import observables as ob
from glassgen.models.softness_law import load_softness_law
from glassgen.models.trap import TrapModel, simulate

LAW = load_softness_law("softness_systemIII")
KS_C = 1.95  # KS critical value sqrt(-ln(alpha/2)/2) for alpha = 1e-3


def _ks_threshold(n: int) -> float:
    return KS_C / math.sqrt(n)


# --------------------------------------------------------------------------------------------- sum tree
def test_sum_tree_selects_in_proportion_to_rates() -> None:
    rng = np.random.default_rng(0)
    rates = rng.exponential(1.0, 37)
    tree = tree_build(rates)
    tree_set(tree, 5, 3.0)  # an update must be seen by the sampler
    rates[5] = 3.0
    tree_set(tree, 11, 0.0)  # a zero rate is never chosen (nor are the zero padding leaves 37 ... 63)
    rates[11] = 0.0
    assert tree_total(tree) == pytest.approx(rates.sum(), rel=1e-12)
    n = 200_000
    counts = np.bincount([tree_sample(tree, u) for u in rng.random(n)], minlength=37)
    assert counts.size == 37 and counts[11] == 0
    assert tree_sample(tree, np.nextafter(1.0, 0.0)) == 36  # the right edge: the last positive leaf
    ok = rates > 0
    p = stats.chisquare(counts[ok], rates[ok] / rates.sum() * n).pvalue
    assert p > 1e-3
    wrong = rates.copy()
    wrong[5] = 2.7  # negative control: a 10 % wrong rate is detected at this sample size
    assert stats.chisquare(counts[ok], wrong[ok] / wrong.sum() * n).pvalue < 1e-6


def test_tree_set_leaves_equals_a_rebuild() -> None:
    """Several leaves updated in one pass (sorted, unsorted, repeated) give the tree built from scratch."""
    rng = np.random.default_rng(1)
    rates = rng.exponential(1.0, 1000)
    tree = tree_build(rates)
    for order in ("sorted", "shuffled", "repeat"):
        for _ in range(200):
            idx = np.sort(rng.choice(1000, size=9, replace=False))
            if order == "shuffled":
                rng.shuffle(idx)
            if order == "repeat":
                idx[3] = idx[2]
            new = rng.exponential(1.0, idx.size)
            tree_set_leaves(tree, idx.copy(), new, idx.size)
            rates[idx] = new  # with a repeated index the last value wins, as in the kernel
        assert np.array_equal(tree, tree_build(rates)), order


# --------------------------------------------------------------------------------------------- Bouchaud
def _km_mean(run) -> float:
    t, S = ob.kaplan_meier(run.waiting_times, run.censored)
    t = np.concatenate([[0.0], t])
    S = np.concatenate([[1.0], S])
    return float(np.sum(S[:-1] * np.diff(t)))


def test_bouchaud_mean_trapping_time() -> None:
    """<tau> = tau0 T / (T - T0) at T = 3 T0 (finite variance of the waiting time there)."""
    m = TrapModel(kind="bouchaud", T0=1.0, tau0=1.0)
    T = 3.0
    run = simulate(m, T, n=10_000, seed=11, p_stop=0, t_max=300.0, record_waiting=4_000_000)
    exact = m.exact(T)["mean_trapping_time"]  # 1.5
    var_w = 2 * T / (T - 2.0) - exact**2  # Var(w) = 2 <tau^2> - <tau>^2 with <tau^2> = T/(T - 2 T0)
    # (1) renewal identity of a stationary start: events per site per time = 1 / <tau>
    est_rate = run.t_end * 10_000 / run.n_events
    err_rate = math.sqrt(var_w) / exact / math.sqrt(run.n_events) * exact
    assert abs(est_rate - exact) < 5 * err_rate
    # (2) Kaplan-Meier mean of the waiting times of traps drawn from rho during the run
    est_km = _km_mean(run)
    err_km = math.sqrt(var_w / run.waiting_times.size)
    assert abs(est_km - exact) < 5 * err_km
    assert 5 * err_km < 0.01 * exact  # the test resolves a 1 % error


def test_bouchaud_waiting_time_tail_exponent() -> None:
    """psi(tau) ~ tau^(-1 - T/T0): censored Pareto MLE of the survival exponent T/T0 above t_min."""
    m = TrapModel(kind="bouchaud", T0=1.0)
    T = 1.5
    run = simulate(m, T, n=10_000, seed=12, p_stop=0, t_max=1500.0, record_waiting=6_000_000)
    alpha, err = ob.pareto_tail(run.waiting_times, run.censored, t_min=20.0)
    assert abs((1 + alpha) - m.exact(T)["tail_exponent"]) < 5 * err
    assert 5 * err < 0.1
    with pytest.raises(InputError):  # no equilibrium below T0
        simulate(m, 0.8, n=10, seed=0)


def test_gaussian_barriers_mean_trapping_time() -> None:
    """<tau> = tau0 exp(E0/T + s^2 / 2T^2)."""
    m = TrapModel(kind="bouchaud-gaussian", E0=1.0, sigma_E=0.5)
    T = 1.0
    run = simulate(m, T, n=10_000, seed=13, p_stop=0, t_max=600.0, record_waiting=3_000_000)
    exact = m.exact(T)["mean_trapping_time"]
    var_w = 2 * math.exp(2 * 1.0 / T + 2 * 0.25 / T**2) - exact**2
    est = run.t_end * 10_000 / run.n_events
    err = math.sqrt(var_w) / math.sqrt(run.n_events)
    assert abs(est - exact) < 5 * err
    est_km = _km_mean(run)
    assert abs(est_km - exact) < 5 * math.sqrt(var_w / run.waiting_times.size)
    assert abs(est - exact * 1.02) > 5 * err  # a 2 % error would be detected


# --------------------------------------------------------------------------------------------- softness
def test_loss_spectrum_of_a_debye_decay() -> None:
    """C(t) = exp(-t / tau) sampled on a log grid from 0.01 tau to 3 tau (C ends at 0.05, as a trap run stopped
    at p_stop): chi'' is the Debye omega tau / (1 + (omega tau)^2) within 1.5% for omega tau in 0.05 ... 10
    (measured 0.8%; the cosine transform cut at t_end was off by 10% at omega tau = 0.5 and rippled with
    C(t_end) sin(omega t_end) above the peak). At omega tau = 50 the kinks of the piecewise-linear C of this
    24-per-decade grid leave -8%."""
    tau = 2.0
    t = np.logspace(math.log10(0.01 * tau), math.log10(3 * tau), 60)
    w = np.logspace(math.log10(0.05 / tau), math.log10(10 / tau), 25)
    chi = ob.loss_spectrum(t, np.exp(-t / tau), w)
    debye = w * tau / (1 + (w * tau) ** 2)
    assert np.max(np.abs(chi / debye - 1)) < 0.015, np.max(np.abs(chi / debye - 1))


def test_bouchaud_loss_spectrum_against_the_exact_one() -> None:
    """Stationary Bouchaud model at T = 2 T0 (x = 2): chi''(omega) = <omega tau / (1 + omega^2 tau^2)> over the
    occupation law p(E) = y exp(-y E), y = 1/T0 - 1/T (quadrature). Every tau >= tau0, so chi'' falls as
    omega^-1 above the peak: the measured exponent over the fit window is within 0.1 of the exact spectrum's
    (0.99; measured 1.00-1.04 over 3 seeds, 0.54 with the cosine transform before 2026-12-06), and the peak
    within 20% of the exact one (0.507; measured 0.50-0.51)."""
    from scipy import integrate

    T, T0 = 2.0, 1.0
    run = simulate(TrapModel(kind="bouchaud", T0=T0), T, n=20000, seed=2)
    a = ob.analyze_runs([run], q=math.pi)
    y = 1 / T0 - 1 / T
    om = a["omega"]
    exact = np.array([integrate.quad(lambda e, w=w: y * math.exp(-y * e) * (w * math.exp(e / T))
                                     / (1 + (w * math.exp(e / T)) ** 2), 0, 200, limit=400)[0] for w in om])
    ex = ob.spectrum_exponents(om, exact, (a["times"][0], a["times"][-1]))
    assert abs(ex["beta_high"] - 0.99) < 0.02 and abs(ex["omega_peak"] - 0.507) < 0.05, ex
    assert abs(a["beta_high"] - ex["beta_high"]) < 0.1, (a["beta_high"], ex["beta_high"])
    assert abs(a["omega_peak"] / ex["omega_peak"] - 1) < 0.2, (a["omega_peak"], ex["omega_peak"])


def test_redraw_law_is_p_times_k() -> None:
    """The exact two-piece sampler of g ~ P(S) k(S) (capped linear law) against its numerical CDF."""
    T = 0.36
    law = LAW.kernel_law(T)
    assert law.redraw_mode == 2
    draws = sample_redraw(200_000, 2, law.p0, law.p1, law.rp, law.c0, law.c1, law.lncap, 0.0, 1.0, np.zeros(0),
                          np.zeros(2), np.zeros(2), 7)
    m, s = LAW.p_s(T)
    grid = np.linspace(m - 12 * s, m + 12 * s, 200_001)
    g = np.exp(-0.5 * ((grid - m) / s) ** 2 + LAW.lnk(grid, T) - LAW.lnk(grid, T).max())
    cdf = np.cumsum(g)
    cdf /= cdf[-1]
    D = stats.kstest(draws, lambda x: np.interp(x, grid, cdf)).statistic
    assert D < _ks_threshold(draws.size)
    D_wrong = stats.kstest(draws, "norm", args=(m + law.c1 * s * s, s)).statistic  # the uncapped Gaussian
    assert D_wrong > 3 * _ks_threshold(draws.size)


def _nonlinear_law(form: str):
    """SystemIII with a quadratic barrier (polynomial) or the same law tabulated on a softness grid: both take
    the kernel's tabulated rate and inverse-CDF redraw (mode 3)."""
    d = {"name": "quadratic", "nu0": 1.0, "rate_cap": 0.00877, "T_onset": 0.441,
         "P_S": {"T": [0.05, 0.30], "mean": [0.0852, 0.5751], "std": [0.7197, 0.7049]}}
    if form == "polynomial":
        return load_softness_law(d | {"DeltaE": [19.74, -11.27, 0.1], "Sigma": [40.05, -25.57]})
    S = np.linspace(-4.0, 5.0, 37)
    return load_softness_law(d | {"S": S.tolist(), "DeltaE": (19.74 - 11.27 * S + 0.1 * S**2).tolist(),
                                  "Sigma": (40.05 - 25.57 * S).tolist()})


@pytest.mark.parametrize("form", ["polynomial", "table"])
def test_tabulated_rate_law_and_inverse_cdf_redraw(form: str) -> None:
    """Non-linear laws: the kernel's ln k(S) (table interpolation) against the law itself, and the redraw
    sampler (mode 3) against the CDF of P(S) k(S) built here on a finer grid (KS, alpha 1e-3), with the
    uncorrected P(S) as the negative control."""
    from glassgen._kernels.kmc import lnrate

    law, T = _nonlinear_law(form), 0.38
    kl = law.kernel_law(T)
    assert kl.redraw_mode == 3 and kl.tab.size > 0
    m, s = law.p_s(T)
    S = np.random.default_rng(3).normal(m, 2 * s, 2000)
    got = np.array([lnrate(x, kl.c0, kl.c1, kl.lncap, kl.tab_x0, kl.tab_dx, kl.tab) for x in S])
    tab_S = kl.tab_x0 + kl.tab_dx * np.arange(kl.tab.size)
    np.testing.assert_allclose(got, np.minimum(np.interp(S, tab_S, kl.tab), kl.lncap), rtol=0, atol=1e-12)
    inside = np.abs(S - m) < 12 * s  # the table against the law: linear interpolation, a kink at the cap
    bound = 0.5 * np.abs(np.gradient(kl.tab, kl.tab_dx)).max() * kl.tab_dx
    np.testing.assert_allclose(got[inside], law.lnk(S[inside], T), rtol=0, atol=bound)
    assert bound < 1e-2
    assert np.ptp(got) > 5  # the law varies over the sample: not a constant
    assert np.any(got == kl.lncap) and np.any(got < kl.lncap - 3)  # cap and linear regime both reached
    draws = sample_redraw(200_000, 3, kl.p0, kl.p1, kl.rp, kl.c0, kl.c1, kl.lncap, kl.tab_x0, kl.tab_dx, kl.tab,
                          kl.cdf_x, kl.cdf, 11)
    grid = np.linspace(m - 12 * s, m + 12 * s, 400_001)
    g = np.exp(-0.5 * ((grid - m) / s) ** 2 + law.lnk(grid, T) - law.lnk(grid, T).max())
    cdf = np.cumsum(g)
    cdf /= cdf[-1]
    assert stats.kstest(draws, lambda x: np.interp(x, grid, cdf)).statistic < _ks_threshold(draws.size)
    assert stats.kstest(draws, "norm", args=(m, s)).statistic > 3 * _ks_threshold(draws.size)


@pytest.mark.parametrize("law_form", ["linear", "nonlinear"])
@pytest.mark.parametrize("redraw", ["stationary", "naive"])
def test_softness_model_keeps_p_s_stationary(redraw: str, law_form: str) -> None:
    """Start from P(S); after many rearrangements the softness of all sites is still P(S) (KS, alpha 1e-3),
    for the shipped (capped linear) law and a non-linear one (the kernel's tabulated rate and inverse-CDF
    redraw). Negative control: redrawing from P(S) itself (the naive law) drives the distribution away."""
    law, seed = (LAW, 21) if law_form == "linear" else (_nonlinear_law("polynomial"), 23)
    T, n = 0.38, 20_000
    run = simulate(TrapModel(kind="softness", law=law, redraw=redraw), T, n=n, seed=seed, p_stop=0, t_max=2.0e4)
    assert np.mean(run.nhop[-1] > 0) > 0.5  # most sites rearranged at least once
    mu, s = law.p_s(T)
    D = stats.kstest(run.final_states, "norm", args=(mu, s)).statistic
    if redraw == "stationary":
        assert D < _ks_threshold(n)
    else:
        assert D > 10 * _ks_threshold(n)


def test_softness_msd_is_d_b2_k_t() -> None:
    """MSD(t) = d b^2 <k>_P t exactly from a stationary start (checked at three times)."""
    T, n, b = 0.40, 20_000, 0.7
    m = TrapModel(kind="softness", law=LAW, b=b, dim=3)
    times = np.array([200.0, 1000.0, 5000.0])
    run = simulate(m, T, n=n, seed=22, times=times, p_stop=0)
    slope = m.exact(T)["msd_slope"]
    for k, t in enumerate(times):
        r2 = np.sum(run.displacements[k] ** 2, -1)
        assert abs(r2.mean() - slope * t) < 5 * r2.std() / math.sqrt(n), (t, r2.mean(), slope * t)
    r2 = np.sum(run.displacements[-1] ** 2, -1)
    assert abs(r2.mean() - 1.1 * slope * times[-1]) > 5 * r2.std() / math.sqrt(n)  # resolves 10 %


@pytest.mark.parametrize("softening", [0.0, 0.3])
@pytest.mark.parametrize("kind", ["softness-facilitated", "facilitated"])
def test_facilitation_kicks_keep_p_s(kind: str, softening: float) -> None:
    """Reversible kicks leave the product of the stationary law stationary (KS on all sites after the run):
    N(mu(T), s(T)) of the softness law, or the Gaussian-barrier law N(E0 + sigma_E^2 / T, sigma_E);
    negative control: a mean softening shift in the kick breaks it."""
    if kind == "softness-facilitated":
        T, t_max = 0.38, 3000.0
        m = TrapModel(kind=kind, law=LAW, L=64, dim=2, eta0=0.5, r_c=1.5, softening=softening)
        mu, s = LAW.p_s(T)
    else:
        T, t_max = 1.0, 300.0
        m = TrapModel(kind=kind, E0=0.0, sigma_E=1.0, L=64, dim=2, eta0=0.5, r_c=1.5, softening=softening)
        mu, s = 1.0 / T, 1.0
    run = simulate(m, T, seed=31, p_stop=0, t_max=t_max)
    assert np.mean(run.nhop[-1] > 0) > 0.5
    D = stats.kstest(run.final_states, "norm", args=(mu, s)).statistic
    if softening == 0.0:
        assert D < _ks_threshold(run.final_states.size)
    else:
        assert D > 3 * _ks_threshold(run.final_states.size)


@pytest.mark.parametrize("softening", [0.0, 0.2])
def test_kick_is_reversible(softening: float) -> None:
    """The kernel's AR(1) kick (:func:`reversible_kick` with :func:`kick_amplitude`, the mean, std and
    shift of ``TrapModel.kick``): (S, S') is exchangeable under N(m, s^2) (equal third cross moments,
    equal marginals) without softening; the softening shift breaks it."""
    rng = np.random.default_rng(3)
    T, eta, n = 0.38, 0.3, 400_000
    m, s, shift = TrapModel(kind="softness-facilitated", law=LAW, L=8, dim=2, softening=softening).kick(T)
    S = rng.normal(m, s, n)
    S2 = reversible_kick(S, m, eta, shift, kick_amplitude(eta, s), rng.standard_normal(n))
    # paired z-scores: antisymmetric cross moment, first and second moments of S' - S
    zs = [d.mean() / (d.std() / math.sqrt(n)) for d in ((S - m) ** 3 * (S2 - m) - (S - m) * (S2 - m) ** 3,
                                                         S2 - S, (S2 - m) ** 2 - (S - m) ** 2)]
    assert (max(map(abs, zs)) < 5) == (softening == 0.0), zs


def test_off_lattice_facilitation_runs(tmp_path) -> None:
    rng = np.random.default_rng(4)
    grid = np.stack(np.meshgrid(*[np.arange(6.0)] * 3, indexing="ij"), -1).reshape(-1, 3)
    pos = grid + 0.15 * rng.standard_normal(grid.shape)  # a jittered lattice: no overlapping particles
    m = TrapModel(kind="softness-facilitated", law=LAW, positions=pos, box=np.full(3, 6.0), r_c=1.5, dim=3)
    run = simulate(m, 0.40, seed=5, p_stop=0.3)
    assert run.final_states.shape == (216,) and run.n_events > 0
    # overlapping particles would get a kick strength eta(r) = eta0 exp(-(r - 1)/xi) > 1: refused
    close = pos.copy()
    close[1] = close[0] + [0.2, 0.0, 0.0]
    m = TrapModel(kind="softness-facilitated", law=LAW, positions=close, box=np.full(3, 6.0), r_c=1.5, dim=3)
    with pytest.raises(InputError, match="particles 0 and 1 are 0.2 apart"):
        simulate(m, 0.40, seed=5, p_stop=0.3)
    # a configuration file fixes the dimension: a contradicting dim is refused
    from glassgen.models.trap import load_trap_model
    from glassgen.systems.configuration import random_configuration
    from glassgen.systems.io import write_configuration

    write_configuration(tmp_path / "c.xyz", random_configuration("ka2d", 40, seed=1))
    assert load_trap_model("softness-facilitated", {"r_c": 1.5}, input=tmp_path / "c.xyz").dim == 2
    with pytest.raises(InputError, match="dim = 3 but .* is 2D"):
        load_trap_model("softness-facilitated", {"r_c": 1.5, "dim": 3}, input=tmp_path / "c.xyz")


# --------------------------------------------------------------------------------------------- physics
def test_softness_d_tau_alpha_grows_on_cooling() -> None:
    """Stokes-Einstein breakdown: D tau_alpha grows on cooling; tau_alpha agrees with the exact
    persistence <exp(-k t)>_P and D with b^2 <k>/2 of the independent model."""
    res = {}
    for T in (0.40, 0.38, 0.36):
        m = TrapModel(kind="softness", law=LAW, dim=3)
        run = simulate(m, T, n=3000, seed=41, p_stop=0.2)
        a = ob.analyze_runs([run], q=math.pi)
        res[T] = a
        # first-escape persistence given the initial softnesses: mean_i exp(-k_i t), Bernoulli error bars
        q = np.exp(-np.exp(LAW.lnk(run.initial_states, T))[None, :] * a["times"][:, None])
        err = np.sqrt(np.sum(q * (1 - q), 1)) / q.shape[1]
        assert np.all(np.abs(a["persistence"] - q.mean(1)) < 5 * err + 1e-12)
        tau_exact = ob.tau_alpha(a["times"], LAW.persistence(T, a["times"]))
        assert abs(math.log(a["tau_persistence"] / tau_exact)) < 0.2, (T, a["tau_persistence"], tau_exact)
        assert a["D"] == pytest.approx(LAW.mean_rate(T) / 2, rel=0.1)
    dt = [res[T]["D_tau_alpha"] for T in (0.40, 0.38, 0.36)]
    assert dt[0] * 2 < dt[1] and dt[1] * 2 < dt[2], dt


@pytest.mark.slow
def test_facilitated_chi4_peak_grows_on_cooling() -> None:
    """chi_4 peak of the facilitated softness lattice grows on cooling. Error bar: the sampling error of a
    variance over M blocks, chi_4 sqrt(2 / (M - 1)) (blocks pooled over 16 replicas)."""
    peaks = {}
    for T in (0.40, 0.34):
        m = TrapModel(kind="softness-facilitated", law=LAW, L=32, dim=2, eta0=0.5, r_c=1.5)
        runs = [simulate(m, T, seed=100 + r, p_stop=0.1) for r in range(16)]
        a = ob.analyze_runs(runs, q=math.pi)
        n_blocks = 16 * len(runs)
        peaks[T] = (a["chi4_peak"], a["chi4_peak"] * math.sqrt(2.0 / (n_blocks - 1)))
    (hi, ehi), (lo, elo) = peaks[0.34], peaks[0.40]
    assert hi - lo > 3 * math.hypot(ehi, elo), peaks


@pytest.mark.slow
def test_facilitated_trap_excess_wing() -> None:
    """Facilitation makes chi''(omega) asymmetric: Debye low-frequency side (slope 1) and a high-frequency
    power law omega^-beta with beta well below 1 (excess wing); without facilitation the low-frequency
    side is not Debye (broad log-normal spectrum)."""
    T = 0.4
    fac = TrapModel(kind="facilitated", E0=0.0, sigma_E=1.0, L=48, dim=2, eta0=0.1, r_c=1.0)
    a = ob.analyze_runs([simulate(fac, T, seed=51, p_stop=0.02, n_per_decade=10)], q=math.pi)
    assert abs(a["slope_low"] - 1.0) < 0.1, a["slope_low"]
    assert 0.3 < a["beta_high"] < 0.8, a["beta_high"]
    ctl = TrapModel(kind="facilitated", E0=0.0, sigma_E=1.0, L=32, dim=2, eta0=0.0, r_c=1.0)
    b = ob.analyze_runs([simulate(ctl, T, seed=52, p_stop=0.05, n_per_decade=10)], q=math.pi)
    assert b["slope_low"] < 0.7, b["slope_low"]


def test_model_checks_refuse_undefined_setups() -> None:
    """Softness laws only below their onset; no quench start for softness models (they start from the
    measured P(S)); a lattice kick range below L/2 (no self-kicks through the box)."""
    with pytest.raises(InputError, match="onset"):
        TrapModel(kind="softness", law=LAW).kernel_law(0.45)
    with pytest.raises(InputError, match="quench"):
        TrapModel(kind="softness", law=LAW, start="quench")
    with pytest.raises(InputError, match="L/2"):
        TrapModel(kind="softness-facilitated", law=LAW, L=2, dim=2, r_c=1.0)
    with pytest.raises(InputError, match="warmup"):
        TrapModel(kind="facilitated", L=8, dim=2, warmup=-1.0)
    TrapModel(kind="softness-facilitated", law=LAW, L=4, dim=2, r_c=1.5).kernel_law(0.44)  # allowed


def test_bouchaud_aging_two_time_persistence_below_T0() -> None:
    """Below T0 (x = T/T0 = 0.5), after a quench, the probability of no jump between t_w and t_w + t has the
    exact long-time limit I_{t_w/(t_w+t)}(x, 1 - x) (regularised incomplete beta; Bouchaud 1992, Monthus &
    Bouchaud 1996). t_w = 1e4, N = 2e4: statistical error <= 0.0036, finite-t_w correction ~0.007 (measured
    0.03, 0.012, 0.007 at t_w = 1e2, 1e3, 1e4); tolerance 0.015. x = 0.6 would be off by 0.07-0.12."""
    from scipy.special import betainc

    x, tw = 0.5, 1e4
    ratios = np.array([0.3, 1.0, 3.0, 10.0])
    times = np.concatenate([[1.0, tw], tw * (1.0 + ratios)])
    run = simulate(TrapModel(kind="bouchaud", T0=1.0, start="quench"), x, n=20000, seed=1, times=times, p_stop=0.0)
    assert not run.truncated
    measured = np.array([np.mean(run.nhop[2 + j] == run.nhop[1]) for j in range(ratios.size)])
    exact = betainc(x, 1.0 - x, 1.0 / (1.0 + ratios))
    assert np.max(np.abs(measured - exact)) < 0.015, (measured, exact)
    assert np.min(np.abs(measured - betainc(0.6, 0.4, 1.0 / (1.0 + ratios)))) > 0.05  # the test can tell x
