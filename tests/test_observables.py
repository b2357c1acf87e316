"""Physics-first tests of glassgen.observables: g(r), MSD / F_s / alpha_2, tau_alpha, schedules,
error bars, trajectories (round trip and resume after a crash) and plots."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import numpy as np
import pytest
from scipy.signal import lfilter
from scipy.special import j0

from glassgen.dynamics.results import Trajectory
from glassgen.errors import InputError
from glassgen.observables import (
    MSD,
    RDF,
    FourPointSusceptibility,
    NonGaussian,
    NotComputedError,
    SelfIntermediateScattering,
    TrajectoryWriter,
    block_average,
    block_log_schedule,
    effective_sample_size,
    integrated_autocorrelation_time,
    log_spaced_steps,
    mean_and_error,
    overlap_correlation,
    plot_fs,
    plot_msd,
    plot_rdf,
    plot_thermo,
    read_trajectory,
    relaxation_time,
    self_overlap,
    statistical_inefficiency,
    tau_alpha,
)
from glassgen.systems.configuration import Configuration


def _shell(edges: np.ndarray, d: int) -> np.ndarray:
    if d == 2:
        return np.pi * np.diff(edges**2)
    return 4.0 / 3.0 * np.pi * np.diff(edges**3)


# ------------------------------------------------------------------------------------------ g(r)
@pytest.mark.parametrize("d, counts, L", [(2, (600, 250, 150), 30.0), (3, (800, 200), 10.0)])
def test_rdf_ideal_gas_partials_are_one(d: int, counts: tuple[int, ...], L: float) -> None:
    rng = np.random.default_rng(11)
    species = np.repeat(np.arange(len(counts)), counts)
    n = species.size
    box = np.full(d, L)
    n_frames = 6
    rdf = RDF(r_max=L / 2, bins=20)
    for k in range(n_frames):
        rdf.compute(rng.random((n, d)) * L, species, box, reset=(k == 0))
    assert rdf.n_frames == n_frames
    shell = _shell(rdf.bin_edges, d)
    nsp = len(counts)
    assert rdf.g.shape == (nsp, nsp, 20)
    for a in range(nsp):
        for b in range(nsp):
            expected = counts[a] * (counts[b] - (a == b)) / L**d * shell * n_frames  # ordered pairs
            sd = np.sqrt(2.0 / expected)
            z = (rdf.g[a, b] - 1.0) / sd
            assert np.all(np.abs(z) < 5.0), (a, b, z)
            pooled = np.sum(rdf.g[a, b] * shell) / shell.sum()
            assert abs(pooled - 1.0) < 5.0 * np.sqrt(2.0 / expected.sum())
    np.testing.assert_allclose(rdf.g, np.swapaxes(rdf.g, 0, 1))
    expected_tot = n * (n - 1) / L**d * shell * n_frames
    assert np.all(np.abs(rdf.g_total - 1.0) < 5.0 * np.sqrt(2.0 / expected_tot))


def test_rdf_small_system_normalisation_has_no_one_over_n_bias() -> None:
    """With 10 + 10 particles, a V/(N_a N_b) normalisation would give g_aa = 0.9: we must get 1."""
    rng = np.random.default_rng(3)
    L, n_frames = 10.0, 2000
    species = np.repeat([0, 1], 10)
    frames = rng.random((n_frames, 20, 2)) * L
    rdf = RDF(r_max=5.0, bins=10).compute(frames, species, np.array([L, L]))
    shell = _shell(rdf.bin_edges, 2)
    for a, b in [(0, 0), (0, 1), (1, 1)]:
        pooled = np.sum(rdf.g[a, b] * shell) / shell.sum()
        assert abs(pooled - 1.0) < 0.015, (a, b, pooled)
    assert abs(np.sum(rdf.g_total * shell) / shell.sum() - 1.0) < 0.01


@pytest.mark.parametrize("d, a, n_cells", [(3, 1.1, 6), (2, 1.07, 8)])
def test_rdf_lattice_first_peak_at_lattice_constant(d: int, a: float, n_cells: int) -> None:
    grid = np.stack(np.meshgrid(*[np.arange(n_cells)] * d, indexing="ij"), -1).reshape(-1, d) * a
    grid = grid + 0.3 * a  # any offset; the box is periodic
    L = n_cells * a
    rdf = RDF(r_max=L / 2, bins=int(round(L / 2 / 0.03))).compute(grid, None, np.full(d, L))
    edges = rdf.bin_edges
    first = int(np.nonzero(rdf.g_total > 0)[0][0])
    assert edges[first] <= a < edges[first + 1]
    # z = 2d nearest neighbours at distance a: g = V z / ((N - 1) shell)
    n = grid.shape[0]
    shell = _shell(edges, d)[first]
    np.testing.assert_allclose(rdf.g_total[first], L**d * 2 * d / ((n - 1) * shell), rtol=1e-12)
    np.testing.assert_allclose(rdf.g[0, 0], rdf.g_total)


def test_rdf_contract_and_errors(tmp_path) -> None:
    rng = np.random.default_rng(0)
    rdf = RDF(r_max=2.0, bins=10)
    with pytest.raises(NotComputedError):
        _ = rdf.g
    box = np.array([5.0, 5.0, 3.9])
    with pytest.raises(InputError, match="min"):
        rdf.compute(rng.random((50, 3)) * box, None, box)
    box = np.array([5.0, 5.0, 4.0])
    pos = rng.random((50, 3)) * box
    species = (np.arange(50) % 2).astype(np.int32)
    conf = Configuration(pos, species, box)
    a = RDF(2.0, 10).compute(conf)
    b = RDF(2.0, 10).compute_configuration(conf)
    c = RDF(2.0, 10).compute(pos + 7 * box, species, box)  # unwrapped images: same distances
    assert a.compute(conf) is a
    np.testing.assert_allclose(a.g, b.g)
    np.testing.assert_allclose(a.g, c.g)
    a.write(tmp_path / "rdf.txt", T=0.5)
    text = (tmp_path / "rdf.txt").read_text()
    assert text.startswith("# provenance:") and "g_01" in text
    assert np.loadtxt(tmp_path / "rdf.txt").shape == (10, 5)


# ------------------------------------------------------------------------- self correlations
def _random_walk(rng: np.random.Generator, n: int, n_frames: int, d: int, D: float, dt: float) -> np.ndarray:
    inc = rng.normal(0.0, np.sqrt(2 * D * dt), (n_frames - 1, n, d))
    start = rng.random((n, d)) * 10.0
    return np.concatenate([start[None], start + np.cumsum(inc, axis=0)])


@pytest.mark.parametrize("d", [2, 3])
def test_random_walk_msd_fs_ngp(d: int) -> None:
    rng = np.random.default_rng(5 + d)
    n, n_frames, D, dt, q = 4000, 40, 0.5, 0.1, 2.0
    pos = _random_walk(rng, n, n_frames, d, D, dt)
    times = np.arange(n_frames) * dt
    species = (np.arange(n) % 4 == 0).astype(int)
    for origins in ("first", "all"):
        msd = MSD(origins).compute(times, pos, species)
        t = msd.lag_times
        np.testing.assert_allclose(t, times)
        sd = np.sqrt(2.0 / (n * d))  # relative sd of the single-origin estimate
        np.testing.assert_allclose(msd.msd[1:], 2 * d * D * t[1:], rtol=5 * sd)
        np.testing.assert_allclose(msd.msd_by_species[:, 1:], np.stack([2 * d * D * t[1:]] * 2), rtol=10 * sd)
        fs = SelfIntermediateScattering(q, origins).compute(times, pos, species)
        np.testing.assert_allclose(fs.fs, np.exp(-q * q * D * t), atol=0.02)
        ngp = NonGaussian(origins).compute(times, pos, species)
        assert np.isnan(ngp.alpha2[0])
        assert np.all(np.abs(ngp.alpha2[1:]) < 0.05)
    assert msd.n_origins[0] == n_frames and msd.n_origins[-1] == 1
    # tau_alpha of Gaussian diffusion: F_s = exp(-q^2 D t) = 1/e at t = 1 / (q^2 D)
    assert abs(fs.tau_alpha() * q * q * D - 1.0) < 0.05
    traj = Trajectory(times=times, steps=np.arange(n_frames), positions=pos)
    assert abs(relaxation_time(traj, q, species, which=0, origins="all") * q * q * D - 1.0) < 0.05


@pytest.mark.parametrize("d", [2, 3])
def test_fixed_length_displacements_exact(d: int) -> None:
    """Ballistic motion at speed v_s per species: F_s = sin(q v t)/(q v t) (3D), J0(q v t) (2D) exactly
    (laboratory frame: the random directions have a small mean, which the centre-of-mass frame removes)."""
    rng = np.random.default_rng(2)
    n, n_frames, q = 300, 12, 3.0
    species = np.repeat([0, 1], [200, 100])
    speed = np.where(species == 0, 0.4, 1.3)
    u = rng.normal(size=(n, d))
    u /= np.linalg.norm(u, axis=1, keepdims=True)
    times = np.arange(n_frames) * 0.25
    pos = rng.random((n, d)) * 5 + times[:, None, None] * speed[None, :, None] * u[None]
    iso = (lambda x: np.sinc(x / np.pi)) if d == 3 else j0
    for origins in ("first", "all"):
        fs = SelfIntermediateScattering(q, origins, remove_drift=False).compute(times, pos, species)
        ref = np.stack([iso(q * v * times) for v in (0.4, 1.3)])
        np.testing.assert_allclose(fs.fs_by_species, ref, atol=1e-12)
        np.testing.assert_allclose(fs.fs, (200 * ref[0] + 100 * ref[1]) / 300, atol=1e-12)
        msd = MSD(origins, remove_drift=False).compute(times, pos, species)
        np.testing.assert_allclose(msd.msd_by_species, np.stack([(v * times) ** 2 for v in (0.4, 1.3)]),
                                   rtol=1e-12, atol=1e-14)
        ngp = NonGaussian(origins, remove_drift=False).compute(times, pos, species)
        np.testing.assert_allclose(ngp.alpha2_by_species[:, 1:], -2.0 / (d + 2), atol=1e-12)


@pytest.mark.parametrize("collective", [False, True])
def test_chi4_of_independent_and_of_rigidly_moving_particles(collective: bool) -> None:
    """Gaussian random walks of N particles, R independent runs (one origin each): a particle stays within
    a after k steps with p_k = P(chi2_d < a^2 / (k s^2)) (regularised gamma). Independent particles give
    chi_4 = p (1 - p) per species and for all; particles displaced together (Q is 0 or 1) N p (1 - p).
    Tolerance: 4.5 standard deviations of the sample variance from the binomial moments of Q."""
    from scipy.special import gammainc

    rng = np.random.default_rng(11)
    d, n, n_runs, s, a = 3, 40, 1500, 0.12, 0.3
    species = np.repeat([0, 1], [25, 15])
    times = np.arange(6, dtype=np.float64)
    chi = FourPointSusceptibility(a, remove_drift=False)  # the laboratory-frame law of these walks
    for r in range(n_runs):
        steps = rng.normal(scale=s, size=(times.size - 1, 1 if collective else n, d))
        pos = np.concatenate([np.zeros((1, n, d)), np.cumsum(np.broadcast_to(steps, (times.size - 1, n, d)), 0)])
        chi.compute(times, pos + rng.random((1, n, d)) * 4.0, species, reset=(r == 0))
    k = times[1:]
    p = gammainc(d / 2, a * a / (2 * k * s * s))
    pq = p * (1 - p)
    assert np.all(np.abs(chi.overlap[1:] - p) < 5 * np.sqrt(pq / (n_runs * (1 if collective else n))))
    assert chi.overlap[0] == 1.0 and chi.chi4[0] == 0.0  # nothing moved at lag 0: no fluctuation
    assert np.all(chi.n_overlap_samples == n_runs)
    for n_s, c in ((n, chi.chi4), (25, chi.chi4_by_species[0]), (15, chi.chi4_by_species[1])):
        if collective:  # Q is one Bernoulli variable: chi_4 = n_s Var, Var(s^2) ~ (mu4 - var^2) / R
            expect, sd = n_s * pq, n_s * np.sqrt(pq * (1 - 3 * pq) - pq * pq) / np.sqrt(n_runs)
        else:  # Q = mean of n_s Bernoulli variables
            expect, sd = pq, np.sqrt((pq * (1 - 6 * pq) / n_s + 2 * pq * pq) / n_runs)
        assert np.all(np.abs(c[1:] - expect) < 4.5 * sd), (collective, n_s, c[1:], expect, sd)
    t_peak, c_peak = chi.peak()
    assert t_peak == k[np.argmax(chi.chi4[1:])] and c_peak == np.max(chi.chi4[1:])


@pytest.mark.parametrize("d", [2, 3])
def test_centre_of_mass_drift_is_removed(d: int) -> None:
    """Displacements are measured relative to the mean displacement (default): a random walk of the whole
    system added to independent particle motion leaves MSD, F_s, alpha_2 and Q unchanged, while the
    laboratory frame (``remove_drift=False``) sees it (negative control). Overlap functions too, also for
    wrapped frames whose particles crossed the boundary."""
    rng = np.random.default_rng(3 + d)
    n, n_frames, box = 50, 30, np.full(d, 4.0)
    times = np.arange(n_frames, dtype=np.float64)
    own = np.cumsum(rng.normal(scale=0.05, size=(n_frames, n, d)), axis=0)
    own -= own.mean(axis=1, keepdims=True)  # particles' motion with no net drift
    drift = np.cumsum(rng.normal(scale=0.3, size=(n_frames, 1, d)), axis=0)
    start = rng.random((1, n, d)) * box
    still, moving = start + own, start + own + drift
    species = np.arange(n) % 2
    for cls, kw in ((MSD, {}), (SelfIntermediateScattering, {"q": 6.0}), (NonGaussian, {}),
                    (FourPointSusceptibility, {})):
        com = [cls(**kw).compute(times, x, species) for x in (still, moving)]
        lab = cls(**kw, remove_drift=False).compute(times, moving, species)
        key = {"MSD": "msd", "SelfIntermediateScattering": "fs", "NonGaussian": "msd",
               "FourPointSusceptibility": "overlap"}[cls.__name__]
        np.testing.assert_allclose(getattr(com[1], key), getattr(com[0], key), rtol=1e-9, atol=1e-12)
        assert np.max(np.abs(getattr(lab, key) - getattr(com[0], key))) > 0.05
    wrapped = moving - box * np.floor(moving / box)
    for frames in (moving, wrapped):
        q_com = self_overlap(frames[0], frames[1:], box)
        np.testing.assert_allclose(q_com, self_overlap(still[0], still[1:], box), atol=1e-12)
        assert np.max(np.abs(self_overlap(frames[0], frames[1:], box, remove_drift=False) - q_com)) > 0.2
        oc = overlap_correlation(frames, box, max_lag=10)
        np.testing.assert_allclose(oc.q, overlap_correlation(still, box, max_lag=10).q, atol=1e-12)


def test_monte_carlo_centre_of_mass_random_walks() -> None:
    """Why the drift is removed: Metropolis MC does not conserve momentum, so its centre of mass random-walks
    with 1/N of the bare mobility, a fraction of acc <delta^2> / N per sweep (accepted moves are correlated;
    KA2D N = 43, 8 chains of 3000 sweeps at T = 0.3: 0.34 of it; an MD-like fixed centre of mass gives 0)."""
    from glassgen.dynamics.initial import random_state
    from glassgen.dynamics.mc import MonteCarlo

    conf = random_state("ka2d", 43, seed=1)
    warm = MonteCarlo(conf, 0.3, delta=0.1, seed=1)
    warm.sweep(500)
    drift2, rate = [], []
    for c in range(8):
        mc = MonteCarlo(warm.configuration(), 0.3, delta=0.1, seed=10 + c)
        res = mc.run(3000, sample_every=3000, traj_sweeps=[0, 3000])
        x = res.trajectory.positions
        drift2.append(float(np.sum((x[-1].mean(axis=0) - x[0].mean(axis=0)) ** 2)))
        rate.append(mc.acceptance["displacement"] * 2 * 0.1**2 / 3 / 43 * 3000)  # acc <delta^2> / N x sweeps
    assert 0.15 < np.mean(drift2) / np.mean(rate) < 1.5, (drift2, rate)


def test_chi4_equals_a_direct_computation_over_all_origins() -> None:
    """chi_4 and Q with every frame as origin equal a direct NumPy loop over (origin, lag) pairs; a single
    sample gives NaN, not 0."""
    rng = np.random.default_rng(5)
    n, nf, a = 30, 9, 0.3
    species = rng.integers(0, 2, n)
    pos = np.cumsum(rng.normal(scale=0.15, size=(nf, n, 2)), axis=0)
    times = 0.5 * np.arange(nf)
    chi = FourPointSusceptibility(a, "all", remove_drift=False).compute(times, pos, species)
    for lag in range(1, nf):
        stay = (np.linalg.norm(pos[lag:] - pos[:-lag], axis=2) < a).astype(float)  # (origins, N)
        for k, sel in ((None, np.ones(n, bool)), (0, species == 0), (1, species == 1)):
            qs = stay[:, sel].mean(axis=1)
            c = chi.chi4 if k is None else chi.chi4_by_species[k]
            o = chi.overlap if k is None else chi.overlap_by_species[k]
            assert o[lag] == pytest.approx(qs.mean(), abs=1e-14)
            if qs.size > 1:
                assert c[lag] == pytest.approx(sel.sum() * qs.var(ddof=1), rel=1e-12, abs=1e-14)
            else:
                assert np.isnan(c[lag])
    # one origin: no fluctuation to measure
    one = FourPointSusceptibility(a, remove_drift=False).compute(times, pos, species)
    assert np.all(np.isnan(one.chi4)) and np.isnan(one.peak()[1])
    with pytest.raises(InputError, match="overlap radius"):
        FourPointSusceptibility(-1.0)


def test_block_log_schedule_origins_on_ballistic_and_diffusive_motion() -> None:
    rng = np.random.default_rng(9)
    sched = block_log_schedule(n_blocks=4, block_steps=200, n_per_decade=8)
    steps, dt, n, d, q, v = sched.steps, 0.01, 500, 3, 2.0, 0.7
    times = steps * dt
    u = rng.normal(size=(n, d))
    u /= np.linalg.norm(u, axis=1, keepdims=True)
    pos = times[:, None, None] * v * u[None]
    fs = SelfIntermediateScattering(q, sched, remove_drift=False).compute(times, pos, steps=steps)
    lags = fs.lag_steps
    np.testing.assert_array_equal(lags, sched.lags)
    np.testing.assert_allclose(fs.lag_times, lags * dt, rtol=1e-12)
    np.testing.assert_allclose(fs.fs, np.sinc(q * v * lags * dt / np.pi), atol=1e-12)
    # a production run starting at MD step 1000: the schedule is relative to the first stored frame
    shifted = SelfIntermediateScattering(q, sched, remove_drift=False).compute(times + 10.0, pos,
                                                                                steps=steps + 1000)
    np.testing.assert_allclose(shifted.fs, fs.fs, atol=1e-12)
    short = lags < sched.block_steps
    assert np.all(fs.n_origins[short] == 4)
    np.testing.assert_array_equal(fs.n_origins[~short], [4, 3, 2, 1])
    # diffusion on the same schedule
    D = 0.5
    inc = rng.normal(0.0, np.sqrt(2 * D * dt), (steps[-1], n, d))
    full = np.concatenate([np.zeros((1, n, d)), np.cumsum(inc, axis=0)])
    msd = MSD(sched).compute(times, full[steps], steps=steps)
    np.testing.assert_allclose(msd.msd[1:], 2 * d * D * msd.lag_times[1:], rtol=0.1)
    with pytest.raises(InputError, match="steps"):
        MSD(sched).compute(times, pos)
    with pytest.raises(InputError, match="equally spaced"):
        MSD("all").compute(times, pos, steps=steps)


def test_wrapped_input_unwraps_and_accumulation() -> None:
    rng = np.random.default_rng(4)
    n, n_frames, d, D, dt = 200, 30, 3, 1.0, 0.05
    box = np.array([4.0, 5.0, 6.0])
    pos = _random_walk(rng, n, n_frames, d, D, dt)
    times = np.arange(n_frames) * dt
    wrapped = pos - box * np.floor(pos / box)
    ref = MSD().compute(times, pos)
    got = MSD(wrapped_input=True).compute(times, wrapped, box=box)
    np.testing.assert_allclose(got.msd, ref.msd, rtol=1e-10, atol=1e-12)
    assert not np.allclose(MSD().compute(times, wrapped).msd, ref.msd)  # wrapping matters
    # reset=False: the average of two runs
    pos2 = _random_walk(rng, n, n_frames, d, D, dt)
    both = MSD().compute(times, pos).compute(times, pos2, reset=False)
    np.testing.assert_allclose(both.msd, 0.5 * (ref.msd + MSD().compute(times, pos2).msd))
    assert both.n_origins[0] == 2
    with pytest.raises(InputError, match="lag"):
        both.compute(times[:-1], pos[:-1], reset=False)
    with pytest.raises(NotComputedError):
        _ = MSD().msd


def test_tau_alpha_interpolation() -> None:
    tau = 7.3
    t = np.concatenate([[0.0], np.logspace(-2, 3, 51)])  # 10 points per decade
    assert abs(tau_alpha(t, np.exp(-t / tau)) / tau - 1.0) < 1e-3
    # several series at once, another threshold
    t40 = np.logspace(-2, 3, 201)  # away from the inflection point at t = tau a finer grid is needed
    f = np.exp(-t40[None] / np.array([[0.5], [20.0]]))
    np.testing.assert_allclose(tau_alpha(t40, f, threshold=0.5), np.log(2) * np.array([0.5, 20.0]),
                               rtol=1e-3)
    # never crossing -> NaN (documented), NaN series -> NaN
    assert np.isnan(tau_alpha(t, np.exp(-t / 1e6)))
    assert np.isnan(tau_alpha(t, np.full(t.size, np.nan)))
    # crossing before the first positive time: linear interpolation from t = 0
    assert tau_alpha(np.array([0.0, 2.0]), np.array([1.0, 0.0]), 0.5) == pytest.approx(1.0)


# ------------------------------------------------------------------------------------ schedules
def test_log_spaced_steps_properties() -> None:
    s = log_spaced_steps(100_000, n_per_decade=10)
    assert s.dtype == np.int64 and s[0] == 0 and s[-1] == 100_000 and s[1] == 1
    assert np.all(np.diff(s) > 0)
    assert np.sum((s >= 1000) & (s < 10_000)) == 10  # 10 points per decade once steps are sparse
    ratios = s[-20:][1:] / s[-20:][:-1]
    np.testing.assert_allclose(ratios, 10 ** 0.1, rtol=0.01)
    s2 = log_spaced_steps(777, n_per_decade=4, first=5)
    assert s2[0] == 0 and s2[1] == 5 and s2[-1] == 777 and np.all(np.diff(s2) > 0)
    np.testing.assert_array_equal(log_spaced_steps(3, 10, first=5), [0, 3])
    np.testing.assert_array_equal(log_spaced_steps(0), [0])
    sched = block_log_schedule(3, 100, 5)
    assert set(sched.origin_steps) <= set(sched.steps) and sched.steps[-1] == 300
    pairs = sched.lag_pairs()
    np.testing.assert_array_equal(sched.steps[pairs.frame] - sched.steps[pairs.origin],
                                  pairs.lags[pairs.lag_index])


# ----------------------------------------------------------------------------------- error bars
def _ar1(rng: np.random.Generator, phi: float, n: int) -> np.ndarray:
    x = lfilter([1.0], [1.0, -phi], rng.normal(size=n + 2000))
    return x[2000:]


def test_autocorrelation_time_anticorrelated_and_short_series() -> None:
    """AR(1) with phi < 0 has tau_int = (1 + phi)/(1 - phi) < 1 (Geyer's sequence, never <= 0); a series
    shorter than its correlations is flagged (lower bound, mean_and_error warns) instead of a window found
    where the mean-subtracted sum falls back to 0."""
    from glassgen.observables.thermo import autocorrelation_time

    rng = np.random.default_rng(5)
    for phi in (-0.5, -0.8):
        tau_exact = (1 + phi) / (1 - phi)
        n, taus, means, errs = 20_000, [], [], []
        for _ in range(30):
            x = _ar1(rng, phi, n)
            est = autocorrelation_time(x)
            assert est.converged and est.tau > 0
            taus.append(est.tau)
            m, e = mean_and_error(x)
            means.append(m)
            errs.append(e)
        # tolerances ~3 sigma of 30 runs (per-run spread of tau: +-10 % at phi = -0.5, +-30 % at -0.8;
        # the spread of 30 means is itself known to 13 %)
        true_se = np.sqrt(1.0 / (1 - phi**2) * tau_exact / n)
        assert abs(np.mean(taus) / tau_exact - 1.0) < 0.15, (phi, np.mean(taus), tau_exact)
        assert abs(np.mean(errs) / true_se - 1.0) < 0.1 and abs(np.std(means) / true_se - 1.0) < 0.4
    assert effective_sample_size(np.tile([1.0, -1.0], 500)) > 0
    short = _ar1(rng, 0.99, 200)  # tau_int = 199 > n
    est = autocorrelation_time(short)
    assert not est.converged and est.window <= 50
    with pytest.warns(RuntimeWarning, match="too short"):
        mean_and_error(short)
    long = _ar1(rng, 0.99, 100_000)
    assert autocorrelation_time(long).converged


def test_parallel_chains_error_sees_basins() -> None:
    """Parallel chains: pooled tau_int; the error is at least the spread of the chain means, so chains stuck
    at different levels (which their own autocorrelations do not show) are not falsely precise."""
    from glassgen.observables.thermo import mean_and_error_of_parallel_chains, pooled_autocorrelation

    rng = np.random.default_rng(8)
    phi, n, k = 0.8, 4000, 8
    tau_exact = (1 + phi) / (1 - phi)
    s = np.stack([_ar1(rng, phi, n) for _ in range(k)], 1)
    est = pooled_autocorrelation(s)
    assert est.converged and abs(est.tau / tau_exact - 1.0) < 0.15
    m, e = mean_and_error_of_parallel_chains(s)
    true_se = np.sqrt(1.0 / (1 - phi**2) * tau_exact / (n * k))
    assert abs(e / true_se - 1.0) < 0.5  # the chain spread (8 chains) is itself uncertain by ~25 %
    stuck = s + np.arange(k)[None, :] * 0.5  # each chain in its own basin
    m2, e2 = mean_and_error_of_parallel_chains(stuck)
    assert e2 == pytest.approx(np.std(stuck.mean(0), ddof=1) / np.sqrt(k)) and e2 > 5 * e


def test_autocorrelation_time_and_block_average_on_ar1() -> None:
    rng = np.random.default_rng(21)
    phi, n, reps = 0.9, 200_000, 8
    tau_exact = (1 + phi) / (1 - phi)
    var_mean_exact = 1.0 / (1 - phi**2) * tau_exact / n
    taus, var_blocks = [], []
    for _ in range(reps):
        x = _ar1(rng, phi, n)
        taus.append(integrated_autocorrelation_time(x))
        var_blocks.append(block_average(x, n_blocks=50)[1] ** 2)
        assert statistical_inefficiency(x) == taus[-1]
    assert abs(np.mean(taus) / tau_exact - 1.0) < 0.15
    assert np.all(np.abs(np.array(taus) / tau_exact - 1.0) < 0.3)
    assert abs(np.sqrt(np.mean(var_blocks) / var_mean_exact) - 1.0) < 0.15
    _, err = mean_and_error(x)
    assert abs(err / np.sqrt(var_mean_exact) - 1.0) < 0.15
    white = rng.normal(size=50_000)
    assert abs(integrated_autocorrelation_time(white) - 1.0) < 0.1
    mean, se = block_average(white, 10)
    assert mean == pytest.approx(white.mean()) and 0 < se < 0.01
    with pytest.raises(InputError):
        block_average(white[:5], 10)


def test_mean_and_error_of_chains() -> None:
    """Chains of the same AR(1) process: the error is near the exact sqrt(Var tau / n) (never below the
    within-chain estimate; the max with the noisy spread of 16 chain means can only raise it); chains stuck at
    different offsets (basins) that no single chain's autocorrelation shows: the error is their spread."""
    from glassgen.observables.thermo import mean_and_error_of_chains

    rng = np.random.default_rng(5)
    phi, n, chains = 0.8, 10_000, 16
    x = np.concatenate([_ar1(rng, phi, n) for _ in range(chains)])
    exact = np.sqrt(1.0 / (1 - phi**2) * (1 + phi) / (1 - phi) / (n * chains))
    mean, err = mean_and_error_of_chains(x, chains)
    assert mean == pytest.approx(x.mean()) and 0.85 < err / exact < 1.4
    n, chains = 40_000, 4
    offsets = np.repeat([-0.3, 0.1, 0.2, 0.4], n)
    white = rng.normal(size=n * chains) * 0.1 + offsets
    _, err = mean_and_error_of_chains(white, chains)
    assert err == pytest.approx(np.std([-0.3, 0.1, 0.2, 0.4], ddof=1) / 2, rel=0.01)
    assert err > 10 * mean_and_error(white[:n])[1]
    with pytest.raises(InputError):
        mean_and_error_of_chains(white[:7], 4)


# --------------------------------------------------------------------------------- trajectories
def test_trajectory_round_trip(tmp_path) -> None:
    rng = np.random.default_rng(1)
    n, d = 17, 3
    species = rng.integers(0, 2, n)
    box = np.array([3.0, 4.0, 5.0])
    path = tmp_path / "traj.h5"
    frames = rng.normal(size=(6, n, d)) * 10
    vels = rng.normal(size=(6, n, d))
    with TrajectoryWriter(path, species, box, "ka3d", {"seed": 7, "T": 0.5}, store_velocities=True,
                          compression="gzip") as w:
        for k in range(6):
            w.append(10 * k, 0.05 * k, frames[k], vels[k])
            assert not path.exists() and w.partial_path.exists()
        with pytest.raises(InputError, match="advance"):
            w.append(50, 1.0, frames[0], vels[0])
    assert path.exists() and not w.partial_path.exists()
    data = read_trajectory(path)
    np.testing.assert_array_equal(data.trajectory.positions, frames)
    np.testing.assert_array_equal(data.trajectory.velocities, vels)
    np.testing.assert_array_equal(data.trajectory.steps, 10 * np.arange(6))
    np.testing.assert_allclose(data.trajectory.times, 0.05 * np.arange(6))
    np.testing.assert_array_equal(data.species, species)
    np.testing.assert_array_equal(data.box, box)
    assert data.model == "ka3d" and data.attrs["seed"] == 7 and data.complete
    sub = read_trajectory(path, frames=slice(1, None, 2)).trajectory
    np.testing.assert_array_equal(sub.steps, [10, 30, 50])
    np.testing.assert_array_equal(sub.positions, frames[1::2])
    with pytest.raises(InputError, match="already complete"):
        TrajectoryWriter(path, species, box, "ka3d", resume=True)
    with pytest.raises(InputError, match="not found"):
        read_trajectory(tmp_path / "missing.h5")


def test_trajectory_resume_after_crash(tmp_path) -> None:
    """A process writes 5 frames, half-writes a 6th and dies; a resumed writer continues cleanly."""
    n, d = 8, 2
    species = np.arange(n) % 2
    box = np.array([4.0, 4.0])
    path = tmp_path / "run.h5"
    frame = lambda k: np.full((n, d), float(k)) + np.arange(n)[:, None]  # noqa: E731
    script = textwrap.dedent(f"""
        import os
        import numpy as np
        from glassgen.observables import TrajectoryWriter
        w = TrajectoryWriter({str(path)!r}, np.arange({n}) % 2, np.array([4.0, 4.0]), "ka2d", {{"seed": 1}})
        for k in range(5):
            w.append(100 * k, 0.5 * k, np.full(({n}, {d}), float(k)) + np.arange({n})[:, None])
        g = w._file["trajectory"]
        for name in ("positions", "steps", "times"):
            g[name].resize(6, axis=0)   # a frame half-written when the job is killed
        g["positions"][5] = -1.0
        w._file.flush()
        os._exit(0)                     # no close(): as if killed
    """)
    subprocess.run([sys.executable, "-c", script], check=True, timeout=120)
    assert not path.exists()
    partial = read_trajectory(path, allow_partial=True)
    assert not partial.complete and partial.trajectory.steps.tolist() == [0, 100, 200, 300, 400]
    w = TrajectoryWriter(path, species, box, "ka2d", resume=True)
    assert w.n_frames == 5 and w.last_step == 400 and w.last_time == 2.0
    for k in range(5, 9):
        w.append(100 * k, 0.5 * k, frame(k))
    w.close()
    data = read_trajectory(path)
    np.testing.assert_array_equal(data.trajectory.steps, 100 * np.arange(9))
    np.testing.assert_array_equal(data.trajectory.positions, np.stack([frame(k) for k in range(9)]))
    assert data.attrs["seed"] == 1 and data.complete


# ----------------------------------------------------------------------------------------- plots
def test_plots_write_pngs_atomically(tmp_path) -> None:
    rng = np.random.default_rng(0)
    box = np.full(3, 6.0)
    rdf = RDF(3.0, 30).compute(rng.random((200, 3)) * 6, np.arange(200) % 2, box)
    times = np.arange(20) * 0.1
    pos = _random_walk(rng, 100, 20, 3, 0.5, 0.1)
    msd = MSD().compute(times, pos, np.arange(100) % 2)
    fs = SelfIntermediateScattering(2.0).compute(times, pos, np.arange(100) % 2)
    thermo = {"time": times, "potential": rng.normal(size=20), "temperature": 1 + rng.normal(size=20)}
    out = [plot_rdf(rdf, tmp_path / "g.png"), plot_msd(msd, tmp_path / "msd.png"),
           plot_fs(fs, tmp_path / "fs.png"), plot_fs((times, np.exp(-times)), tmp_path / "fs2.png"),
           plot_thermo(thermo, tmp_path / "thermo.png")]
    for p in out:
        assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert sorted(x.name for x in tmp_path.iterdir()) == sorted(p.name for p in out)  # no temp files


def test_import_does_not_load_matplotlib_or_torch() -> None:
    code = ("import sys, glassgen.observables; "
            "print(int('matplotlib' in sys.modules), int('torch' in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True,
                         timeout=120)
    assert out.stdout.split() == ["0", "0"]


def test_drift_z_flags_series_still_relaxing():
    """The equilibration check of md/mc/pgmc runs: stationary AR(1) chains give z ~ N(0, 1) (|z| < 3 here;
    over 200 seeds the spread of z is 1.04), the same chains relaxing from a high start give z << -3, one
    chain (1D) works the same, and too few samples give NaN."""
    from glassgen.observables.thermo import drift_z

    rng = np.random.default_rng(0)
    s, chains, rho = 400, 4, 0.9
    u = np.zeros((s, chains))
    for t in range(1, s):
        u[t] = rho * u[t - 1] + np.sqrt(1 - rho**2) * rng.standard_normal(chains)
    relax = 5.0 * np.exp(-np.arange(s) / 100.0)[:, None]
    assert abs(drift_z(u)) < 3 and drift_z(u + relax) < -3
    assert abs(drift_z(u[:, 0])) < 3 and drift_z(u[:, 0] + relax[:, 0]) < -3
    assert np.isnan(drift_z(u[:7]))



def test_chains_too_short_for_their_autocorrelation_warn_once() -> None:
    """Eight short, strongly correlated chains: one warning naming how many are too short (was one per chain),
    and the same error as each chain's mean_and_error combined."""
    import warnings

    from glassgen.observables.thermo import mean_and_error, mean_and_error_of_chains

    rng = np.random.default_rng(1)
    x = np.concatenate([np.cumsum(rng.normal(size=13)) for _ in range(8)])  # random walks: tau_int > n / 4
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        m, e = mean_and_error_of_chains(x, 8)
    short = [w for w in caught if "too short" in str(w.message)]
    assert len(short) == 1 and str(short[0].message).startswith("8 of 8 chains of ~13 samples")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        parts = [mean_and_error(p) for p in np.array_split(x, 8)]
    within = np.sqrt(np.sum((13 * np.array([p[1] for p in parts])) ** 2)) / x.size
    spread = np.std([p[0] for p in parts], ddof=1) / np.sqrt(8)
    assert m == pytest.approx(x.mean()) and e == pytest.approx(max(within, spread), rel=1e-12)
