r"""Lattice updates of the structuro-elasto-plasticity (StEP) model: AQS shear step and avalanche relaxation.

Sites are the L^d cells of a periodic lattice, flat index in C order, coordinates ``coords`` (N, d).
Each site carries an elastic deviatoric strain e (N, nc) (2D: nc = 2, (e_xy, e_dev); 3D: nc = 1, e_xy),
a softness S (N,), a yield quantile u (N,) in (0, 1) and an accumulated plastic strain ep (N, nc).

Yield strain (Weibull with softness-dependent mean and shape; Zhang et al., PRR 4, 043026 (2022)):
eps_y = lam (-ln(1 - u))^(1/k), k = w0 + w1 S + w2 S^2, lam = mean / Gamma(1 + 1/k), mean = m0 + m1 S
(mean clamped at 1e-4 and k at 0.1). A site is unstable when |e|^2 > eps_y^2.

Avalanche (frame by frame, as the reference code OsCeZrCd/gridModel): when no site is rearranging, the
most unstable site (largest |e|^2 - eps_y^2 > 0) starts, with co-rearranging sites at lattice offsets
``co_off`` drawn with probabilities ``co_p``; each releases its whole strain e (residual 0) in
n_f = max(1, ceil(sqrt(sum |e|^2) / release)) frames. Per frame, a site releasing I (nc,) changes the
strain of every site x by sum_a I_a G[a, :, x - i] (G: the normalised Eshelby propagator, self term
-1, sum -1) and softness by coupling * Delta|e|^2; the initiating site also changes the softness around
it (offsets ``soft_off``): near-field mean change nf_a(r) . I, and where ``soft_bin >= 0`` (r < the
restoring range) a restoring step eta (mavg[bin] + shift_c - S) with eta = soft_eta * i (i = eta_fixed,
the reference's fixed 0.1, or |I| if eta_fixed = 0; clipped to 1) toward the target mavg of that
distance bin, the running-mean update mavg <- (1 - ema_rate) mavg + ema_rate S (ema_rate = 0: a fixed
target), noise sqrt(eta (2 - eta)) * s_noise * xi, and a uniform shift ``comp * i`` on every site that
removes the expected effect of shift_c. When a site's frames are
done, its u is redrawn and its rearrangement counted.
"""

import math

import numpy as np
from numba import njit

from glassgen._kernels.rng import normal, rng_state, uniform

__all__ = ["yield_strain", "min_shear_to_yield", "shear_all", "avalanche"]


@njit(cache=True)
def yield_strain(S, u, m0, m1, w0, w1, w2):
    """Weibull yield strain of a site of softness S and quantile u (module docstring)."""
    mean = max(m0 + m1 * S, 1e-4)
    k = max(w0 + w1 * S + w2 * S * S, 0.1)
    lam = mean / math.gamma(1.0 + 1.0 / k)
    return lam * (-math.log(1.0 - u)) ** (1.0 / k)


@njit(cache=True)
def min_shear_to_yield(e, S, u, m0, m1, w0, w1, w2):
    """Smallest increase of e_xy that makes one site unstable (0 if one already is), at fixed softness.

    The shear also changes S by coupling * Delta|e|^2 and so the yield strain; with the PRR signs (coupling
    > 0, yield mean falling with S) the site then yields a little before this strain, and other sites may
    reach yield too (the AQS step adds this strain and relaxes whatever is unstable).
    """
    n, nc = e.shape
    best = np.inf
    for i in range(n):
        ey = yield_strain(S[i], u[i], m0, m1, w0, w1, w2)
        e2 = 0.0
        for a in range(nc):
            e2 += e[i, a] * e[i, a]
        if e2 >= ey * ey:
            return 0.0
        other = e2 - e[i, 0] * e[i, 0]
        dist = math.sqrt(ey * ey - other) - e[i, 0]
        if dist < best:
            best = dist
    return best


