"""Self-overlap Q between configurations and its decorrelation time along a Markov chain.

The self-overlap of two configurations x0 and x of the same N labelled particles is

    Q(x0, x) = (1/N) sum_i theta(a - |x_i - x0_i|),   |.| with the minimum image,

with a = 0.3 sigma_AA (smaller than the cage size, larger than vibrations): Q = 1 for the same
configuration and Q ~ Q_inf for independent ones. Along a chain the two-time function
Q(t) = < Q(x(t0), x(t0 + t)) >_{t0, chains} decays from 1 to Q_inf; the normalised function

    phi_Q(t) = (Q(t) - Q_inf) / (1 - Q_inf)

plays the role of an autocorrelation function, and tau_Q = 1 + 2 sum_{t=1}^{M} phi_Q(t) is summed with
Sokal's automatic window (smallest M with M >= c tau_Q(M)), the convention of
:func:`glassgen.observables.thermo.integrated_autocorrelation_time` (samples per independent sample;
coth(1 / (2 tau)) ~ 2 tau for phi = exp(-t / tau)).

Baseline: for independent configurations of a translation-invariant ensemble the marginal density of
every particle is uniform in the box, so particle i of x lies within a of particle i of x0 with
probability Q_inf = v_d(a) / V exactly (v_3 = 4 pi a^3 / 3, v_2 = pi a^2, a < L/2), i.e. rho v_d(a) / N.
(rho v_d(a) is the baseline of the *collective* overlap, which counts any particle near x0_i; it does
not apply to the self overlap.) The exact value is used rather than an estimate from distant origins,
which would add noise to every phi_Q(t).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from glassgen.errors import InputError

__all__ = ["self_overlap", "mean_displacement", "overlap_baseline", "OverlapCorrelation", "overlap_correlation"]

#: default overlap radius a, sigma_AA units
OVERLAP_RADIUS = 0.3


def _box(box: np.ndarray, d: int) -> np.ndarray:
    b = np.asarray(box, dtype=np.float64)
    if b.shape != (d,) or np.any(~np.isfinite(b)) or np.any(b <= 0):
        raise InputError(f"box must be ({d},) positive lengths, got {np.asarray(box).tolist()}")
    return b


def self_overlap(x0: np.ndarray, x: np.ndarray, box: np.ndarray, a: float = OVERLAP_RADIUS,
                 remove_drift: bool = True) -> np.ndarray:
    """Self-overlap Q = (1/N) sum_i theta(a - |x_i - x0_i - D|) (minimum image), batched.

    D is the mean displacement of all particles (the centre-of-mass drift for equal masses), removed by
    default: Monte Carlo does not conserve momentum, so the centre of mass random-walks with 1/N of the
    bare single-particle mobility, which at N ~ 50 decorrelates Q by itself (measured: KA2D N = 43 at
    T = 0.3, a mean-square drift of 0.25 in 12 000 Metropolis sweeps). MD conserves momentum (D ~ 0).
    D is :func:`mean_displacement`: robust to wrapped inputs, to drifts of any size and to the few particles of
    a relabelled frame (swap MC in canonical order) that jump across the box.

    Args:
        x0: (..., N, d) reference positions (any periodic image), sigma_AA units.
        x: (..., N, d) positions, broadcastable against ``x0``.
        box: (d,) box lengths.
        a: overlap radius (> 0), sigma_AA units.
        remove_drift: subtract D (default); False gives the laboratory-frame overlap.

    Returns:
        float64 array of the broadcast batch shape (...) (a 0-d array for single configurations).
    """
    p0 = np.asarray(x0, dtype=np.float64)
    p = np.asarray(x, dtype=np.float64)
    if p0.ndim < 2 or p.ndim < 2 or p0.shape[-2:] != p.shape[-2:]:
        raise InputError(f"x0 and x must have shape (..., N, d) with the same N, d; got {p0.shape}, {p.shape}")
    if not (math.isfinite(a) and a > 0):
        raise InputError(f"overlap radius must be positive, got a={a}")
    b = _box(box, p.shape[-1])
    dr = p - p0
    if remove_drift:
        dr = dr - mean_displacement(dr, b)
    dr -= b * np.round(dr / b)
    r2 = np.einsum("...i,...i->...", dr, dr)
    return np.mean(r2 < a * a, axis=-1, dtype=np.float64)


def mean_displacement(dr: np.ndarray, box: np.ndarray) -> np.ndarray:
    """Collective drift of displacements on the torus: (..., 1, d) from (..., N, d).

    The circular mean per axis (defined for any image of each displacement), then refined to the arithmetic
    mean of the minimum-imaged remainders of the particles within L/4 of it: the centre-of-mass drift exactly
    when every particle's own displacement is below L/4, and insensitive to a few particles that jump far (a
    relabelled frame) or to a drift of any size.
    """
    b = np.asarray(box, dtype=np.float64)
    ang = 2.0 * np.pi * dr / b
    drift = b / (2.0 * np.pi) * np.arctan2(np.sin(ang).mean(axis=-2, keepdims=True),
                                           np.cos(ang).mean(axis=-2, keepdims=True))
    r = dr - drift
    r -= b * np.round(r / b)
    near = np.all(np.abs(r) < 0.25 * b, axis=-1, keepdims=True)
    count = near.sum(axis=-2, keepdims=True)
    corr = np.where(count > 0, (r * near).sum(axis=-2, keepdims=True) / np.maximum(count, 1), 0.0)
    return drift + corr


def overlap_baseline(box: np.ndarray, a: float = OVERLAP_RADIUS) -> float:
    """Q_inf = v_d(a) / V: mean self-overlap of independent configurations (see module docstring).

    Args:
        box: (d,) box lengths (d = 2 or 3); a must be < min(L) / 2.
        a: overlap radius, sigma_AA units.
    """
    b = np.asarray(box, dtype=np.float64)
    if b.ndim != 1 or b.size not in (2, 3):
        raise InputError(f"box must have shape (2,) or (3,), got {b.shape}")
    b = _box(b, b.size)
    if not (0 < a < 0.5 * float(b.min())):
        raise InputError(f"overlap radius a={a} must be in (0, L/2) for the box {b.tolist()}")
    vol = 4.0 / 3.0 * math.pi * a**3 if b.size == 3 else math.pi * a**2
    return vol / float(np.prod(b))


@dataclass(frozen=True)
class OverlapCorrelation:
    """Result of :func:`overlap_correlation` (lags in units of the frame spacing).

    Attributes:
        q: (M + 1,) Q(t), t = 0 .. M, averaged over origins and chains (q[0] = 1).
        phi: (M + 1,) normalised (Q(t) - Q_inf) / (1 - Q_inf).
        tau: 1 + 2 sum_{t=1}^{M} phi(t) at the Sokal window M (frames per independent sample).
        window: M.
        converged: False if the window criterion was not met before the largest lag (tau is then a lower
            bound; run longer).
        baseline: Q_inf.
    """

    q: np.ndarray
    phi: np.ndarray
    tau: float
    window: int
    converged: bool
    baseline: float


def overlap_correlation(frames: np.ndarray, box: np.ndarray, a: float = OVERLAP_RADIUS, c: float = 5.0,
                        max_lag: int | None = None, chunk_elements: int = 4_000_000,
                        remove_drift: bool = True) -> OverlapCorrelation:
    """Decay of the self-overlap along chains and its integrated time tau_Q (see module docstring).

    Lags are computed one at a time and the loop stops at the Sokal window, so the cost is
    O(n_frames * M * n_chains * N).

    Args:
        frames: (n_frames, n_chains, N, d) or (n_frames, N, d) positions along the chains, equally spaced.
        box: (d,) box lengths.
        a: overlap radius, sigma_AA units.
        c: Sokal window constant.
        max_lag: largest lag considered (default n_frames // 2).
        chunk_elements: origins are processed in chunks of about this many coordinates (memory bound).
        remove_drift: measure displacements relative to the mean displacement (see :func:`self_overlap`).

    Returns:
        :class:`OverlapCorrelation`.
    """
    f = np.asarray(frames, dtype=np.float64)
    if f.ndim == 3:
        f = f[:, None]
    if f.ndim != 4:
        raise InputError(f"frames must have shape (n_frames, n_chains, N, d), got {np.asarray(frames).shape}")
    n_frames = f.shape[0]
    if n_frames < 3:
        raise InputError(f"need at least 3 frames for an overlap correlation, got {n_frames}")
    b = _box(box, f.shape[-1])
    q_inf = overlap_baseline(b, a)
    m_max = n_frames // 2 if max_lag is None else min(int(max_lag), n_frames - 1)
    if m_max < 1:
        raise InputError(f"max_lag must be >= 1, got {max_lag}")
    per_origin = int(np.prod(f.shape[1:]))
    chunk = max(1, chunk_elements // max(per_origin, 1))
    q = [1.0]
    tau, window, converged = 1.0, 0, False
    for t in range(1, m_max + 1):
        total = 0.0
        n0 = n_frames - t
        for s in range(0, n0, chunk):
            e = min(s + chunk, n0)
            total += float(self_overlap(f[s:e], f[s + t:e + t], b, a, remove_drift).sum())
        q.append(total / (n0 * f.shape[1]))
        tau += 2.0 * (q[-1] - q_inf) / (1.0 - q_inf)
        window = t
        if t >= c * tau:
            converged = True
            break
    qa = np.asarray(q, dtype=np.float64)
    return OverlapCorrelation(q=qa, phi=(qa - q_inf) / (1.0 - q_inf), tau=float(tau), window=window,
                              converged=converged, baseline=q_inf)
