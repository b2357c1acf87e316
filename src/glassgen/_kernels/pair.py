"""The one pair kernel: Lennard-Jones plus a polynomial cutoff correction, with optional soft core.

    u(r) = 4 eps [(sig/r)^12 - (sig/r)^6] + c0 + c1 r + c2 r^2 + c4 r^4     (r < r_c)
    w(r) = -u'(r) / r

Every cutoff scheme (cut, cut-and-shift, shifted-force, quartic smoothing) is a choice of
(c0, c1, c2, c4), see :mod:`glassgen.systems.model`. Below the soft-core radius r_s (if r_s > 0) the
potential continues linearly with the value and slope it has at r_s (finite energy for overlaps).
The force on particle i from j is ``-w(r) * (r_j - r_i)``; the pair virial is ``w(r) r^2``.

``variant`` is a compile-time switch: callers pass a literal int whose bits say which terms exist
(:data:`SOFT`, :data:`LINEAR`, :data:`POLY`; see :func:`kernel_variant`), so the loop for plain
cut-and-shifted LJ carries neither the soft-core branch, nor the square root of the c1 term, nor the
c2/c4 polynomial. A run-time branch there was measured to make the force loop 3-4x slower; dropping
the polynomial saves another ~10%.
"""

import math

import numpy as np
from numba import njit

__all__ = ["pair_uw", "pair_energy_array", "kernel_variant", "SOFT", "LINEAR", "POLY", "ALL_TERMS"]

#: variant bits: soft core present / c1 r term present / c2 r^2 + c4 r^4 terms present
SOFT, LINEAR, POLY = 1, 2, 4
ALL_TERMS = SOFT | LINEAR | POLY


def kernel_variant(c1: np.ndarray, c2: np.ndarray, c4: np.ndarray, rs2: np.ndarray) -> int:
    """The variant bits that a parameter set needs (see the module docstring)."""
    return ((SOFT if np.any(rs2 > 0.0) else 0) | (LINEAR if np.any(c1 != 0.0) else 0)
            | (POLY if np.any(c2 != 0.0) or np.any(c4 != 0.0) else 0))


@njit(inline="always", cache=True, fastmath=True, error_model="numpy")
def _exact_uw(r2, ab, sig2, eps4, c0, c1, c2, c4, variant):
    ir2 = 1.0 / r2
    s2 = sig2[ab] * ir2
    s6 = s2 * s2 * s2
    e4 = eps4[ab]
    u = e4 * (s6 * s6 - s6) + c0[ab]
    w = e4 * (12.0 * s6 * s6 - 6.0 * s6) * ir2
    if variant & 4:  # POLY
        u += c2[ab] * r2 + c4[ab] * r2 * r2
        w -= 2.0 * c2[ab] + 4.0 * c4[ab] * r2
    if variant & 2:  # LINEAR
        r = math.sqrt(r2)
        u += c1[ab] * r
        w -= c1[ab] / r
    return u, w, s2


@njit(inline="always", cache=True, fastmath=True, error_model="numpy")
def pair_uw(r2, ab, sig2, eps4, c0, c1, c2, c4, rs2, variant):
    """(u, w = -u'(r)/r, sig^2/r^2) at squared distance ``r2`` (< r_c^2) for species pair ``ab``."""
    if variant & 1:  # SOFT
        if r2 < rs2[ab]:
            rs = math.sqrt(rs2[ab])
            us, ws, _ = _exact_uw(rs2[ab], ab, sig2, eps4, c0, c1, c2, c4, variant)
            dus = -ws * rs  # u'(r_s)
            r = math.sqrt(r2)
            w = -dus / r if r > 1e-150 else 0.0
            return us + dus * (r - rs), w, sig2[ab] / r2
    return _exact_uw(r2, ab, sig2, eps4, c0, c1, c2, c4, variant)


@njit(cache=True, error_model="numpy")
def pair_energy_array(r, ab, sig2, eps4, rc2, c0, c1, c2, c4, rs2):
    """Vectorised helper: u(r) and u'(r) for an array of distances of one species pair (0 beyond r_c)."""
    n = r.shape[0]
    u = r * 0.0
    du = r * 0.0
    for k in range(n):
        r2 = r[k] * r[k]
        if r2 < rc2[ab]:
            uu, ww, _ = pair_uw(r2, ab, sig2, eps4, c0, c1, c2, c4, rs2, 7)
            u[k] = uu
            du[k] = -ww * r[k]
    return u, du