@njit(cache=True)
def shear_all(e, S, dgamma, coupling):
    """Add dgamma to every e_xy; softness changes by coupling * Delta|e|^2."""
    n, nc = e.shape
    for i in range(n):
        old = 0.0
        for a in range(nc):
            old += e[i, a] * e[i, a]
        e[i, 0] += dgamma
        new = 0.0
        for a in range(nc):
            new += e[i, a] * e[i, a]
        S[i] += coupling * (new - old)


@njit(cache=True)
def _offset_index(ci, cx, L, dim):
    idx = 0
    for k in range(dim):
        idx = idx * L + (cx[k] - ci[k]) % L
    return idx


@njit(cache=True)
def _site_plus(ci, off, L, dim):
    idx = 0
    for k in range(dim):
        idx = idx * L + (ci[k] + off[k]) % L
    return idx


@njit(cache=True)
def _propagate(e, S, G, I, ci, L, dim, coupling, unif):
    """e[x] += sum_a I_a G[a, :, x - ci] for every site x; S[x] += coupling * d|e|^2 + unif."""
    nc = e.shape[1]
    n_outer = L if dim == 3 else 1
    for x2 in range(n_outer):
        o2 = (x2 - ci[2]) % L if dim == 3 else 0
        for x0 in range(L):
            o0 = x0 - ci[0]
            if o0 < 0:
                o0 += L
            for x1 in range(L):
                o1 = x1 - ci[1]
                if o1 < 0:
                    o1 += L
                if dim == 3:
                    x = (x0 * L + x1) * L + x2
                    off = (o0 * L + o1) * L + o2
                else:
                    x = x0 * L + x1
                    off = o0 * L + o1
                if nc == 1:
                    old = e[x, 0] * e[x, 0]
                    e[x, 0] += I[0] * G[0, 0, off]
                    S[x] += coupling * (e[x, 0] * e[x, 0] - old) + unif
                else:
                    e0 = e[x, 0]
                    e1 = e[x, 1]
                    old = e0 * e0 + e1 * e1
                    e0 += I[0] * G[0, 0, off] + I[1] * G[1, 0, off]
                    e1 += I[0] * G[0, 1, off] + I[1] * G[1, 1, off]
                    e[x, 0] = e0
                    e[x, 1] = e1
                    S[x] += coupling * (e0 * e0 + e1 * e1 - old) + unif


