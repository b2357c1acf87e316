"""Metropolis Monte Carlo: single-particle displacements and species swaps.

Energy differences cost O(neighbours): a fixed-capacity cell grid (cell edge >= r_c,max, >= 3 cells
per axis) with the minimum image; boxes smaller than that loop over all particles ("image mode"). In image
mode a single zero row in ``shifts`` means the minimum image (r_c,max <= L/2: one image per pair, none of
a particle's own); otherwise ``shifts`` lists the periodic images n in [-m, m]^d and a particle's own
images enter with weight 1/2 of the pair energy (:func:`glassgen._kernels.neighbors.mc_image_shifts`).

Image mode in boxes smaller than 2 r_c,max (several images per pair, e.g. KA 3D N <= 128) can use a Verlet
list over images instead (``listed``): for each particle, every (j, image) within r_c,max + skin at the last
build, with the separation at that time; a separation is recovered as the image of x_j - x nearest to the
stored one. It stays valid while every particle is within skin/2 of its position at the build; a trial
position beyond that is evaluated with the image sum instead, and accepting it rebuilds the list. Same
energies as the image sum (to round-off) at a fraction of its cost: the image sum visits (2m + 1)^d N
images per particle (27 N in 3D), the list the ~100 within r_c + skin.

All random numbers are drawn by the caller (numpy Generator) and passed in per sweep.
"""

import math

import numba
import numpy as np
from numba import njit

from glassgen._kernels.pair import pair_uw

__all__ = ["particle_energy", "particle_energy_listed", "build_image_list", "build_cells", "metropolis_sweep",
           "metropolis_sweeps", "total_energy_mc"]


@njit(cache=True, error_model="numpy")
def _cell_of(x, box, ncell):
    d = x.shape[0]
    flat = 0
    mul = 1
    for k in range(d):
        c = int(math.floor(x[k] / box[k] * ncell[k])) % ncell[k]
        flat += c * mul
        mul *= ncell[k]
    return flat


@njit(cache=True, error_model="numpy")
def build_cells(pos, box, ncell, cap):
    """Fixed-capacity cells: returns (cells (ncell_tot, cap), cell_count, cell_of (N,), slot (N,), ok)."""
    n, d = pos.shape
    ntot = 1
    for k in range(d):
        ntot *= ncell[k]
    cells = np.full((ntot, cap), -1, dtype=np.int64)
    count = np.zeros(ntot, dtype=np.int64)
    cell_of = np.empty(n, dtype=np.int64)
    slot = np.empty(n, dtype=np.int64)
    ok = True
    for i in range(n):
        c = _cell_of(pos[i], box, ncell)
        cell_of[i] = c
        if count[c] >= cap:
            ok = False
            slot[i] = -1
            continue
        cells[c, count[c]] = i
        slot[i] = count[c]
        count[c] += 1
    return cells, count, cell_of, slot, ok


@njit(cache=True, error_model="numpy")
def home_cell(x, box, ncell):
    """(3,) integer cell coordinates of a point x (d,) in a box split into ``ncell`` cells per axis."""
    cc0 = np.zeros(3, dtype=np.int64)
    for k in range(x.shape[0]):
        cc0[k] = int(math.floor(x[k] / box[k] * ncell[k])) % ncell[k]
    return cc0


