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

Hot loops index arrays with ``U(i)`` (unsigned): Numba then drops its negative-index wrap-around
code, which was measured to take 20-40% of the neighbour and force loops. Arithmetic is done on the
signed values (unsigned + signed is a float in Numba) and only the final index is cast.

Capacity is fixed per particle (``nbr.shape[1]``); the builders return the largest count needed, and
the caller re-allocates when it exceeds the capacity: nothing is ever truncated silently.
"""

import math

import numpy as np
from numba import njit, prange

__all__ = ["cell_sort", "half_stencil", "cell_neighbours", "build_half_list_cells", "build_half_list_brute",
           "image_shifts", "mc_image_shifts", "gather_frame", "scatter_rows", "scatter_sum", "U"]

#: index cast for the hot loops (see the module docstring)
U = np.uint64


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


def mc_image_shifts(box: np.ndarray, rc_max: float) -> np.ndarray:
    """Image shifts for the all-pairs (image) mode of the MC kernels, for cutoffs up to ``rc_max``.

    A single zero row, (1, d), when ``rc_max <= min(L) / 2``: every pair then has at most one image within
    the cutoff and no particle sees its own image, so the kernels take the minimum image (one distance per
    pair instead of (2m + 1)^d). Otherwise :func:`image_shifts` with m = ceil(rc_max / min(L)), own images
    included. The kernels recognise the first case by ``shifts.shape[0] == 1``.
    """
    box = np.asarray(box, dtype=np.float64)
    if 2.0 * float(rc_max) <= float(box.min()):
        return np.zeros((1, box.shape[0]))
    return image_shifts(box, int(math.ceil(float(rc_max) / float(box.min()))))


@njit(cache=True, error_model="numpy")
def cell_sort(pos, box, ncell):
    """Counting sort of wrapped positions into a grid of cells.

    Args:
        pos: (N, d) positions in [0, L) (wrapped).
        box: (d,) box lengths.
        ncell: (d,) int64 cells per axis.

    Returns:
        cell_start (ncell_total + 1,) int64, cell_parts (N,) int64 particle indices ordered by cell,
        cell_of (N,) int64 flat cell index (first axis fastest) of each particle.
    """
    n, d = pos.shape
    ntot = 1
    for k in range(d):
        ntot *= ncell[k]
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
    return counts, parts, flat


@njit(inline="always", cache=True)
def _keep(i, j, code, c0):
    if i == j:
        return code > c0
    return (i < j) != (((i + j) & 1) == 1)


def half_stencil(cell: np.ndarray, rl: float, sub: int) -> np.ndarray:
    """Forward half of the cell stencil for cells of edge ``cell`` >= rl / sub, as strips along axis 0.

    The stencil is the set of offsets o in [-sub, sub]^d that are lexicographically positive (last
    axis compared first) and whose cells can hold a point within ``rl`` of a point of the central cell
    (closest approach sum_k ((|o_k| - 1)^+ cell_k)^2 < rl^2; the corners of the cube are dropped, as in
    LAMMPS' bin stencils), plus the own cell. Offsets that differ only in o_0 are runs of consecutive
    cells, i.e. consecutive particles in cell order, so they are stored as one strip.

    Args:
        cell: (d,) cell edge lengths.
        rl: list cutoff (largest over species pairs).
        sub: cells per cutoff length (1: 3^d stencil, 2: 5^d stencil, ...).

    Returns:
        (nstrip, d + 1) int64 rows ``(o0_lo, o0_hi, o_1, ..., o_{d-1})`` (o_0 from o0_lo to o0_hi
        inclusive). Row 0 is the strip that starts at the own cell (o0_lo = 0, o_k = 0).
    """
    d = cell.shape[0]
    rows = []
    for flat in range((2 * sub + 1) ** (d - 1)):
        rest = [(flat // (2 * sub + 1) ** k) % (2 * sub + 1) - sub for k in range(d - 1)]
        positive = next((o > 0 for o in reversed(rest) if o != 0), None)  # None: all zero
        if positive is False:
            continue
        gap2 = sum((max(abs(o) - 1, 0) * float(cell[k + 1])) ** 2 for k, o in enumerate(rest))
        reach = [o0 for o0 in range(-sub, sub + 1) if gap2 + (max(abs(o0) - 1, 0) * float(cell[0])) ** 2 < rl * rl]
        if not reach:
            continue
        lo = 0 if positive is None else min(reach)
        rows.append([lo, max(reach), *rest])
    rows.sort(key=lambda r: any(r[2:]))  # the own strip first
    return np.array(rows, dtype=np.int64).reshape(-1, d + 1)


@njit(cache=True, error_model="numpy")
def cell_neighbours(ncell, strips):
    """Segment table of a periodic cell grid: for cell c, the runs of consecutive cells (in flat order)
    that its forward stencil covers, each seen through one periodic image.

    A strip that crosses the periodic boundary along axis 0 splits into two segments; unused
    segments are empty.

    Args:
        ncell: (d,) int64 cells per axis (>= 2 max|offset| + 1); strips: from :func:`half_stencil`.

    Returns:
        (ncell_total, 2 nstrip, 3) int64 rows ``(first cell, end cell (exclusive), image code)`` (image
        codes for m = 1, see the module docstring). Segment 0 starts at the own cell.
    """
    d = ncell.shape[0]
    ntot = 1
    for k in range(d):
        ntot *= ncell[k]
    nstrip = strips.shape[0]
    seg = np.zeros((ntot, 2 * nstrip, 3), dtype=np.int64)
    n0 = ncell[0]
    for c in range(ntot):
        x0 = c % n0
        for st in range(nstrip):
            # cell row (axes 1..d-1) and its image code
            rem = c // n0
            base = 0
            mul = n0
            code = 0
            w = 3
            for k in range(1, d):
                cc = rem % ncell[k] + strips[st, k + 1]
                rem //= ncell[k]
                img = 0
                if cc < 0:
                    cc += ncell[k]
                    img = -1
                elif cc >= ncell[k]:
                    cc -= ncell[k]
                    img = 1
                base += cc * mul
                mul *= ncell[k]
                code += (img + 1) * w
                w *= 3
            q = 2 * st
            for o0 in range(strips[st, 0], strips[st, 1] + 1):
                xx = x0 + o0
                img = 0
                if xx < 0:
                    xx += n0
                    img = -1
                elif xx >= n0:
                    xx -= n0
                    img = 1
                cd = code + img + 1
                if seg[c, q, 1] > seg[c, q, 0] and cd != seg[c, q, 2]:
                    q += 1  # the strip wrapped: a second segment
                if seg[c, q, 1] == seg[c, q, 0]:
                    seg[c, q, 0] = base + xx
                    seg[c, q, 2] = cd
                seg[c, q, 1] = base + xx + 1
    return seg


@njit(cache=True, boundscheck=False, error_model="numpy")
def _cell_row(ps, pos_sorted, spec_sorted, nsp, rl2, shifts, segments, cell_start, cell_of, nbr,
              nbr_code):
    """Half-list row of the particle in sorted slot ``ps`` (rows are in sorted order): later slots of its
    own cell, plus every particle of the forward stencil cells. Returns the count (may exceed cap)."""
    d = pos_sorted.shape[1]
    cap = nbr.shape[1]
    last = cap - 1
    si = spec_sorted[ps] * nsp
    xi0 = pos_sorted[ps, 0]
    xi1 = pos_sorted[ps, 1]
    xi2 = pos_sorted[ps, 2] if d == 3 else 0.0
    cell = cell_of[ps]
    row = U(ps)
    c = 0
    for sg in range(segments.shape[1]):
        code = segments[cell, sg, 2]
        sx0 = shifts[code, 0] - xi0
        sx1 = shifts[code, 1] - xi1
        sx2 = (shifts[code, 2] - xi2) if d == 3 else 0.0
        lo = ps + 1 if sg == 0 else cell_start[segments[cell, sg, 0]]
        hi = cell_start[segments[cell, sg, 1]]
        for p in range(lo, hi):
            pu = U(p)
            dx0 = pos_sorted[pu, 0] + sx0
            dx1 = pos_sorted[pu, 1] + sx1
            dx2 = (pos_sorted[pu, 2] + sx2) if d == 3 else 0.0
            r2 = dx0 * dx0 + dx1 * dx1 + dx2 * dx2
            # branch-free append: always write, advance only when inside (past cap: overwrite the last
            # slot; the caller re-allocates and rebuilds)
            q = U(min(c, last))
            nbr[row, q] = p
            nbr_code[row, q] = code
            c += 1 if r2 < rl2[U(si + spec_sorted[pu])] else 0
    return c


@njit(parallel=True, cache=True, error_model="numpy")
def build_half_list_cells(pos_sorted, spec_sorted, nsp, rl2, shifts, segments, cell_start, cell_of,
                          nbr, nbr_code, count):
    """Half neighbour list from a cell grid, for particles already sorted by cell.

    Each pair is found once: inside a cell from the earlier to the later sorted slot, between cells
    from the cell that has the other in its forward half-stencil.

    Args:
        pos_sorted: (N, d) wrapped positions in cell order (see :func:`cell_sort`).
        spec_sorted: (N,) int32 species in the same order.
        rl2: (nsp*nsp,) squared list cutoffs (r_c + skin)^2.
        shifts: (3^d, d) image shifts for m = 1 (see :func:`image_shifts`).
        segments: from :func:`cell_neighbours` (segment 0 starts at the own cell).
        cell_start: (ncell_total + 1,) from :func:`cell_sort`; cell_of: (N,) flat cell index in cell
            order.
        nbr, nbr_code: (N, cap) int32 / int16 outputs (sorted indices); count: (N,) int32 output.

    Returns:
        The largest neighbour count found (> cap means the list overflowed and must be rebuilt).
    """
    n = pos_sorted.shape[0]
    cap = nbr.shape[1]
    need = np.zeros(n, dtype=np.int64)
    for ps in prange(n):
        c = _cell_row(ps, pos_sorted, spec_sorted, nsp, rl2, shifts, segments, cell_start, cell_of,
                      nbr, nbr_code)
        count[ps] = min(c, cap)
        need[ps] = c
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
    """Positions in the list's (cell-sorted) frame and the two largest displacements since the build.

    ``out[s] = pos[perm[s]] - image[s] * box`` for sorted slot s.

    Returns:
        (a, b): the largest and second largest |out_s - ref_s|^2 (squared distances). A pair's
        separation has changed by at most sqrt(a) + sqrt(b), so the list stays exact while that is
        below the skin (NaN positions give NaN).
    """
    n, d = out.shape
    m1 = 0.0
    m2 = 0.0
    for s in range(n):
        i = perm[s]
        acc = 0.0
        for k in range(d):
            v = pos[i, k] - image[s, k] * box[k]
            out[s, k] = v
            dv = v - ref[s, k]
            acc += dv * dv
        if acc > m2:
            if acc > m1:
                m2 = m1
                m1 = acc
            else:
                m2 = acc
        elif acc != acc:
            m1 = acc
    return m1, m2


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


@njit(cache=True, error_model="numpy")
def scatter_sum(bufs, perm, dst):
    """``dst[perm[s]] = sum_t bufs[t, s]`` for (T, N, d) per-thread buffers (back from the sorted frame)."""
    nb, n, d = bufs.shape
    for s in range(n):
        i = perm[s]
        for k in range(d):
            acc = 0.0
            for t in range(nb):
                acc += bufs[t, s, k]
            dst[i, k] = acc
