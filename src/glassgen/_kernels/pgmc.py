"""Policy-guided Monte Carlo (PGMC) moves: arrays in, arrays out (Numba only).

One call of :func:`pgmc_moves` runs a batch of trial moves on ONE chain. Every random number is drawn
by the caller (numpy Generator) and passed in, as in :mod:`glassgen._kernels.mc`, whose cell lists and
:func:`~glassgen._kernels.mc.particle_energy` (energy of one particle, O(neighbours)) are reused here.

Move kinds (``kind`` per trial):

- ``KIND_GAUSS``: particle i (uniform), displacement delta = sigma_s xi, xi ~ N(0, I_d),
  sigma_s = exp(log_sigma[s]) (learned per species). Symmetric: log q(x->x') = log q(x'->x).
- ``KIND_LOCAL``: environment-aware displacement. Local descriptors of particle i at position x
  (``N_RADIAL`` radial densities G_k and a direction vector b, both over the other particles) go through
  a one-hidden-layer tanh network giving (o_0, o_1); log sigma = ls0[s] + o_0 and mean
  mu = o_1 b / sqrt(1 + |b|^2). delta = mu(x) + sigma(x) xi. The reverse density is evaluated with the
  descriptors of i at x' in the NEW configuration: log q(x'->x) = log N(-delta; mu(x'), sigma(x')^2).
- ``KIND_SWAP``: species swap of i in species a and j in species b, (a, b) = ``pair_a/pair_b[p]``
  with p drawn by the caller (state-independent, cancels). Uniform selection, or (``biased``)
  i chosen with probability exp(w_{p0} . f_i) / Z within species a (and j with w_{p1} in b), where
  f_k = (sum_j u(r_kj), sum_j g(r_kj / sigma)[, e_k^0, ..., e_k^{nsp-1}]) are pair-additive selection
  features (energy, a smooth coordination number and, extended, the energies e_k^t = sum_j u_{t s_j}(r_kj)
  k would have as species t, so that e_k^b - e_k^a is the energy change of flipping k alone; no
  self-images) maintained incrementally in ``feat``; e_k^t is kept only where ``need[s_k, t]`` (t = s_k or a
  swap partner of s_k, :func:`partner_need`), and summed afresh when a swap makes it needed. The reverse
  selection (j from a, i from b) is evaluated with the features of the NEW state.
  Production moves (``sel_tree``) keep one sum tree per pair and side over the weights exp(w . f_k - c)
  (:mod:`glassgen._kernels.sumtree`; c_s a shift fixed per call): a draw is a tree descent, and the new-
  state normaliser is the old root corrected by the weight changes of i, j and their neighbours, so a
  biased swap costs O(neighbours + log N) instead of O(N_a + N_b). Learning records (which need the mean
  features under the selection law) and the stale-reverse control scan the members instead.

Acceptance: log alpha = -beta dE + log q(x'->x) - log q(x->x'), accepted if log u < log alpha.
Displacements are never folded back by the minimum image: the pairing (x, delta) <-> (x', -delta) is an
involution on the torus, so detailed balance holds for every image path separately.

``mh_mode`` other than ``MH_EXACT`` exists only for negative controls in tests: ``MH_NO_PROPOSAL_RATIO``
drops log q(reverse) - log q(forward); ``MH_STALE_REVERSE`` evaluates the reverse density with the
pre-move descriptors/features (the classic bug). Both break detailed balance for asymmetric policies.

Units: lengths sigma_AA, energies epsilon (total), beta = 1/T.
"""

import math

import numpy as np
from numba import njit

from glassgen._kernels.mc import _cell_of, build_cells, home_cell, particle_energy, stencil_cell  # noqa: F401
from glassgen._kernels.pair import pair_uw
from glassgen._kernels.sumtree import TREE_B, tree_build, tree_leaf, tree_sample, tree_set, tree_size, tree_total

__all__ = ["KIND_GAUSS", "KIND_LOCAL", "KIND_SWAP", "MH_EXACT", "MH_NO_PROPOSAL_RATIO", "MH_STALE_REVERSE",
           "N_RADIAL", "N_SEL", "RADIAL_MU", "pgmc_moves", "local_descriptors", "selection_features", "partner_need",
           "local_log_density", "build_cells", "ext_energy", "swap_energy_change", "biased_displacements",
           "subset_energy"]

KIND_GAUSS, KIND_LOCAL, KIND_SWAP = 0, 1, 2
MH_EXACT, MH_NO_PROPOSAL_RATIO, MH_STALE_REVERSE = 0, 1, 2

#: radial descriptor centres and width, in units of sigma_ab; smooth cutoff (1 - (x/x_c)^2)^2 at x_c
N_RADIAL = 5
RADIAL_MU = (0.8, 1.1, 1.4, 1.7, 2.0)
RADIAL_WIDTH = 0.25
DESC_CUT = 2.2
#: the centres are equally spaced, so exp(-((x - mu_k)/w)^2) = exp(-z^2) q^k c_k with z = (x - mu_0)/w,
#: q = exp(2 z h), h = (mu_1 - mu_0)/w and c_k = exp(-(k h)^2): two exponentials per neighbour instead of N_RADIAL
_RADIAL_H = (RADIAL_MU[1] - RADIAL_MU[0]) / RADIAL_WIDTH
assert all(abs(RADIAL_MU[k] - RADIAL_MU[0] - k * _RADIAL_H * RADIAL_WIDTH) < 1e-12 for k in range(N_RADIAL))
_RADIAL_C = np.array([math.exp(-(k * _RADIAL_H) ** 2) for k in range(N_RADIAL)])
#: coordination feature g(x) = (1 - (x / COORD_CUT)^2)^2 for x = r / sigma_ab < COORD_CUT
COORD_CUT = 1.5
N_SEL = 2
_LOG_2PI = math.log(2.0 * math.pi)
#: pass modes of _neigh_loop as numpy int64 scalars: Numba types a global numpy scalar as int64 but a Python
#: int literal as Literal[int], which would compile _neigh_loop once per mode (the former modes 0, 4 and 6 are
#: the dedicated passes _env_energy_pass and _flip_pass); _M0 is the int64 zero of touched counts
_M0, _M1, _M2, _M3, _M5 = (np.int64(k) for k in (0, 1, 2, 3, 5))


@njit(cache=True, error_model="numpy")
def ext_energy(x, s, ext_k, ext_c, box):
    """External harmonic well 0.5 k_s |x - c|^2 (minimum image), 0 where k_s = 0 (toy targets)."""
    k = ext_k[s]
    if k == 0.0:
        return 0.0
    r2 = 0.0
    for a in range(x.shape[0]):
        dx = x[a] - ext_c[a]
        dx -= box[a] * math.floor(dx / box[a] + 0.5)
        r2 += dx * dx
    return 0.5 * k * r2


@njit(cache=True, error_model="numpy")
def _energy(i, x, s, pos, species, box, nsp, pp, use_cells, ncell, cells, cell_count, shifts, ext_k, ext_c):
    sig2, eps4, rc2, c0, c1, c2, c4, rs2 = pp
    return (particle_energy(i, x, s, pos, species, box, nsp, sig2, eps4, rc2, c0, c1, c2, c4, rs2, use_cells,
                            ncell, cells, cell_count, shifts) + ext_energy(x, s, ext_k, ext_c, box))


@njit(cache=True, error_model="numpy", inline="always")
def _descriptor_terms(r2, sig2_ab, dx0, dx1, dx2, d, out):
    """Add one neighbour at squared distance r2 (separation x_j - x = (dx0, dx1[, dx2])) to the local
    descriptors in out[0:N_RADIAL] (G_k) and out[N_RADIAL:N_RADIAL + d] (b); nothing beyond DESC_CUT sigma_ab."""
    xr2 = r2 / sig2_ab
    if xr2 < DESC_CUT * DESC_CUT:
        xr = math.sqrt(xr2)
        t = 1.0 - xr2 / (DESC_CUT * DESC_CUT)
        fc = t * t
        z = (xr - RADIAL_MU[0]) / RADIAL_WIDTH
        gk = math.exp(-z * z) * fc
        q = math.exp(2.0 * _RADIAL_H * z)
        for k in range(N_RADIAL):
            out[k] += gk * _RADIAL_C[k]
            gk *= q
        inv = 1.0 / xr2
        phi = fc * inv * inv * inv
        r = math.sqrt(r2)
        out[N_RADIAL] -= phi * dx0 / r
        out[N_RADIAL + 1] -= phi * dx1 / r
        if d == 3:
            out[N_RADIAL + 2] -= phi * dx2 / r


