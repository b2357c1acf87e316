"""Independence Metropolis–Hastings over importance-weighted proposals: exact stationary law (chi-squared on
a discrete target, negative controls), annealed pool proposals on a small KA2D system against the exact <U>
(quadrature)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from glassgen.errors import InputError
from glassgen.observables.thermo import mean_and_error_of_chains
from glassgen.sampling.annealed import anneal
from glassgen.sampling.independence import independence_chains
from glassgen.systems.configuration import random_configuration
from test_flows import _exact_reference, _mc_pool

P = np.array([0.05, 0.10, 0.15, 0.20, 0.25, 0.25])  # target
Q = np.array([0.30, 0.25, 0.15, 0.10, 0.10, 0.10])  # proposal: most mass where the target has least


def _visits(log_w_of_state: np.ndarray, m: int = 240_000, chains: int = 8, thin: int = 10, seed: int = 3):
    rng = np.random.default_rng(seed)
    states = rng.choice(P.size, size=m, p=Q)
    res = independence_chains(log_w_of_state[states], chains, seed=seed + 1)
    kept = states[res.index[200::thin]].ravel()  # burn-in 200 iterations, thinned: nearly independent
    return np.bincount(kept, minlength=P.size), res


def test_independence_chains_sample_the_target_exactly():
    """Proposals from Q, weights P/Q: the thinned chain states pass a chi-squared test against P
    (p > 1e-3); the raw proposals and a chain with the weights inverted fail it (p < 1e-10)."""
    counts, res = _visits(np.log(P) - np.log(Q))
    p_val = stats.chisquare(counts, counts.sum() * P).pvalue
    assert p_val > 1e-3, (counts, p_val)
    assert 0.3 < res.acceptance < 0.95 and res.index.shape == (30_000, 8)
    raw = np.bincount(np.random.default_rng(3).choice(P.size, size=counts.sum(), p=Q), minlength=P.size)
    assert stats.chisquare(raw, raw.sum() * P).pvalue < 1e-10  # negative control: no correction
    bad, _ = _visits(np.log(Q) - np.log(P))  # negative control: the weights of the reverse problem
    assert stats.chisquare(bad, bad.sum() * P).pvalue < 1e-10


def test_zero_weight_states_are_left_and_never_entered():
    lw = np.array([-np.inf, 0.0, np.nan, -np.inf, 1.0, -np.inf, 0.5, 2.0])
    res = independence_chains(lw, 2)
    assert res.index[0].tolist() == [0, 1]  # starting states, whatever their weight
    assert res.index[:3, 0].tolist() == [0, 0, 4]  # a zero-weight start stays through NaN, leaves at a finite one
    assert res.index[:, 1].tolist() == [1, 1, 1, 7]  # -inf proposals rejected; a heavier one always accepted
    with pytest.raises(InputError, match="proposals"):
        independence_chains(np.zeros(3), 2)
    with pytest.raises(InputError, match="shape"):
        independence_chains(np.zeros((4, 2)), 1)


def test_annealed_pool_proposals_give_an_exact_chain():
    """KA2D N = 3 at density 0.3: pool configurations at T_h = 2 annealed to T = 0.7 (AIS weights) as
    independence proposals; the chains' <U> agrees with the exact <U> at T = 0.7 within 4 sigma, while the
    proposals' plain mean is far off (negative control)."""
    n, density, T_h, T = 3, 0.3, 2.0, 0.7
    pool = _mc_pool("ka2d", n, density, T_h, 4000, 4, seed=3)
    conf = random_configuration("ka2d", n, density=density, seed=0)
    _, lw, u = anneal(pool, conf.species, conf.box, conf.model, T_h, T, steps=6, sweeps=1, delta=0.3, seed=5)
    res = independence_chains(lw, 8, seed=7)
    u_chain = u[res.index[50:]]  # (iterations, chains)
    est, err = mean_and_error_of_chains(u_chain.T.ravel(), 8)
    ref, ref_err = _exact_reference(n, density, T)
    assert abs(est - ref) / math.hypot(err, ref_err) < 4.0, (est, err, ref, ref_err)
    raw_err = float(np.std(u)) / math.sqrt(u.size)
    assert abs(float(np.mean(u)) - ref) / math.hypot(raw_err, ref_err) > 8.0
