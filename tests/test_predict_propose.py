"""Predict-then-propose moves (issue 8): exactness by histogram tests with negative controls, bookkeeping.

Histogram tests: samples of a small system from the move under test are compared with samples of plain
Metropolis (PGMC with uniform Gaussian moves) by a chi-squared test of homogeneity on a 2D histogram.
The exact move must pass (p > 1e-3), the negative control (selection evaluated only in the old state, or
the proposal-density ratio dropped) must fail (p < 1e-3). Seeds are fixed: the p-values are reproducible.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from scipy.stats import chi2_contingency

from glassgen._kernels.pgmc import MH_EXACT, MH_STALE_REVERSE
from glassgen.errors import InputError
from glassgen.sampling.pgmc import PGMC, PGMCTarget
from glassgen.sampling.policies import Policy
from glassgen.sampling.predict_propose import (
    CoarseEnergyScorer,
    FeatureScorer,
    PredictorScorer,
    PredictProposePGMC,
    features_of,
    scorer_displacements,
)

P_PASS, P_FAIL = 1e-3, 1e-3


def _target(eps4: float, box: float, ext_k: tuple[float, float], T: float = 1.0, sig: float = 1.0) -> PGMCTarget:
    z = np.zeros(4)
    pp = (np.full(4, sig * sig), np.full(4, eps4), np.full(4, (2.5 * sig) ** 2), z, z.copy(), z.copy(), z.copy(),
          z.copy())
    return PGMCTarget(np.full(2, box), 2, pp, 2.5 * sig, T, np.array(ext_k), np.full(2, box / 2))


# 3 LJ particles (eps = 1) in harmonic wells (std 0.5 and 0.71), periodic box 12 (image mode)
WELLS = _target(4.0, 12.0, (4.0, 2.0))
WELL_START = (np.array([[5.5, 6.0], [6.6, 6.0], [6.0, 6.9]]), np.array([0, 0, 1]))


def _well_obs(pos: np.ndarray) -> np.ndarray:
    d = pos - WELLS.ext_c
    return np.stack([np.linalg.norm(pos[:, 0] - pos[:, 1], axis=-1), np.linalg.norm(d[:, 2], axis=-1)], 1)


def _collect(sampler: PGMC, burn: int, every: int, n: int, obs) -> np.ndarray:
    sampler.sweep(burn)
    out = []
    for _ in range(n):
        sampler.sweep(every)
        out.append(obs(np.stack([c.pos for c in sampler.chains])))
    return np.concatenate(out)


@pytest.fixture(scope="module")
def wells_reference() -> np.ndarray:
    pg = PGMC(WELLS, Policy.default(2, 2, sigma=0.6), [WELL_START] * 600, seed=1)
    return _collect(pg, 30, 15, 8, _well_obs)


def _pvalue(ref: np.ndarray, x: np.ndarray, n0: int = 6, n1: int = 3) -> float:
    e0 = np.quantile(ref[:, 0], np.linspace(0, 1, n0 + 1))
    e1 = np.quantile(ref[:, 1], np.linspace(0, 1, n1 + 1))
    e0[0], e0[-1], e1[0], e1[-1] = -1e9, 1e9, -1e9, 1e9
    h = [np.histogram2d(a[:, 0], a[:, 1], [e0, e1])[0].ravel() for a in (ref, x)]
    return float(chi2_contingency(np.stack(h)).pvalue)


@pytest.mark.parametrize("mode, exact", [(MH_EXACT, True), (MH_STALE_REVERSE, False)])
def test_biased_displacements_histogram(wells_reference: np.ndarray, mode: int, exact: bool) -> None:
    s = PredictProposePGMC(WELLS, Policy.default(2, 2, sigma=0.6), [WELL_START] * 600, seed=2,
                           theta_select=np.array([2.0, 3.0]), mh_mode=mode)
    x = _collect(s, 30, 15, 8, _well_obs)
    p = _pvalue(wells_reference, x)
    assert (p > P_PASS) if exact else (p < P_FAIL), p
    rep = s.selection_report()
    assert rep["rescored_per_move"] <= 3.0 and rep["tried"] == 600 * 150 * 3
    assert s.drift() < 1e-9  # incrementally updated features = features from scratch


def test_predict_propose_with_single_flip_swaps_keeps_kept_features_current() -> None:
    """KA2D: biased displacements beside single-flip swaps through C (pairs (A, C), (B, C): A and B particles
    keep only their partner's single-flip energy): the kept features stay exact through accepted swaps."""
    from glassgen.dynamics.initial import random_state
    from glassgen.sampling.pgmc import PGMCTarget

    conf = random_state("ka2d", 43, seed=5)
    pol = Policy.default(3, 2, sigma=0.08, swap_fraction=0.3, swap_pairs=[(0, 2), (1, 2)], biased=True,
                         counts=conf.model.counts(43), phi=-1.0)
    s = PredictProposePGMC(PGMCTarget.from_model(conf.model, conf.box, 0.5), pol, [conf] * 2, seed=3,
                           theta_select=1.0, select_fraction=0.5)
    sp0 = s.chains[0].species.copy()
    s.sweep(40)
    assert s.acceptance["swap"] > 0 and ((sp0 != 2) & (s.chains[0].species == 2)).any()
    assert not s._need().all() and s.chains[0].feat.shape[1] == 5
    assert s.drift() < 1e-9
    assert np.allclose(s.energies, s.recompute_energies(), atol=1e-9)


def test_predict_propose_pgmc_with_swaps_keeps_features_current() -> None:
    """Mixed biased displacements + policy swaps (unbiased swap policy): features stay exact, energy too."""
    t = _target(4.0, 12.0, (1.0, 1.0))
    pos = np.array([[5.0, 6.0], [6.2, 6.0], [6.0, 7.2], [7.0, 5.0]])
    pol = Policy.default(2, 2, sigma=0.3, swap_fraction=0.3, swap_pairs=[(0, 1)])
    s = PredictProposePGMC(t, pol, [(pos, np.array([0, 0, 1, 1]))] * 4, seed=3, theta_select=1.0,
                           select_fraction=0.5)
    s.sweep(60)
    assert s.drift() < 1e-9
    assert np.allclose(s.energies, s.recompute_energies(), atol=1e-9)
    assert s.acceptance["swap"] > 0


@pytest.mark.parametrize("reverse_in_new_state", [True, False])
def test_any_scorer_displacements_histogram(wells_reference: np.ndarray, reverse_in_new_state: bool) -> None:
    """The Python path for ANY scorer is exact: 1200 chains start in equilibrium (Metropolis), make 60 selected
    displacement trials each, and their final states follow p (measured p = 0.30). Dropping the selection
    ratio (the reverse selection scored in the old state) is detected (p = 2e-6)."""
    s = PGMC(WELLS, Policy.default(2, 2, sigma=0.6), [WELL_START] * 1200, seed=11)
    s.sweep(40)
    rep = scorer_displacements(s, FeatureScorer(WELLS, np.array([2.0, 3.0])), 60, 0.6,
                               reverse_in_new_state=reverse_in_new_state)
    assert rep["tried"] == 1200 * 60 and 0.1 < rep["accepted"] / rep["tried"] < 0.9
    p = _pvalue(wells_reference, _well_obs(np.stack([c.pos for c in s.chains])))
    assert (p > P_PASS) if reverse_in_new_state else (p < P_FAIL), p


def test_scorers_and_generic_path() -> None:
    """The Python path (any scorer) reproduces the kernel's log-probabilities and keeps energies current."""
    f = features_of(WELLS, WELL_START[0], WELL_START[1])
    sc = FeatureScorer(WELLS, np.array([2.0, 3.0]))
    s = sc.scores(WELL_START[0], WELL_START[1], WELLS.box)
    assert np.allclose(s, 2.0 * f[:, 0] + 3.0 * f[:, 1])
    ce = CoarseEnergyScorer(WELLS, L=1.0, scale=2.0).scores(WELL_START[0], WELL_START[1], WELLS.box)
    assert ce.shape == (3,) and np.all(np.isfinite(ce)) and np.ptp(ce) > 0
    pg = PGMC(WELLS, Policy.default(2, 2, sigma=0.4), [WELL_START] * 3, seed=4)
    rep = scorer_displacements(pg, CoarseEnergyScorer(WELLS, L=1.0, scale=2.0), 50, 0.4)
    assert 0 < rep["accepted"] < rep["tried"] == 150
    assert np.allclose(pg.energies, pg.recompute_energies(), atol=1e-9)

    class Dummy:
        def score(self, positions, species, box):
            return np.asarray(positions)[:, 0]

    ps = PredictorScorer(Dummy(), scale=1.5).scores(WELL_START[0], WELL_START[1], WELLS.box)
    assert abs(ps.std() - 1.5) < 1e-12
    with pytest.raises(InputError):
        PredictorScorer(object())


def test_predictor_file_adapter(tmp_path, ka3d_n150) -> None:
    """A saved predictor (the shipped ridge model) as a selection scorer: log-weights are its standardised
    predictions times the scale; a missing file is a one-line InputError."""
    from pathlib import Path

    import glassgen
    from glassgen.predictors.base import load_predictor

    with pytest.raises(InputError):
        PredictorScorer(tmp_path / "missing.npz")
    shipped = Path(glassgen.__file__).parent / "data" / "predictors" / "ka3d_T0.44_ridge_cg.npz"
    c = ka3d_n150
    s = PredictorScorer(shipped, scale=2.0).scores(c.positions, c.species, c.box)
    p = load_predictor(shipped).score(c.positions, c.species, c.box)
    assert s.shape == (150,) and np.all(np.isfinite(s)) and p.std() > 0
    assert np.allclose(s, 2.0 * (p - p.mean()) / p.std(), rtol=0, atol=1e-12)


# ---------------------------------------------------------------------------- local flow moves
torch = pytest.importorskip("torch")

from glassgen.sampling.local_flow import (  # noqa: E402
    LocalFlow,
    LocalFlowMC,
    LocalRegion,
    _pad,
    _tensors,
    extract_regions,
    train_local_flow,
)

# 4 soft particles in a small periodic box: regions of half-width 1 are rarely empty, acceptance is high
SMALL = _target(0.4, 3.0, (0.0, 0.0), T=1.0, sig=0.8)
SMALL_START = (np.array([[0.5, 0.5], [1.6, 0.6], [1.0, 1.9], [2.4, 2.2]]), np.array([0, 0, 1, 1]))


def _flow(scale: float = 5.0) -> LocalFlow:
    return LocalFlow(2, 2, n_layers=2, hidden=8, bins=4, init_scale=scale, seed=3)


def test_local_flow_density_is_consistent() -> None:
    """log q from the forward pass = log q from the inverse pass = -log|det J| from autograd, on (-1, 1)."""
    flow = _flow()
    reg = LocalRegion(1.0, 1.45, 4, 6)
    rng = np.random.default_rng(0)
    rows = [(rng.uniform(-1, 1, (2, 2)), np.array([0, 1]), rng.normal(size=(3, 2)), np.array([0, 0, 1]))
            for _ in range(4)]
    bt = _tensors(_pad(rows, reg, 2))
    y, lq = flow.sample(bt, torch.Generator().manual_seed(1))
    assert torch.allclose(lq, flow.log_prob(y, bt), atol=1e-10)
    assert float(y.detach().abs().max()) < 1.0 and float(y.detach()[:, 2:].abs().max()) == 0.0  # padding untouched
    z = rng.uniform(-1, 1, (1, 2, 2))
    one = {k: v[:1] for k, v in bt.items()}

    def f(v):
        zz = torch.zeros(1, 4, 2, dtype=torch.float64)
        zz[0, :2] = v.reshape(2, 2)
        return flow.forward_map(zz, one)[0][0, :2].reshape(-1)

    jac = torch.autograd.functional.jacobian(f, torch.as_tensor(z.reshape(-1)))
    with torch.no_grad():
        _, ld = flow.forward_map(torch.nn.functional.pad(torch.as_tensor(z), (0, 0, 0, 2)), one)
    assert abs(float(torch.linalg.slogdet(jac)[1]) - float(ld[0])) < 1e-9
    assert abs(float(ld[0])) > 1e-3  # the test flow is not the identity


@pytest.mark.parametrize("theta", [(0.0, 10.0), (0.0, 0.0)])
def test_local_flow_bookkeeping_on_a_soft_toy(theta: tuple[float, float]) -> None:
    """Local-flow moves on a 4-particle, 2-species toy (the exactness test with negative controls is
    test_local_flow_exact_pair below; on this soft toy a histogram cannot resolve the controls): the moves are
    accepted, regions are non-trivial, and the running energy matches a recomputation to 1e-9."""
    pg = PGMC(SMALL, Policy.default(2, 2, sigma=0.5), [SMALL_START] * 200, seed=7)
    pg.sweep(40)
    starts = [(c.pos.copy(), c.species.copy()) for c in pg.chains]
    mc = LocalFlowMC(SMALL, _flow(), LocalRegion(1.0, 1.45, 4, 6), starts, seed=5, theta_select=np.array(theta))
    res = mc.run(40, sample_every=40)
    assert res.info["acceptance"] > 0.05 and res.info["mean_mobile"] > 1.0
    assert mc.energy_drift() < 1e-9


# --- exactly known target for the local-flow negative controls -------------------------------------------
# Two particles A, B (species 0) in a harmonic well 0.5 k |x - c|^2, interacting by LJ (sigma 0.8, eps 1,
# rc = 2), plus a spectator C (species 1, no well) far away, at T = 0.5 in a periodic box of 12. With
# d = x_B - x_A and X = (x_A + x_B) / 2 the target factorises,
#     p(X, d) ~ exp(-beta k |X - c|^2) * exp(-beta [u(|d|) + k |d|^2 / 4]),
# and the local-flow moves (cube of half-width 1 around the centre) keep |d|_inf < 1, so the exact
# stationary law is this restricted to the cube: d by quadrature, X Gaussian (variance T / 2k per axis).
# The proposal is a random non-identity flow (init_scale 3), far from p (acceptance ~0.13). Choosing C as
# the centre gives an empty region (a trivial move), so a selection evaluated only in the old state makes
# the chain lazier where P(C | x) is large: its stationary law is p / (1 - P(C | x)), detectably wrong.
PAIR_SIG, PAIR_T, PAIR_K, PAIR_BOX = 0.8, 0.5, 1.0, 12.0
PAIR = PGMCTarget(np.full(2, PAIR_BOX), 2, _target(4.0, PAIR_BOX, (0.0, 0.0), PAIR_T, PAIR_SIG).pp, 2.5 * PAIR_SIG,
                  PAIR_T, np.array([PAIR_K, 0.0]), np.full(2, PAIR_BOX / 2))
PAIR_REGION = LocalRegion(1.0, 1.5, 2, 4)


def _pair_u(r: np.ndarray) -> np.ndarray:
    s6 = (PAIR_SIG / r) ** 6
    return np.where(r < 2.5 * PAIR_SIG, 4.0 * (s6 * s6 - s6), 0.0)


def _pair_bins(d: np.ndarray, com: np.ndarray, redges: np.ndarray) -> np.ndarray:
    """4 radial x 8 angular bins of d, x 2 bins of |X - c|^2 (split at its exact median)."""
    r = np.hypot(d[:, 0], d[:, 1])
    ir = np.clip(np.searchsorted(redges, r) - 1, 0, 3)
    ia = np.clip(((np.arctan2(d[:, 1], d[:, 0]) + math.pi) / (2 * math.pi) * 8).astype(int), 0, 7)
    big = (np.sum(com * com, axis=1) > math.log(2.0) * PAIR_T / PAIR_K).astype(int)  # chi2(2) median * T / 2k
    return (ir * 8 + ia) * 2 + big


@pytest.fixture(scope="module")
def pair_exact() -> tuple[np.ndarray, np.ndarray]:
    return _pair_exact_law()


def _pair_exact_law() -> tuple[np.ndarray, np.ndarray]:
    """(radial bin edges, exact bin probabilities (64,)) by midpoint quadrature on the cube."""
    m = 800
    g = -1.0 + (np.arange(m) + 0.5) * 2.0 / m
    grid = np.stack(np.meshgrid(g, g, indexing="ij"), -1).reshape(-1, 2)
    r = np.hypot(grid[:, 0], grid[:, 1])
    w = np.exp(-(_pair_u(r) + 0.25 * PAIR_K * np.sum(grid * grid, axis=1)) / PAIR_T)
    o = np.argsort(r)
    cw = np.cumsum(w[o]) / w.sum()
    redges = np.concatenate([[0.0], r[o][np.searchsorted(cw, [0.25, 0.5, 0.75])], [2.0]])
    pd = np.bincount(_pair_bins(grid, np.zeros_like(grid), redges) // 2, weights=w, minlength=32) / w.sum()
    return redges, np.repeat(pd, 2) / 2.0


def _pair_starts(n: int, seed: int) -> list:
    """n independent draws from the exact law (rejection sampling of d, Gaussian X), C at (0.5, 0.5)."""
    rng = np.random.default_rng(seed)
    out = []
    while len(out) < n:
        d = rng.uniform(-1.0, 1.0, 2)
        if rng.random() * math.exp(1.0 / PAIR_T) * 1.01 < math.exp(-(float(_pair_u(np.hypot(*d)))
                                                                    + 0.25 * PAIR_K * d @ d) / PAIR_T):
            com = PAIR_BOX / 2 + rng.normal(0.0, math.sqrt(PAIR_T / (2 * PAIR_K)), 2)
            out.append((np.stack([com - d / 2, com + d / 2, [0.5, 0.5]]), np.array([0, 0, 1])))
    return out


def test_pair_target_energy_matches_the_formula() -> None:
    """The closed form used for the exact law is the sampler's energy (pair + wells; C contributes 0)."""
    pos, sp = _pair_starts(1, 0)[0]
    mc = LocalFlowMC(PAIR, _flow(3.0), PAIR_REGION, [(pos, sp)])
    d, com = pos[1] - pos[0], 0.5 * (pos[0] + pos[1]) - PAIR_BOX / 2
    exact = float(_pair_u(np.hypot(*d))) + PAIR_K * com @ com + 0.25 * PAIR_K * d @ d
    assert abs(mc.energy[0] - exact) < 1e-10


@pytest.mark.parametrize("mode, theta, exact, n", [
    ("exact", 0.0, True, 1500), ("no_density_ratio", 0.0, False, 500), ("no_reverse_density", 0.0, False, 500),
    ("flipped_logdet", 0.0, False, 500), ("exact", 3.0, True, 1500), ("stale_selection", 3.0, False, 1500)])
def test_local_flow_exact_pair(pair_exact, mode: str, theta: float, exact: bool, n: int) -> None:
    """n chains start in the exact law, 80 local-flow moves each; chi-squared goodness of fit of the final
    states (64 bins) against the exact law. Fixed seeds; measured p-values (exact, 1500 chains: 0.18 uniform,
    0.15 biased; controls: stale_selection 5e-9 with 1500 chains; with 500 chains no_density_ratio 5e-12
    (= log-det dropped: the base density is uniform), no_reverse_density 8e-19, flipped_logdet 2e-94 — with 1500
    chains they were 6e-37, 3e-99 and < 1e-300, so the three strong controls use a third of the chains)."""
    from scipy.stats import chisquare

    redges, probs = pair_exact
    th = np.array([[theta, 0.0], [0.0, 0.0]])  # s = theta * pair energy for A, B; s_C = 0
    mc = LocalFlowMC(PAIR, _flow(3.0), PAIR_REGION, _pair_starts(n, 11), seed=5, theta_select=th, mh_mode=mode)
    res = mc.run(80, sample_every=80)
    d = mc.pos[:, 1] - mc.pos[:, 0]
    d -= PAIR_BOX * np.round(d / PAIR_BOX)
    assert np.all(np.abs(d) < 1.0)  # the moves never leave the cube
    com = 0.5 * (mc.pos[:, 0] + mc.pos[:, 1]) - PAIR_BOX / 2
    cnt = np.bincount(_pair_bins(d, com, redges), minlength=64)
    p = float(chisquare(cnt, probs * n).pvalue)
    assert (p > P_PASS) if exact else (p < 1e-6), p
    moved = res.info["acceptance_nonempty"] * (1.0 - res.info["empty_fraction"]) * 80
    assert moved > 1.5  # accepted non-trivial moves per chain: the exact runs are not vacuous
    assert mc.energy_drift() < 1e-9


def test_local_flow_training_lowers_the_loss() -> None:
    pg = PGMC(SMALL, Policy.default(2, 2, sigma=0.5), [SMALL_START] * 8, seed=2)
    frames = []
    for _ in range(20):
        pg.sweep(5)
        frames.extend(c.pos.copy() for c in pg.chains)
    reg = LocalRegion(1.0, 1.45, 4, 6)
    data = extract_regions(np.stack(frames), SMALL_START[1], SMALL.box, reg)
    flow = LocalFlow(2, 2, n_layers=2, hidden=8, bins=4)
    bt = _tensors(data)
    nll0 = float(-flow.log_prob(bt["u"], bt).mean().detach())
    assert abs(nll0 - data["mask"].sum(1).mean() * 2 * math.log(2.0)) < 1e-9  # identity flow = uniform at start
    losses = train_local_flow(flow, data, steps=60, batch=128, lr=1e-2)
    assert np.mean(losses[-10:]) < losses[0] - 0.05


def test_region_checks() -> None:
    with pytest.raises(InputError):
        LocalRegion(1.0, 1.0).check(np.array([3.0, 3.0]))  # env radius below the half-diagonal
    with pytest.raises(InputError):
        LocalRegion(1.0, 1.6).check(np.array([3.0, 3.0]))  # environment wraps around the box
    with pytest.raises(InputError):
        LocalFlowMC(SMALL, _flow(), LocalRegion(1.0, 1.45), [SMALL_START], mh_mode="bogus")


@pytest.mark.slow
def test_ka2d_energy_agrees_with_metropolis() -> None:
    """U/N of KA2D N = 43 at T = 1.0: predictor-biased PGMC and the local-flow sampler vs Metropolis."""
    from glassgen.api_experiment import ka2d_energy_check

    out = ka2d_energy_check(T=1.0, seed=3)
    for k in ("predict_pgmc", "local_flow"):
        assert abs(out[k][0] - out["metropolis"][0]) < 4.0 * math.hypot(out[k][1], out["metropolis"][1]), out


# --- the trained selection predictor and the experiment's bookkeeping -------------------------------------
def test_trained_selection_is_a_least_squares_propensity_fit(data) -> None:
    """The KA2D selection predictor is the least-squares fit of the propensity on (pair energy, coordination)
    of the training configuration (T = 0.30, configuration 3 at t = 0.11; the T = 0.23 configuration 151 is a
    GlassBench test configuration and is never trained on): residuals orthogonal to the features, a positive
    training Pearson (measured 0.291), and the selection log-weight equals scale x (predicted propensity -
    intercept) / spread."""
    from glassgen.api_experiment import _scores_of, trained_selection
    from glassgen.observables.isoconfig import propensity
    from glassgen.sampling.predict_propose import FeatureScorer, features_of
    from glassgen.systems.glassbench import read_sample
    from glassgen.systems.model import load_model

    mdl = load_model("ka2d")
    theta, info = trained_selection("ka2d", mdl, scale=2.0)
    assert info["train_files"] == ["N1290T0.30_3_tc01.npz"]
    s = read_sample(data / "ka2d-isoconfig" / "N1290T0.30_3_tc01.npz")
    assert s.metadata["split"] == "train"
    t = PGMCTarget.from_model(mdl, s.box, 1.0)
    f = features_of(t, s.positions % s.box, s.species)
    y = propensity(s.positions, s.replicas, s.box, unwrapped=False)
    pred = info["intercept"] + f @ np.asarray(info["w"])
    resid = y - pred
    assert abs(resid.mean()) < 1e-9 * y.std()
    assert np.all(np.abs(f.T @ resid) < 1e-7 * np.abs(f).sum(0) * y.std())  # normal equations
    assert 0.2 < info["pearson_train_A"] < 0.4
    assert info["w"][1] < 0  # more neighbours, less mobile
    sc = FeatureScorer(t, theta).scores(s.positions % s.box, s.species, s.box)
    assert np.allclose(sc, 2.0 * (pred - info["intercept"]) / info["pred_std"], rtol=1e-10, atol=1e-10)
    got = np.asarray(_scores_of(t, theta, [s.positions % s.box], [s.species], info))
    assert np.allclose(got, pred, rtol=0, atol=1e-10)
    with pytest.raises(InputError):
        trained_selection("ka2", mdl)


def test_experiment_resumes_finished_cases(tmp_path) -> None:
    """A second run of the same config keeps the finished case (same CPU-time record); a changed setting
    recomputes it. The report has the g(r) comparison."""
    from glassgen.api_experiment import predict_propose_experiment

    cfg = tmp_path / "pp.toml"
    body = ('seed = 0\nn_chains = 2\nequilibrate_sweeps = 40\nsweeps = {s}\nselection = "features"\n'
            '[[case]]\nmodel = "ka2d"\nn = 43\nT = 1.0\nmethods = ["metropolis", "md"]\nmd_steps = 400\n')
    cfg.write_text(body.format(s=60))
    r1 = predict_propose_experiment(config=cfg, out=tmp_path / "o", quick=False)
    r2 = predict_propose_experiment(config=cfg, out=tmp_path / "o", quick=False)
    m1, m2 = r1["cases"][0]["methods"], r2["cases"][0]["methods"]
    assert m1["metropolis"]["cpu_s_per_chain"] == m2["metropolis"]["cpu_s_per_chain"]
    # strict JSON on disk (a bare NaN is not JSON); the nulls come back as NaN in the reused case
    text = (tmp_path / "o" / "results.json").read_text()
    json.loads(text, parse_constant=lambda c: pytest.fail(f"non-JSON constant {c} in results.json"))
    def nan_keys(d):
        return sorted(k for k, v in d.items() if isinstance(v, float) and math.isnan(v))

    assert "tau_alpha_steps" in nan_keys(m1["metropolis"])  # not reached in 60 sweeps: a NaN to round-trip
    assert nan_keys(m1["metropolis"]) == nan_keys(m2["metropolis"])
    assert nan_keys(r1["cases"][0]) == nan_keys(r2["cases"][0])  # the ratios of methods not run
    assert "gr_vs_metropolis" in m2["md"] and m2["md"]["gr_vs_metropolis"]["bins"] > 10
    report = (tmp_path / "o" / "report.md").read_text()
    assert "Total g(r) against Metropolis" in report
    # the reused case keeps its own record; the report's total covers only the cases computed in that run
    assert r1["cases_reused"] == 0 and r2["cases_reused"] == 1
    assert r2["cases"][0]["cpu_s"] == r1["cases"][0]["cpu_s"] > 0
    assert r2["cases"][0]["computed_at"] == r1["cases"][0]["computed_at"]
    assert "for the 0 case(s) computed in this run; 1 case(s) reused" in report
    assert f"Computed {r1['cases'][0]['computed_at']} in" in report
    cfg.write_text(body.format(s=80))
    r3 = predict_propose_experiment(config=cfg, out=tmp_path / "o", quick=False)
    assert r3["cases"][0]["methods"]["metropolis"]["steps"] == 80


def test_experiment_runs_flow_mcmc_on_ka2d_from_swap_mc_starts(tmp_path) -> None:
    """KA2D chains start from swap MC, each with its own particle order of species; flow-MCMC with the
    shipped N = 43 flow used to refuse them ("configuration 1 differs ... in species")."""
    from glassgen.api_experiment import predict_propose_experiment

    cfg = tmp_path / "pp.toml"
    cfg.write_text('seed = 0\nn_chains = 2\nequilibrate_sweeps = 200\nflow_mcmc_iterations = 6\n'
                   'selection = "features"\n[[case]]\nmodel = "ka2d"\nn = 43\nT = 0.5\nmethods = ["flow_mcmc"]\n')
    rec = predict_propose_experiment(config=cfg, out=tmp_path / "o", quick=False)["cases"][0]["methods"]["flow_mcmc"]
    assert "skipped" not in rec and rec["steps"] == 6
    assert math.isfinite(rec["U_per_N"]) and -3.0 < rec["U_per_N"] < -2.0


def test_predict_pgmc_makes_as_many_swap_trials_as_pgmc() -> None:
    """Biased displacements replace the policy's displacement trials only: with 20 % swaps, both samplers try
    0.2 N swaps per sweep (before, the biased moves took 80 % of all trials and the policy's 20 % swap share
    applied to the rest: 4 % swaps)."""
    from glassgen.dynamics.initial import random_state

    conf = random_state("ka2d", 43, seed=3)
    pol = Policy.default(3, 2, sigma=0.08, swap_fraction=0.2, swap_pairs=[(0, 2), (1, 2)])
    target = PGMCTarget.from_model(conf.model, conf.box, 0.6)
    sweeps = 100
    pp = PredictProposePGMC(target, pol, [conf], seed=1, theta_select=np.array([1.0, 0.0]), select_fraction=1.0)
    pp.sweep(sweeps)
    swaps = pp.chains[0].stats[2, 0]
    expected, sd = 0.2 * 43 * sweeps, math.sqrt(0.2 * 0.8 * 43 * sweeps)
    assert abs(swaps - expected) < 4 * sd, (swaps, expected)
    assert pp.chains[0].stats[0, 0] == 0  # every displacement trial was a biased one
    assert pp.selection_report()["tried"] + swaps == 43 * sweeps


def test_experiment_checks_every_case_before_running(tmp_path) -> None:
    from glassgen.api_experiment import predict_propose_experiment

    cfg = tmp_path / "bad.toml"
    cfg.write_text('quick_default = false\n[[case]]\nmodel = "ka2d"\nn = 43\nT = 0.5\nmethods = ["metropolis"]\n'
                   '[[case]]\nmodel = "ka2d"\nn = 43\nT = 0.5\nmethods = ["metro"]\n')
    with pytest.raises(InputError, match="case 1: unknown method"):
        predict_propose_experiment(config=cfg, out=tmp_path / "r")
    cfg.write_text('quick_default = false\n[[case]]\nmodel = "ka2d"\nn = 43\nT = 0.5\ntheta_select = [1, 2, 3]\n')
    with pytest.raises(InputError, match="theta_select"):
        predict_propose_experiment(config=cfg, out=tmp_path / "r")
    assert not (tmp_path / "r").exists()


def test_metropolis_cpu_time_counts_the_sweeps_only() -> None:
    import time

    from glassgen.dynamics.initial import random_state
    from glassgen.dynamics.mc import MonteCarlo

    conf = random_state("ka2d", 43, seed=3)
    mc = MonteCarlo(conf, 0.6, delta=0.1, seed=1)
    t0 = time.process_time()
    res = mc.run(200, sample_every=1, traj_sweeps=list(range(201)))
    total = time.process_time() - t0
    assert 0.0 < res.info["cpu_s"] <= total  # the sweeps, without the per-sweep unwrapping and sampling


def test_experiment_seed_option_replaces_every_seed_and_plots_record_the_case(tmp_path) -> None:
    """``experiment predict-propose --seed`` replaces the config's seeds (top level and per case), is recorded
    and changes the chains; each case's PNG records its model, N and T."""
    from PIL import Image

    from glassgen.cli import main

    cfg = tmp_path / "pp.toml"
    cfg.write_text('seed = 0\nn_chains = 2\nequilibrate_sweeps = 20\nsweeps = 30\nselection = "features"\n'
                   '[[case]]\nmodel = "ka2d"\nn = 43\nT = 1.0\nseed = 3\nmethods = ["metropolis"]\n')
    runs = {}
    for name, extra in (("a", ["--seed", "5"]), ("b", [])):
        assert main(["experiment", "predict-propose", "-c", str(cfg), "--full", "--out", str(tmp_path / name),
                     "--no-progress", *extra]) == 0
        runs[name] = json.loads((tmp_path / name / "results.json").read_text())
    assert runs["a"]["provenance"]["seed"] == 5 and runs["a"]["cases"][0]["seed"] == 5
    assert runs["b"]["cases"][0]["seed"] == 3  # without --seed the case's own seed holds
    ua, ub = (runs[k]["cases"][0]["methods"]["metropolis"]["U_per_N"] for k in "ab")
    assert ua != ub
    meta = json.loads(Image.open(tmp_path / "a" / "fs_ka2d_N43_T1.0.png").text["Description"])
    assert (meta["model"], meta["N"], meta["T"], meta["seed"]) == ("ka2d", 43, 1.0, 5)
    meta = json.loads(Image.open(tmp_path / "b" / "fs_ka2d_N43_T1.0.png").text["Description"])
    assert meta["seed"] == 3  # the case's own seed (the top-level one, 0, was recorded)
    assert main(["experiment", "predict-propose", "-c", str(cfg), "--out", str(tmp_path / "c"), "--seed", "-2"]) == 2
