r"""Rejection-free kinetic Monte Carlo (BKL / Gillespie) for trap models, with the B-ary sum tree of
:mod:`glassgen._kernels.sumtree`.

Each site i carries a scalar state x_i (a barrier E_i or a softness S_i), an escape rate
k_i = exp(ln k(x_i)) and a displacement vector (d,). One event:

1. the waiting time dt ~ Exp(K), K = sum_i k_i (the root of the sum tree);
2. the site i is chosen with probability k_i / K by descending the tree: O(log N);
3. the site jumps: pos_i += b * xi, xi ~ N(0, 1)^d (variance b^2 per dimension; ziggurat normals,
   :mod:`glassgen._kernels.rng`);
4. x_i is redrawn from the post-rearrangement law (``redraw_mode``), its leaf is updated: O(log N);
5. facilitation (optional): every neighbour j of i (CSR lists ``nb_ptr``/``nb_idx``/``nb_eta``) gets
   the reversible AR(1) kick  x_j' = m + (1 - eta)(x_j - m) + eta * shift + sqrt(eta (2 - eta)) * s * xi,
   which leaves N(m, s^2) invariant and is reversible with respect to it when ``shift = 0``
   (REFERENCE section 6); its leaf is updated.

The rate law is ln k(x) = min(c0 + c1 x, lncap) or, when ``tab`` is not empty, a linear interpolation
of ``tab`` on the uniform grid ``tab_x0 + j * tab_dx`` (clamped at the ends), also capped at ``lncap``.

Redraw laws (``redraw_mode``):

- 0: exponential, x = -p0 ln(1 - u) (Monthus-Bouchaud barriers, p0 = T0);
- 1: Gaussian N(p0, p1^2);
- 2: exact sampling of g(x) ~ N(x; m, s^2) k(x) for the capped linear law k = min(exp(c0 + c1 x), cap)
  (softness trap model). g is a two-piece mixture: where the law is linear, N(m + c1 s^2, s^2) restricted
  to that side of x* = (ln cap - c0)/c1; beyond x*, N(m, s^2) restricted to the other side. p0 = m + c1 s^2,
  p1 = s, and ``rp = [m, x*, P(linear piece), +1 if the linear piece is x < x* else -1]``. Each piece is a
  truncated normal drawn exactly (naive rejection near the bulk, Robert's exponential proposal in tails:
  C. P. Robert, Stat. Comput. 5, 121 (1995));
- 3: inverse of a tabulated CDF (``cdf_x`` increasing, ``cdf`` from 0 to 1, linear interpolation).

Time is continuous and the process is Markov between events, so a run stopped at ``t_stop`` (the
pending event discarded) and continued later is the same process (chunked runs, checkpoints).

Randomness: each kernel call builds its own xoshiro256++ state from the ``seed`` it is given (an int
drawn by the Python driver from its ``np.random.Generator``; :mod:`glassgen._kernels.rng`); nothing reads
global random state.
"""

import math

import numpy as np
from numba import njit

from glassgen._kernels.rng import normal, rng_state, uniform
from glassgen._kernels.sumtree import tree_build, tree_sample, tree_set, tree_set_leaves, tree_total

__all__ = ["lnrate", "kmc_run", "sample_redraw"]


# ----------------------------------------------------------------------------------------- rate law
@njit(cache=True)
def lnrate(x, c0, c1, lncap, tab_x0, tab_dx, tab):
    """ln k(x): min(c0 + c1 x, lncap), or the interpolated table ``tab`` (capped) when it is not empty."""
    n = tab.shape[0]
    if n > 0:
        f = (x - tab_x0) / tab_dx
        if f <= 0.0:
            v = tab[0]
        elif f >= n - 1:
            v = tab[n - 1]
        else:
            j = int(f)
            w = f - j
            v = tab[j] * (1.0 - w) + tab[j + 1] * w
    else:
        v = c0 + c1 * x
    return min(v, lncap)


@njit(cache=True)
def _tnorm_upper(rs, a):
    """Standard normal restricted to [a, inf), exact (Robert 1995 for a > 0.5)."""
    if a < 0.5:
        while True:
            z = normal(rs)
            if z >= a:
                return z
    lam = 0.5 * (a + math.sqrt(a * a + 4.0))
    while True:
        z = a - math.log(1.0 - uniform(rs)) / lam
        if uniform(rs) <= math.exp(-0.5 * (z - lam) ** 2):
            return z