@njit(cache=True, error_model="numpy", inline="always")
def _flip_terms(j, r2, ab, sc, sj, s_new, nsp, pp, need, out, dfeat, touched, nt, is_touched):
    """Neighbour j (species sj, squared distance r2) of a particle flipping from species sc to s_new at a
    fixed position (ab = sc nsp + sj): out[0] += the flipping particle's energy change, out[1] += its new
    coordination term, out[2] += its new pair energy; dfeat[j] += the change of every feature of j (energy,
    coordination and, with extended features, the e_j^t that need[sj, t] asks for), tracking touched rows.
    With extended features, out[3 + t] += u_{t sj}(r) for each t that the new species needs and the old
    did not (need[s_new, t] and not need[sc, t]): those e^t of the flipping particle are not current and are
    summed afresh here. Returns the touched count."""
    sig2 = pp[0]
    ext = dfeat.shape[1] > N_SEL  # extended: the caller's cutoff is the largest one, for every term
    abn = s_new * nsp + sj
    # one pass over the species t of the neighbour's would-be partner: t = s_j gives the pair energy of j
    # with the flipping particle before (u_o) and after (u_n) the flip; with extended features every t that
    # j's species needs gives the change of e_j^t (pair parameters are symmetric, u_{t sc} = u_{sc t})
    u_o = 0.0
    u_n = 0.0
    hit = False
    for t in range(0 if ext else sj, nsp if ext else sj + 1):
        if t != sj and not need[sj, t]:
            continue
        abo = t * nsp + sc
        abt = t * nsp + s_new
        ut_o = 0.0
        ut_n = 0.0
        if r2 < pp[2][abo]:
            ut_o, w, _ = pair_uw(r2, abo, pp[0], pp[1], pp[3], pp[4], pp[5], pp[6], pp[7], 7)
        if r2 < pp[2][abt]:
            ut_n, w, _ = pair_uw(r2, abt, pp[0], pp[1], pp[3], pp[4], pp[5], pp[6], pp[7], 7)
        if t == sj:
            u_o = ut_o
            u_n = ut_n
        elif ut_o != 0.0 or ut_n != 0.0:
            hit = True
        if ext:
            dfeat[j, N_SEL + t] += ut_n - ut_o
    if ext:  # energies of the flipping particle as the species t its new species needs and its old did not
        for t in range(nsp):
            if need[s_new, t] and not need[sc, t]:
                abt = t * nsp + sj
                if r2 < pp[2][abt]:
                    ut, w, _ = pair_uw(r2, abt, pp[0], pp[1], pp[3], pp[4], pp[5], pp[6], pp[7], 7)
                    out[3 + t] += ut
    g_o = 0.0
    g_n = 0.0
    xr2 = r2 / sig2[ab]
    if xr2 < COORD_CUT * COORD_CUT and (ext or r2 < pp[2][ab]):
        t = 1.0 - xr2 / (COORD_CUT * COORD_CUT)
        g_o = t * t
    xr2 = r2 / sig2[abn]
    if xr2 < COORD_CUT * COORD_CUT and (ext or r2 < pp[2][abn]):
        t = 1.0 - xr2 / (COORD_CUT * COORD_CUT)
        g_n = t * t
    out[0] += u_n - u_o
    out[1] += g_n
    out[2] += u_n
    hit = hit or u_o != 0.0 or u_n != 0.0 or g_o != 0.0 or g_n != 0.0
    if hit:
        dfeat[j, 0] += u_n - u_o
        dfeat[j, 1] += g_n - g_o
        if not is_touched[j]:
            is_touched[j] = True
            touched[nt] = j
            nt += 1
    return nt


@njit(cache=True, error_model="numpy", inline="always")
def _pair_contrib(j, r2, dxv, ab, sc, sj, nsp, pp, need, mode, sign, out, dfeat, touched, nt, is_touched):
    """One neighbour j at squared distance r2 (dxv = x_j - x): add its contribution for ``mode``.

    ab = sc nsp + sj (sc: species of the central particle, sj: of the neighbour).
    mode 1: sign * (u, g) into dfeat[j] (feature change of neighbour j), tracking touched rows; with
        extended features (dfeat has N_SEL + nsp columns) also sign * u_{t s}(r) into dfeat[j, N_SEL + t];
    mode 2: (u, g) into out[0:2] (features of the central particle); extended (out has N_SEL + nsp rows):
        u_{t s_j}(r) into out[N_SEL + t], the energy the central particle would have as species t;
    extended columns t are summed only where need[species, t] (see :func:`selection_features`);
    mode 3: both 1 and 2 (the energy of the central particle and its neighbours' feature changes in one pass);
    mode 5: mode 3 and the descriptors (out[0:N_RADIAL], G_k, and out[N_RADIAL:N_RADIAL + d], b; untracked
        moves take them from :func:`_env_energy_pass`) in one pass, the central particle's features in
        out[N_RADIAL + d:];
    """
    sig2 = pp[0]
    d = dxv.shape[0]
    if mode == 5:
        _descriptor_terms(r2, sig2[ab], dxv[0], dxv[1], dxv[2] if d == 3 else 0.0, d, out)
    fo = N_RADIAL + d if mode == 5 else 0  # where the central particle's features go in out
    u = 0.0
    g = 0.0
    if r2 < pp[2][ab]:
        u, w, _ = pair_uw(r2, ab, pp[0], pp[1], pp[3], pp[4], pp[5], pp[6], pp[7], 7)
    xr2 = r2 / sig2[ab]
    if xr2 < COORD_CUT * COORD_CUT:
        t = 1.0 - xr2 / (COORD_CUT * COORD_CUT)
        g = t * t
    if mode >= 2:
        out[fo] += u
        out[fo + 1] += g
        if out.shape[0] - fo > N_SEL:  # energies of the central particle as every species t
            for t in range(nsp):
                if t == sc:
                    out[fo + N_SEL + t] += u
                    continue
                if not need[sc, t]:
                    continue
                abt = t * nsp + sj
                if r2 < pp[2][abt]:
                    ut, wt, _ = pair_uw(r2, abt, pp[0], pp[1], pp[3], pp[4], pp[5], pp[6], pp[7], 7)
                    out[fo + N_SEL + t] += ut
        if mode == 2:
            return nt
    hit = u != 0.0 or g != 0.0
    if dfeat.shape[1] > N_SEL:  # energies of neighbour j as every species t (the central one is species sc)
        for t in range(nsp):
            if t == sj:
                dfeat[j, N_SEL + t] += sign * u
                continue
            if not need[sj, t]:
                continue
            abt = t * nsp + sc
            if r2 < pp[2][abt]:
                ut, wt, _ = pair_uw(r2, abt, pp[0], pp[1], pp[3], pp[4], pp[5], pp[6], pp[7], 7)
                dfeat[j, N_SEL + t] += sign * ut
                hit = True
    if hit:
        dfeat[j, 0] += sign * u
        dfeat[j, 1] += sign * g
        if not is_touched[j]:
            is_touched[j] = True
            touched[nt] = j
            nt += 1
    return nt


@njit(cache=True, error_model="numpy")
def _neigh_loop(i, skip2, x, s, pos, species, box, nsp, pp, need, use_cells, ncell, cells, cell_count, shifts,
                mode, sign, out, dfeat, touched, nt, is_touched, dxv):
    """Visit every neighbour j (j != i, j != skip2, all periodic images in image mode) of a particle of
    species s placed at x, calling :func:`_pair_contrib`. Returns the updated touched count. Pairs beyond
    the cutoff of (s, s_j) are skipped, or, with extended features in modes 1-3 and 5, beyond the largest
    cutoff."""
    n, d = pos.shape
    base = s * nsp
    rc_desc = pp[2]
    rc_ext = -1.0
    if (1 <= mode <= 3 or mode == 5) and (dfeat.shape[1] > N_SEL or (mode == 2 and out.shape[0] > N_SEL)):
        for v in rc_desc:
            rc_ext = max(rc_ext, v)
    if use_cells:
        cc0 = home_cell(x, box, ncell)
        for off in range(3**d):
            flat = stencil_cell(cc0, ncell, off)
            for q in range(cell_count[flat]):
                j = cells[flat, q]
                if j == i or j == skip2:
                    continue
                r2 = 0.0
                for k in range(d):
                    dx = pos[j, k] - x[k]
                    dx -= box[k] * math.floor(dx / box[k] + 0.5)
                    dxv[k] = dx
                    r2 += dx * dx
                sj = species[j]
                ab = base + sj
                if r2 < (rc_desc[ab] if rc_ext < 0.0 else rc_ext) and r2 > 0.0:
                    nt = _pair_contrib(j, r2, dxv, ab, s, sj, nsp, pp, need, mode, sign, out, dfeat, touched, nt,
                                       is_touched)
        return nt
    nimg = shifts.shape[0]
    min_image = nimg == 1  # see glassgen._kernels.neighbors.mc_image_shifts
    for j in range(n):
        if j == i or j == skip2:
            continue
        sj = species[j]
        ab = base + sj
        for c in range(nimg):
            r2 = 0.0
            for k in range(d):
                dx = pos[j, k] + shifts[c, k] - x[k]
                if min_image:
                    dx -= box[k] * math.floor(dx / box[k] + 0.5)
                dxv[k] = dx
                r2 += dx * dx
            if r2 < (rc_desc[ab] if rc_ext < 0.0 else rc_ext) and r2 > 0.0:
                nt = _pair_contrib(j, r2, dxv, ab, s, sj, nsp, pp, need, mode, sign, out, dfeat, touched, nt,
                                   is_touched)
    return nt


