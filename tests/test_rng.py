"""The ziggurat normal generator of the Numba kernels against the exact normal law."""

from __future__ import annotations

import numpy as np
from scipy import stats

from glassgen._kernels import rng as zig


def _chi2_equiprobable(z: np.ndarray, bins: int = 200) -> float:
    edges = stats.norm.ppf(np.linspace(0.0, 1.0, bins + 1))
    counts, _ = np.histogram(z, edges)
    return float(stats.chisquare(counts).pvalue)


def test_ziggurat_is_standard_normal() -> None:
    z = zig.normal_array(2_000_000, 11)
    assert stats.kstest(z, "norm").pvalue > 1e-3
    assert _chi2_equiprobable(z) > 1e-3
    # the tail beyond R comes from a separate branch: its probability and shape are exact too
    tail = np.abs(z) > zig.ZIG_R
    p = 2 * stats.norm.sf(zig.ZIG_R)
    assert abs(tail.mean() - p) < 5 * np.sqrt(p * (1 - p) / z.size)
    excess = np.abs(z[tail]) - zig.ZIG_R  # |z| - R given |z| > R
    assert stats.kstest(excess, lambda x: 1 - stats.norm.sf(zig.ZIG_R + x) / stats.norm.sf(zig.ZIG_R)).pvalue > 1e-3
    assert abs(np.mean(z > 0) - 0.5) < 5 * np.sqrt(0.25 / z.size)


def test_ziggurat_reproducible_from_seed() -> None:
    assert np.array_equal(zig.normal_array(1000, 5), zig.normal_array(1000, 5))
    assert not np.array_equal(zig.normal_array(1000, 5), zig.normal_array(1000, 6))


def test_ziggurat_without_wedge_test_is_rejected() -> None:
    """Negative control: the same tables with the wedge rejection left out (points in the wedges accepted)
    give a visibly wrong law, which the equiprobable chi-squared test above must reject."""
    rng = np.random.default_rng(0)
    n = 2_000_000
    i = rng.integers(0, 128, n)
    u = rng.uniform(-1.0, 1.0, n)
    z = u * zig._X[i]
    bottom = (i == 0) & (np.abs(u) >= zig._RATIO[0])
    z[bottom] = np.sign(u[bottom]) * (zig.ZIG_R - np.log(rng.random(bottom.sum())) / zig.ZIG_R)  # crude tail
    assert _chi2_equiprobable(z) < 1e-10