@njit(cache=True)
def _redraw(rs, mode, p0, p1, rp, c0, c1, lncap, tab_x0, tab_dx, tab, cdf_x, cdf):
    if mode == 0:
        return -p0 * math.log(1.0 - uniform(rs))
    if mode == 1:
        return p0 + p1 * normal(rs)
    if mode == 2:
        m, xs, p_lin, side = rp[0], rp[1], rp[2], rp[3]
        if uniform(rs) < p_lin:  # linear piece: N(p0, p1^2) on the side `side` of xs
            if side > 0:
                return p0 - p1 * _tnorm_upper(rs, (p0 - xs) / p1)
            return p0 + p1 * _tnorm_upper(rs, (xs - p0) / p1)
        if side > 0:  # capped piece: N(m, p1^2) on the other side
            return m + p1 * _tnorm_upper(rs, (xs - m) / p1)
        return m - p1 * _tnorm_upper(rs, (m - xs) / p1)
    # mode 3: tabulated inverse CDF
    u = uniform(rs)
    lo = 0
    hi = cdf.shape[0] - 1
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if cdf[mid] <= u:
            lo = mid
        else:
            hi = mid
    dc = cdf[hi] - cdf[lo]
    w = (u - cdf[lo]) / dc if dc > 0.0 else 0.5
    return cdf_x[lo] + w * (cdf_x[hi] - cdf_x[lo])


# ----------------------------------------------------------------------------------------- KMC loop
#: columns of the per-site record used inside :func:`kmc_run`
_SITE_T_LAST, _SITE_T_FIRST, _SITE_NHOP, _SITE_POS = 0, 1, 2, 3

@njit(cache=True)
def kick_amplitude(eta, std):
    """Noise amplitude sqrt(eta (2 - eta)) s that makes the AR(1) kick of strength eta keep N(m, s^2)."""
    return math.sqrt(eta * (2.0 - eta)) * std


@njit(cache=True)
def reversible_kick(x, mean, eta, shift, amplitude, xi):
    """AR(1) facilitation kick x' = m + (1 - eta)(x - m) + eta shift + amplitude xi of a site state.

    With shift = 0 and amplitude = :func:`kick_amplitude` (eta, s), (x, x') is exchangeable under N(m, s^2):
    the kick is reversible and leaves the product measure stationary. Scalars or equal-shape arrays.
    """
    return mean + (1.0 - eta) * (x - mean) + eta * shift + amplitude * xi


