"""Energy, forces, virial and per-particle energies over a half neighbour list, threaded.

Work is split into one contiguous chunk of particles per thread (``fbuf.shape[0]`` chunks); each
thread accumulates Newton's-third-law pair forces into its own buffer, and the buffers are summed.
The pair loop is a plain (serial) jitted function called once per chunk from the parallel driver:
Numba's parfor lowering of the loop body itself was measured 7x slower.
"""

import numba
import numpy as np
from numba import njit, prange

from glassgen._kernels.neighbors import U
from glassgen._kernels.pair import pair_uw

__all__ = ["half_list_forces", "half_list_forces_serial", "chunk_forces", "balanced_bounds"]


@njit(cache=True, fastmath=True, boundscheck=False, error_model="numpy")
def chunk_forces(lo, hi, pos, species, nsp, sig2, eps4, rc2, c0, c1, c2, c4, rs2, shifts, nbr, nbr_code,
                 count, f, variant):
    """Pair forces of particles lo..hi-1 (and their half-list partners) accumulated into ``f``.

    ``variant`` is a literal int (compile-time specialisation, see :mod:`.pair`).
    Returns (energy, virial, max sig^2/r^2) of the chunk's pairs.
    """
    numba.literally(variant)
    n, d = pos.shape
    for i in range(n):
        for k in range(d):
            f[i, k] = 0.0
    e = 0.0
    vir = 0.0
    smax = 0.0
    for ii in range(lo, hi):
        # indices cast to unsigned: Numba then emits no negative-index wrap-around (about 20% of the loop)
        i = U(ii)
        si = species[i] * nsp
        x0 = pos[i, 0]
        x1 = pos[i, 1]
        x2 = pos[i, 2] if d == 3 else 0.0
        fi0 = 0.0
        fi1 = 0.0
        fi2 = 0.0
        for q in range(count[i]):
            j = U(nbr[i, U(q)])
            s = U(nbr_code[i, U(q)])
            dx0 = pos[j, 0] + shifts[s, 0] - x0
            dx1 = pos[j, 1] + shifts[s, 1] - x1
            dx2 = (pos[j, 2] + shifts[s, 2] - x2) if d == 3 else 0.0
            r2 = dx0 * dx0 + dx1 * dx1 + dx2 * dx2
            ab = U(si + species[j])
            # branch-free cutoff: every list pair is evaluated and the ~30% beyond r_c are multiplied
            # by 0 (a data-dependent branch here mispredicted often enough to cost 1/3 of the loop)
            m = 1.0 if r2 < rc2[ab] else 0.0
            u, w, sr = pair_uw(r2, ab, sig2, eps4, c0, c1, c2, c4, rs2, variant)
            u *= m
            w *= m
            smax = max(smax, sr * m)
            e += u
            vir += w * r2
            fi0 -= w * dx0
            fi1 -= w * dx1
            f[j, 0] += w * dx0
            f[j, 1] += w * dx1
            if d == 3:
                fi2 -= w * dx2
                f[j, 2] += w * dx2
        f[i, 0] += fi0
        f[i, 1] += fi1
        if d == 3:
            f[i, 2] += fi2
    return e, vir, smax


@njit(cache=True, error_model="numpy")
def _chunk_dispatch(lo, hi, pos, species, nsp, sig2, eps4, rc2, c0, c1, c2, c4, rs2, shifts, nbr, nbr_code,
                    count, f, variant):
    """Run-time variant -> one of the compile-time specialisations of :func:`chunk_forces`
    (the variants that occur: exact LJ with cut/shift, shifted force, quartic; each +/- soft core)."""
    a0, a1, a2, a3, a4, a5, a6, a7, a8 = lo, hi, pos, species, nsp, sig2, eps4, rc2, c0
    if variant == 0:
        return chunk_forces(a0, a1, a2, a3, a4, a5, a6, a7, a8, c1, c2, c4, rs2, shifts, nbr, nbr_code, count, f, 0)
    if variant == 1:
        return chunk_forces(a0, a1, a2, a3, a4, a5, a6, a7, a8, c1, c2, c4, rs2, shifts, nbr, nbr_code, count, f, 1)
    if variant == 2:
        return chunk_forces(a0, a1, a2, a3, a4, a5, a6, a7, a8, c1, c2, c4, rs2, shifts, nbr, nbr_code, count, f, 2)
    if variant == 3:
        return chunk_forces(a0, a1, a2, a3, a4, a5, a6, a7, a8, c1, c2, c4, rs2, shifts, nbr, nbr_code, count, f, 3)
    if variant == 4:
        return chunk_forces(a0, a1, a2, a3, a4, a5, a6, a7, a8, c1, c2, c4, rs2, shifts, nbr, nbr_code, count, f, 4)
    if variant == 5:
        return chunk_forces(a0, a1, a2, a3, a4, a5, a6, a7, a8, c1, c2, c4, rs2, shifts, nbr, nbr_code, count, f, 5)
    return chunk_forces(a0, a1, a2, a3, a4, a5, a6, a7, a8, c1, c2, c4, rs2, shifts, nbr, nbr_code, count, f, 7)


