"""Spatial coarse-graining of per-particle fields (GlassMLP / Boattini style).

``coarse_grain(values, positions, box, L)`` returns ``x_i^L = sum_j w_ij x_j / sum_j w_ij`` with
``w_ij = exp(-r_ij / L)`` over all particles j (including i) within ``r_cut`` (minimum image), or the
field itself for L = 0. Used for coarse-grained descriptors such as the potential energy (GlassBench's
EPOT), GlassMLP inputs and recursive Boattini coarse-graining.
"""

from __future__ import annotations

import numpy as np
from scipy.spatial import cKDTree

from glassgen.errors import InputError

__all__ = ["coarse_grain"]


def coarse_grain(values: np.ndarray, positions: np.ndarray, box: np.ndarray, L: float,
                 r_cut: float | None = None, mask: np.ndarray | None = None) -> np.ndarray:
    """Exponentially weighted spatial average of a per-particle field.

    Args:
        values: (N,) or (N, k) field.
        positions: (N, d) positions (wrapped or not); box: (d,) box lengths.
        L: coarse-graining length (sigma_AA units); 0 returns ``values`` unchanged.
        r_cut: neighbours beyond are ignored (default min(6 L, half the smallest box length)).
        mask: (N,) bool: only these particles j contribute (a species channel); every i gets a value,
            NaN where no masked particle lies within ``r_cut`` (nothing to average).

    Returns:
        array shaped like ``values``.
    """
    v = np.asarray(values, dtype=np.float64)
    if v.shape[0] != positions.shape[0]:
        raise InputError(f"{v.shape[0]} values for {positions.shape[0]} particles")
    if L < 0:
        raise InputError(f"coarse-graining length must be >= 0, got {L}")
    if L == 0:
        return v.copy()
    box = np.asarray(box, dtype=np.float64)
    rc = float(min(6.0 * L, 0.5 * box.min() - 1e-9)) if r_cut is None else float(r_cut)
    x = np.mod(np.asarray(positions, dtype=np.float64), box)
    x[x >= box] = 0.0
    tree = cKDTree(x, boxsize=box)
    src = np.arange(x.shape[0]) if mask is None else np.nonzero(mask)[0]
    other = tree if mask is None else cKDTree(x[src], boxsize=box)
    dm = tree.sparse_distance_matrix(other, rc, output_type="coo_matrix")
    i, jj, r = dm.row, dm.col, dm.data  # includes the self pairs (r = 0) of source particles
    j = src[jj]
    w = np.exp(-r / L)
    n = x.shape[0]
    den = np.bincount(i, weights=w, minlength=n)
    with np.errstate(invalid="ignore", divide="ignore"):
        if v.ndim == 1:
            return np.bincount(i, weights=w * v[j], minlength=n) / den
        out = np.empty_like(v)
        for c in range(v.shape[1]):
            out[:, c] = np.bincount(i, weights=w * v[j, c], minlength=n) / den
    return out