@njit(cache=True)
def kmc_run(x, pos, nhop, t_first, t_last, t, t_stop, max_events,
            c0, c1, lncap, tab_x0, tab_dx, tab,
            redraw_mode, p0, p1, rp, cdf_x, cdf,
            nb_ptr, nb_idx, nb_eta, kick_mean, kick_std, kick_shift,
            b, t_samples, m_next, snap_pos, snap_nhop, snap_x,
            wt, n_wt, gap_acc, seed):
    """Run the KMC from time ``t`` until ``t_stop`` or ``max_events`` events, updating the state in place.

    Args:
        x: (N,) float64 site states (barrier or softness), updated.
        pos: (N, d) float64 displacements, updated.
        nhop: (N,) int64 number of rearrangements since time 0, updated.
        t_first: (N,) float64 time of the first rearrangement (-1 if none yet), updated.
        t_last: (N,) float64 time of the last rearrangement (-1: still in the initial trap), updated.
        t: current time.
        t_stop: stop time (the pending event is discarded: exact for a Markov jump process).
        max_events: stop after this many events (then the time is that of the last event).
        c0, c1, lncap, tab_x0, tab_dx, tab: the rate law (module docstring).
        redraw_mode, p0, p1, rp, cdf_x, cdf: the post-rearrangement law (module docstring).
        nb_ptr: (N + 1,) int64 CSR offsets of the facilitation neighbours (all zero: no facilitation).
        nb_idx: (n_edges,) int64 neighbour indices (sorted within a row: the fast order, not required).
        nb_eta: (n_edges,) float64 kick strengths eta in [0, 1].
        kick_mean, kick_std, kick_shift: m, s and the mean shift of the AR(1) kick.
        b: jump length (standard deviation per dimension).
        t_samples: (n_t,) increasing sampling times; a snapshot at t_s is the state just before the first
            event after t_s.
        m_next: index of the next sampling time.
        snap_pos: (n_t, N, d) displacements at the sampling times, filled from m_next on.
        snap_nhop: (n_t, N) int64 rearrangement counts at the sampling times.
        snap_x: (n_t, N) site states at the sampling times.
        wt: (cap,) completed waiting times of traps entered during the run (cap 0: not recorded).
        n_wt: number of entries of ``wt`` already filled.
        gap_acc: (n_t,) or (0,): for every completed interval g between consecutive rearrangements of a
            site (the first one measured from t = 0), adds max(0, g - t_samples[k]) to gap_acc[k]: the
            numerator of the persistence averaged over all time origins (see
            :func:`glassgen.models.observables.persistence_all_origins`).
        seed: seed of the generator for this call.

    Returns:
        (t, m_next, n_events, n_wt): the time reached, the next sampling index, the events done and the
        waiting-time count.
    """
    rs = rng_state(seed)
    n = x.shape[0]
    d = pos.shape[1]
    n_t = t_samples.shape[0]
    wcap = wt.shape[0]
    n_gap = gap_acc.shape[0]
    rates = np.empty(n)
    for i in range(n):
        rates[i] = math.exp(lnrate(x[i], c0, c1, lncap, tab_x0, tab_dx, tab))
    tree = tree_build(rates)
    # Memory layout for large N (a random site per event, so every array touched is a cache miss): the
    # chosen site's bookkeeping lives in one record (t_last, t_first, nhop, pos[0:d]) instead of four
    # arrays, and a CSR row is 4-byte neighbour indices plus interleaved (eta, amplitude) pairs. x stays a
    # separate array because the neighbours of a site read and write it. Copied back before returning.
    rec = _SITE_POS + d
    site = np.empty((n, rec))
    for i in range(n):
        site[i, _SITE_T_LAST] = t_last[i]
        site[i, _SITE_T_FIRST] = t_first[i]
        site[i, _SITE_NHOP] = nhop[i]  # exact as a float64 up to 2^53 rearrangements
        for k in range(d):
            site[i, _SITE_POS + k] = pos[i, k]
    n_edges = nb_idx.shape[0]
    nbr = np.empty(n_edges, dtype=np.int32)
    kick = np.empty((n_edges, 2))  # (eta, sqrt(eta (2 - eta)) s) per edge
    for e in range(n_edges):
        nbr[e] = nb_idx[e]
        kick[e, 0] = nb_eta[e]
        kick[e, 1] = kick_amplitude(nb_eta[e], kick_std)
    max_deg = 0
    for i in range(n):
        max_deg = max(max_deg, nb_ptr[i + 1] - nb_ptr[i])
    leaves = np.empty(max_deg + 1, dtype=np.int64)
    new_rates = np.empty(max_deg + 1)
    n_ev = 0
    while n_ev < max_events:
        total = tree_total(tree)
        if not total > 0.0:
            break
        t_new = t - math.log(1.0 - uniform(rs)) / total
        limit = min(t_new, t_stop)
        while m_next < n_t and t_samples[m_next] <= limit:
            for i in range(n):
                for k in range(d):
                    snap_pos[m_next, i, k] = site[i, _SITE_POS + k]
                snap_nhop[m_next, i] = np.int64(site[i, _SITE_NHOP])
                snap_x[m_next, i] = x[i]
            m_next += 1
        if t_new > t_stop:
            t = t_stop
            break
        t = t_new
        i = tree_sample(tree, uniform(rs))
        if i >= n:  # round-off at the right edge of the tree
            i = n - 1
        tl_i = site[i, _SITE_T_LAST]
        if tl_i >= 0.0 and n_wt < wcap:
            wt[n_wt] = t - tl_i
            n_wt += 1
        if n_gap > 0:
            g = t - max(tl_i, 0.0)
            for k in range(n_gap):
                if t_samples[k] >= g:
                    break
                gap_acc[k] += g - t_samples[k]
        site[i, _SITE_T_LAST] = t
        if site[i, _SITE_NHOP] == 0.0:
            site[i, _SITE_T_FIRST] = t
        site[i, _SITE_NHOP] += 1.0
        for k in range(d):
            site[i, _SITE_POS + k] += b * normal(rs)
        x[i] = _redraw(rs, redraw_mode, p0, p1, rp, c0, c1, lncap, tab_x0, tab_dx, tab, cdf_x, cdf)
        rate_i = math.exp(lnrate(x[i], c0, c1, lncap, tab_x0, tab_dx, tab))
        if nb_ptr[i] == nb_ptr[i + 1]:
            tree_set(tree, i, rate_i)
        else:  # the site and its kicked neighbours, in index order (CSR rows are sorted), one tree pass
            k = 0
            placed = False
            for e in range(nb_ptr[i], nb_ptr[i + 1]):
                j = np.int64(nbr[e])
                if not placed and j > i:
                    leaves[k] = i
                    new_rates[k] = rate_i
                    k += 1
                    placed = True
                eta = kick[e, 0]
                x[j] = reversible_kick(x[j], kick_mean, eta, kick_shift, kick[e, 1], normal(rs))
                leaves[k] = j
                new_rates[k] = math.exp(lnrate(x[j], c0, c1, lncap, tab_x0, tab_dx, tab))
                k += 1
            if not placed:
                leaves[k] = i
                new_rates[k] = rate_i
                k += 1
            tree_set_leaves(tree, leaves, new_rates, k)
        n_ev += 1
    for i in range(n):
        t_last[i] = site[i, _SITE_T_LAST]
        t_first[i] = site[i, _SITE_T_FIRST]
        nhop[i] = np.int64(site[i, _SITE_NHOP])
        for k in range(d):
            pos[i, k] = site[i, _SITE_POS + k]
    return t, m_next, n_ev, n_wt



@njit(cache=True)
def sample_redraw(n, mode, p0, p1, rp, c0, c1, lncap, tab_x0, tab_dx, tab, cdf_x, cdf, seed):
    """n independent draws (n,) of the post-rearrangement law (for tests and diagnostics)."""
    rs = rng_state(seed)
    out = np.empty(n)
    for k in range(n):
        out[k] = _redraw(rs, mode, p0, p1, rp, c0, c1, lncap, tab_x0, tab_dx, tab, cdf_x, cdf)
    return out
