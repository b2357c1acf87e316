"""Structure kernels: all-pairs distance histograms by species pair (for g(r)), threaded.

The histogram is O(N^2) with the minimum-image convention, which the Python wrapper
(:class:`glassgen.observables.rdf.RDF`) only calls with ``r_max <= min(L)/2``, so that each pair
is seen through one image at most. Work is split into ``hbuf.shape[0]`` interleaved chunks of
``i`` (``i = t, t + nth, ...``) so that the triangular loop ``j > i`` is balanced between threads;
each chunk fills its own histogram buffer and the buffers are summed. Small systems use the
serial kernel: starting threads costs more than it saves there (and much more on a loaded machine).
"""

import math

import numpy as np
from numba import njit, prange

__all__ = ["pair_histogram", "pair_histogram_serial"]


@njit(cache=True, error_model="numpy")
def _histogram_rows(pos, species, box, r_min, r_max, bins, t, nth, h):
    """Add the pairs (i, j > i) of the rows i = t, t + nth, ... to ``h`` (nsp, nsp, bins)."""
    n, d = pos.shape
    rmin2 = r_min * r_min
    rmax2 = r_max * r_max
    inv_dr = bins / (r_max - r_min)
    for i in range(t, n, nth):
        a = species[i]
        for j in range(i + 1, n):
            r2 = 0.0
            for k in range(d):
                dx = pos[j, k] - pos[i, k]
                dx -= box[k] * math.floor(dx / box[k] + 0.5)
                r2 += dx * dx
            if r2 >= rmax2 or r2 < rmin2:
                continue
            m = int((math.sqrt(r2) - r_min) * inv_dr)
            if m >= bins:
                m = bins - 1
            b = species[j]
            h[a, b, m] += 1
            h[b, a, m] += 1


@njit(parallel=True, cache=True, error_model="numpy")
def pair_histogram(pos, species, box, nsp, r_min, r_max, bins, hbuf):
    """Histogram of minimum-image pair distances, by ordered species pair (threaded).

    Args:
        pos: (N, d) float64 positions (wrapped or unwrapped; minimum image is applied).
        species: (N,) int32 species indices in ``[0, nsp)``.
        box: (d,) float64 orthorhombic box lengths.
        nsp: number of species.
        r_min, r_max: histogram range, uniform bins of width ``(r_max - r_min) / bins``.
        bins: number of bins.
        hbuf: (nth, nsp, nsp, bins) int64 scratch, one buffer per chunk (overwritten).

    Returns:
        (nsp, nsp, bins) int64 counts of ORDERED pairs (i, j), i != j, with species (a_i, a_j):
        every unordered pair adds 1 to ``[a_i, a_j]`` and 1 to ``[a_j, a_i]`` (so 2 to ``[a, a]``).
    """
    nth = hbuf.shape[0]
    for t in prange(nth):
        hbuf[t, :, :, :] = 0
        _histogram_rows(pos, species, box, r_min, r_max, bins, t, nth, hbuf[t])
    out = np.zeros((nsp, nsp, bins), dtype=np.int64)
    for t in range(nth):
        out += hbuf[t]
    return out


@njit(cache=True, error_model="numpy")
def pair_histogram_serial(pos, species, box, nsp, r_min, r_max, bins):
    """Single-threaded :func:`pair_histogram` (no thread start-up cost: for small N)."""
    out = np.zeros((nsp, nsp, bins), dtype=np.int64)
    _histogram_rows(pos, species, box, r_min, r_max, bins, 0, 1, out)
    return out
