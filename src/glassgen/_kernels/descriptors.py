"""Numba kernels for structural descriptors: exact neighbour lists (CSR), channel sums, bond orders.

Arrays in, arrays out; no validation here (the Python face is :mod:`glassgen.predictors.descriptors`).

Neighbour list contract (:func:`csr_neighbours`): every ordered pair (i, j, image) with
``0 < |r_ij| < rc`` where ``r_ij = x_j + n L - x_i`` — all periodic images, so boxes smaller than
``2 rc`` (and a particle's own images) are handled exactly. The list is built in two passes (count, then
fill), so it has exactly the size needed: nothing is ever truncated. Positions are padded to 3D by the
caller for 2D systems (z = 0, one cell along z, no image along z).

Two paths: cell lists (cells of edge >= rc, >= 3 cells per axis, minimum image: each pair seen once)
and brute force over image shifts ``n in [-m, m]^3`` (small boxes).
"""

import math

import numpy as np
from numba import njit

__all__ = ["csr_neighbours", "channel_sums", "real_ylm_table", "bond_qlm", "neighbour_average",
           "behler_angular", "radial_shells", "polygon_areas", "legendre_ql"]


@njit(cache=True)
def _cells(pos, box, ncell):
    n = pos.shape[0]
    nc = ncell[0] * ncell[1] * ncell[2]
    head = -np.ones(nc, np.int64)
    nxt = -np.ones(n, np.int64)
    cell = np.empty((n, 3), np.int64)
    for i in range(n):
        for k in range(3):
            x = pos[i, k] - box[k] * math.floor(pos[i, k] / box[k])
            c = int(x / box[k] * ncell[k])
            if c >= ncell[k]:
                c = ncell[k] - 1
            cell[i, k] = c
        flat = cell[i, 0] + ncell[0] * (cell[i, 1] + ncell[1] * cell[i, 2])
        nxt[i] = head[flat]
        head[flat] = i
    return head, nxt, cell


@njit(cache=True)
def _pass_cells(pos, box, rc2, ncell, head, nxt, cell, fill, start, nbr, dr):
    n = pos.shape[0]
    counts = np.zeros(n, np.int64)
    lo = np.empty(3, np.int64)
    hi = np.empty(3, np.int64)
    for k in range(3):
        lo[k] = -1 if ncell[k] >= 3 else 0
        hi[k] = 1 if ncell[k] >= 3 else 0
    for i in range(n):
        p = start[i] if fill else 0
        for a in range(lo[0], hi[0] + 1):
            cx = (cell[i, 0] + a) % ncell[0]
            for b in range(lo[1], hi[1] + 1):
                cy = (cell[i, 1] + b) % ncell[1]
                for c in range(lo[2], hi[2] + 1):
                    cz = (cell[i, 2] + c) % ncell[2]
                    j = head[cx + ncell[0] * (cy + ncell[1] * cz)]
                    while j >= 0:
                        if j != i:
                            d0 = pos[j, 0] - pos[i, 0]
                            d0 -= box[0] * np.rint(d0 / box[0])
                            d1 = pos[j, 1] - pos[i, 1]
                            d1 -= box[1] * np.rint(d1 / box[1])
                            d2 = pos[j, 2] - pos[i, 2]
                            d2 -= box[2] * np.rint(d2 / box[2])
                            r2 = d0 * d0 + d1 * d1 + d2 * d2
                            if r2 < rc2:
                                if fill:
                                    nbr[p] = j
                                    dr[p, 0] = d0
                                    dr[p, 1] = d1
                                    dr[p, 2] = d2
                                    p += 1
                                else:
                                    counts[i] += 1
                        j = nxt[j]
    return counts


@njit(cache=True)
def _pass_brute(pos, box, rc2, m, fill, start, nbr, dr):
    n = pos.shape[0]
    counts = np.zeros(n, np.int64)
    for i in range(n):
        p = start[i] if fill else 0
        for j in range(n):
            e0 = pos[j, 0] - pos[i, 0]
            e0 -= box[0] * np.rint(e0 / box[0])
            e1 = pos[j, 1] - pos[i, 1]
            e1 -= box[1] * np.rint(e1 / box[1])
            e2 = pos[j, 2] - pos[i, 2]
            e2 -= box[2] * np.rint(e2 / box[2])
            for a in range(-m[0], m[0] + 1):
                d0 = e0 + a * box[0]
                for b in range(-m[1], m[1] + 1):
                    d1 = e1 + b * box[1]
                    for c in range(-m[2], m[2] + 1):
                        if j == i and a == 0 and b == 0 and c == 0:
                            continue
                        d2 = e2 + c * box[2]
                        r2 = d0 * d0 + d1 * d1 + d2 * d2
                        if r2 < rc2:
                            if fill:
                                nbr[p] = j
                                dr[p, 0] = d0
                                dr[p, 1] = d1
                                dr[p, 2] = d2
                                p += 1
                            else:
                                counts[i] += 1
    return counts