@njit(cache=True, error_model="numpy")
def _flip_pass(i, x, s, s_new, pos, species, box, nsp, pp, need, use_cells, ncell, cells, cell_count, shifts, out,
               dfeat, touched, nt, is_touched):
    """One neighbour pass for the flip of particle i (at x) from species s to s_new: :func:`_flip_terms` for
    every neighbour within the largest cutoff (j != i, every periodic image in image mode). Returns the
    updated touched count. Written out with scalar separations, like :func:`_env_energy_pass` (the generic
    :func:`_neigh_loop` took 1.07x as long: the pair energies, up to six per neighbour with extended features,
    dominate; four for a neighbour whose species has one swap partner, since 2026-12-05).

    The two loops share their shape on purpose. One loop for both, specialised by a literal ``kind`` argument
    (Numba compiles one version per kind), was measured on 2026-12-04: the descriptor pass took 2.4-2.5 us
    against 1.42 for its own loop at KA2D N = 43, with the flip terms inlined or called, so it was dropped. So
    was an inlined helper for the separation step shared by both loops (and like the cells loop of
    :func:`glassgen._kernels.mc.particle_energy`): 1.97 against 1.42 us for the descriptor pass, 7.1 against
    6.4 us for a flip pass, same chains bitwise."""
    n, d = pos.shape
    base = s * nsp
    rc_max = -1.0
    for v in pp[2]:
        rc_max = max(rc_max, v)
    x2 = x[2] if d == 3 else 0.0
    if use_cells:
        cc0 = home_cell(x, box, ncell)
        for off in range(3**d):
            flat = stencil_cell(cc0, ncell, off)
            for q in range(cell_count[flat]):
                j = cells[flat, q]
                if j == i:
                    continue
                dx0 = pos[j, 0] - x[0]
                dx0 -= box[0] * math.floor(dx0 / box[0] + 0.5)
                dx1 = pos[j, 1] - x[1]
                dx1 -= box[1] * math.floor(dx1 / box[1] + 0.5)
                dx2 = 0.0
                if d == 3:
                    dx2 = pos[j, 2] - x2
                    dx2 -= box[2] * math.floor(dx2 / box[2] + 0.5)
                r2 = dx0 * dx0 + dx1 * dx1 + dx2 * dx2
                if r2 < rc_max and r2 > 0.0:
                    sj = species[j]
                    nt = _flip_terms(j, r2, base + sj, s, sj, s_new, nsp, pp, need, out, dfeat, touched, nt,
                                     is_touched)
        return nt
    nimg = shifts.shape[0]
    min_image = nimg == 1  # see glassgen._kernels.neighbors.mc_image_shifts
    for j in range(n):
        if j == i:
            continue
        sj = species[j]
        for c in range(nimg):
            dx0 = pos[j, 0] + shifts[c, 0] - x[0]
            dx1 = pos[j, 1] + shifts[c, 1] - x[1]
            dx2 = pos[j, 2] + shifts[c, 2] - x2 if d == 3 else 0.0
            if min_image:
                dx0 -= box[0] * math.floor(dx0 / box[0] + 0.5)
                dx1 -= box[1] * math.floor(dx1 / box[1] + 0.5)
                if d == 3:
                    dx2 -= box[2] * math.floor(dx2 / box[2] + 0.5)
            r2 = dx0 * dx0 + dx1 * dx1 + dx2 * dx2
            if r2 < rc_max and r2 > 0.0:
                nt = _flip_terms(j, r2, base + sj, s, sj, s_new, nsp, pp, need, out, dfeat, touched, nt, is_touched)
    return nt


@njit(cache=True, error_model="numpy")
def local_descriptors(i, x, s, pos, species, box, nsp, pp, use_cells, ncell, cells, cell_count, shifts, out):
    """Descriptors of particle i (species s) placed at x against the other particles (i's images excluded).

    out (N_RADIAL + d,) is overwritten: G_k = sum_j exp(-((r/sig_ab - mu_k)/w)^2) fc, then
    b = sum_j fc (sig_ab/r)^6 (x - x_j)/r, fc = (1 - (r/(2.2 sig_ab))^2)^2. Requires 2.2 sig_ab <= r_c,ab.
    """
    _env_energy_pass(i, x, s, pos, species, box, nsp, pp, use_cells, ncell, cells, cell_count, shifts, out)


@njit(cache=True, error_model="numpy")
def _env_energy_pass(i, x, s, pos, species, box, nsp, pp, use_cells, ncell, cells, cell_count, shifts, out):
    """Descriptors of particle i (species s) placed at x and, if out has N_RADIAL + d + 1 rows, its pair energy
    in out[N_RADIAL + d], from one neighbour pass (no self-image terms; out is overwritten).

    The hot path of environment-aware displacements (two passes per move). The same neighbour loop as
    :func:`_neigh_loop`, written out with the separation in scalars: the generic loop, with its mode branches
    and separation array, cost 3.3x this one (KA2D N = 43, 2026-12-04)."""
    n, d = pos.shape
    for k in range(out.shape[0]):
        out[k] = 0.0
    energy = out.shape[0] > N_RADIAL + d
    sig2 = pp[0]
    rc2 = pp[2]
    base = s * nsp
    x2 = x[2] if d == 3 else 0.0
    e = 0.0
    if use_cells:
        cc0 = home_cell(x, box, ncell)
        for off in range(3**d):
            flat = stencil_cell(cc0, ncell, off)
            for q in range(cell_count[flat]):
                j = cells[flat, q]
                if j == i:
                    continue
                dx0 = pos[j, 0] - x[0]
                dx0 -= box[0] * math.floor(dx0 / box[0] + 0.5)
                dx1 = pos[j, 1] - x[1]
                dx1 -= box[1] * math.floor(dx1 / box[1] + 0.5)
                dx2 = 0.0
                if d == 3:
                    dx2 = pos[j, 2] - x2
                    dx2 -= box[2] * math.floor(dx2 / box[2] + 0.5)
                r2 = dx0 * dx0 + dx1 * dx1 + dx2 * dx2
                ab = base + species[j]
                if r2 < rc2[ab] and r2 > 0.0:
                    if energy:
                        u, w, _ = pair_uw(r2, ab, pp[0], pp[1], pp[3], pp[4], pp[5], pp[6], pp[7], 7)
                        e += u
                    _descriptor_terms(r2, sig2[ab], dx0, dx1, dx2, d, out)
    else:
        nimg = shifts.shape[0]
        min_image = nimg == 1  # see glassgen._kernels.neighbors.mc_image_shifts
        for j in range(n):
            if j == i:
                continue
            ab = base + species[j]
            for c in range(nimg):
                dx0 = pos[j, 0] + shifts[c, 0] - x[0]
                dx1 = pos[j, 1] + shifts[c, 1] - x[1]
                dx2 = pos[j, 2] + shifts[c, 2] - x2 if d == 3 else 0.0
                if min_image:
                    dx0 -= box[0] * math.floor(dx0 / box[0] + 0.5)
                    dx1 -= box[1] * math.floor(dx1 / box[1] + 0.5)
                    if d == 3:
                        dx2 -= box[2] * math.floor(dx2 / box[2] + 0.5)
                r2 = dx0 * dx0 + dx1 * dx1 + dx2 * dx2
                if r2 < rc2[ab] and r2 > 0.0:
                    if energy:
                        u, w, _ = pair_uw(r2, ab, pp[0], pp[1], pp[3], pp[4], pp[5], pp[6], pp[7], 7)
                        e += u
                    _descriptor_terms(r2, sig2[ab], dx0, dx1, dx2, d, out)
    if energy:
        out[N_RADIAL + d] = e


@njit(cache=True, error_model="numpy")
def _own_features(i, skip2, x, s, pos, species, box, nsp, pp, need, use_cells, ncell, cells, cell_count, shifts,
                  out, dxv):
    out[:] = 0.0
    dummy = np.zeros((1, 2))
    t = np.zeros(1, dtype=np.int64)
    it = np.zeros(1, dtype=np.bool_)
    _neigh_loop(i, skip2, x, s, pos, species, box, nsp, pp, need, use_cells, ncell, cells, cell_count, shifts, _M2,
                1.0, out, dummy, t, _M0, it, dxv)


@njit(cache=True, error_model="numpy", inline="always")
def _add_pair_features(k, j, r2, sk, sj, nsp, pp, need, feat):
    """Pair (k, j) at squared distance r2 within the caller's cutoff (one image): its terms in the features
    of both (mode 2 of :func:`_pair_contrib` for k and for j)."""
    ab = sk * nsp + sj
    u = 0.0
    if r2 < pp[2][ab]:
        u, w, _ = pair_uw(r2, ab, pp[0], pp[1], pp[3], pp[4], pp[5], pp[6], pp[7], 7)
    xr2 = r2 / pp[0][ab]
    g = 0.0
    if xr2 < COORD_CUT * COORD_CUT:
        t = 1.0 - xr2 / (COORD_CUT * COORD_CUT)
        g = t * t
    feat[k, 0] += u
    feat[k, 1] += g
    feat[j, 0] += u
    feat[j, 1] += g
    if feat.shape[1] > N_SEL:  # e_k^t += u_{t s_j}(r), e_j^t += u_{t s_k}(r)
        for side in range(2):
            row, s_row, s_other = (k, sk, sj) if side == 0 else (j, sj, sk)
            for t in range(nsp):
                if t == s_row:
                    feat[row, N_SEL + t] += u
                    continue
                if not need[s_row, t]:
                    continue
                abt = t * nsp + s_other
                if r2 < pp[2][abt]:
                    ut, wt, _ = pair_uw(r2, abt, pp[0], pp[1], pp[3], pp[4], pp[5], pp[6], pp[7], 7)
                    feat[row, N_SEL + t] += ut


