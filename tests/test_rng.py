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


def _xoshiro_reference(state: list[int], n: int) -> list[int]:
    """xoshiro256++ in plain Python integers (Blackman & Vigna's reference C code, line by line)."""
    m = (1 << 64) - 1

    def rotl(x: int, k: int) -> int:
        return ((x << k) | (x >> (64 - k))) & m

    s0, s1, s2, s3 = state
    out = []
    for _ in range(n):
        out.append((rotl((s0 + s3) & m, 23) + s0) & m)
        t = (s1 << 17) & m
        s2 ^= s0
        s3 ^= s1
        s1 ^= s2
        s0 ^= s3
        s2 ^= t
        s3 = rotl(s3, 45)
    return out


def test_xoshiro_matches_reference_code() -> None:
    from numba import njit

    @njit
    def outputs(state, n):
        o = np.empty(n, dtype=np.uint64)
        for k in range(n):
            o[k] = zig.next_u64(state)
        return o

    # state (1, 2, 3, 4): the first output is rotl(1 + 4, 23) + 1 = 41943041 by hand
    got = [int(v) for v in outputs(np.array([1, 2, 3, 4], dtype=np.uint64), 20)]
    assert got[0] == 41943041
    assert got == _xoshiro_reference([1, 2, 3, 4], 20)
    seeded = zig.rng_state(123)
    assert np.any(seeded != 0)
    assert [int(v) for v in outputs(seeded.copy(), 50)] == _xoshiro_reference([int(v) for v in seeded], 50)


def test_uniform_is_uniform_and_seeded() -> None:
    u = zig.uniform_array(1_000_000, 3)
    assert u.min() >= 0.0 and u.max() < 1.0
    assert stats.kstest(u, "uniform").pvalue > 1e-3
    lag = np.corrcoef(u[:-1], u[1:])[0, 1]  # no serial correlation at the 5-sigma level
    assert abs(lag) < 5 / np.sqrt(u.size)
    assert np.array_equal(u[:100], zig.uniform_array(100, 3))
    assert not np.array_equal(u[:100], zig.uniform_array(100, 4))