@njit(cache=True)
def csr_neighbours(pos, box, rc, use_cells, ncell, m):
    """All ordered neighbour pairs within ``rc`` as a CSR list.

    Args:
        pos: (N, 3) float64 positions (2D padded with z = 0).
        box: (3,) float64 box lengths.
        rc: cutoff radius.
        use_cells: cell-list path (requires ncell >= 3 on every periodic axis, cell edge >= rc).
        ncell: (3,) int64 cells per axis (1 along a padded axis).
        m: (3,) int64 image range per axis for the brute-force path.

    Returns:
        start (N + 1,) int64, nbr (P,) int64 neighbour indices, dr (P, 3) float64 r_j - r_i (image applied).
    """
    n = pos.shape[0]
    rc2 = rc * rc
    start = np.zeros(n + 1, np.int64)
    nbr = np.empty(0, np.int64)
    dr = np.empty((0, 3))
    if use_cells:
        head, nxt, cell = _cells(pos, box, ncell)
        counts = _pass_cells(pos, box, rc2, ncell, head, nxt, cell, False, start, nbr, dr)
    else:
        counts = _pass_brute(pos, box, rc2, m, False, start, nbr, dr)
    for i in range(n):
        start[i + 1] = start[i] + counts[i]
    nbr = np.empty(start[n], np.int64)
    dr = np.empty((start[n], 3))
    if use_cells:
        _pass_cells(pos, box, rc2, ncell, head, nxt, cell, True, start, nbr, dr)
    else:
        _pass_brute(pos, box, rc2, m, True, start, nbr, dr)
    return start, nbr, dr


@njit(cache=True)
def channel_sums(start, nbr, w, species, nsp, values, self_weight):
    """Weighted sums per species channel: out[i, c, f] = sum_{j in N(i) (+ i)} w_ij [s_j == c] v_j[f].

    Channel ``nsp`` is all species. Args: w (P,) pair weights; values (N, F); self_weight: weight of
    j = i (1 for exp(-r/L) at r = 0, 0 to exclude). Returns (N, nsp + 1, F).
    """
    n = start.shape[0] - 1
    nf = values.shape[1]
    out = np.zeros((n, nsp + 1, nf))
    for i in range(n):
        if self_weight != 0.0:
            si = species[i]
            for f in range(nf):
                out[i, si, f] += self_weight * values[i, f]
                out[i, nsp, f] += self_weight * values[i, f]
        for p in range(start[i], start[i + 1]):
            wp = w[p]
            if wp == 0.0:
                continue
            j = nbr[p]
            sj = species[j]
            for f in range(nf):
                v = wp * values[j, f]
                out[i, sj, f] += v
                out[i, nsp, f] += v
    return out


@njit(cache=True)
def neighbour_average(start, nbr, w, x):
    """x'_i = (x_i + sum_j w_ij x_j) / (1 + sum_j w_ij) (self weight 1); x (N, F)."""
    n = start.shape[0] - 1
    nf = x.shape[1]
    out = np.empty_like(x)
    for i in range(n):
        den = 1.0
        for f in range(nf):
            out[i, f] = x[i, f]
        for p in range(start[i], start[i + 1]):
            j = nbr[p]
            den += w[p]
            for f in range(nf):
                out[i, f] += w[p] * x[j, f]
        for f in range(nf):
            out[i, f] /= den
    return out


@njit(cache=True)
def radial_shells(start, nbr, r, species, nsp, mus, width):
    """G[i, s, k] = sum_{j in N(i), s_j = s} exp(-(r_ij - mu_k)^2 / (2 width^2)); returns (N, nsp, K)."""
    n = start.shape[0] - 1
    nk = mus.shape[0]
    out = np.zeros((n, nsp, nk))
    inv = 1.0 / (2.0 * width * width)
    for i in range(n):
        for p in range(start[i], start[i + 1]):
            sj = species[nbr[p]]
            for k in range(nk):
                x = r[p] - mus[k]
                out[i, sj, k] += math.exp(-x * x * inv)
    return out