@njit(cache=True, error_model="numpy")
def _peratom(pos, species, nsp, sig2, eps4, rc2, c0, c1, c2, c4, rs2, shifts, nbr, nbr_code, count, peratom):
    n, d = pos.shape
    for i in range(n):
        peratom[i] = 0.0
    for i in range(n):
        si = species[i] * nsp
        for q in range(count[i]):
            j = nbr[i, q]
            s = nbr_code[i, q]
            r2 = 0.0
            for k in range(d):
                dx = pos[j, k] + shifts[s, k] - pos[i, k]
                r2 += dx * dx
            ab = si + species[j]
            if r2 < rc2[ab]:
                u, w, _ = pair_uw(r2, ab, sig2, eps4, c0, c1, c2, c4, rs2, 7)
                peratom[i] += 0.5 * u
                peratom[j] += 0.5 * u


@njit(parallel=True, cache=True, error_model="numpy")
def half_list_forces(pos, species, nsp, sig2, eps4, rc2, c0, c1, c2, c4, rs2, shifts, nbr, nbr_code,
                     count, bounds, fbuf, ebuf, want_peratom, peratom, variant):
    """Compute U, W and the per-thread force buffers.

    Args:
        pos: (N, d) positions in the neighbour list's frame.
        species: (N,) int32.
        sig2 ... rs2: flattened pair parameters (see :class:`~glassgen.systems.model.KernelParams`).
        shifts, nbr, nbr_code, count: half neighbour list (see :mod:`glassgen._kernels.neighbors`).
        bounds: (nthreads + 1,) int64: thread t takes rows bounds[t]..bounds[t+1]-1 (see
            :func:`balanced_bounds`).
        fbuf: (nthreads, N, d) output: the forces are ``fbuf.sum(0)`` (summed by the caller, e.g. with
            :func:`~glassgen._kernels.neighbors.scatter_sum`, which saves a second parallel region).
        ebuf: (nthreads, 4) scratch.
        want_peratom: if True, fill ``peratom`` (N,) with e_i = half the sum of i's pair energies.
        peratom: (N,) output (only written when want_peratom).
        variant: run-time bits from :func:`~glassgen._kernels.pair.kernel_variant`, dispatched here to
            compile-time specialisations of the pair loop.

    Returns:
        (U total potential energy, W = sum_pairs w r^2 (virial), max over pairs of sig^2/r^2).
    """
    nth = fbuf.shape[0]
    for t in prange(nth):
        e, vir, smax = _chunk_dispatch(bounds[t], bounds[t + 1], pos, species, nsp, sig2, eps4, rc2, c0, c1, c2, c4,
                                       rs2, shifts, nbr, nbr_code, count, fbuf[t], variant)
        ebuf[t, 0] = e
        ebuf[t, 1] = vir
        ebuf[t, 2] = smax
    if want_peratom:
        _peratom(pos, species, nsp, sig2, eps4, rc2, c0, c1, c2, c4, rs2, shifts, nbr, nbr_code, count, peratom)
    etot = 0.0
    vtot = 0.0
    smax = 0.0
    for t in range(nth):
        etot += ebuf[t, 0]
        vtot += ebuf[t, 1]
        if ebuf[t, 2] > smax:
            smax = ebuf[t, 2]
    return etot, vtot, smax


@njit(cache=True, error_model="numpy")
def balanced_bounds(count, nth):
    """Split rows 0..N-1 into ``nth`` contiguous chunks with about equal numbers of list pairs.

    Args:
        count: (N,) neighbour counts; nth: number of chunks.

    Returns:
        (nth + 1,) int64 chunk boundaries (0 first, N last).
    """
    n = count.shape[0]
    total = 0
    for i in range(n):
        total += count[i]
    bounds = np.empty(nth + 1, dtype=np.int64)
    bounds[0] = 0
    acc = 0
    t = 1
    for i in range(n):
        acc += count[i]
        while t < nth and acc * nth >= total * t:
            bounds[t] = i + 1
            t += 1
    while t <= nth:
        bounds[t] = n
        t += 1
    return bounds


@njit(cache=True, error_model="numpy")
def half_list_forces_serial(pos, species, nsp, sig2, eps4, rc2, c0, c1, c2, c4, rs2, shifts, nbr, nbr_code,
                            count, want_peratom, forces, peratom, variant):
    """One-thread version of :func:`half_list_forces` (no thread buffers, no parallel region)."""
    n = pos.shape[0]
    e, vir, smax = _chunk_dispatch(0, n, pos, species, nsp, sig2, eps4, rc2, c0, c1, c2, c4, rs2, shifts, nbr,
                                   nbr_code, count, forces, variant)
    if want_peratom:
        _peratom(pos, species, nsp, sig2, eps4, rc2, c0, c1, c2, c4, rs2, shifts, nbr, nbr_code, count, peratom)
    return e, vir, smax
