"""Error bars for correlated time series: block averages and integrated autocorrelation times.

Convention: the integrated autocorrelation time is

    tau_int = 1 + 2 sum_{t >= 1} rho(t)

(in units of the sampling interval), so that Var(mean) = Var(x) tau_int / n and n / tau_int is the
number of effectively independent samples. This equals the *statistical inefficiency* g of
Chodera et al. (JCTC 3, 26 (2007)) and twice Sokal's tau_int (Sokal, "Monte Carlo methods in
statistical mechanics", 1996). For an AR(1) process x_t = phi x_{t-1} + noise, tau_int = (1 + phi)/(1 - phi).

The sum is truncated with Sokal's automatic window: the smallest M with M >= c tau_int(M) (c = 5),
which balances the bias of truncation against the variance of the estimate (relative standard
error ~ sqrt(2 (2M + 1) / n)). Reliable only for n >> tau_int (say n > 50 tau_int). Windows are searched
up to M = n / 4 only: the autocorrelation is taken about the sample mean, so the full sum
1 + 2 sum_{t=1}^{n-1} rho(t) is exactly 0 and tau_int(M) falls back towards 0 at large M, where a window
would otherwise always be "found". If none up to n / 4 qualifies the series is too short: the estimate is
the largest tau_int(M), M <= n / 4, a lower bound, flagged ``converged=False`` (and
:func:`mean_and_error` warns). Anticorrelated series (tau_int < 1, e.g. rho(1) < 0), where the window can
stop at a negative sum, use Geyer's initial positive sequence, -1 + 2 sum_k (rho(2k) + rho(2k+1)) up to
the first non-positive pair, which stays positive and is consistent.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np

from glassgen.errors import InputError

__all__ = ["block_average", "autocorrelation", "AutocorrelationTime", "autocorrelation_time",
           "autocorrelation_time_from_rho", "integrated_autocorrelation_time", "statistical_inefficiency",
           "effective_sample_size", "mean_and_error", "mean_and_error_of_chains", "pooled_autocorrelation",
           "mean_and_error_of_parallel_chains"]


def _series(x: np.ndarray, min_len: int = 2) -> np.ndarray:
    a = np.asarray(x, dtype=np.float64)
    if a.ndim != 1:
        raise InputError(f"expected a 1D time series, got shape {a.shape}")
    if a.size < min_len:
        raise InputError(f"time series too short: {a.size} < {min_len} samples")
    if not np.all(np.isfinite(a)):
        raise InputError("time series contains NaN or infinite values")
    return a


def block_average(x: np.ndarray, n_blocks: int = 10) -> tuple[float, float]:
    """Mean and its standard error from ``n_blocks`` contiguous blocks.

    The series is cut into ``n_blocks`` blocks of ``len(x) // n_blocks`` samples (the leading
    remainder, the least equilibrated part, is dropped); the error is the standard deviation of the
    block means over sqrt(n_blocks). It is unbiased when the blocks are much longer than tau_int;
    its own relative uncertainty is about 1 / sqrt(2 (n_blocks - 1)).

    Args:
        x: (n,) time series.
        n_blocks: number of blocks (>= 2).

    Returns:
        (mean over the samples used, standard error of that mean).
    """
    n_blocks = int(n_blocks)
    if n_blocks < 2:
        raise InputError(f"n_blocks must be >= 2, got {n_blocks}")
    a = _series(x, n_blocks)
    b = a.size // n_blocks
    used = a[a.size - b * n_blocks:]
    means = used.reshape(n_blocks, b).mean(axis=1)
    return float(used.mean()), float(means.std(ddof=1) / np.sqrt(n_blocks))


def autocorrelation(x: np.ndarray) -> np.ndarray:
    """Normalised autocorrelation rho(t) = C(t) / C(0), t = 0 .. n-1 (FFT, O(n log n)).

    Uses the standard biased estimator C(t) = (1/n) sum_{i < n-t} dx_i dx_{i+t}, dx = x - mean(x).

    Args:
        x: (n,) time series.

    Returns:
        (n,) rho with rho[0] = 1 (all NaN for a constant series).
    """
    a = _series(x)
    n = a.size
    dx = a - a.mean()
    nfft = 1 << int(np.ceil(np.log2(2 * n)))
    f = np.fft.rfft(dx, nfft)
    acf = np.fft.irfft(f * np.conj(f), nfft)[:n] / n
    with np.errstate(invalid="ignore", divide="ignore"):
        return acf / acf[0]


@dataclass(frozen=True)
class AutocorrelationTime:
    """An integrated autocorrelation time (units of the sampling interval) and how it was obtained.

    Attributes:
        tau: tau_int = 1 + 2 sum_{t=1}^{M} rho(t) (> 0).
        window: the summation window M (for Geyer's estimate, the last lag used).
        converged: False if no window up to n / 4 met Sokal's criterion (series too short for its
            correlations): tau is then a lower bound.
    """

    tau: float
    window: int
    converged: bool


def autocorrelation_time_from_rho(rho: np.ndarray, c: float = 5.0) -> AutocorrelationTime:
    """tau_int from a normalised autocorrelation rho(t), t = 0 .. n-1 (rho[0] = 1), as the module docstring says.

    Args:
        rho: (n,) autocorrelation about the sample mean (or an average of such over chains).
        c: Sokal window constant; M is the smallest lag <= n / 4 with M >= c tau_int(M).

    Returns:
        :class:`AutocorrelationTime`; a constant series (rho NaN) gives tau = 1, converged.
    """
    r = np.asarray(rho, dtype=np.float64)
    if r.ndim != 1 or r.size < 1:
        raise InputError(f"rho must be a non-empty 1D array, got shape {r.shape}")
    if not np.isfinite(r[0]):
        return AutocorrelationTime(1.0, 0, True)
    cap = min(r.size - 1, max(1, r.size // 4))
    taus = 2.0 * np.cumsum(r[:cap + 1]) - 1.0  # taus[M] = 1 + 2 sum_{t=1}^{M} rho(t)
    ok = np.arange(cap + 1) >= c * taus
    if ok.any():
        m = int(np.argmax(ok))
        est = AutocorrelationTime(float(taus[m]), m, True)
    else:
        m = int(np.argmax(taus))
        est = AutocorrelationTime(float(taus[m]), m, False)
    if est.tau < 1.0:  # anticorrelated: Geyer's initial positive sequence (pairs rho(2k) + rho(2k+1) > 0)
        k_max = (cap + 1) // 2
        pairs = r[0:2 * k_max:2] + r[1:2 * k_max:2]
        neg = np.flatnonzero(pairs <= 0.0)
        k = int(neg[0]) if neg.size else pairs.size
        tau = -1.0 + 2.0 * float(pairs[:k].sum())
        est = AutocorrelationTime(max(tau, 1.0 / r.size), 2 * k - 1, est.converged)
    return est


def autocorrelation_time(x: np.ndarray, c: float = 5.0) -> AutocorrelationTime:
    """:class:`AutocorrelationTime` of a series (tau_int, its window and whether the window converged)."""
    return autocorrelation_time_from_rho(autocorrelation(x), c)


def integrated_autocorrelation_time(x: np.ndarray, c: float = 5.0) -> float:
    """tau_int = 1 + 2 sum_{t=1}^{M} rho(t) with Sokal's automatic window M (see module docstring).

    Args:
        x: (n,) time series, equally spaced.
        c: window constant; M is the smallest lag <= n / 4 with M >= c tau_int(M).

    Returns:
        tau_int in units of the sampling interval (1 for uncorrelated data; > 0 always). If no window
        satisfies the criterion (series too short), a lower bound: use :func:`autocorrelation_time` to
        see the flag. A constant series returns 1.0 (no fluctuation, zero error either way).
    """
    return autocorrelation_time(x, c).tau


def statistical_inefficiency(x: np.ndarray, c: float = 5.0) -> float:
    """Statistical inefficiency g: samples per independent sample (= :func:`integrated_autocorrelation_time`).

    Args:
        x: (n,) time series.
        c: Sokal window constant.

    Returns:
        g = 1 + 2 sum rho(t); the effective sample size is n / g.
    """
    return integrated_autocorrelation_time(x, c)


def effective_sample_size(x: np.ndarray, c: float = 5.0) -> float:
    """n / tau_int: the number of effectively independent samples in ``x``."""
    a = _series(x)
    return a.size / integrated_autocorrelation_time(a, c)


def mean_and_error(x: np.ndarray, c: float = 5.0) -> tuple[float, float]:
    """Mean and standard error sqrt(Var(x) tau_int / n) of a correlated series.

    Args:
        x: (n,) time series.
        c: Sokal window constant.

    Returns:
        (mean, standard error of the mean).
    """
    a = _series(x)
    est = autocorrelation_time(a, c)
    if not est.converged:
        warnings.warn(f"series of {a.size} samples is too short for its autocorrelation time (tau_int >= "
                      f"{est.tau:.3g}): the error bar is a lower bound", RuntimeWarning, stacklevel=2)
    return _mean_and_error(a, est)


def _mean_and_error(a: np.ndarray, est: AutocorrelationTime) -> tuple[float, float]:
    """Mean of the series ``a`` and its standard error sqrt(Var(a) tau_int / n) for the estimate ``est``."""
    return float(a.mean()), float(np.sqrt(a.var() * est.tau / a.size))


def pooled_autocorrelation(series: np.ndarray, c: float = 5.0) -> AutocorrelationTime | None:
    """tau_int of several independent chains of one process from their averaged autocovariance.

    Each chain's autocovariance is taken about its own mean; their average, normalised to 1 at t = 0, goes
    through :func:`autocorrelation_time_from_rho` (windows up to n / 4 of the chain length).

    Args:
        series: (n, n_chains) float64, one column per chain (n >= 2).
        c: Sokal window constant.

    Returns:
        :class:`AutocorrelationTime`, or None if no chain fluctuates (all constant).
    """
    s = np.asarray(series, dtype=np.float64)
    if s.ndim != 2 or s.shape[0] < 2 or s.shape[1] < 1:
        raise InputError(f"series must have shape (n >= 2, n_chains >= 1), got {s.shape}")
    acov = np.zeros(s.shape[0])
    for k in range(s.shape[1]):
        col = _series(s[:, k])
        var = float(col.var())
        if var > 0:
            acov += autocorrelation(col) * var
    if acov[0] <= 0:
        return None
    return autocorrelation_time_from_rho(acov / acov[0], c)


def mean_and_error_of_parallel_chains(series: np.ndarray, c: float = 5.0) -> tuple[float, float]:
    """Mean and error of equally long independent chains run side by side, ``series`` (n, n_chains).

    The error is the larger of (a) the autocorrelation error with the pooled tau_int of all chains,
    sqrt(sum_k Var_k tau / n) / n_chains, and (b) the spread of the chain means, std / sqrt(n_chains): chains
    stuck in different long-lived basins show in (b) and not in their own autocorrelation. Warns (as
    :func:`mean_and_error`) when the pooled window does not converge.

    Returns:
        (mean over all samples, error of the mean).
    """
    s = np.asarray(series, dtype=np.float64)
    est = pooled_autocorrelation(s, c)
    n, k = s.shape
    tau = 1.0 if est is None else est.tau
    if est is not None and not est.converged:
        warnings.warn(f"chains of {n} samples are too short for their autocorrelation time (tau_int >= "
                      f"{est.tau:.3g}): the error bar is a lower bound", RuntimeWarning, stacklevel=2)
    within = float(np.sqrt(np.sum(s.var(axis=0) * tau / n)) / k)
    spread = float(s.mean(axis=0).std(ddof=1) / np.sqrt(k)) if k > 1 else 0.0
    return float(s.mean()), max(within, spread)


def drift_z(series: np.ndarray, c: float = 5.0) -> float:
    """Equilibration check: z = (mean of the second half - mean of the first half) / combined error.

    ``series`` (n,) one chain or (n, n_chains) parallel chains, burn-in already cut; each half's error is
    :func:`mean_and_error_of_parallel_chains` (pooled tau_int, at least the spread of the chain means). A
    stationary series gives z ~ N(0, 1); one still relaxing from its start gives |z| >> 1. NaN with fewer
    than 8 samples per chain or a zero error.
    """
    s = np.asarray(series, dtype=np.float64)
    s = s[:, None] if s.ndim == 1 else s
    if s.ndim != 2 or s.shape[0] < 8 or not np.all(np.isfinite(s)):
        return float("nan")
    h = s.shape[0] // 2
    with warnings.catch_warnings():  # a half is often too short for its tau_int; the whole series says so already
        warnings.simplefilter("ignore", RuntimeWarning)
        (m1, e1), (m2, e2) = mean_and_error_of_parallel_chains(s[:h], c), mean_and_error_of_parallel_chains(s[h:], c)
    err = float(np.hypot(e1, e2))
    return (m2 - m1) / err if err > 0 else float("nan")


def warn_if_drifting(z: float, what: str = "U/N") -> None:
    """One-line warning when :func:`drift_z` exceeds 3 in magnitude (NaN never warns)."""
    if abs(z) > 3:
        warnings.warn(f"{what} drifts between the first and second half of the kept samples (z = {z:+.1f}): "
                      "the run may not be equilibrated yet; equilibrate or run longer", RuntimeWarning, stacklevel=3)


def mean_and_error_of_chains(x: np.ndarray, chains: int, c: float = 5.0) -> tuple[float, float]:
    """Mean and error of samples from independent chains stored one after the other.

    The error is the larger of (a) each chain's :func:`mean_and_error` combined over the chains and (b)
    the spread of the chain means, std / sqrt(chains). Small systems sit in long-lived basins that a short
    chain's autocorrelation function does not show, so (a) alone can be too small; with few chains (b) is
    itself uncertain, hence the larger of the two.

    Args:
        x: (n,) samples, ``chains`` consecutive blocks of (nearly) equal length, one per chain.
        chains: number of chains (>= 1).
        c: Sokal window constant.

    Returns:
        (mean, error of the mean).
    """
    a = _series(x)
    if chains < 1 or a.size < 2 * chains:
        raise InputError(f"need chains >= 1 and at least 2 samples per chain, got {a.size} samples, {chains} chains")
    parts = [_series(p) for p in np.array_split(a, chains)]
    ests = [autocorrelation_time(p, c) for p in parts]
    stats = [_mean_and_error(p, e) for p, e in zip(parts, ests, strict=True)]
    short = [e.tau for e in ests if not e.converged]
    if short:  # one warning for all the chains, not one each
        warnings.warn(f"{len(short)} of {chains} chains of ~{parts[0].size} samples are too short for their "
                      f"autocorrelation time (tau_int >= {max(short):.3g}): the error bar is a lower bound",
                      RuntimeWarning, stacklevel=2)
    w = np.array([p.size for p in parts], dtype=np.float64)
    means = np.array([m for m, _ in stats])
    within = float(np.sqrt(np.sum((w * [e for _, e in stats]) ** 2)) / w.sum())
    spread = float(means.std(ddof=1) / np.sqrt(chains)) if chains > 1 else 0.0
    return float(np.sum(w * means) / w.sum()), max(within, spread)
