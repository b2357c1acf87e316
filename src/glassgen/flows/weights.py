"""Importance weights of a Boltzmann generator and the metrics built on them.

A flow with density q(x) proposes configurations for the Boltzmann distribution p(x) = exp(-beta U(x)) / Z.
The (unnormalised) log-weight of a sample is

    log w = -beta U(x) - log q(x)        (dimensionless; U in epsilon, beta = 1 / T in 1 / epsilon)

and every metric below works on log w only, in log space (``scipy.special.logsumexp``), so that
weights spanning hundreds of orders of magnitude neither overflow nor underflow:

- Kish effective sample size, ESS = (sum w)^2 / sum w^2 = exp(2 LSE(log w) - LSE(2 log w)), from
  samples x ~ q; ESS / n -> 1 / E_q[(w / Z)^2] for n -> infinity.
- forward ESS from reference samples x ~ p: ESS / n ~ 1 / (mean_p(w) mean_p(1 / w)), which tends to the
  same limit 1 / E_q[(w/Z)^2] but does not need the flow to find the regions it misses (mode dropping
  shows up here, not in the Kish ESS).
- log Z = LSE(log w) - log n (the partition function of exp(-beta U) relative to the flow's
  normalisation), with a delta-method standard error sqrt((n / ESS - 1) / (n - 1)).
- self-normalised reweighted means <a>_p = sum w a / sum w with delta-method error bars for ratio
  estimators, var = sum w_i^2 (a_i - <a>)^2 / (sum w_i)^2 (per column for (n, k) observables such as a
  g(r) histogram per sample), and reweighted histograms.
- :func:`gaussian_log_weight_theory`: if log w is Gaussian with variance s2, ESS / n = exp(-s2) and the
  independence Metropolis-Hastings acceptance is 2 Phi(-sqrt(s2 / 2)) (REFERENCE section 4).
- :func:`harmonic_reweighting_ess_fraction`: the ESS of reweighting a harmonic solid between two
  temperatures, the ceiling of the identity map on a Boltzmann-prior pool.

Every metric is invariant under adding a constant to log w (weights are only known up to Z).

dtype policy: inputs may be numpy arrays or torch tensors of any float dtype; they are converted to
float64 numpy (torch tensors are detached and moved to the CPU) before any arithmetic, so the metrics
are always computed in float64. Upcasting cannot restore precision lost upstream: compute log w from
float64 energies and log q (:func:`log_weights` does). Results are python floats, or float64 numpy
arrays for per-column / per-bin quantities; :func:`log_weights` returns a float64 torch tensor when given
a torch tensor (on the input's device), so it can be used inside training code.

Zero weights: log w = -inf is allowed everywhere (an overlapping configuration with U = +inf); such samples
count in n but carry no weight. NaN and +inf log-weights are errors (:class:`InputError`).

References: Kish, "Survey sampling" (1965); Noe, Olsson, Koehler, Wu, Science 365, eaaw1147 (2019);
Gabrie, Rotskoff, Vanden-Eijnden, PNAS 119, e2109420119 (2022); Owen, "Monte Carlo theory, methods and
examples", ch. 9 (2013).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.special import logsumexp

from glassgen.errors import InputError

__all__ = [
    "log_weights",
    "kish_ess",
    "kish_ess_fraction",
    "forward_ess",
    "log_partition",
    "reweighted_mean",
    "reweighted_histogram",
    "gaussian_log_weight_theory",
    "harmonic_reweighting_ess_fraction",
    "WeightSummary",
    "summarize",
]


def _is_torch(x: Any) -> bool:
    mod = type(x).__module__
    return mod.startswith("torch") and hasattr(x, "detach")


def _as_f64(x: Any, name: str) -> np.ndarray:
    """numpy float64 copy of an array-like or torch tensor."""
    if _is_torch(x):
        x = x.detach().cpu().double().numpy()
    try:
        return np.asarray(x, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise InputError(f"{name} must be a numeric array, got {type(x).__name__}") from exc


def _check_log_w(log_w: Any, name: str = "log_w") -> np.ndarray:
    lw = _as_f64(log_w, name)
    if lw.ndim != 1:
        raise InputError(f"{name} must have shape (n,), got {lw.shape}")
    if lw.size == 0:
        raise InputError(f"{name} is empty")
    if np.any(np.isnan(lw)):
        raise InputError(f"{name} contains NaN")
    if np.any(lw == np.inf):
        raise InputError(f"{name} contains +inf (a sample with zero proposal density?)")
    return lw


def _weighted(values: np.ndarray, lw: np.ndarray, name: str) -> tuple[np.ndarray, np.ndarray]:
    """Normalised weights of the samples with w > 0 and their values; values there must be finite."""
    keep = lw > -np.inf
    w = _normalised(lw[keep])
    kept = values[keep]
    if not np.all(np.isfinite(kept)):
        raise InputError(f"{name} contains NaN or infinite entries at samples with non-zero weight")
    return w, kept


def _normalised(lw: np.ndarray) -> np.ndarray:
    """Weights w_i / sum w (float64, sums to 1); raises if every weight is zero."""
    lse = logsumexp(lw)
    if lse == -np.inf:
        raise InputError("all importance weights are zero (every log w is -inf)")
    return np.exp(lw - lse)


def log_weights(beta: float, energies: Any, log_q: Any) -> Any:
    """log w = -beta U - log q for samples x ~ q.

    Args:
        beta: inverse temperature 1 / T (1 / epsilon), finite and > 0.
        energies: (n,) total potential energies U(x) (epsilon); NaN or +-inf mean an invalid
            configuration (overlap) and give log w = -inf.
        log_q: (n,) log-density of the samples under the proposal (up to a common constant).

    Returns:
        (n,) float64 log-weights: a torch tensor (on the device of the torch input) if ``energies``
        or ``log_q`` is a torch tensor, otherwise a numpy array. Never NaN.

    Raises:
        InputError: beta not finite and positive, mismatched shapes, or NaN / -inf in log_q.
    """
    b = float(beta)
    if not (math.isfinite(b) and b > 0):
        raise InputError(f"beta must be finite and positive, got {beta}")
    torch_in = next((t for t in (energies, log_q) if _is_torch(t)), None)
    u = _as_f64(energies, "energies")
    lq = _as_f64(log_q, "log_q")
    if u.ndim != 1 or lq.shape != u.shape:
        raise InputError(f"energies and log_q must both have shape (n,), got {u.shape} and {lq.shape}")
    if np.any(np.isnan(lq)) or np.any(lq == -np.inf):
        raise InputError("log_q contains NaN or -inf")
    with np.errstate(invalid="ignore", over="ignore"):
        lw = -b * u - lq
    lw[~np.isfinite(u)] = -np.inf
    if torch_in is not None:
        import torch

        return torch.as_tensor(lw, dtype=torch.float64, device=torch_in.device)
    return lw


def kish_ess(log_w: Any) -> float:
    """Kish effective sample size (sum w)^2 / sum w^2 = exp(2 LSE(log w) - LSE(2 log w)).

    Args:
        log_w: (n,) log-weights of samples x ~ q (any additive constant).

    Returns:
        ESS in [1, n] (0.0 if every weight is zero).
    """
    lw = _check_log_w(log_w)
    lse1 = logsumexp(lw)
    if lse1 == -np.inf:
        return 0.0
    return float(np.exp(2.0 * lse1 - logsumexp(2.0 * lw)))


def kish_ess_fraction(log_w: Any) -> float:
    """Kish ESS / n in [1/n, 1] (see :func:`kish_ess`)."""
    lw = _check_log_w(log_w)
    return kish_ess(lw) / lw.size


def forward_ess(log_w_on_target_samples: Any) -> float:
    """Forward ESS / n ~ 1 / (mean_p(w) mean_p(1/w)) from log-weights of reference samples x ~ p.

    With w = p / q normalised, E_p[1/w] = 1 and E_p[w] = E_q[w^2], so this converges to the same limit
    as :func:`kish_ess_fraction`; computed as exp(2 log n - LSE(log w) - LSE(-log w)), scale-invariant.

    Args:
        log_w_on_target_samples: (n,) log w = -beta U(x) - log q(x) at x ~ p (e.g. long MD/MC samples).

    Returns:
        ESS / n in [0, 1]; 0.0 if some reference sample has zero weight (the flow misses it).
    """
    lw = _check_log_w(log_w_on_target_samples, "log_w_on_target_samples")
    if np.any(lw == -np.inf):
        return 0.0
    n = lw.size
    return float(np.exp(2.0 * math.log(n) - logsumexp(lw) - logsumexp(-lw)))


def log_partition(log_w: Any) -> tuple[float, float]:
    """log Z = LSE(log w) - log n with its delta-method standard error.

    Z estimates the integral of exp(-beta U) (times exp(-c) if a constant c was added to log w, and
    relative to the proposal's normalisation). The error is se(log Z) = se(mean w) / mean w =
    sqrt((n / ESS - 1) / (n - 1)) (sample variance with n - 1), reliable when ESS >> 1.

    Args:
        log_w: (n,) log-weights of samples x ~ q.

    Returns:
        (log Z, standard error); (-inf, nan) if every weight is zero, error nan if n = 1.
    """
    lw = _check_log_w(log_w)
    n = lw.size
    lse1 = logsumexp(lw)
    if lse1 == -np.inf:
        return -math.inf, math.nan
    log_z = float(lse1 - math.log(n))
    if n < 2:
        return log_z, math.nan
    ratio = float(np.exp(logsumexp(2.0 * lw) - 2.0 * lse1))  # sum w^2 / (sum w)^2 = 1 / ESS
    return log_z, float(math.sqrt(max(n * ratio - 1.0, 0.0) / (n - 1)))


def reweighted_mean(values: Any, log_w: Any, groups: Any = None) -> tuple[Any, Any]:
    """Self-normalised importance-sampling mean <a>_p = sum w a / sum w and its standard error.

    The error is the delta-method one of a ratio estimator,
    se^2 = sum_i w_i^2 (a_i - <a>)^2 / (sum_i w_i)^2, computed per column. Samples with zero weight
    (log w = -inf) are ignored, so their values may be non-finite.

    The delta method assumes independent samples. Samples drawn from a pool made by a few MD/MC chains are
    correlated within a chain; with ``groups`` (the chain of each sample) the error is the larger of the
    delta-method error and the spread of the G per-group estimates, std / sqrt(G) (groups whose weights are
    all zero are left out; at least two groups are needed for the spread).

    Args:
        values: (n,) or (n, k) observable per sample (e.g. (n, n_bins) g(r) per configuration).
        log_w: (n,) log-weights.
        groups: optional (n,) integer group (chain) label of each sample.

    Returns:
        (mean, error): python floats for (n,) values, (k,) float64 arrays for (n, k) values.

    Raises:
        InputError: shapes disagree, every weight is zero, or a weighted value is not finite.
    """
    lw = _check_log_w(log_w)
    a = _as_f64(values, "values")
    if a.ndim not in (1, 2) or a.shape[0] != lw.size:
        raise InputError(f"values must have shape ({lw.size},) or ({lw.size}, k), got {a.shape}")
    a_all = a
    w, a = _weighted(a, lw, "values")
    mean = np.tensordot(w, a, axes=(0, 0))
    var = np.tensordot(w * w, (a - mean) ** 2, axes=(0, 0))
    err = np.sqrt(var)
    if groups is not None:
        g = np.asarray(groups).reshape(-1)
        if g.shape != lw.shape:
            raise InputError(f"groups must have shape ({lw.size},), got {g.shape}")
        est = [reweighted_mean(a_all[g == k], lw[g == k])[0] for k in np.unique(g)
               if (lw[g == k] > -np.inf).any()]
        if len(est) >= 2:
            spread = np.std(np.asarray(est, dtype=np.float64), axis=0, ddof=1) / np.sqrt(len(est))
            err = np.maximum(err, spread)
    if a.ndim == 1:
        return float(mean), float(err)
    return np.asarray(mean, dtype=np.float64), np.asarray(err, dtype=np.float64)


def reweighted_histogram(x: Any, log_w: Any, bins: int | Any = 50,
                         range: tuple[float, float] | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Reweighted probability density of a scalar (e.g. U / N) with a delta-method error per bin.

    density_b = sum_i w_i 1[x_i in b] / (width_b sum_i w_i), the weights normalised over ALL samples,
    so the density integrates to the probability of the histogram range (1 if it covers every sample).
    The error is the ratio-estimator error of the bin indicator (see :func:`reweighted_mean`), computed
    without an (n, n_bins) array.

    Args:
        x: (n,) values per sample; non-finite values at zero weight are ignored.
        log_w: (n,) log-weights (all zeros for a plain histogram of samples from p).
        bins: number of bins or (n_bins + 1,) increasing edges (as :func:`numpy.histogram`).
        range: (lo, hi) if ``bins`` is a number; default: min and max of the weighted samples.

    Returns:
        (edges (n_bins + 1,), density (n_bins,), error (n_bins,)), float64.
    """
    lw = _check_log_w(log_w)
    xv = _as_f64(x, "x")
    if xv.shape != lw.shape:
        raise InputError(f"x must have shape {lw.shape}, got {xv.shape}")
    w, xv = _weighted(xv, lw, "x")
    edges = np.histogram_bin_edges(xv, bins=bins, range=range)
    s1, _ = np.histogram(xv, bins=edges, weights=w)
    s2, _ = np.histogram(xv, bins=edges, weights=w * w)
    w2 = float(np.sum(w * w))
    # sum_i w_i^2 (1_i - p_b)^2 = s2_b (1 - p_b)^2 + (w2 - s2_b) p_b^2
    var = s2 * (1.0 - s1) ** 2 + np.maximum(w2 - s2, 0.0) * s1**2
    width = np.diff(edges)
    return edges.astype(np.float64), s1 / width, np.sqrt(var) / width


def gaussian_log_weight_theory(s2: float) -> dict[str, float]:
    """Reference values for Gaussian log-weights with variance ``s2`` (under q).

    If log w ~ N(m, s2) for x ~ q, then ESS / n -> exp(-s2) and the stationary acceptance of
    independence Metropolis-Hastings is E[min(1, w'/w)] = 2 Phi(-sqrt(s2 / 2)) = erfc(sqrt(s2) / 2)
    (the difference of the proposed and the current (tilted) log-weight is N(-s2, 2 s2)).

    Args:
        s2: variance of log w, >= 0.

    Returns:
        {"s2", "ess_fraction", "imh_acceptance", "log_z_err_n1"}; the last is the standard error of
        log Z times sqrt(n), sqrt(exp(s2) - 1).
    """
    s = float(s2)
    if not (math.isfinite(s) and s >= 0):
        raise InputError(f"s2 must be finite and >= 0, got {s2}")
    return {"s2": s, "ess_fraction": math.exp(-s), "imh_acceptance": math.erfc(math.sqrt(s) / 2.0),
            "log_z_err_n1": math.sqrt(math.expm1(s))}


def harmonic_reweighting_ess_fraction(T: float, T_h: float, n_modes: int) -> float:
    """Kish ESS / n (n -> infinity) of reweighting a harmonic solid from T_h to T with the identity map.

    The potential energy of ``n_modes`` classical harmonic modes at T_h is Gamma(k = n_modes / 2, scale T_h)
    distributed, and log w = -(1/T - 1/T_h) U, so with a = T_h / T - 1

        ESS / n = E[w]^2 / E[w^2] = (1 + 2a)^k / (1 + a)^(2k).

    For a configuration of N particles in d dimensions with the translation removed, n_modes = d (N - 1).
    Anything else that fluctuates (the energy of the basin the configuration vibrates in, anharmonicity)
    only lowers the ESS further when it is independent of the vibrations: the value is the ceiling of
    temperature reweighting between pools, and a map that contracts every vibration by sqrt(T / T_h) about
    its basin's minimum would remove exactly this factor.

    Args:
        T, T_h: target and pool temperatures (epsilon / k_B), both > 0.
        n_modes: number of harmonic modes, >= 1.
    """
    if not (math.isfinite(T) and math.isfinite(T_h) and T > 0 and T_h > 0):
        raise InputError(f"temperatures must be finite and positive, got T={T}, T_h={T_h}")
    if int(n_modes) != n_modes or n_modes < 1:
        raise InputError(f"n_modes must be a positive integer, got {n_modes}")
    a = T_h / T - 1.0
    k = 0.5 * n_modes
    if a <= -0.5:  # E[w^2] diverges: the pool is more than twice colder than the target
        return 0.0
    return math.exp(k * math.log1p(2.0 * a) - 2.0 * k * math.log1p(a))


@dataclass(frozen=True)
class WeightSummary:
    """Importance-weight diagnostics of one batch (see :func:`summarize`).

    Attributes:
        n: number of samples.
        ess: Kish ESS.
        ess_fraction: ESS / n.
        log_z: LSE(log w) - log n.
        log_z_err: its delta-method standard error.
        max_weight_fraction: largest normalised weight max w / sum w (close to 1: one sample dominates).
    """

    n: int
    ess: float
    ess_fraction: float
    log_z: float
    log_z_err: float
    max_weight_fraction: float


def summarize(log_w: Any) -> WeightSummary:
    """:class:`WeightSummary` of (n,) log-weights from samples x ~ q."""
    lw = _check_log_w(log_w)
    ess = kish_ess(lw)
    log_z, err = log_partition(lw)
    lse = logsumexp(lw)
    maxw = float(np.exp(lw.max() - lse)) if lse > -np.inf else math.nan
    return WeightSummary(n=int(lw.size), ess=ess, ess_fraction=ess / lw.size, log_z=log_z, log_z_err=err,
                         max_weight_fraction=maxw)
