"""The one pair kernel: Lennard-Jones plus a polynomial cutoff correction, with optional soft core.

    u(r) = 4 eps [(sig/r)^12 - (sig/r)^6] + c0 + c1 r + c2 r^2 + c4 r^4     (r < r_c)
    w(r) = -u'(r) / r

Every cutoff scheme (cut, cut-and-shift, shifted-force, quartic smoothing) is a choice of
(c0, c1, c2, c4), see :mod:`glassgen.systems.model`. Below the soft-core radius r_s (if r_s > 0) the
potential continues linearly with the value and slope it has at r_s (finite energy for overlaps).
The force on particle i from j is ``-w(r) * (r_j - r_i)``; the pair virial is ``w(r) r^2``.

``soft`` and ``linear`` are compile-time switches: callers pass them as literal booleans (see
:func:`kernel_flags`), so the exact-potential loop carries neither the soft-core branch nor the
square root of the c1 term. A run-time branch there was measured to make the force loop 3-4x slower.
"""

import math

import numpy as np
from numba import njit

__all__ = ["pair_uw", "pair_energy_array", "kernel_flags"]


def kernel_flags(c1: np.ndarray, rs2: np.ndarray) -> tuple[bool, bool]:
    """(soft, linear): whether any pair has a soft core, and whether any pair has a c1 r term."""
    return bool(np.any(rs2 > 0.0)), bool(np.any(c1 != 0.0))


@njit(inline="always", cache=True, fastmath=True, error_model="numpy")
def _exact_uw(r2, ab, sig2, eps4, c0, c1, c2, c4, linear):
    ir2 = 1.0 / r2
    s2 = sig2[ab] * ir2
    s6 = s2 * s2 * s2
    e4 = eps4[ab]
    u = e4 * (s6 * s6 - s6) + c0[ab] + c2[ab] * r2 + c4[ab] * r2 * r2
    w = e4 * (12.0 * s6 * s6 - 6.0 * s6) * ir2 - 2.0 * c2[ab] - 4.0 * c4[ab] * r2
    if linear:
        r = math.sqrt(r2)
        u += c1[ab] * r
        w -= c1[ab] / r
    return u, w, s2


@njit(inline="always", cache=True, fastmath=True, error_model="numpy")
def pair_uw(r2, ab, sig2, eps4, c0, c1, c2, c4, rs2, soft, linear):
    """(u, w = -u'(r)/r, sig^2/r^2) at squared distance ``r2`` (< r_c^2) for species pair ``ab``."""
    if soft:
        if r2 < rs2[ab]:
            rs = math.sqrt(rs2[ab])
            us, ws, _ = _exact_uw(rs2[ab], ab, sig2, eps4, c0, c1, c2, c4, linear)
            dus = -ws * rs  # u'(r_s)
            r = math.sqrt(r2)
            w = -dus / r if r > 1e-150 else 0.0
            return us + dus * (r - rs), w, sig2[ab] / r2
    return _exact_uw(r2, ab, sig2, eps4, c0, c1, c2, c4, linear)


@njit(cache=True, error_model="numpy")
def pair_energy_array(r, ab, sig2, eps4, rc2, c0, c1, c2, c4, rs2):
    """Vectorised helper: u(r) and u'(r) for an array of distances of one species pair (0 beyond r_c)."""
    n = r.shape[0]
    u = r * 0.0
    du = r * 0.0
    for k in range(n):
        r2 = r[k] * r[k]
        if r2 < rc2[ab]:
            uu, ww, _ = pair_uw(r2, ab, sig2, eps4, c0, c1, c2, c4, rs2, True, True)
            u[k] = uu
            du[k] = -ww * r[k]
    return u, du
