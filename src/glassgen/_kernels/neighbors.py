"""Cell lists and half Verlet neighbour lists with explicit periodic-image shifts.

A neighbour entry is ``(j, code)``: particle j seen through the periodic image ``shifts[code]``
(a (d,) vector n*L, n integer), so ``r_ij = x_j + shifts[code] - x_i``. Storing the image makes the
list valid between rebuilds for unwrapped motion, and handles boxes smaller than twice the cutoff
(several images of the same j, and a particle's own images) without the minimum-image convention.

Image codes: with images n_k in [-m, m] per axis, ``code = sum_k (n_k + m) (2m+1)^k``; the central
code is ``c0 = sum_k m (2m+1)^k`` and ``code(-n) = 2 c0 - code(n)``.

Half list rules. Cell lists: a half stencil (see :func:`build_half_list_cells`). Brute force (small
boxes, balanced between threads): the ordered pair (i, j) with i != j is kept when
``(i < j) != ((i + j) odd)``; a self-image pair (i, i, n != 0) is kept when ``code > c0``.
Each unordered pair (with each image) then appears exactly once.

Capacity is fixed per particle (``nbr.shape[1]``); the builders return the largest count needed, and
the caller re-allocates when it exceeds the capacity: nothing is ever truncated silently.
"""

import numpy as np
from numba import njit, prange

__all__ = ["cell_sort", "build_half_list_cells", "build_half_list_brute", "image_shifts",
           "gather_frame", "scatter_rows"]


def image_shifts(box: np.ndarray, m: int) -> np.ndarray:
    """(ncode, d) table of image shift vectors n*L for n in [-m, m]^d, in code order."""
    d = box.shape[0]
    w = 2 * m + 1
    ncode = w**d
    out = np.zeros((ncode, d))
    for code in range(ncode):
        c = code
        for k in range(d):
            out[code, k] = ((c % w) - m) * box[k]
            c //= w
    return out


@njit(cache=True, error_model="numpy")
def cell_sort(pos, box, ncell):
    """Counting sort of wrapped positions into a grid of cells.

    Args:
        pos: (N, d) positions in [0, L) (wrapped).
        box: (d,) box lengths.
        ncell: (d,) int64 cells per axis.

    Returns:
        cell_start (ncell_total + 1,) int64, cell_parts (N,) int64 particle indices ordered by cell,
        cell_coord (N, d) int64 cell coordinates of each particle.
    """
    n, d = pos.shape
    ntot = 1
    for k in range(d):
        ntot *= ncell[k]
    coord = np.empty((n, d), dtype=np.int64)
    flat = np.empty(n, dtype=np.int64)
    counts = np.zeros(ntot + 1, dtype=np.int64)
    for i in range(n):
        f = 0
        mul = 1
        for k in range(d):
            c = int(pos[i, k] / box[k] * ncell[k])
            if c >= ncell[k]:
                c = ncell[k] - 1
            if c < 0:
                c = 0
            coord[i, k] = c
            f += c * mul
            mul *= ncell[k]
        flat[i] = f
        counts[f + 1] += 1
    for c in range(ntot):
        counts[c + 1] += counts[c]
    fill = counts[:-1].copy()
    parts = np.empty(n, dtype=np.int64)
    for i in range(n):
        parts[fill[flat[i]]] = i
        fill[flat[i]] += 1
    return counts, parts, coord


@njit(inline="always", cache=True)
def _keep(i, j, code, c0):
    if i == j:
        return code > c0
    return (i < j) != (((i + j) & 1) == 1)


@njit(cache=True, boundscheck=False, error_model="numpy")
def _cell_row(ps, pos_sorted, spec_sorted, nsp, rl2, shifts, ncell, cell_start, cell_parts, cell_coord,
              nbr, nbr_code):
    """Half-list row of the particle in sorted slot ``ps``: later slots of its own cell, plus every
    particle of the 13 (3D) / 4 (2D) forward cells. Returns the count (may exceed cap)."""
    d = pos_sorted.shape[1]
    cap = nbr.shape[1]
    i = cell_parts[ps]
    si = spec_sorted[ps] * nsp
    xi0 = pos_sorted[ps, 0]
    xi1 = pos_sorted[ps, 1]
    xi2 = pos_sorted[ps, 2] if d == 3 else 0.0
    noff = 14 if d == 3 else 5  # own cell + forward half of the stencil
    c = 0
    for off in range(noff):
        # forward offsets: the lexicographically positive half of {-1,0,1}^d (last axis slowest)
        rem = off + (13 if d == 3 else 4)
        code = 0
        flat = 0
        mul = 1
        w = 1
        for k in range(d):
            ok = rem % 3 - 1
            rem //= 3
            cc = cell_coord[i, k] + ok
            img = 0
            if cc < 0:
                cc += ncell[k]
                img = -1
            elif cc >= ncell[k]:
                cc -= ncell[k]
                img = 1
            flat += cc * mul
            mul *= ncell[k]
            code += (img + 1) * w
            w *= 3
        sx0 = shifts[code, 0] - xi0
        sx1 = shifts[code, 1] - xi1
        sx2 = (shifts[code, 2] - xi2) if d == 3 else 0.0
        lo = ps + 1 if off == 0 else cell_start[flat]
        for p in range(lo, cell_start[flat + 1]):
            dx0 = pos_sorted[p, 0] + sx0
            dx1 = pos_sorted[p, 1] + sx1
            dx2 = (pos_sorted[p, 2] + sx2) if d == 3 else 0.0
            r2 = dx0 * dx0 + dx1 * dx1 + dx2 * dx2
            if r2 < rl2[si + spec_sorted[p]]:
                if c < cap:
                    nbr[i, c] = cell_parts[p]
                    nbr_code[i, c] = code
                c += 1
    return c