@njit(cache=True, error_model="numpy")
def stencil_cell(cc0, ncell, off):
    """Flat index of the ``off``-th cell (0 <= off < 3^d) of the 3^d stencil around cell ``cc0``."""
    flat = 0
    mul = 1
    for k in range(ncell.shape[0]):
        o = (off // (3**k)) % 3 - 1
        c = (cc0[k] + o) % ncell[k]
        flat += c * mul
        mul *= ncell[k]
    return flat


@njit(cache=True, error_model="numpy")
def particle_energy(i, x, s, pos, species, box, nsp, sig2, eps4, rc2, c0, c1, c2, c4, rs2,
                    use_cells, ncell, cells, cell_count, shifts):
    """Energy of particle i placed at x (d,) with species s, against all other particles.

    Cell mode: minimum image over the 3^d cells around x. Image mode: all j != i and all images in
    ``shifts`` (the minimum image if ``shifts`` is one zero row), plus i's own images with weight 1/2.
    """
    n, d = pos.shape
    e = 0.0
    base = s * nsp
    if use_cells:
        cc0 = home_cell(x, box, ncell)
        for off in range(3**d):
            flat = stencil_cell(cc0, ncell, off)
            for q in range(cell_count[flat]):
                j = cells[flat, q]
                if j == i:
                    continue
                r2 = 0.0
                for k in range(d):
                    dx = pos[j, k] - x[k]
                    dx -= box[k] * math.floor(dx / box[k] + 0.5)
                    r2 += dx * dx
                ab = base + species[j]
                if r2 < rc2[ab]:
                    u, w, _ = pair_uw(r2, ab, sig2, eps4, c0, c1, c2, c4, rs2, 7)
                    e += u
        return e
    nimg = shifts.shape[0]
    min_image = nimg == 1
    for j in range(n):
        ab = base + species[j]
        for c in range(nimg):
            r2 = 0.0
            for k in range(d):
                if j == i:
                    dx = shifts[c, k]
                else:
                    dx = pos[j, k] + shifts[c, k] - x[k]
                    if min_image:
                        dx -= box[k] * math.floor(dx / box[k] + 0.5)
                r2 += dx * dx
            if r2 == 0.0:
                continue
            if r2 < rc2[ab]:
                u, w, _ = pair_uw(r2, ab, sig2, eps4, c0, c1, c2, c4, rs2, 7)
                e += 0.5 * u if j == i else u
    return e


@njit(cache=True, error_model="numpy")
def build_image_list(pos, box, shifts, rc_list2, nb_j, nb_r, nb_n, ref_disp):
    """Verlet list over periodic images for the image mode (boxes smaller than 2 r_c).

    Every (j, n) with |x_j + n L - x_i| < r_list for the minimum-image separation plus the lattice vectors
    in ``shifts`` (complete when ``shifts`` comes from :func:`glassgen._kernels.neighbors.mc_image_shifts`
    for r_list: m = ceil(r_list / L) >= the largest |n| a separation in [-L/2, L/2) can need); j == i
    for a particle's own images (n != 0).

    Args:
        pos: (N, d) positions (any image).
        rc_list2: r_list^2 = (r_c,max + skin)^2.
        nb_j: (N, cap) int64 out: neighbour indices; cap = N * len(shifts) never overflows.
        nb_r: (N, cap, d) out: separation x_j + n L - x_i at the build.
        nb_n: (N,) int64 out: entries per particle.
        ref_disp: (N, d) out: displacement since the build, set to 0.
    """
    n, d = pos.shape
    nimg = shifts.shape[0]
    d0 = np.empty(d)
    for i in range(n):
        q = 0
        for j in range(n):
            for k in range(d):  # minimum-image separation, then its images
                dx = pos[j, k] - pos[i, k]
                d0[k] = dx - box[k] * math.floor(dx / box[k] + 0.5)
            for c in range(nimg):
                r2 = 0.0
                for k in range(d):
                    dx = d0[k] + shifts[c, k]
                    r2 += dx * dx
                if r2 > 0.0 and r2 < rc_list2:
                    nb_j[i, q] = j
                    for k in range(d):
                        nb_r[i, q, k] = d0[k] + shifts[c, k]
                    q += 1
        nb_n[i] = q
        for k in range(d):
            ref_disp[i, k] = 0.0


@njit(cache=True, error_model="numpy")
def particle_energy_listed(i, x, s, pos, species, box, nsp, sig2, eps4, rc2, c0, c1, c2, c4, rs2, nb_j, nb_r,
                           nb_n, variant):
    """Energy of particle i placed at x (d,) with species s, from its Verlet list over images (see
    :func:`build_image_list`): the same sum as the image mode of :func:`particle_energy` (own images with
    weight 1/2), valid while x and every neighbour are within skin/2 of their positions at the build.
    ``variant``: the pair terms the model has (:func:`glassgen._kernels.pair.kernel_variant`), a literal
    from :func:`metropolis_sweep` (KA 3D cut-and-shifted: 0.95 against 2.0 us per call with every term,
    N = 64; a run-time value gains almost nothing)."""
    d = pos.shape[1]
    e = 0.0
    base = s * nsp
    inv0 = 1.0 / box[0]
    inv1 = 1.0 / box[1]
    inv2 = 1.0 / box[2] if d == 3 else 0.0
    x2 = x[2] if d == 3 else 0.0
    for q in range(nb_n[i]):
        j = nb_j[i, q]
        if j == i:  # own image: the lattice vector itself
            r2 = nb_r[i, q, 0] * nb_r[i, q, 0] + nb_r[i, q, 1] * nb_r[i, q, 1]
            if d == 3:
                r2 += nb_r[i, q, 2] * nb_r[i, q, 2]
        else:  # written out per axis with multiplications: 2x faster than a loop over k with divisions
            raw = pos[j, 0] - x[0]
            dx = raw + box[0] * math.floor((nb_r[i, q, 0] - raw) * inv0 + 0.5)
            r2 = dx * dx
            raw = pos[j, 1] - x[1]
            dx = raw + box[1] * math.floor((nb_r[i, q, 1] - raw) * inv1 + 0.5)
            r2 += dx * dx
            if d == 3:
                raw = pos[j, 2] - x2
                dx = raw + box[2] * math.floor((nb_r[i, q, 2] - raw) * inv2 + 0.5)
                r2 += dx * dx
        ab = base + species[j]
        if r2 < rc2[ab]:
            u, w, _ = pair_uw(r2, ab, sig2, eps4, c0, c1, c2, c4, rs2, variant)
            e += 0.5 * u if j == i else u
    return e


@njit(cache=True, error_model="numpy", inline="always")
def _energy_of(i, x, s, pos, species, box, nsp, sig2, eps4, rc2, c0, c1, c2, c4, rs2, use_cells, ncell, cells,
               cell_count, shifts, listed, nb_j, nb_r, nb_n, variant):
    if listed:
        return particle_energy_listed(i, x, s, pos, species, box, nsp, sig2, eps4, rc2, c0, c1, c2, c4, rs2,
                                      nb_j, nb_r, nb_n, variant)
    return particle_energy(i, x, s, pos, species, box, nsp, sig2, eps4, rc2, c0, c1, c2, c4, rs2, use_cells,
                           ncell, cells, cell_count, shifts)


@njit(cache=True, error_model="numpy")
def total_energy_mc(pos, species, box, nsp, sig2, eps4, rc2, c0, c1, c2, c4, rs2, use_cells, ncell, cells,
                    cell_count, shifts):
    """Total energy as half the sum of particle energies (for bookkeeping checks)."""
    n = pos.shape[0]
    e = 0.0
    for i in range(n):
        ei = particle_energy(i, pos[i], species[i], pos, species, box, nsp, sig2, eps4, rc2, c0, c1, c2, c4,
                             rs2, use_cells, ncell, cells, cell_count, shifts)
        e += ei
    # pair terms counted twice, self-image terms once (already weighted 1/2 in each e_i): fix the latter
    if not use_cells:
        for i in range(n):
            s = species[i]
            eself = 0.0
            ab = s * nsp + s
            for c in range(shifts.shape[0]):
                r2 = 0.0
                for k in range(pos.shape[1]):
                    r2 += shifts[c, k] * shifts[c, k]
                if r2 > 0.0 and r2 < rc2[ab]:
                    u, w, _ = pair_uw(r2, ab, sig2, eps4, c0, c1, c2, c4, rs2, 7)
                    eself += 0.5 * u
            e += eself  # each e_i holds self-images at weight 1/2; after halving they need it once more
    return 0.5 * e


@njit(cache=True, error_model="numpy")
def metropolis_sweep(pos, species, box, nsp, sig2, eps4, rc2, c0, c1, c2, c4, rs2, beta,
                     use_cells, ncell, cells, cell_count, cell_of, slot, shifts,
                     members, member_pos, n_members,
                     move_kind, idx, disp, partner_u, logu, delta, start, stats, unwrapped,
                     use_list, nb_j, nb_r, nb_n, ref_disp, list_shifts, rc_list2, half_skin2, list_stats, variant):
    """Run the trial moves ``start .. len(idx)-1``; positions are kept wrapped in [0, L).

    Args:
        move_kind: (M,) int8, 0 = displacement, 1 = swap.
        idx: (M,) particle indices (uniform).
        disp: (M, d) uniform numbers in [-1, 1); the displacement is ``delta[species] * disp``.
        partner_u: (M,) uniform [0, 1) choosing the swap partner uniformly among particles of
            other species.
        logu: (M,) log of uniform numbers (acceptance test ``logu < -beta dE``).
        delta: (nsp,) maximal displacement per species.
        members, member_pos, n_members: particles of each species (nsp, N), index within it (N,),
            counts (nsp,); updated by accepted swaps.
        stats: (4,) int64 accumulators [disp tried, disp accepted, swap tried, swap accepted].
        unwrapped: (N, d) unwrapped positions, each accepted displacement added to it (so any number of
            sweeps runs in one call without losing track of boundary crossings).
        use_list: image mode through the Verlet list over images (``nb_j, nb_r, nb_n``, built by
            :func:`build_image_list` with ``list_shifts`` and ``rc_list2``); ``ref_disp`` (N, d) holds each
            particle's displacement since the build, ``half_skin2`` = (skin/2)^2. A trial beyond skin/2 of
            the build position is evaluated with the image sum; accepting it rebuilds the list.
            ``list_stats`` (2,) int64 accumulates [trials evaluated with the image sum, rebuilds]. Unused
            arrays may be empty when ``use_list`` is False.
        variant: the model's pair terms (:func:`glassgen._kernels.pair.kernel_variant`; a literal: one
            compiled sweep per variant) for the list path. The cell and image-sum paths evaluate every term
            (variant 7), as the PGMC kernels do: the PGMC benchmarks compare PGMC with Metropolis and swap MC
            on those paths, and hold the pair evaluation equal between them.

    Returns:
        (dE total accumulated, index of the first move not done: ``len(idx)`` unless a cell overflowed).
    """
    numba.literally(variant)
    n, d = pos.shape
    dE = 0.0
    xnew = np.empty(d)
    cap = cells.shape[1] if use_cells else 0
    for t in range(start, idx.shape[0]):
        i = idx[t]
        si = species[i]
        if move_kind[t] == 0:
            stats[0] += 1
            dr2 = 0.0
            for k in range(d):
                v = pos[i, k] + delta[si] * disp[t, k]
                xnew[k] = v - box[k] * math.floor(v / box[k])
                if use_list:
                    v = ref_disp[i, k] + delta[si] * disp[t, k]
                    dr2 += v * v
            listed = use_list and dr2 <= half_skin2
            if use_list and not listed:
                list_stats[0] += 1
            e_old = _energy_of(i, pos[i], si, pos, species, box, nsp, sig2, eps4, rc2, c0, c1, c2, c4, rs2,
                               use_cells, ncell, cells, cell_count, shifts, listed, nb_j, nb_r, nb_n, variant)
            e_new = _energy_of(i, xnew, si, pos, species, box, nsp, sig2, eps4, rc2, c0, c1, c2, c4, rs2,
                               use_cells, ncell, cells, cell_count, shifts, listed, nb_j, nb_r, nb_n, variant)
            de = e_new - e_old
            if logu[t] < -beta * de:
                if use_cells:
                    cnew = _cell_of(xnew, box, ncell)
                    cold = cell_of[i]
                    if cnew != cold:
                        if cell_count[cnew] >= cap:
                            stats[0] -= 1
                            return dE, t
                        # remove from old cell (move last into the hole)
                        last = cells[cold, cell_count[cold] - 1]
                        cells[cold, slot[i]] = last
                        slot[last] = slot[i]
                        cell_count[cold] -= 1
                        cells[cnew, cell_count[cnew]] = i
                        slot[i] = cell_count[cnew]
                        cell_count[cnew] += 1
                        cell_of[i] = cnew
                for k in range(d):
                    pos[i, k] = xnew[k]
                    unwrapped[i, k] += delta[si] * disp[t, k]
                dE += de
                stats[1] += 1
                if use_list:
                    if listed:
                        for k in range(d):
                            ref_disp[i, k] += delta[si] * disp[t, k]
                    else:  # i is now beyond skin/2 of its build position
                        build_image_list(pos, box, list_shifts, rc_list2, nb_j, nb_r, nb_n, ref_disp)
                        list_stats[1] += 1
        else:
            n_other = n - n_members[si]
            if n_other == 0:
                continue
            stats[2] += 1
            # partner: the k-th particle (in species order) among those of other species
            kk = int(partner_u[t] * n_other)
            if kk >= n_other:
                kk = n_other - 1
            sj = 0
            for s in range(nsp):
                if s == si:
                    continue
                if kk < n_members[s]:
                    sj = s
                    break
                kk -= n_members[s]
            j = members[sj, kk]
            e_old = _energy_of(i, pos[i], si, pos, species, box, nsp, sig2, eps4, rc2, c0, c1, c2, c4, rs2,
                               use_cells, ncell, cells, cell_count, shifts, use_list, nb_j, nb_r, nb_n, variant)
            e_old += _energy_of(j, pos[j], sj, pos, species, box, nsp, sig2, eps4, rc2, c0, c1, c2, c4, rs2,
                                use_cells, ncell, cells, cell_count, shifts, use_list, nb_j, nb_r, nb_n, variant)
            species[i] = sj
            species[j] = si
            e_new = _energy_of(i, pos[i], sj, pos, species, box, nsp, sig2, eps4, rc2, c0, c1, c2, c4, rs2,
                               use_cells, ncell, cells, cell_count, shifts, use_list, nb_j, nb_r, nb_n, variant)
            e_new += _energy_of(j, pos[j], si, pos, species, box, nsp, sig2, eps4, rc2, c0, c1, c2, c4, rs2,
                                use_cells, ncell, cells, cell_count, shifts, use_list, nb_j, nb_r, nb_n, variant)
            de = e_new - e_old
            if logu[t] < -beta * de:
                pi = member_pos[i]
                pj = member_pos[j]
                members[si, pi] = j
                members[sj, pj] = i
                member_pos[i] = pj
                member_pos[j] = pi
                dE += de
                stats[3] += 1
            else:
                species[i] = si
                species[j] = sj
    return dE, idx.shape[0]


@njit(cache=True, error_model="numpy")
def metropolis_sweeps(pos, species, box, nsp, sig2, eps4, rc2, c0, c1, c2, c4, rs2, beta,
                      use_cells, ncell, cells, cell_count, cell_of, slot, shifts,
                      members, member_pos, n_members,
                      move_kind, idx, disp, partner_u, logu, delta, start, stats, unwrapped,
                      use_list, nb_j, nb_r, nb_n, ref_disp, list_shifts, rc_list2, half_skin2, list_stats, variant):
    """:func:`metropolis_sweep` for a run-time ``variant``: dispatched to the compiled specialisations of the
    variants the shipped models use (0: cut and shifted, 2: shifted force, 4: quartic smoothing; anything
    else, soft cores included, evaluates every term). Calling :func:`metropolis_sweep` from Python with a
    literal costs a type re-resolution per call (milliseconds), hence this dispatcher."""
    if variant == 0:
        return metropolis_sweep(pos, species, box, nsp, sig2, eps4, rc2, c0, c1, c2, c4, rs2, beta, use_cells, ncell,
                                cells, cell_count, cell_of, slot, shifts, members, member_pos, n_members, move_kind,
                                idx, disp, partner_u, logu, delta, start, stats, unwrapped, use_list, nb_j,
                                nb_r, nb_n, ref_disp, list_shifts, rc_list2, half_skin2, list_stats, 0)
    if variant == 2:
        return metropolis_sweep(pos, species, box, nsp, sig2, eps4, rc2, c0, c1, c2, c4, rs2, beta, use_cells, ncell,
                                cells, cell_count, cell_of, slot, shifts, members, member_pos, n_members, move_kind,
                                idx, disp, partner_u, logu, delta, start, stats, unwrapped, use_list, nb_j,
                                nb_r, nb_n, ref_disp, list_shifts, rc_list2, half_skin2, list_stats, 2)
    if variant == 4:
        return metropolis_sweep(pos, species, box, nsp, sig2, eps4, rc2, c0, c1, c2, c4, rs2, beta, use_cells, ncell,
                                cells, cell_count, cell_of, slot, shifts, members, member_pos, n_members, move_kind,
                                idx, disp, partner_u, logu, delta, start, stats, unwrapped, use_list, nb_j,
                                nb_r, nb_n, ref_disp, list_shifts, rc_list2, half_skin2, list_stats, 4)
    return metropolis_sweep(pos, species, box, nsp, sig2, eps4, rc2, c0, c1, c2, c4, rs2, beta, use_cells, ncell, cells,
                            cell_count, cell_of, slot, shifts, members, member_pos, n_members, move_kind, idx,
                            disp, partner_u, logu, delta, start, stats, unwrapped, use_list, nb_j, nb_r, nb_n,
                            ref_disp, list_shifts, rc_list2, half_skin2, list_stats, 7)
