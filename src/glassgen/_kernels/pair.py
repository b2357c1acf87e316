"""The one pair kernel: Lennard-Jones plus a polynomial cutoff correction, with optional soft core.

    u(r) = 4 eps [(sig/r)^12 - (sig/r)^6] + c0 + c1 r + c2 r^2 + c4 r^4     (r < r_c)
    w(r) = -u'(r) / r

Every cutoff scheme (cut, cut-and-shift, shifted-force, quartic smoothing) is a choice of
(c0, c1, c2, c4), see :mod:`glassgen.systems.model`. Below the soft-core radius r_s (if r_s > 0) the
potential continues linearly with the value and slope it has at r_s (finite energy for overlaps).
The force on particle i from j is ``-w(r) * (r_j - r_i)``; the pair virial is ``w(r) r^2``.
"""

import math

from numba import njit

__all__ = ["pair_uw", "pair_energy_array"]


@njit(inline="always", cache=True, fastmath=False, error_model="numpy")
def _exact_uw(r2, ab, sig2, eps4, c0, c1, c2, c4):
    s2 = sig2[ab] / r2
    s6 = s2 * s2 * s2
    e4 = eps4[ab]
    u = e4 * (s6 * s6 - s6) + c0[ab] + c2[ab] * r2 + c4[ab] * r2 * r2
    w = e4 * (12.0 * s6 * s6 - 6.0 * s6) / r2 - 2.0 * c2[ab] - 4.0 * c4[ab] * r2
    if c1[ab] != 0.0:
        r = math.sqrt(r2)
        u += c1[ab] * r
        w -= c1[ab] / r
    return u, w


@njit(inline="always", cache=True, fastmath=False, error_model="numpy")
def pair_uw(r2, ab, sig2, eps4, c0, c1, c2, c4, rs2):
    """Pair energy u and w = -u'(r)/r at squared distance ``r2`` (< r_c^2) for species pair ``ab``."""
    if r2 < rs2[ab]:
        rs = math.sqrt(rs2[ab])
        us, ws = _exact_uw(rs2[ab], ab, sig2, eps4, c0, c1, c2, c4)
        dus = -ws * rs  # u'(r_s)
        r = math.sqrt(r2)
        u = us + dus * (r - rs)
        w = -dus / r if r > 1e-150 else 0.0
        return u, w
    return _exact_uw(r2, ab, sig2, eps4, c0, c1, c2, c4)


@njit(cache=True, error_model="numpy")
def pair_energy_array(r, ab, sig2, eps4, rc2, c0, c1, c2, c4, rs2):
    """Vectorised helper: u(r) and u'(r) for an array of distances of one species pair (0 beyond r_c)."""
    n = r.shape[0]
    u = r * 0.0
    du = r * 0.0
    for k in range(n):
        r2 = r[k] * r[k]
        if r2 < rc2[ab]:
            uu, ww = pair_uw(r2, ab, sig2, eps4, c0, c1, c2, c4, rs2)
            u[k] = uu
            du[k] = -ww * r[k]
    return u, du