@njit(cache=True)
def real_ylm_table(lmax, x, y, z, norm, out):
    """Real spherical harmonics Y_lm of the unit vector (x, y, z) into out[(lmax + 1)^2], index l^2 + l + m.

    norm[l, m] = sqrt((2l + 1)/(4 pi) (l - m)!/(l + m)!); m > 0: sqrt(2) N P_l^m cos(m phi), m < 0:
    sqrt(2) N P_l^|m| sin(|m| phi), m = 0: N P_l^0 (Condon-Shortley phase included). sum_m Y_lm^2 = (2l + 1)/(4 pi).
    """
    ct = z
    st = math.sqrt(max(0.0, 1.0 - ct * ct))
    phi = math.atan2(y, x)
    plm = np.zeros((lmax + 1, lmax + 1))
    pmm = 1.0
    for mm in range(lmax + 1):
        if mm > 0:
            pmm = -pmm * (2 * mm - 1) * st
        plm[mm, mm] = pmm
        if mm + 1 <= lmax:
            plm[mm + 1, mm] = ct * (2 * mm + 1) * pmm
        for ll in range(mm + 2, lmax + 1):
            plm[ll, mm] = ((2 * ll - 1) * ct * plm[ll - 1, mm] - (ll + mm - 1) * plm[ll - 2, mm]) / (ll - mm)
    s2 = math.sqrt(2.0)
    for ll in range(lmax + 1):
        base = ll * ll + ll
        out[base] = norm[ll, 0] * plm[ll, 0]
        for mm in range(1, ll + 1):
            a = s2 * norm[ll, mm] * plm[ll, mm]
            out[base + mm] = a * math.cos(mm * phi)
            out[base - mm] = a * math.sin(mm * phi)


@njit(cache=True)
def bond_qlm(start, nbr, dr, w, lmax, norm):
    """Weighted bond-order vectors q_lm(i) = sum_j w_ij Y_lm(r_ij) / sum_j w_ij (real harmonics).

    Returns (N, (lmax + 1)^2); rows of particles without weighted neighbours are zero.
    """
    n = start.shape[0] - 1
    nlm = (lmax + 1) * (lmax + 1)
    out = np.zeros((n, nlm))
    buf = np.empty(nlm)
    for i in range(n):
        den = 0.0
        for p in range(start[i], start[i + 1]):
            if w[p] == 0.0:
                continue
            rr = math.sqrt(dr[p, 0] ** 2 + dr[p, 1] ** 2 + dr[p, 2] ** 2)
            real_ylm_table(lmax, dr[p, 0] / rr, dr[p, 1] / rr, dr[p, 2] / rr, norm, buf)
            den += w[p]
            for k in range(nlm):
                out[i, k] += w[p] * buf[k]
        if den > 0:
            for k in range(nlm):
                out[i, k] /= den
    return out


@njit(cache=True)
def legendre_ql(start, dr, w, lmax):
    """q_l^2 by the addition theorem, (1/W^2) sum_{j,k} w_j w_k P_l(cos g_jk): an independent check of bond_qlm.

    Returns (N, lmax + 1) of q_l^2 = 4 pi/(2l + 1) sum_m q_lm^2.
    """
    n = start.shape[0] - 1
    out = np.zeros((n, lmax + 1))
    pl = np.empty(lmax + 1)
    for i in range(n):
        den = 0.0
        for p in range(start[i], start[i + 1]):
            den += w[p]
        if den == 0:
            continue
        for p in range(start[i], start[i + 1]):
            rp = math.sqrt(dr[p, 0] ** 2 + dr[p, 1] ** 2 + dr[p, 2] ** 2)
            for q in range(start[i], start[i + 1]):
                rq = math.sqrt(dr[q, 0] ** 2 + dr[q, 1] ** 2 + dr[q, 2] ** 2)
                c = (dr[p, 0] * dr[q, 0] + dr[p, 1] * dr[q, 1] + dr[p, 2] * dr[q, 2]) / (rp * rq)
                pl[0] = 1.0
                if lmax >= 1:
                    pl[1] = c
                for ll in range(2, lmax + 1):
                    pl[ll] = ((2 * ll - 1) * c * pl[ll - 1] - (ll - 1) * pl[ll - 2]) / ll
                for ll in range(lmax + 1):
                    out[i, ll] += w[p] * w[q] * pl[ll]
        for ll in range(lmax + 1):
            out[i, ll] /= den * den
    return out