def partner_need(nsp: int, pair_a: np.ndarray, pair_b: np.ndarray) -> np.ndarray:
    """(nsp, nsp) bool: need[s, t] when the single-flip energy e^t of a particle of species s can enter a swap
    selection, i.e. t = s or (s, t) is a swap pair in either order (a side's weights touch e^a and e^b only).
    ``np.ones((nsp, nsp), bool)`` keeps every e^t (what every kernel computed before 2026-12-05)."""
    need = np.eye(nsp, dtype=np.bool_)
    for a, b in zip(np.asarray(pair_a).tolist(), np.asarray(pair_b).tolist(), strict=True):
        need[a, b] = need[b, a] = True
    return need


@njit(cache=True, error_model="numpy")
def selection_features(pos, species, box, nsp, pp, need, use_cells, ncell, cells, cell_count, shifts, feat):
    """Selection features of every particle from scratch into feat (N, F): (energy, coordination) and, if
    F = N_SEL + nsp (extended), the energies e_k^t = sum_j u_{t s_j}(r_kj) that k would have as species t,
    for the t its species needs: need (nsp, nsp) bool, need[s, t] (always true for t = s); the other
    columns are left 0 here and are not kept current by the moves (nothing reads them: a species' selection
    weights are zero there). A single-flip policy needs e^t for the swap partners t of s only
    (:func:`partner_need`); with pairs (A, C) and (B, C) of the ternary KA2D that skips 2 of the 4 extra pair
    energies of A-A, A-B and B-B pairs.

    Each pair is visited once (cells: the 3^d stencil; image mode: every periodic image, or only the minimum
    image when the largest cutoff is at most half the smallest box side). Same sums as the per-particle
    passes of the incremental updates (mode 2 of :func:`_pair_contrib`), up to round-off."""
    n, d = pos.shape
    feat[:] = 0.0
    rc2 = pp[2]
    ext = feat.shape[1] > N_SEL
    rc2_max = 0.0
    for v in rc2:
        rc2_max = max(rc2_max, v)
    lmin = box[0]
    for a in range(d):
        lmin = min(lmin, box[a])
    min_image = 4.0 * rc2_max <= lmin * lmin
    for k in range(n):
        sk = species[k]
        if use_cells or min_image:  # minimum image over the 3^d cells around k, or over all j > k
            cc0 = home_cell(pos[k], box, ncell)  # (unused without cells)
            flat = 0
            for off in range(3**d if use_cells else 1):
                if use_cells:
                    flat = stencil_cell(cc0, ncell, off)
                for q in range(cell_count[flat] if use_cells else n - k - 1):
                    j = cells[flat, q] if use_cells else k + 1 + q
                    if j <= k:
                        continue
                    r2 = 0.0
                    for a in range(d):
                        dx = pos[j, a] - pos[k, a]
                        dx -= box[a] * math.floor(dx / box[a] + 0.5)
                        r2 += dx * dx
                    sj = species[j]
                    cut2 = rc2_max if ext else rc2[sk * nsp + sj]
                    if r2 < cut2 and r2 > 0.0:
                        _add_pair_features(k, j, r2, sk, sj, nsp, pp, need, feat)
        else:
            for j in range(k + 1, n):
                sj = species[j]
                cut2 = rc2_max if ext else rc2[sk * nsp + sj]
                for c in range(shifts.shape[0]):
                    r2 = 0.0
                    for a in range(d):
                        dx = pos[j, a] + shifts[c, a] - pos[k, a]
                        r2 += dx * dx
                    if r2 < cut2 and r2 > 0.0:
                        _add_pair_features(k, j, r2, sk, sj, nsp, pp, need, feat)


@njit(cache=True, error_model="numpy")
def selection_features_per_particle(pos, species, box, nsp, pp, need, use_cells, ncell, cells, cell_count, shifts,
                                    feat):
    """Reference for tests: :func:`selection_features` by one neighbour pass per particle (each pair twice)."""
    n, d = pos.shape
    out = np.zeros(feat.shape[1])
    dxv = np.empty(d)
    for k in range(n):
        _own_features(k, -1, pos[k], species[k], pos, species, box, nsp, pp, need, use_cells, ncell, cells,
                      cell_count, shifts, out, dxv)
        feat[k, :] = out


@njit(cache=True, error_model="numpy")
def _network(f, s, ls0, W1, b1, W2, b2):
    """(log sigma, drift coefficient, anisotropy) of the local policy for descriptors f (N_RADIAL,); the
    anisotropy is 0 (isotropic) for a network with two outputs (W2 (2, H))."""
    o0 = b2[0]
    o1 = b2[1]
    aniso = W2.shape[0] > 2
    o2 = b2[2] if aniso else 0.0
    for h in range(W1.shape[0]):
        a = b1[h]
        for k in range(W1.shape[1]):
            a += W1[h, k] * f[k]
        t = math.tanh(a)
        o0 += W2[0, h] * t
        o1 += W2[1, h] * t
        if aniso:
            o2 += W2[2, h] * t
    return ls0[s] + o0, o1, o2


@njit(cache=True, error_model="numpy")
def local_log_density(delta, desc, s, ls0, W1, b1, W2, b2):
    """log N(delta; c e, Sigma) of the local policy (desc = (G (N_RADIAL,), b (d,)), e = b / sqrt(1 + |b|^2)):
    width sigma across the axis u = b / |b| and sigma exp(a) along it, i.e. Sigma^-1 = sigma^-2 (I - gamma u u^T)
    with gamma = 1 - exp(-2 a); (log sigma, c, a) from :func:`_network` (a = 0, or b = 0: isotropic)."""
    d = delta.shape[0]
    ls, c, an = _network(desc, s, ls0, W1, b1, W2, b2)
    nb2 = 0.0
    for a in range(d):
        nb2 += desc[N_RADIAL + a] ** 2
    scale = c / math.sqrt(1.0 + nb2)
    inv_var = math.exp(-2.0 * ls)
    q = 0.0
    zb = 0.0
    for a in range(d):
        z = delta[a] - scale * desc[N_RADIAL + a]
        q += z * z
        zb += z * desc[N_RADIAL + a]
    if an == 0.0 or nb2 == 0.0:  # isotropic (the arithmetic of the two-output network, bit for bit)
        return -0.5 * q * inv_var - d * ls - 0.5 * d * _LOG_2PI
    gamma = -math.expm1(-2.0 * an)
    return -0.5 * (q - gamma * zb * zb / nb2) * inv_var - d * ls - an - 0.5 * d * _LOG_2PI


@njit(cache=True, error_model="numpy")
def swap_energy_change(i, j, pos, species, box, nsp, pp, use_cells, ncell, cells, cell_count, shifts, ext_k,
                       ext_c):
    """Energy change of exchanging the species of i and j (species left unchanged on return)."""
    si = species[i]
    sj = species[j]
    e_old = _energy(i, pos[i], si, pos, species, box, nsp, pp, use_cells, ncell, cells, cell_count, shifts,
                    ext_k, ext_c)
    e_old += _energy(j, pos[j], sj, pos, species, box, nsp, pp, use_cells, ncell, cells, cell_count, shifts,
                     ext_k, ext_c)
    species[i] = sj
    species[j] = si
    e_new = _energy(i, pos[i], sj, pos, species, box, nsp, pp, use_cells, ncell, cells, cell_count, shifts,
                    ext_k, ext_c)
    e_new += _energy(j, pos[j], si, pos, species, box, nsp, pp, use_cells, ncell, cells, cell_count, shifts,
                     ext_k, ext_c)
    species[i] = si
    species[j] = sj
    return e_new - e_old


@njit(cache=True, error_model="numpy")
def _feature(k, a, feat, use_new, swap_out, f_in, is_touched, dfeat):
    """Selection feature a of particle k, in the old state or (``use_new``) the state after the move."""
    fk = feat[k, a]
    if use_new:
        if k == swap_out:
            fk = f_in[a]
        elif is_touched[k]:
            fk += dfeat[k, a]
    return fk


@njit(cache=True, error_model="numpy")
def _selection_logit(k, wrow, feat, use_new, swap_out, f_in, is_touched, dfeat):
    """wrow . features of particle k, in the old state or (``use_new``) the state after the move."""
    lk = 0.0
    for a in range(wrow.shape[0]):
        if wrow[a] != 0.0:
            lk += wrow[a] * _feature(k, a, feat, use_new, swap_out, f_in, is_touched, dfeat)
    return lk


