"""Self-overlap Q: definition, the independent-configuration baseline, and tau_Q of an exactly solvable chain."""

from __future__ import annotations

import math

import numpy as np
import pytest

from glassgen.errors import InputError
from glassgen.observables import overlap_baseline, overlap_correlation, self_overlap


def test_self_overlap_definition_and_periodic_images():
    """The laboratory-frame definition (remove_drift=False); the default removes the mean displacement."""
    box = np.array([4.0, 5.0, 6.0])
    rng = np.random.default_rng(0)
    x0 = rng.random((10, 3)) * box
    assert self_overlap(x0, x0, box, remove_drift=False) == 1.0
    assert self_overlap(x0, x0 + box * np.array([1, -2, 3]), box, remove_drift=False) == 1.0  # another periodic image
    moved = x0.copy()
    moved[:3, 0] += 0.31
    moved[3:5, 1] -= 0.29
    assert self_overlap(x0, moved, box, remove_drift=False) == pytest.approx(0.7)
    moved[0, 0] = x0[0, 0] + box[0] - 0.1  # close through the boundary
    assert self_overlap(x0, moved, box, remove_drift=False) == pytest.approx(0.8)
    assert self_overlap(x0, moved, box, a=0.4, remove_drift=False) == 1.0
    # batched and broadcast: (F, C, N, d) against (C, N, d)
    frames = np.stack([x0, moved, x0 + 1.0])[:, None].repeat(2, axis=1)
    q = self_overlap(x0[None], frames, box, remove_drift=False)
    assert q.shape == (3, 2) and q.dtype == np.float64
    assert np.allclose(q[:, 0], [1.0, 0.8, 0.0])
    assert self_overlap(x0, x0 + 1.0, box) == 1.0  # a rigid translation, removed by default


def test_baseline_of_independent_configurations():
    """Q of two independent uniform configurations averages v_d(a) / V (binomial error)."""
    rng = np.random.default_rng(1)
    for box in (np.full(3, 1.5), np.array([1.3, 1.9])):
        n = 40_000
        q = float(self_overlap(rng.random((n, box.size)) * box, rng.random((n, box.size)) * box, box))
        p = overlap_baseline(box)
        vol = 4 / 3 * math.pi * 0.3**3 if box.size == 3 else math.pi * 0.3**2
        assert p == pytest.approx(vol / np.prod(box))
        assert abs(q - p) < 4 * math.sqrt(p * (1 - p) / n)


def test_overlap_correlation_of_a_refresh_chain():
    """Each step every particle is redrawn uniformly with probability r (else kept): phi_Q(t) = (1 - r)^t
    exactly and tau_Q = 1 + 2 sum rho^t = (1 + rho) / (1 - rho), rho = 1 - r."""
    rng = np.random.default_rng(2)
    box = np.full(3, 3.0)
    n_frames, n_chains, n, r = 400, 4, 500, 0.2
    frames = np.empty((n_frames, n_chains, n, 3))
    frames[0] = rng.random((n_chains, n, 3)) * box
    for t in range(1, n_frames):
        redraw = rng.random((n_chains, n, 1)) < r
        frames[t] = np.where(redraw, rng.random((n_chains, n, 3)) * box, frames[t - 1])
    res = overlap_correlation(frames, box, remove_drift=False)  # exact law of this constructed chain
    rho = 1 - r
    assert res.converged and res.window >= 5 * res.tau - 1
    assert res.q[0] == 1.0 and res.phi[0] == 1.0
    assert np.allclose(res.phi[:11], rho ** np.arange(11), atol=0.01)
    assert res.tau == pytest.approx((1 + rho) / (1 - rho), rel=0.05)
    assert res.baseline == pytest.approx(overlap_baseline(box))
    # a single chain (n_frames, N, d) works too; max_lag caps the window (tau is then a lower bound)
    capped = overlap_correlation(frames[:, 0], box, max_lag=3, remove_drift=False)
    assert not capped.converged and capped.window == 3 and capped.tau < res.tau


def test_bad_input_raises():
    box = np.full(3, 2.0)
    x = np.zeros((4, 3))
    with pytest.raises(InputError):
        self_overlap(x, np.zeros((5, 3)), box)
    with pytest.raises(InputError):
        self_overlap(x, x, np.full(2, 2.0))
    with pytest.raises(InputError):
        self_overlap(x, x, box, a=0.0)
    with pytest.raises(InputError):
        overlap_baseline(np.full(3, 0.5))  # a = 0.3 > L / 2
    with pytest.raises(InputError):
        overlap_correlation(np.zeros((2, 4, 3)), box)  # too few frames