@njit(cache=True)
def avalanche(e, S, u, ep, coords, L, G, m0, m1, w0, w1, w2, coupling, release,
              co_off, co_p, soft_off, soft_nf, soft_eta, soft_bin, eta_fixed, shift_c, s_noise, comp, mavg,
              ema_rate, max_frames, seed):
    """Relax all unstable sites frame by frame (module docstring); state arrays are updated in place.

    Args:
        e: (N, nc) elastic strain; S: (N,) softness; u: (N,) yield quantiles; ep: (N, nc) plastic strain.
        coords: (N, d) int64 lattice coordinates; L: side.
        G: (nc, nc, N) propagator, G[a, b, off]: response of component b at offset off to a unit release
            of component a (self term G[a, a, 0] = -1).
        m0, m1, w0, w1, w2: Weibull law; coupling: dS / d|e|^2; release: strain released per frame.
        co_off: (M, d) int64 co-rearrangement offsets (including 0); co_p: (M,) probabilities.
        soft_off: (K, d) int64 offsets of the near field and the restoring; soft_nf: (K, nc) near-field
            coefficients (mean dS = soft_nf . I); soft_eta: (K,) eta per unit intensity (0 outside the
            restoring range); soft_bin: (K,) int64 running-mean bin of the offset (-1: no restoring).
        eta_fixed: if > 0, the intensity entering eta and the compensating shift (the reference code's
            fixed 0.1); otherwise the frame's |I| of the initiator.
        shift_c: shift c of the restoring target; s_noise: softness noise scale; comp: uniform
            compensating shift per unit intensity.
        mavg: (n_bins,) running mean of S per distance bin, updated mavg <- (1 - ema_rate) mavg + ema_rate S.
        max_frames: guard (the avalanche stops there; returned ``completed`` is False).
        seed: seed of the kernel's generator (:mod:`glassgen._kernels.rng`).

    Returns:
        (frames, events, sites, released, completed): frames run, rearrangement events started (an
        initiating site and its co-rearrangers count as one), distinct sites that rearranged, total
        released strain sum |I|, and whether it ended with every site stable.
    """
    rs = rng_state(seed)
    n, nc = e.shape
    dim = coords.shape[1]
    step = np.zeros(n, np.int64)
    flen = np.zeros(n, np.int64)
    inten = np.zeros((n, nc))
    primary = np.zeros(n, np.bool_)
    touched = np.zeros(n, np.bool_)
    active = np.empty(n, np.int64)
    n_active = 0
    frames = 0
    events = 0
    sites = 0
    released = 0.0
    completed = True
    while True:
        if n_active == 0:
            best = -1
            best_inc = 0.0
            for i in range(n):
                ey = yield_strain(S[i], u[i], m0, m1, w0, w1, w2)
                e2 = 0.0
                for a in range(nc):
                    e2 += e[i, a] * e[i, a]
                inc = e2 - ey * ey
                if inc > best_inc:
                    best_inc = inc
                    best = i
            if best < 0:
                break
            events += 1
            tot2 = 0.0
            for m in range(co_off.shape[0]):
                if m > 0 and uniform(rs) >= co_p[m]:
                    continue
                j = _site_plus(coords[best], co_off[m], L, dim)
                if step[j] > 0:
                    continue
                step[j] = 1
                active[n_active] = j
                n_active += 1
                for a in range(nc):
                    inten[j, a] = e[j, a]
                    tot2 += e[j, a] * e[j, a]
            nf = max(1, int(math.ceil(math.sqrt(tot2) / release)))
            for q in range(n_active):
                j = active[q]
                flen[j] = nf
                for a in range(nc):
                    inten[j, a] /= nf
            primary[best] = True
        if frames >= max_frames:
            completed = False
            break
        # one frame: every active site releases its per-frame intensity
        for q in range(n_active):
            i = active[q]
            imod = 0.0
            for a in range(nc):
                imod += inten[i, a] * inten[i, a]
            imod = math.sqrt(imod)
            released += imod
            ieta = eta_fixed if eta_fixed > 0.0 else imod
            unif = comp * ieta if primary[i] else 0.0
            _propagate(e, S, G, inten[i], coords[i], L, dim, coupling, unif)
            for a in range(nc):
                ep[i, a] += inten[i, a]
            if primary[i]:
                for kk in range(soft_off.shape[0]):
                    x = _site_plus(coords[i], soft_off[kk], L, dim)
                    ds = 0.0
                    for a in range(nc):
                        ds += soft_nf[kk, a] * inten[i, a]
                    rb = soft_bin[kk]
                    if rb >= 0:
                        eta = min(1.0, soft_eta[kk] * ieta)
                        ds += eta * (mavg[rb] + shift_c - S[x])
                        mavg[rb] = (1.0 - ema_rate) * mavg[rb] + ema_rate * S[x]
                        ds += math.sqrt(eta * (2.0 - eta)) * s_noise * normal(rs)
                    S[x] += ds
        frames += 1
        # advance the rearranging sites; finished ones get a new yield quantile
        q = 0
        while q < n_active:
            i = active[q]
            step[i] += 1
            if step[i] > flen[i]:
                step[i] = 0
                flen[i] = 0
                primary[i] = False
                for a in range(nc):
                    inten[i, a] = 0.0
                u[i] = uniform(rs)
                if not touched[i]:
                    touched[i] = True
                    sites += 1
                n_active -= 1
                active[q] = active[n_active]
            else:
                q += 1
    return frames, events, sites, released, completed