@njit(cache=True, error_model="numpy")
def _select(u, sp, members, n_members, wrow, feat, dfeat, is_touched, swap_out, swap_in, f_in, use_new,
            biased, gmean, want_mean, lbuf):
    """Pick a member of species sp with probability exp(wrow . f) / Z (uniform if not biased).

    In the new state (use_new) the member ``swap_out`` is replaced by ``swap_in`` with features f_in and
    other features are feat + dfeat. If u < 0 no particle is drawn and the log-probability of
    ``swap_in`` is returned instead (evaluation only). Returns (chosen index, log P(chosen)).
    With ``want_mean`` (learning records), gmean (F,) receives the mean features under the selection
    distribution; otherwise it is not touched. lbuf (>= members of sp,) is scratch: every logit is computed
    once (and the chosen one again) and every weight exponentiated once; the draw stops early.
    """
    m = n_members[sp]
    if not biased:
        for a in range(gmean.shape[0]):
            gmean[a] = 0.0
        if u < 0.0:
            return swap_in, -math.log(m)
        k = int(u * m)
        if k >= m:
            k = m - 1
        return members[sp, k], -math.log(m)
    lmax = -np.inf
    q_in = -1
    l_in = 0.0
    for q in range(m):
        k = members[sp, q]
        lk = _selection_logit(k, wrow, feat, use_new, swap_out, f_in, is_touched, dfeat)
        lbuf[q] = lk
        if lk > lmax:
            lmax = lk
        if u < 0.0 and ((use_new and k == swap_out and swap_in >= 0) or (not use_new and k == swap_in)):
            q_in = q
            l_in = lk
    z = 0.0
    if want_mean:
        for a in range(gmean.shape[0]):
            gmean[a] = 0.0
    for q in range(m):
        w = math.exp(lbuf[q] - lmax)
        lbuf[q] = w
        z += w
        if want_mean:
            k = members[sp, q]
            for a in range(gmean.shape[0]):
                gmean[a] += w * _feature(k, a, feat, use_new, swap_out, f_in, is_touched, dfeat)
    if want_mean:
        for a in range(gmean.shape[0]):
            gmean[a] /= z
    logz = lmax + math.log(z)
    if u < 0.0:
        if q_in < 0:
            return swap_in, -np.inf
        return swap_in, l_in - logz
    target = u * z
    acc = 0.0
    q = 0
    while q < m - 1:
        acc += lbuf[q]
        if acc > target:
            break
        q += 1
    k = members[sp, q]  # its logit again (lbuf now holds weights): log P exactly as the logit minus log Z
    return k, _selection_logit(k, wrow, feat, use_new, swap_out, f_in, is_touched, dfeat) - logz


@njit(cache=True, error_model="numpy")
def _clear_touched(dfeat, touched, nt, is_touched):
    for q in range(nt):
        k = touched[q]
        dfeat[k, :] = 0.0
        is_touched[k] = False
    return 0


@njit(cache=True, error_model="numpy")
def _move_cells(i, xnew, box, ncell, cells, cell_count, cell_of, slot):
    """Move particle i to the cell of xnew; False (nothing changed) if that cell is full."""
    cap = cells.shape[1]
    cnew = _cell_of(xnew, box, ncell)
    cold = cell_of[i]
    if cnew == cold:
        return True
    if cell_count[cnew] >= cap:
        return False
    last = cells[cold, cell_count[cold] - 1]
    cells[cold, slot[i]] = last
    slot[last] = slot[i]
    cell_count[cold] -= 1
    cells[cnew, cell_count[cnew]] = i
    slot[i] = cell_count[cnew]
    cell_count[cnew] += 1
    cell_of[i] = cnew
    return True



# ---------------------------------------------------------------------------- selection sum trees
#: a leaf weight is exp(logit - shift_s); the trees are rebuilt (new shifts) when an exponent would exceed
#: this or a root leaves (_TREE_TINY, 1 / _TREE_TINY), so weights never overflow or vanish wholesale
_TREE_EXP_MAX = 500.0
_TREE_TINY = 1e-250
#: the new-state normaliser by differences is used only when its round-off is below this relative level;
#: otherwise (one weight dominating and leaving) it is recomputed by a scan
_TREE_CANCEL = 1e-6


@njit(cache=True, error_model="numpy")
def _logit(wrow, f):
    """wrow . f (f: (F,) features of a particle)."""
    lk = 0.0
    for a in range(wrow.shape[0]):
        lk += wrow[a] * f[a]
    return lk


@njit(cache=True, error_model="numpy")
def _sel_trees_build(members, n_members, tree_sp, wq, feat, trees, tree_len, shift):
    """Build every selection tree: tree r (one per swap pair and side) is over the members of species
    sp = tree_sp[r], leaf q = exp(wq[r] . f_{members[sp, q]} - shift_r), shift_r = its largest logit.
    trees (R, L) rows hold trees of length tree_len[r]."""
    for r in range(tree_sp.shape[0]):
        sp = tree_sp[r]
        m = n_members[sp]
        tree_len[r] = 0
        if m == 0:
            continue
        lg = np.empty(m)
        lmax = -np.inf
        for q in range(m):
            lg[q] = _logit(wq[r], feat[members[sp, q]])
            if lg[q] > lmax:
                lmax = lg[q]
        shift[r] = lmax
        for q in range(m):
            lg[q] = math.exp(lg[q] - lmax)
        t = tree_build(lg)
        tree_len[r] = t.shape[0]
        trees[r, :t.shape[0]] = t


@njit(cache=True, error_model="numpy")
def _sel_tree_set(k, sp, member_pos, tree_sp, wq, feat, trees, tree_len, shift):
    """Set the leaves of particle k (species sp) in every tree of sp from its current features; False if a
    rebuild is needed."""
    ok = True
    for r in range(tree_sp.shape[0]):
        if tree_sp[r] != sp:
            continue
        x = _logit(wq[r], feat[k]) - shift[r]
        if x > _TREE_EXP_MAX:
            ok = False
            continue
        tr = trees[r, :tree_len[r]]
        tree_set(tr, member_pos[k], math.exp(x))
        z = tree_total(tr)
        ok &= z > _TREE_TINY and z < 1.0 / _TREE_TINY
    return ok


@njit(cache=True, error_model="numpy")
def _sel_tree_draw(u, r, sp, members, n_members, wq, feat, trees, tree_len, shift):
    """(particle, log P) drawn from species sp with P proportional to exp(wq[r] . f): a descent of tree r."""
    tr = trees[r, :tree_len[r]]
    q = tree_sample(tr, u)
    if q >= n_members[sp]:  # only if every weight is 0 (excluded by the rebuild rule)
        q = n_members[sp] - 1
    k = members[sp, q]
    return k, _logit(wq[r], feat[k]) - shift[r] - math.log(tree_total(tr))


@njit(cache=True, error_model="numpy")
def _sel_tree_reverse(i, j, ra, rb, sa, sb, fi_new, fj_new, member_pos, species, wq, feat, dfeat, touched, nt,
                      trees, tree_len, shift):
    """log P of the reverse selection of an (i in sa) <-> (j in sb) swap, in the new state, from the trees
    ra (side a of the pair) and rb (side b).

    Z_a' = Z_a - w_a(i) + w_a(j, f_j') + sum over touched k of species a of (w(f_k + df_k) - w(f_k)), and
    likewise Z_b'. Returns (log P(j from a), log P(i from b), ok); ok is False when an exponent is out of
    range or the differences lose more than _TREE_CANCEL relative precision (the caller then scans).
    """
    ta = trees[ra, :tree_len[ra]]
    tb = trees[rb, :tree_len[rb]]
    xa = _logit(wq[ra], fj_new) - shift[ra]
    xb = _logit(wq[rb], fi_new) - shift[rb]
    if xa > _TREE_EXP_MAX or xb > _TREE_EXP_MAX:
        return 0.0, 0.0, False
    wi = tree_leaf(ta, member_pos[i])
    wj = tree_leaf(tb, member_pos[j])
    za = tree_total(ta) - wi + math.exp(xa)
    zb = tree_total(tb) - wj + math.exp(xb)
    scale_a = tree_total(ta) + wi + math.exp(xa)
    scale_b = tree_total(tb) + wj + math.exp(xb)
    nf = feat.shape[1]
    fk = np.empty(nf)
    for q in range(nt):
        k = touched[q]
        sk = species[k]
        if k == i or k == j or (sk != sa and sk != sb):
            continue
        for a in range(nf):
            fk[a] = feat[k, a] + dfeat[k, a]
        rk = ra if sk == sa else rb
        x = _logit(wq[rk], fk) - shift[rk]
        if x > _TREE_EXP_MAX:
            return 0.0, 0.0, False
        wn = math.exp(x)
        wo = tree_leaf(trees[rk, :tree_len[rk]], member_pos[k])
        if sk == sa:
            za += wn - wo
            scale_a += wn + wo
        else:
            zb += wn - wo
            scale_b += wn + wo
    if za <= _TREE_CANCEL * scale_a or zb <= _TREE_CANCEL * scale_b:
        return 0.0, 0.0, False
    return xa - math.log(za), xb - math.log(zb), True