@njit(parallel=True, cache=True, error_model="numpy")
def build_half_list_cells(pos, species, nsp, rl2, shifts, ncell, cell_start, cell_parts, cell_coord,
                          nbr, nbr_code, count):
    """Half neighbour list from a cell grid (requires >= 3 cells per axis, cell edge >= list cutoff).

    Each pair is found once: inside a cell from the earlier to the later sorted slot, between cells
    from the cell that has the other in its forward half-stencil. Positions are first gathered in
    cell order so the scans read contiguous memory.

    Args:
        pos: (N, d) wrapped positions.
        rl2: (nsp*nsp,) squared list cutoffs (r_c + skin)^2.
        shifts: (3^d, d) image shifts for m = 1 (see :func:`image_shifts`).
        ncell, cell_start, cell_parts, cell_coord: from :func:`cell_sort`.
        nbr, nbr_code: (N, cap) int32 / int16 outputs; count: (N,) int32 output.

    Returns:
        The largest neighbour count found (> cap means the list overflowed and must be rebuilt).
    """
    n, d = pos.shape
    cap = nbr.shape[1]
    pos_sorted = np.empty((n, d))
    spec_sorted = np.empty(n, dtype=species.dtype)
    for p in range(n):
        j = cell_parts[p]
        spec_sorted[p] = species[j]
        for k in range(d):
            pos_sorted[p, k] = pos[j, k]
    need = np.zeros(n, dtype=np.int64)
    for ps in prange(n):
        c = _cell_row(ps, pos_sorted, spec_sorted, nsp, rl2, shifts, ncell, cell_start, cell_parts, cell_coord,
                      nbr, nbr_code)
        i = cell_parts[ps]
        count[i] = min(c, cap)
        need[i] = c
    return need.max() if n > 0 else 0


@njit(parallel=True, cache=True, error_model="numpy")
def build_half_list_brute(pos, species, nsp, rl2, shifts, m, nbr, nbr_code, count):
    """Half neighbour list by testing every pair and every image n in [-m, m]^d (small boxes).

    Same outputs and return value as :func:`build_half_list_cells`.
    """
    n, d = pos.shape
    cap = nbr.shape[1]
    ncode = shifts.shape[0]
    w = 2 * m + 1
    c0 = 0
    mul = 1
    for _ in range(d):
        c0 += m * mul
        mul *= w
    need = np.zeros(n, dtype=np.int64)
    for i in prange(n):
        si = species[i]
        c = 0
        for j in range(n):
            ab = si * nsp + species[j]
            for code in range(ncode):
                if not _keep(i, j, code, c0):
                    continue
                r2 = 0.0
                for k in range(d):
                    dx = pos[j, k] + shifts[code, k] - pos[i, k]
                    r2 += dx * dx
                if r2 < rl2[ab]:
                    if c < cap:
                        nbr[i, c] = j
                        nbr_code[i, c] = code
                    c += 1
        count[i] = min(c, cap)
        need[i] = c
    return need.max() if n > 0 else 0


@njit(cache=True, error_model="numpy")
def gather_frame(pos, perm, box, image, ref, out):
    """Positions in the list's (cell-sorted) frame and the largest squared displacement since the build.

    ``out[s] = pos[perm[s]] - image[s] * box`` for sorted slot s; returns max_s |out_s - ref_s|^2.
    """
    n, d = out.shape
    mx = 0.0
    for s in range(n):
        i = perm[s]
        acc = 0.0
        for k in range(d):
            v = pos[i, k] - image[s, k] * box[k]
            out[s, k] = v
            dv = v - ref[s, k]
            acc += dv * dv
        if acc > mx:
            mx = acc
    return mx


@njit(cache=True, error_model="numpy")
def scatter_rows(src, perm, dst):
    """``dst[perm[s]] = src[s]`` for (N, d) or (N,) arrays (back from the sorted frame)."""
    n = src.shape[0]
    if src.ndim == 1:
        for s in range(n):
            dst[perm[s]] = src[s]
    else:
        for s in range(n):
            for k in range(src.shape[1]):
                dst[perm[s], k] = src[s, k]