@njit(cache=True)
def behler_angular(start, dr, xi, lam, zeta, rc):
    """Angular functions psi[i, a] = sum_{j<k} exp(-(r_ij^2 + r_ik^2 + r_jk^2)/xi_a^2) (1 + lam_a cos t_jik)^zeta_a.

    Pairs within ``rc`` of i only (the list may extend further). Returns (N, A).
    """
    n = start.shape[0] - 1
    na = xi.shape[0]
    out = np.zeros((n, na))
    rc2 = rc * rc
    for i in range(n):
        for p in range(start[i], start[i + 1]):
            rp2 = dr[p, 0] ** 2 + dr[p, 1] ** 2 + dr[p, 2] ** 2
            if rp2 >= rc2:
                continue
            for q in range(p + 1, start[i + 1]):
                rq2 = dr[q, 0] ** 2 + dr[q, 1] ** 2 + dr[q, 2] ** 2
                if rq2 >= rc2:
                    continue
                dot = dr[p, 0] * dr[q, 0] + dr[p, 1] * dr[q, 1] + dr[p, 2] * dr[q, 2]
                rjk2 = rp2 + rq2 - 2.0 * dot
                c = dot / math.sqrt(rp2 * rq2)
                s = rp2 + rq2 + rjk2
                for a in range(na):
                    out[i, a] += math.exp(-s / (xi[a] * xi[a])) * (1.0 + lam[a] * c) ** zeta[a]
    return out


@njit(cache=True)
def polygon_areas(verts, flat, offsets, normals):
    """Areas of planar convex polygons in 3D (Voronoi facets), vertices in any order.

    Args:
        verts: (V, 3) vertex coordinates.
        flat: (K,) vertex indices of all polygons concatenated; offsets (R + 1,) polygon boundaries.
        normals: (R, 3) plane normals (not necessarily unit).

    Returns:
        (R,) areas: vertices sorted by angle about their centroid in the plane, then the shoelace formula.
    """
    nr = offsets.shape[0] - 1
    out = np.zeros(nr)
    for r in range(nr):
        a, b = offsets[r], offsets[r + 1]
        k = b - a
        if k < 3:
            continue
        nx, ny, nz = normals[r, 0], normals[r, 1], normals[r, 2]
        nn = math.sqrt(nx * nx + ny * ny + nz * nz)
        nx, ny, nz = nx / nn, ny / nn, nz / nn
        # first in-plane axis: normal x (the coordinate axis least aligned with it)
        if abs(nx) <= abs(ny) and abs(nx) <= abs(nz):
            ux, uy, uz = 0.0, nz, -ny
        elif abs(ny) <= abs(nz):
            ux, uy, uz = -nz, 0.0, nx
        else:
            ux, uy, uz = ny, -nx, 0.0
        un = math.sqrt(ux * ux + uy * uy + uz * uz)
        ux, uy, uz = ux / un, uy / un, uz / un
        vx, vy, vz = ny * uz - nz * uy, nz * ux - nx * uz, nx * uy - ny * ux
        cx = cy = cz = 0.0
        for q in range(a, b):
            cx += verts[flat[q], 0]
            cy += verts[flat[q], 1]
            cz += verts[flat[q], 2]
        cx /= k
        cy /= k
        cz /= k
        px = np.empty(k)
        py = np.empty(k)
        ang = np.empty(k)
        for q in range(k):
            v = flat[a + q]
            ex, ey, ez = verts[v, 0] - cx, verts[v, 1] - cy, verts[v, 2] - cz
            px[q] = ex * ux + ey * uy + ez * uz
            py[q] = ex * vx + ey * vy + ez * vz
            ang[q] = math.atan2(py[q], px[q])
        order = np.argsort(ang)
        s = 0.0
        for q in range(k):
            i0 = order[q]
            i1 = order[(q + 1) % k]
            s += px[i0] * py[i1] - px[i1] * py[i0]
        out[r] = 0.5 * abs(s)
    return out