@njit(cache=True, error_model="numpy")
def pgmc_moves(pos, species, box, nsp, pp, need, beta, ext_k, ext_c,
               use_cells, ncell, cells, cell_count, cell_of, slot, shifts,
               members, member_pos, n_members, feat, track, unwrapped,
               log_sigma, ls0, W1, b1, W2, b2, pair_a, pair_b, wsel, biased, sel_tree,
               kind, idx, xi, usel, logu, start, commit, mh_mode,
               stats, rec_scalar, rec_int, rec_delta, rec_env, rec_sel):
    """Run trial moves ``start .. len(kind) - 1`` on one chain.

    Args:
        pos (N, d) wrapped positions, species (N,) int32, box (d,), pp: the 8 flattened pair-parameter
            arrays (sig2, eps4, rc2, c0, c1, c2, c4, rs2); need (nsp, nsp) bool: the extended feature columns
            each species keeps (:func:`selection_features`, :func:`partner_need`); beta = 1/T, ext_k (nsp,),
            ext_c (d,).
        cell arguments as in :func:`glassgen._kernels.mc.metropolis_sweep`.
        members, member_pos, n_members: particles of each species (updated by accepted swaps).
        feat: (N, F) selection features (F = N_SEL, or N_SEL + nsp extended: see
            :func:`selection_features`), current on entry when ``track`` > 0 and current on return;
            unwrapped (N, d) accumulated accepted displacements.
        track: 0, features not used (uniform swaps); 1, every move updates the features of the particles
            it changes (incremental, O(neighbours) per move); 2, deferred: displacements leave them stale and
            the first swap after an accepted displacement recomputes them from scratch (O(N)), as does the
            end of the call. Same chain as 1 (up to round-off); cheaper when the caller groups the swaps
            of a sweep after its displacements.
        log_sigma (nsp,); ls0 (nsp,), W1 (H, N_RADIAL), b1 (H,), W2 (2 or 3, H), b2 (2 or 3,): policy parameters;
        pair_a, pair_b (P,) swap species pairs; wsel (P, 2, F) selection weights: the particle of side
            0 (species pair_a[p]) is drawn with probability proportional to exp(wsel[p, 0] . f), that of side 1
            likewise; biased: biased selection; sel_tree:
            biased selection through per-species sum trees (production; ignored when recording or with
            MH_STALE_REVERSE, which scan): same law as the scan up to round-off.
        kind (M,) int8, idx (M,) particle (displacements) or pair index (swaps), xi (M, d) standard
            normals, usel (M, 2) uniforms, logu (M,) log uniforms.
        commit: apply accepted moves (False: perform, evaluate, revert; for learning).
        mh_mode: MH_EXACT (production); other values are negative controls.
        stats: (3, 3) per kind [tried, accepted, sum of accepted |delta|^2 (displacements)].
        rec_*: per-trial records (written when rec_scalar has M rows): rec_scalar (M, 2) [log alpha,
            reward], rec_int (M, 2) [species or pair, particle], rec_delta (M, d),
            rec_env (M, 2, N_RADIAL + d) descriptors at x and x', rec_sel (M, 2, 2 F) selection
            scores f - <f> of side 0 and side 1, forward (row 0) and reverse (row 1).

    Returns:
        (dE accumulated by committed moves, index of the first move not done: len(kind) unless a cell
        overflowed, in which case the caller grows the cells and calls again from there).
    """
    n, d = pos.shape
    m_tot = kind.shape[0]
    record = rec_scalar.shape[0] == m_tot
    nd = N_RADIAL + d
    track_disp = track == 1  # displacements update the features (incremental mode)
    stale = False  # deferred mode: a displacement was accepted since the features were last recomputed
    xnew = np.empty(d)
    delta = np.empty(d)
    nf = feat.shape[1]
    # descriptors, then the pair energy (untracked: _env_energy_pass) or the features of the particle (tracked,
    # mode 5: descriptors, energy, features and the neighbours' feature changes in one pass)
    env_old = np.empty(nd + (nf if track_disp else 1))
    env_new = np.empty(nd + (nf if track_disp else 1))
    dxv = np.empty(d)
    fi_old = np.zeros(nf)
    fi_new = np.zeros(nf)
    # single-flip passes (_flip_pass): energy change, new coordination, new pair energy, then the e^t summed afresh
    flip_i = np.zeros(3 + nsp)
    flip_j = np.zeros(3 + nsp)
    fj_new = np.zeros(nf)
    gm = np.zeros(nf)
    lbuf = np.empty(n)  # scratch of _select
    dfeat = np.zeros((n, nf))
    touched = np.empty(n, dtype=np.int64)
    is_touched = np.zeros(n, dtype=np.bool_)
    nt = _M0  # int64, not a literal
    dE = 0.0
    use_tree = biased and sel_tree and not record and mh_mode != MH_STALE_REVERSE
    n_pairs = pair_a.shape[0]
    n_trees = 2 * n_pairs  # one selection tree per swap pair and side
    tree_sp = np.empty(n_trees, dtype=np.int64)
    wq = np.empty((n_trees, nf))
    for p in range(n_pairs):
        tree_sp[2 * p] = pair_a[p]
        tree_sp[2 * p + 1] = pair_b[p]
        for a in range(nf):
            wq[2 * p, a] = wsel[p, 0, a]
            wq[2 * p + 1, a] = wsel[p, 1, a]
    tree_len = np.zeros(n_trees, dtype=np.int64)
    shift = np.zeros(n_trees)
    if use_tree:
        mmax = 1
        for sp in range(n_members.shape[0]):
            mmax = max(mmax, n_members[sp])
        mt = tree_size(mmax)
        trees = np.zeros((n_trees, (mt - 1) // (TREE_B - 1) + mt))
        _sel_trees_build(members, n_members, tree_sp, wq, feat, trees, tree_len, shift)
    else:
        trees = np.zeros((n_trees, 1))
    for t in range(start, m_tot):
        kd = kind[t]
        if kd != KIND_SWAP:
            i = idx[t]
            si = species[i]
            if kd == KIND_GAUSS:
                sg = math.exp(log_sigma[si])
                for a in range(d):
                    delta[a] = sg * xi[t, a]
                lq_f = 0.0
                lq_r = 0.0
            else:
                if track_disp:
                    env_old[:] = 0.0
                    nt = _neigh_loop(i, -1, pos[i], si, pos, species, box, nsp, pp, need, use_cells, ncell, cells,
                                     cell_count, shifts, _M5, -1.0, env_old, dfeat, touched, nt, is_touched, dxv)
                else:
                    _env_energy_pass(i, pos[i], si, pos, species, box, nsp, pp, use_cells, ncell, cells, cell_count,
                                     shifts, env_old)
                ls, c, an = _network(env_old, si, ls0, W1, b1, W2, b2)
                nb2 = 0.0
                for a in range(d):
                    nb2 += env_old[N_RADIAL + a] ** 2
                scale = c / math.sqrt(1.0 + nb2)
                sg = math.exp(ls)
                log_along = 0.0
                if an != 0.0 and nb2 != 0.0:  # sigma exp(a) along u = b / |b|: delta += sigma (e^a - 1) (u . xi) u
                    log_along = an
                    xb = 0.0
                    for a in range(d):
                        xb += xi[t, a] * env_old[N_RADIAL + a]
                    scale += sg * math.expm1(an) * xb / nb2
                q2 = 0.0
                for a in range(d):
                    delta[a] = scale * env_old[N_RADIAL + a] + sg * xi[t, a]
                    q2 += xi[t, a] * xi[t, a]
                lq_f = -0.5 * q2 - d * ls - log_along - 0.5 * d * _LOG_2PI
            r2jump = 0.0
            for a in range(d):
                v = pos[i, a] + delta[a]
                xnew[a] = v - box[a] * math.floor(v / box[a])
                r2jump += delta[a] * delta[a]
            if kd == KIND_LOCAL:
                if track_disp:
                    env_new[:] = 0.0
                    nt = _neigh_loop(i, -1, xnew, si, pos, species, box, nsp, pp, need, use_cells, ncell, cells,
                                     cell_count, shifts, _M5, 1.0, env_new, dfeat, touched, nt, is_touched, dxv)
                else:
                    _env_energy_pass(i, xnew, si, pos, species, box, nsp, pp, use_cells, ncell, cells, cell_count,
                                     shifts, env_new)
                for a in range(d):
                    dxv[a] = -delta[a]
                if mh_mode == MH_STALE_REVERSE:
                    lq_r = local_log_density(dxv, env_old, si, ls0, W1, b1, W2, b2)
                else:
                    lq_r = local_log_density(dxv, env_new, si, ls0, W1, b1, W2, b2)
            if track_disp:  # the energy change and the neighbours' feature changes from the same two passes
                if kd == KIND_LOCAL:  # done by the descriptor passes (mode 5)
                    for a in range(nf):
                        fi_old[a] = env_old[nd + a]
                        fi_new[a] = env_new[nd + a]
                else:
                    fi_old[:] = 0.0
                    fi_new[:] = 0.0
                    nt = _neigh_loop(i, -1, pos[i], si, pos, species, box, nsp, pp, need, use_cells, ncell, cells,
                                     cell_count, shifts, _M3, -1.0, fi_old, dfeat, touched, nt, is_touched, dxv)
                    nt = _neigh_loop(i, -1, xnew, si, pos, species, box, nsp, pp, need, use_cells, ncell, cells,
                                     cell_count, shifts, _M3, 1.0, fi_new, dfeat, touched, nt, is_touched, dxv)
                de = (fi_new[0] - fi_old[0] + ext_energy(xnew, si, ext_k, ext_c, box)
                      - ext_energy(pos[i], si, ext_k, ext_c, box))
            elif kd == KIND_LOCAL:  # pair energies from the two descriptor passes (i's self-images cancel)
                de = (env_new[nd] - env_old[nd] + ext_energy(xnew, si, ext_k, ext_c, box)
                      - ext_energy(pos[i], si, ext_k, ext_c, box))
            else:
                e_old = _energy(i, pos[i], si, pos, species, box, nsp, pp, use_cells, ncell, cells, cell_count,
                                shifts, ext_k, ext_c)
                e_new = _energy(i, xnew, si, pos, species, box, nsp, pp, use_cells, ncell, cells, cell_count, shifts,
                                ext_k, ext_c)
                de = e_new - e_old
            log_alpha = -beta * de
            if mh_mode != MH_NO_PROPOSAL_RATIO:
                log_alpha += lq_r - lq_f
            if record:
                rec_scalar[t, 0] = log_alpha
                rec_scalar[t, 1] = r2jump
                rec_int[t, 0] = si
                rec_int[t, 1] = i
                for a in range(d):
                    rec_delta[t, a] = delta[a]
                if kd == KIND_LOCAL:
                    for a in range(nd):
                        rec_env[t, 0, a] = env_old[a]
                        rec_env[t, 1, a] = env_new[a]
            stats[kd, 0] += 1
            if commit and logu[t] < log_alpha:
                if use_cells:
                    if not _move_cells(i, xnew, box, ncell, cells, cell_count, cell_of, slot):
                        stats[kd, 0] -= 1
                        if stale:
                            selection_features(pos, species, box, nsp, pp, need, use_cells, ncell, cells, cell_count,
                                               shifts, feat)
                        return dE, t
                if track_disp:
                    tree_ok = True
                    for q in range(nt):
                        k = touched[q]
                        for a in range(nf):
                            feat[k, a] += dfeat[k, a]
                        if use_tree:
                            tree_ok &= _sel_tree_set(k, species[k], member_pos, tree_sp, wq, feat, trees, tree_len,
                                                     shift)
                    nt = _clear_touched(dfeat, touched, nt, is_touched)
                for a in range(d):
                    pos[i, a] = xnew[a]
                    unwrapped[i, a] += delta[a]
                if track_disp:  # fi_new: the features of i at xnew, from the second pass
                    feat[i, :] = fi_new
                    if use_tree:
                        tree_ok &= _sel_tree_set(i, si, member_pos, tree_sp, wq, feat, trees, tree_len, shift)
                        if not tree_ok:
                            _sel_trees_build(members, n_members, tree_sp, wq, feat, trees, tree_len, shift)
                dE += de
                stats[kd, 1] += 1
                stats[kd, 2] += r2jump
                if track == 2:
                    stale = True
            if nt > 0:  # rejected, or a trial that is not committed
                nt = _clear_touched(dfeat, touched, nt, is_touched)
            continue
        # ---------------------------------------------------------------- species swap
        p = idx[t]
        sa = pair_a[p]
        sb = pair_b[p]
        if n_members[sa] == 0 or n_members[sb] == 0:
            continue
        stats[KIND_SWAP, 0] += 1
        if stale:  # deferred mode: the features of the current state, from scratch
            selection_features(pos, species, box, nsp, pp, need, use_cells, ncell, cells, cell_count, shifts, feat)
            if use_tree:
                _sel_trees_build(members, n_members, tree_sp, wq, feat, trees, tree_len, shift)
            stale = False
        if use_tree:
            i, lpa = _sel_tree_draw(usel[t, 0], 2 * p, sa, members, n_members, wq, feat, trees, tree_len, shift)
            j, lpb = _sel_tree_draw(usel[t, 1], 2 * p + 1, sb, members, n_members, wq, feat, trees, tree_len, shift)
        else:
            i, lpa = _select(usel[t, 0], sa, members, n_members, wq[2 * p], feat, dfeat, is_touched, -1, -1, fi_new,
                             False, biased, gm, record, lbuf)
            if record:
                for a in range(nf):
                    rec_sel[t, 0, a] = feat[i, a] - gm[a]
            j, lpb = _select(usel[t, 1], sb, members, n_members, wq[2 * p + 1], feat, dfeat, is_touched, -1, -1,
                             fi_new, False, biased, gm, record, lbuf)
        if record:
            for a in range(nf):
                rec_sel[t, 0, nf + a] = feat[j, a] - gm[a]
        lq_f = lpa + lpb
        if biased or track > 0:
            # two single-flip passes (i: a -> b with j still b, then j: b -> a with i already b) give the energy
            # change, the neighbours' feature changes and the new coordination and energy of i and j; the
            # single-flip energies e^t of i and j change only through each other (their own species does not
            # enter). The i-j pair enters both passes and cancels (u_ab = u_ba); self-images are skipped
            # (a -> b of i and b -> a of j at the same image distance cancel).
            flip_i[:] = 0.0
            flip_j[:] = 0.0
            # (species[i] = sa and species[j] = sb passed as int32, like every other pass: one compilation)
            nt = _flip_pass(i, pos[i], species[i], sb, pos, species, box, nsp, pp, need, use_cells, ncell, cells,
                            cell_count, shifts, flip_i, dfeat, touched, nt, is_touched)
            species[i] = sb
            nt = _flip_pass(j, pos[j], species[j], sa, pos, species, box, nsp, pp, need, use_cells, ncell, cells,
                            cell_count, shifts, flip_j, dfeat, touched, nt, is_touched)
            species[j] = sa
            fi_new[0] = flip_i[2] + dfeat[i, 0]  # dfeat[i]: the change j's flip made (zero if none)
            fi_new[1] = flip_i[1] + dfeat[i, 1]
            fj_new[0] = flip_j[2]
            fj_new[1] = flip_j[1]
            # e^t that the new species needs and the old one did not were not kept: the passes summed them
            # afresh (i's with j still b, completed by j's flip through dfeat[i]; j's with i already b)
            for a in range(N_SEL, nf):
                t_ = a - N_SEL
                fi_new[a] = (flip_i[3 + t_] if need[sb, t_] and not need[sa, t_] else feat[i, a]) + dfeat[i, a]
                fj_new[a] = (flip_j[3 + t_] if need[sa, t_] and not need[sb, t_] else feat[j, a]) + dfeat[j, a]
            de = (flip_i[0] + flip_j[0]
                  + ext_energy(pos[i], sb, ext_k, ext_c, box) - ext_energy(pos[i], sa, ext_k, ext_c, box)
                  + ext_energy(pos[j], sa, ext_k, ext_c, box) - ext_energy(pos[j], sb, ext_k, ext_c, box))
        else:
            de = swap_energy_change(i, j, pos, species, box, nsp, pp, use_cells, ncell, cells, cell_count, shifts,
                                    ext_k, ext_c)
            species[i] = sb
            species[j] = sa
        use_new = mh_mode != MH_STALE_REVERSE
        tree_rev = False
        if use_tree:
            lra, lrb, tree_rev = _sel_tree_reverse(i, j, 2 * p, 2 * p + 1, sa, sb, fi_new, fj_new, member_pos,
                                                   species, wq, feat, dfeat, touched, nt, trees, tree_len, shift)
        if tree_rev:
            pass  # lra, lrb: the new-state normalisers from the trees, O(neighbours)
        elif use_new:
            # reverse move: j drawn from species a (where it replaced i), i from species b (replacing j)
            _, lra = _select(-1.0, sa, members, n_members, wq[2 * p], feat, dfeat, is_touched, i, j, fj_new, True,
                             biased, gm, record, lbuf)
            if record:
                for a in range(nf):
                    rec_sel[t, 1, a] = (fj_new[a] if biased else 0.0) - gm[a]
            _, lrb = _select(-1.0, sb, members, n_members, wq[2 * p + 1], feat, dfeat, is_touched, j, i, fi_new, True,
                             biased, gm, record, lbuf)
            if record:
                for a in range(nf):
                    rec_sel[t, 1, nf + a] = (fi_new[a] if biased else 0.0) - gm[a]
        elif biased:  # negative control: reverse selection with the old-state features
            lra = _stale_logp(sa, i, j, members, n_members, wq[2 * p], feat)
            lrb = _stale_logp(sb, j, i, members, n_members, wq[2 * p + 1], feat)
        else:
            lra = -math.log(n_members[sa])
            lrb = -math.log(n_members[sb])
        lq_r = lra + lrb
        log_alpha = -beta * de
        if mh_mode != MH_NO_PROPOSAL_RATIO:
            log_alpha += lq_r - lq_f
        if record:
            rec_scalar[t, 0] = log_alpha
            rec_scalar[t, 1] = 1.0
            rec_int[t, 0] = p
            rec_int[t, 1] = i
        if commit and logu[t] < log_alpha:
            pi = member_pos[i]
            pj = member_pos[j]
            members[sa, pi] = j
            members[sb, pj] = i
            member_pos[i] = pj
            member_pos[j] = pi
            if biased or track > 0:  # features of the new state (computed above) become current
                for q in range(nt):
                    k = touched[q]
                    for a in range(nf):
                        feat[k, a] += dfeat[k, a]
                feat[i, :] = fi_new
                feat[j, :] = fj_new
                if use_tree:
                    tree_ok = True
                    for q in range(nt):
                        k = touched[q]
                        tree_ok &= _sel_tree_set(k, species[k], member_pos, tree_sp, wq, feat, trees, tree_len,
                                                 shift)
                    tree_ok &= _sel_tree_set(i, sb, member_pos, tree_sp, wq, feat, trees, tree_len, shift)
                    tree_ok &= _sel_tree_set(j, sa, member_pos, tree_sp, wq, feat, trees, tree_len, shift)
                    if not tree_ok:
                        _sel_trees_build(members, n_members, tree_sp, wq, feat, trees, tree_len, shift)
            dE += de
            stats[KIND_SWAP, 1] += 1
        else:
            species[i] = sa
            species[j] = sb
        nt = _clear_touched(dfeat, touched, nt, is_touched)
    if stale:
        selection_features(pos, species, box, nsp, pp, need, use_cells, ncell, cells, cell_count, shifts, feat)
    return dE, m_tot


@njit(cache=True, error_model="numpy")
def _stale_logp(sp, out_k, in_k, members, n_members, wrow, feat):
    """Negative control only: log P(in_k) in species sp after the swap, with OLD features everywhere."""
    m = n_members[sp]
    lmax = -np.inf
    for q in range(m):
        k = members[sp, q]
        if k == out_k:
            k = in_k
        lk = _logit(wrow, feat[k])
        lmax = max(lmax, lk)
    z = 0.0
    lin = 0.0
    for q in range(m):
        k = members[sp, q]
        if k == out_k:
            k = in_k
        lk = _logit(wrow, feat[k])
        z += math.exp(lk - lmax)
        if k == in_k:
            lin = lk
    return lin - lmax - math.log(z)


# ---------------------------------------------------------------------------- predict-then-propose (issue 8)
@njit(cache=True, error_model="numpy")
def _log_z_sel(species, theta_d, feat, dfeat, is_touched, moved, f_moved):
    """log sum_k exp(s_k), s_k = theta_d[species_k] . f_k; f_k = feat_k (+ dfeat_k if touched),
    f_moved for k = moved (>= 0). Returns (log Z, lmax-free log Z)."""
    n = feat.shape[0]
    lmax = -np.inf
    for k in range(n):
        lk = _score_k(k, species, theta_d, feat, dfeat, is_touched, moved, f_moved)
        if lk > lmax:
            lmax = lk
    z = 0.0
    for k in range(n):
        z += math.exp(_score_k(k, species, theta_d, feat, dfeat, is_touched, moved, f_moved) - lmax)
    return lmax + math.log(z)


@njit(cache=True, error_model="numpy")
def _score_k(k, species, theta_d, feat, dfeat, is_touched, moved, f_moved):
    sp = species[k]
    lk = 0.0
    for a in range(N_SEL):
        if k == moved:
            fk = f_moved[a]
        else:
            fk = feat[k, a]
            if is_touched[k]:
                fk += dfeat[k, a]
        lk += theta_d[sp, a] * fk
    return lk


@njit(cache=True, error_model="numpy")
def biased_displacements(pos, species, box, nsp, pp, need, beta, ext_k, ext_c,
                         use_cells, ncell, cells, cell_count, cell_of, slot, shifts,
                         feat, unwrapped, log_sigma, theta_d, xi, usel, logu, start, mh_mode, stats):
    """Gaussian displacements of a particle chosen with probability P(i | x) = exp(s_i(x)) / Z(x).

    s_k(x) = theta_d[species_k] . f_k(x) over ALL particles, f = the pair-additive selection features
    (energy, coordination) of :func:`selection_features`, kept current in ``feat``. After a trial move of i
    by delta = sigma_{s_i} xi, the features of the new state are obtained locally: those of the
    neighbours of the old and new position of i by differences (``_neigh_loop`` mode 1), those of i from
    scratch; every other particle keeps its score. Acceptance (the Gaussian is symmetric):

        log alpha = -beta dU + log P(i | x') - log P(i | x).

    Args:
        as :func:`pgmc_moves` for the system and cell arguments; feat (N, N_SEL) current features;
        unwrapped (N, d); log_sigma (nsp,); theta_d (nsp, N_SEL); xi (M, d) standard normals; usel (M,)
        uniforms (selection); logu (M,) log uniforms; start: first trial to do.
        mh_mode: MH_EXACT; MH_STALE_REVERSE (negative control) evaluates the reverse selection with the
            OLD scores, i.e. drops the selection ratio.
        stats (4,): [tried, accepted, sum accepted |delta|^2, particles whose score was recomputed].

    Returns:
        (dE of committed moves, index of the first trial not done: M unless a cell overflowed).
    """
    n, d = pos.shape
    m_tot = xi.shape[0]
    xnew = np.empty(d)
    delta = np.empty(d)
    dxv = np.empty(d)
    nf = feat.shape[1]  # extended features (pgmc_moves shares this chain) are kept current as well
    fi_new = np.zeros(nf)
    f_none = np.zeros(nf)
    dfeat = np.zeros((n, nf))
    touched = np.empty(n, dtype=np.int64)
    is_touched = np.zeros(n, dtype=np.bool_)
    nt = _M0  # int64, not a literal
    dE = 0.0
    for t in range(start, m_tot):
        # forward selection in the current state
        logz = _log_z_sel(species, theta_d, feat, dfeat, is_touched, -1, f_none)
        target = usel[t]
        acc = 0.0
        i = n - 1
        for k in range(n):
            acc += math.exp(_score_k(k, species, theta_d, feat, dfeat, is_touched, -1, f_none) - logz)
            if acc > target:
                i = k
                break
        lp_f = _score_k(i, species, theta_d, feat, dfeat, is_touched, -1, f_none) - logz
        si = species[i]
        sg = math.exp(log_sigma[si])
        r2jump = 0.0
        for a in range(d):
            delta[a] = sg * xi[t, a]
            v = pos[i, a] + delta[a]
            xnew[a] = v - box[a] * math.floor(v / box[a])
            r2jump += delta[a] * delta[a]
        e_old = _energy(i, pos[i], si, pos, species, box, nsp, pp, use_cells, ncell, cells, cell_count, shifts,
                        ext_k, ext_c)
        e_new = _energy(i, xnew, si, pos, species, box, nsp, pp, use_cells, ncell, cells, cell_count, shifts,
                        ext_k, ext_c)
        de = e_new - e_old
        # scores of the new state, locally
        nt = _neigh_loop(i, -1, pos[i], si, pos, species, box, nsp, pp, need, use_cells, ncell, cells, cell_count,
                         shifts, _M1, -1.0, fi_new, dfeat, touched, nt, is_touched, dxv)
        nt = _neigh_loop(i, -1, xnew, si, pos, species, box, nsp, pp, need, use_cells, ncell, cells, cell_count,
                         shifts, _M1, 1.0, fi_new, dfeat, touched, nt, is_touched, dxv)
        _own_features(i, -1, xnew, si, pos, species, box, nsp, pp, need, use_cells, ncell, cells, cell_count, shifts,
                      fi_new, dxv)
        stats[3] += nt + 1
        if mh_mode == MH_STALE_REVERSE:
            lp_r = lp_f
        else:
            logz_new = _log_z_sel(species, theta_d, feat, dfeat, is_touched, i, fi_new)
            lp_r = _score_k(i, species, theta_d, feat, dfeat, is_touched, i, fi_new) - logz_new
        log_alpha = -beta * de + lp_r - lp_f
        stats[0] += 1
        if logu[t] < log_alpha:
            if use_cells:
                if not _move_cells(i, xnew, box, ncell, cells, cell_count, cell_of, slot):
                    stats[0] -= 1
                    stats[3] -= nt + 1
                    nt = _clear_touched(dfeat, touched, nt, is_touched)
                    return dE, t
            for q in range(nt):
                k = touched[q]
                if k != i:
                    for a in range(nf):
                        feat[k, a] += dfeat[k, a]
            feat[i, :] = fi_new
            for a in range(d):
                pos[i, a] = xnew[a]
                unwrapped[i, a] += delta[a]
            dE += de
            stats[1] += 1
            stats[2] += r2jump
        nt = _clear_touched(dfeat, touched, nt, is_touched)
    return dE, m_tot


@njit(cache=True, error_model="numpy")
def subset_energy(idx, xs, pos, species, box, nsp, pp, shifts, ext_k, ext_c):
    """Energy of the particles ``idx`` (m,) placed at ``xs`` (m, d): their pairs with every other particle
    (at ``pos``) and among themselves, all periodic images in ``shifts`` (image mode), plus their external
    energy. Self-image terms are omitted (they do not depend on positions). Differences of this function
    between two placements of the same subset are exact total-energy differences. Positions wrapped into
    [0, L); ``shifts`` as in the image mode of :func:`glassgen._kernels.mc.particle_energy` (one zero row:
    the minimum image)."""
    n, d = pos.shape
    m = idx.shape[0]
    sig2, eps4, rc2, c0, c1, c2, c4, rs2 = pp
    min_image = shifts.shape[0] == 1  # see glassgen._kernels.neighbors.mc_image_shifts
    inset = np.zeros(n, dtype=np.bool_)
    for q in range(m):
        inset[idx[q]] = True
    e = 0.0
    for q in range(m):
        i = idx[q]
        base = species[i] * nsp
        e += ext_energy(xs[q], species[i], ext_k, ext_c, box)
        for j in range(n):
            if inset[j]:
                continue
            ab = base + species[j]
            for c in range(shifts.shape[0]):
                r2 = 0.0
                for k in range(d):
                    dx = pos[j, k] + shifts[c, k] - xs[q, k]
                    if min_image:
                        dx -= box[k] * math.floor(dx / box[k] + 0.5)
                    r2 += dx * dx
                if r2 < rc2[ab]:
                    u, w, _ = pair_uw(r2, ab, sig2, eps4, c0, c1, c2, c4, rs2, 7)
                    e += u
        for p in range(q + 1, m):
            j = idx[p]
            ab = base + species[j]
            for c in range(shifts.shape[0]):
                r2 = 0.0
                for k in range(d):
                    dx = xs[p, k] + shifts[c, k] - xs[q, k]
                    if min_image:
                        dx -= box[k] * math.floor(dx / box[k] + 0.5)
                    r2 += dx * dx
                if r2 < rc2[ab]:
                    u, w, _ = pair_uw(r2, ab, sig2, eps4, c0, c1, c2, c4, rs2, 7)
                    e += u
    return e
