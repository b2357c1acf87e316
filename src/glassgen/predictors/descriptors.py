"""Structural descriptors of glassy configurations, 2D and 3D (Numba kernels in :mod:`glassgen._kernels.descriptors`).

All functions take ``positions`` (N, d) float64 (wrapped or not), ``species`` (N,) int 0-based and ``box``
(d,) float64, in reduced LJ units (sigma_AA, epsilon_AA). Distances use every periodic image, so small
boxes are exact. Descriptor families (REFERENCE.md section 3):

* :func:`glassmlp_features` — GlassMLP (Jung, Biroli, Berthier PRL 130, 238202 (2023)): for each
  coarse-graining length L and channel c (each species, and all), with w_ij = exp(-r_ij / L) (j = i included,
  w_ii = 1; L = 0 keeps j = i only) and a cutoff ``rc``:
  DEN = sum_j w_ij, EPOT = sum_j w_ij E_j / DEN, PERI = sum_j w_ij C_j / DEN,
  EPOT_VAR = sum_j w_ij (E_j - EPOT_i)^2 / DEN, E_j = half the sum of j's pair energies, C_j the Voronoi
  perimeter (2D) / surface area (3D) of j (:func:`voronoi_cells`). Empty channels give 0.
* :func:`boattini_features` — Boattini et al. PRL 127, 088007 (2021): Gaussian radial shells per species
  and bond-order q_l (l = 1..lmax), recursively coarse-grained x^(n)_i = sum_j e^{-r_ij/2} x^(n-1)_j /
  sum_j e^{-r_ij/2} (j includes i) for n = 1..levels.
* :func:`sbo_features` — smoothed bond order (Coslovich): q_lm with f(r) = exp[-(r/r_c)^8] (r < 1.3 r_c),
  averaged over i and its neighbours with the same weights, Q_l for l = 1..8.
* :func:`softness_features` — Cubuk/Schoenholz structure functions: radial G(i; mu, s) per neighbour species
  and angular Behler functions.
* :func:`p_hop` — the rearrangement indicator of Candelier et al. on a trajectory.

Real spherical harmonics are used (sum_m Y_lm^2 = (2l+1)/4pi, so q_l = sqrt(4pi/(2l+1) sum_m q_lm^2) equals the
usual complex definition).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from glassgen._kernels import descriptors as _k
from glassgen.errors import InputError

__all__ = ["NeighbourList", "neighbour_list", "voronoi_cells", "per_particle_energy", "glassmlp_features",
           "boattini_features", "sbo_features", "softness_features", "bond_order", "coarse_grain", "p_hop",
           "DescriptorSettings", "compute_descriptors", "quench_features", "cage_features"]


def _check(positions: np.ndarray, species: np.ndarray | None, box: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    pos = np.ascontiguousarray(positions, dtype=np.float64)
    if pos.ndim != 2 or pos.shape[1] not in (2, 3):
        raise InputError(f"positions must be (N, 2) or (N, 3), got {pos.shape}")
    if not np.all(np.isfinite(pos)):
        raise InputError("positions contain NaN or infinite values")
    b = np.ascontiguousarray(np.broadcast_to(np.asarray(box, dtype=np.float64), (pos.shape[1],)))
    if np.any(~(b > 0)):
        raise InputError(f"box lengths must be positive, got {b}")
    if species is not None and np.shape(species) != (pos.shape[0],):
        raise InputError(f"species must be ({pos.shape[0]},), got {np.shape(species)}")
    return pos, b


@dataclass(frozen=True)
class NeighbourList:
    """Every ordered neighbour pair (i, j, periodic image) with 0 < r_ij < rc, CSR layout.

    Attributes:
        start: (N + 1,) int64; the pairs of i are ``start[i]:start[i+1]``.
        nbr: (P,) int64 neighbour index j.
        dr: (P, d) float64 r_j - r_i (image applied).
        r: (P,) float64 distances.
        rc: the cutoff.
    """

    start: np.ndarray
    nbr: np.ndarray
    dr: np.ndarray
    r: np.ndarray
    rc: float

    @property
    def owner(self) -> np.ndarray:
        """(P,) index i of each pair."""
        return np.repeat(np.arange(self.start.size - 1), np.diff(self.start))

    def dr3(self) -> np.ndarray:
        """(P, 3) displacements (2D padded with z = 0) for the kernels."""
        if self.dr.shape[1] == 3:
            return np.ascontiguousarray(self.dr)
        return np.ascontiguousarray(np.pad(self.dr, ((0, 0), (0, 1))))

    def within(self, rc: float) -> NeighbourList:
        """The sub-list of pairs with r < rc (rc <= self.rc)."""
        keep = self.r < rc
        counts = np.add.reduceat(keep.astype(np.int64), self.start[:-1]) if keep.size else np.zeros(0, np.int64)
        counts = np.where(np.diff(self.start) > 0, counts, 0)
        start = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        return NeighbourList(start, self.nbr[keep], self.dr[keep], self.r[keep], float(rc))


def neighbour_list(positions: np.ndarray, box: np.ndarray, rc: float) -> NeighbourList:
    """All neighbour pairs within ``rc`` (every periodic image; exact size, nothing truncated).

    Uses cell lists when the box holds >= 3 cells of edge >= rc per axis, else all pairs x image shifts.
    """
    pos, b = _check(positions, None, box)
    if not rc > 0:
        raise InputError(f"cutoff must be positive, got {rc}")
    n, d = pos.shape
    pos3 = np.zeros((n, 3))
    pos3[:, :d] = pos
    box3 = np.ones(3)
    box3[:d] = b
    ncell = np.ones(3, np.int64)
    ncell[:d] = np.minimum(np.floor(b / rc).astype(np.int64), 64)
    use_cells = bool(np.all(ncell[:d] >= 3))
    m = np.zeros(3, np.int64)
    m[:d] = np.floor(rc / b).astype(np.int64) + 1
    start, nbr, dr = _k.csr_neighbours(pos3, box3, float(rc), use_cells, ncell, m)
    dr = np.ascontiguousarray(dr[:, :d])
    return NeighbourList(start, nbr, dr, np.sqrt((dr * dr).sum(1)), float(rc))


# ---------------------------------------------------------------------------------------------- Voronoi
def voronoi_cells(positions: np.ndarray, box: np.ndarray, pad: float = 3.0) -> tuple[np.ndarray, np.ndarray]:
    """Exact periodic Voronoi cells via scipy (Qhull) on the particles plus their images within ``pad``.

    Args:
        positions: (N, d) positions.
        box: (d,) box lengths.
        pad: width of the image shell around the box (must exceed the largest Voronoi neighbour distance;
            3 sigma is ample for dense liquids; a cell left unbounded raises).

    Returns:
        (boundary, size): (N,) cell perimeter (2D) / surface area (3D), and (N,) cell area (2D) / volume (3D).
        sum(size) equals the box area/volume (tested).
    """
    from scipy.spatial import Voronoi

    pos, b = _check(positions, None, box)
    n, d = pos.shape
    x = pos - b * np.floor(pos / b)
    pad = float(min(pad, b.min()))
    shifts = np.array(np.meshgrid(*[[-1, 0, 1]] * d, indexing="ij")).reshape(d, -1).T
    shifts = shifts[np.argsort(np.abs(shifts).sum(1), kind="stable")]  # (0, ..., 0) first
    pts, ids = [x], [np.arange(n)]
    for s in shifts[1:]:
        y = x + s * b
        keep = np.all((y > -pad) & (y < b + pad), axis=1)
        pts.append(y[keep])
        ids.append(np.nonzero(keep)[0])
    allp = np.concatenate(pts)
    vor = Voronoi(allp)
    rp = vor.ridge_points
    sel = np.nonzero((rp[:, 0] < n) | (rp[:, 1] < n))[0]
    ridges = [vor.ridge_vertices[k] for k in sel]
    if any(-1 in rv for rv in ridges):
        raise InputError("a Voronoi cell is unbounded: increase pad")
    rp = rp[sel]
    h = 0.5 * np.linalg.norm(allp[rp[:, 1]] - allp[rp[:, 0]], axis=1)
    if d == 2:
        rv = np.array(ridges, dtype=np.int64)
        facet = np.linalg.norm(vor.vertices[rv[:, 1]] - vor.vertices[rv[:, 0]], axis=1)
        piece = 0.5 * facet * h
    else:
        lens = np.fromiter((len(rv) for rv in ridges), dtype=np.int64, count=len(ridges))
        flat = np.fromiter((v for rv in ridges for v in rv), dtype=np.int64, count=int(lens.sum()))
        offsets = np.concatenate([[0], np.cumsum(lens)]).astype(np.int64)
        normals = np.ascontiguousarray(allp[rp[:, 1]] - allp[rp[:, 0]])
        facet = _k.polygon_areas(np.ascontiguousarray(vor.vertices), flat, offsets, normals)
        piece = facet * h / 3.0
    boundary = np.zeros(n)
    size = np.zeros(n)
    for col in (0, 1):
        own = rp[:, col] < n
        np.add.at(boundary, rp[own, col], facet[own])
        np.add.at(size, rp[own, col], piece[own])
    return boundary, size


# ---------------------------------------------------------------------------------------------- energies
def per_particle_energy(positions: np.ndarray, species: np.ndarray, box: np.ndarray, model: str) -> np.ndarray:
    """(N,) E_i = half the sum of i's pair energies (epsilon_AA) under interaction ``model`` (not divided by kT)."""
    from glassgen.dynamics.forces import potential_energy
    from glassgen.systems.configuration import Configuration
    from glassgen.systems.model import load_model

    conf = Configuration(positions, np.asarray(species, dtype=np.int32), box, load_model(model))
    e = potential_energy(conf, per_particle=True).per_particle
    assert e is not None
    return e


# ---------------------------------------------------------------------------------------------- GlassMLP
def _nsp(species: np.ndarray, nsp: int | None) -> int:
    """Species channels: ``nsp``, or max(species) + 1; species outside the channels are an error (the
    kernels index per-species arrays with them)."""
    top = int(np.max(species)) + 1 if np.size(species) else 1
    if nsp is None:
        return top
    if top > int(nsp) or (np.size(species) and int(np.min(species)) < 0):
        raise InputError(f"species indices must lie in 0..{int(nsp) - 1} (nsp = {int(nsp)}), got 0-based species up "
                         f"to {top - 1}: set nsp to the model's number of species")
    return int(nsp)


def glassmlp_features(positions: np.ndarray, species: np.ndarray, box: np.ndarray, energies: np.ndarray,
                      boundary: np.ndarray, lengths: tuple[float, ...] = (0.0, 1.0, 2.0, 3.0, 4.0, 5.0),
                      rc: float = 5.0, nsp: int | None = None,
                      nl: NeighbourList | None = None) -> tuple[np.ndarray, list[str]]:
    """GlassMLP's coarse-grained DEN/EPOT/PERI/EPOT_VAR per channel and length (see the module docstring).

    Args:
        energies: (N,) per-particle energies E_j; boundary: (N,) Voronoi perimeter/surface C_j.
        lengths: coarse-graining lengths L (0: the particle itself, channel 'all' only).
        rc: cutoff of the coarse-graining sums.
        nsp: number of species (default max(species) + 1).

    Returns:
        (N, F) float64 features and their names ``{DEN,EPOT,PERI,EPOT_VAR}_L{L}_{A,B,..,all}``.
    """
    pos, b = _check(positions, species, box)
    spec = np.ascontiguousarray(species, dtype=np.int64)
    ns = _nsp(spec, nsp)
    nl = nl if nl is not None and nl.rc >= rc else neighbour_list(pos, b, rc)
    if nl.rc > rc:
        nl = nl.within(rc)
    e = np.asarray(energies, dtype=np.float64)
    vals = np.ascontiguousarray(np.stack([np.ones_like(e), e, e * e, np.asarray(boundary, np.float64)], 1))
    chan = [chr(ord("A") + c) for c in range(ns)] + ["all"]
    cols, names = [], []
    for L in lengths:
        if L == 0:
            w = np.zeros_like(nl.r)
            chans = [ns]
        else:
            w = np.exp(-nl.r / L)
            chans = list(range(ns + 1))
        s = _k.channel_sums(nl.start, nl.nbr, w, spec, ns, vals, 1.0)
        den = s[:, :, 0]
        with np.errstate(invalid="ignore", divide="ignore"):
            ep = np.where(den > 0, s[:, :, 1] / den, 0.0)
            var = np.where(den > 0, np.maximum(s[:, :, 2] / den - ep * ep, 0.0), 0.0)
            peri = np.where(den > 0, s[:, :, 3] / den, 0.0)
        for c in chans:
            for nm, arr in (("DEN", den), ("EPOT", ep), ("PERI", peri), ("EPOT_VAR", var)):
                if L == 0 and nm in ("DEN", "EPOT_VAR"):
                    continue  # constant 1 and 0 at L = 0
                cols.append(arr[:, c])
                names.append(f"{nm}_L{L:g}_{chan[c]}")
    return np.stack(cols, 1), names


# ---------------------------------------------------------------------------------------------- bond orders
def _norm_table(lmax: int) -> np.ndarray:
    t = np.zeros((lmax + 1, lmax + 1))
    for ll in range(lmax + 1):
        for mm in range(ll + 1):
            t[ll, mm] = math.sqrt((2 * ll + 1) / (4 * math.pi) * math.exp(math.lgamma(ll - mm + 1)
                                                                           - math.lgamma(ll + mm + 1)))
    return t


def bond_order(nl: NeighbourList, weights: np.ndarray, lmax: int) -> np.ndarray:
    """(N, (lmax+1)^2) weighted real q_lm(i) = sum_j w_ij Y_lm(r_ij) / sum_j w_ij over the list's pairs."""
    return _k.bond_qlm(nl.start, nl.nbr, nl.dr3(), np.ascontiguousarray(weights, dtype=np.float64), int(lmax),
                       _norm_table(lmax))


def ql_from_qlm(qlm: np.ndarray, lmax: int, lmin: int = 1) -> np.ndarray:
    """(N, lmax - lmin + 1) q_l = sqrt(4 pi/(2l+1) sum_m q_lm^2)."""
    out = [np.sqrt(4 * np.pi / (2 * ll + 1) * (qlm[:, ll * ll:(ll + 1) ** 2] ** 2).sum(1))
           for ll in range(lmin, lmax + 1)]
    return np.stack(out, 1)


def coarse_grain(x: np.ndarray, nl: NeighbourList, weights: np.ndarray, levels: int) -> list[np.ndarray]:
    """Recursive coarse-graining [x^(0), ..., x^(levels)], x^(n)_i = (x_i + sum_j w_ij x_j)/(1 + sum_j w_ij)."""
    out = [np.ascontiguousarray(x, dtype=np.float64)]
    w = np.ascontiguousarray(weights, dtype=np.float64)
    for _ in range(levels):
        out.append(_k.neighbour_average(nl.start, nl.nbr, w, out[-1]))
    return out


def boattini_features(positions: np.ndarray, species: np.ndarray, box: np.ndarray,
                      shells: tuple[float, float, float] = (0.8, 3.0, 0.1), width: float = 0.1,
                      rc_q: float = 1.45, lmax: int = 12, levels: int = 2, cg_length: float = 2.0,
                      rc: float = 5.0, nsp: int | None = None,
                      nl: NeighbourList | None = None) -> tuple[np.ndarray, list[str]]:
    """Boattini radial shells per species + q_l (l = 1..lmax, neighbours r < rc_q), recursively coarse-grained.

    Args:
        shells: (first, last, step) of the shell centres r_k; width: Gaussian shell width.
        rc_q: bond cutoff of q_l (all species); levels: coarse-graining levels n = 1..levels with
            weights exp(-r / cg_length) for r < rc.

    Returns:
        (N, F) features, F = (nsp * n_shells + lmax) * (levels + 1), and names.
    """
    pos, b = _check(positions, species, box)
    spec = np.ascontiguousarray(species, dtype=np.int64)
    ns = _nsp(spec, nsp)
    nl = nl if nl is not None and nl.rc >= rc else neighbour_list(pos, b, rc)
    mus = np.arange(shells[0], shells[1] + 1e-9, shells[2])
    near = nl.within(max(shells[1] + 4 * width, rc_q))
    g = _k.radial_shells(near.start, near.nbr, near.r, spec, ns, mus, float(width)).reshape(pos.shape[0], -1)
    ql = ql_from_qlm(bond_order(near, (near.r < rc_q).astype(np.float64), lmax), lmax)
    x = np.concatenate([g, ql], 1)
    base = [f"G_{chr(ord('A') + s)}_{m:.2f}" for s in range(ns) for m in mus] + [f"q{ll}" for ll in range(1, lmax + 1)]
    w = np.where(nl.r < rc, np.exp(-nl.r / cg_length), 0.0)
    levels_x = coarse_grain(x, nl, w, levels)
    names = [f"{nm}_cg{k}" for k in range(levels + 1) for nm in base]
    return np.concatenate(levels_x, 1), names


def quench_features(thermal: np.ndarray, inherent: np.ndarray, box: np.ndarray,
                    lengths: tuple[float, ...] = (1.0, 2.0, 3.0), levels: int = 2, rc: float = 5.0,
                    nl: NeighbourList | None = None) -> tuple[np.ndarray, list[str]]:
    """Quench displacement u_i = |r_i(thermal) - r_i(inherent)| (minimum image), recursively coarse-grained.

    How far a particle slides when the configuration is quenched to its inherent state measures how loosely
    it sits in its cage; it is a structural quantity (one thermal snapshot), free once the inherent state is
    known. Per particle: u and ln(u + 1e-3), then for each length L the levels n = 1..``levels`` of
    x^(n)_i = (x^(n-1)_i + sum_j w_ij x^(n-1)_j) / (1 + sum_j w_ij), w_ij = exp(-r_ij / L), r_ij < rc on the
    inherent state.

    Args:
        thermal, inherent: (N, d) positions (same particle order); box: (d,).

    Returns:
        (N, 2 * (1 + len(lengths) * levels)) features and their names.
    """
    th, b = _check(thermal, None, box)
    ih, _ = _check(inherent, None, box)
    if th.shape != ih.shape:
        raise InputError(f"thermal {th.shape} and inherent {ih.shape} positions differ in shape")
    dr = th - ih
    dr -= b * np.round(dr / b)
    u = np.sqrt(np.einsum("nd,nd->n", dr, dr))
    x = np.stack([u, np.log(u + 1e-3)], 1)
    nl = nl if nl is not None and nl.rc >= rc else neighbour_list(ih, b, rc)
    nl = nl.within(rc)
    cols, names = [x], ["QU", "lnQU"]
    for L in lengths:
        for k, lv in enumerate(coarse_grain(x, nl, np.exp(-nl.r / L), levels)[1:], start=1):
            cols.append(lv)
            names += [f"QU_L{L:g}_cg{k}", f"lnQU_L{L:g}_cg{k}"]
    return np.concatenate(cols, 1), names


def cage_features(thermal: np.ndarray, inherent: np.ndarray, species: np.ndarray, box: np.ndarray, *, T: float,
                  model: str = "ka3d", times: tuple[float, ...] = (0.5, 2.0, 6.0, 20.0), n_replicas: int = 8,
                  seed: int = 0, dt: float = 0.005, lengths: tuple[float, ...] = (1.0, 2.0, 3.0), levels: int = 2,
                  rc: float = 5.0, threads: int | None = None,
                  nl: NeighbourList | None = None) -> tuple[np.ndarray, list[str]]:
    """Short-time isoconfigurational descriptors: how far each particle wanders inside its cage.

    ``n_replicas`` NVE runs from the thermal configuration with fresh Maxwell-Boltzmann velocities at ``T``
    (replica r uses seed ``seed * 1_000_003 + r``, the convention of :mod:`glassgen.bench.replicas`), to lag
    times ``times`` (LJ units; keep them inside the plateau, far below tau_alpha). Per particle and lag:
    the short-time propensity <|r_i(t) - r_i(0)|> and its log, and the cage-centre displacement
    |<r_i(t)> - r_i(0)| (replica mean), all recursively coarse-grained as in :func:`quench_features`.
    This is a *dynamical* input (it costs ``n_replicas * times[-1] / dt`` MD steps per configuration), in the
    spirit of the Debye-Waller / cage descriptors (Widmer-Cooper & Harrowell; the CAGE model of GlassBench).

    Args:
        thermal, inherent: (N, d) positions; species: (N,); box: (d,); model: the MD interaction model.

    Returns:
        (N, 3 * len(times) * (1 + len(lengths) * levels)) features and their names.
    """
    from glassgen.dynamics.md import MDSimulation, maxwell_boltzmann
    from glassgen.systems.configuration import Configuration
    from glassgen.systems.model import load_model

    if not (T > 0):
        raise InputError(f"the cage descriptors need a positive temperature, got T={T}")
    if n_replicas < 1:
        raise InputError("the cage descriptors need n_replicas >= 1")
    th, b = _check(thermal, species, box)
    ih, _ = _check(inherent, species, box)
    steps = np.maximum(1, np.rint(np.asarray(times, dtype=np.float64) / dt)).astype(np.int64)
    if steps.ndim != 1 or steps.size == 0 or np.any(np.diff(steps) <= 0):
        raise InputError(f"cage lag times must be positive, increasing and >= dt apart, got {list(times)}")
    mdl = load_model(model)
    conf = Configuration(th, np.asarray(species, dtype=np.int32), b, mdl)
    n, d = th.shape
    prop = np.zeros((steps.size, n))
    centre = np.zeros((steps.size, n, d))
    masses = mdl.masses[conf.species]
    for r in range(n_replicas):
        rs = seed * 1_000_003 + r
        v = maxwell_boltzmann(masses, d, T, np.random.default_rng(rs))
        sim = MDSimulation(conf.replace(velocities=v), T=T, dt=dt, ensemble="nve", seed=rs, threads=threads)
        for k, st in enumerate(steps):
            sim.step(int(st - sim.step_count))
            dr = sim.positions - th  # unwrapped positions: no minimum image needed
            prop[k] += np.sqrt(np.einsum("nd,nd->n", dr, dr))
            centre[k] += dr
    prop /= n_replicas
    centre /= n_replicas
    cols, base = [], []
    for k, t in enumerate(times):
        c = np.sqrt(np.einsum("nd,nd->n", centre[k], centre[k]))
        cols += [prop[k], np.log(prop[k]), c]
        base += [f"R_t{t:g}", f"lnR_t{t:g}", f"CAGE_t{t:g}"]
    x = np.stack(cols, 1)
    nl = nl if nl is not None and nl.rc >= rc else neighbour_list(ih, b, rc)
    nl = nl.within(rc)
    out, names = [x], list(base)
    for L in lengths:
        for k, lv in enumerate(coarse_grain(x, nl, np.exp(-nl.r / L), levels)[1:], start=1):
            out.append(lv)
            names += [f"{nm}_L{L:g}_cg{k}" for nm in base]
    return np.concatenate(out, 1), names


def sbo_features(positions: np.ndarray, box: np.ndarray, rc: float = 1.45, lmax: int = 8,
                 nl: NeighbourList | None = None) -> tuple[np.ndarray, list[str]]:
    """Smoothed bond order Q_l, l = 1..lmax: q_lm with f = exp[-(r/rc)^8] (r < 1.3 rc), then
    Q_lm(i) = (q_lm(i) + sum_j f_ij q_lm(j)) / (1 + sum_j f_ij). Returns (N, lmax) and names."""
    pos, b = _check(positions, None, box)
    nl = nl if nl is not None and nl.rc >= 1.3 * rc else neighbour_list(pos, b, 1.3 * rc)
    nl = nl.within(1.3 * rc)
    f = np.exp(-((nl.r / rc) ** 8))
    qlm = bond_order(nl, f, lmax)
    qbar = _k.neighbour_average(nl.start, nl.nbr, f, qlm)
    return ql_from_qlm(qbar, lmax), [f"SBO_Q{ll}" for ll in range(1, lmax + 1)]


def softness_features(positions: np.ndarray, species: np.ndarray, box: np.ndarray,
                      mus: tuple[float, float, float] = (0.5, 5.0, 0.1), width: float = 0.1,
                      xi: tuple[float, ...] = (1.0, 1.5, 2.0, 2.5), lam: tuple[float, ...] = (-1.0, 1.0),
                      zeta: tuple[float, ...] = (1.0, 2.0), rc_angular: float = 2.0, nsp: int | None = None,
                      nl: NeighbourList | None = None) -> tuple[np.ndarray, list[str]]:
    """Cubuk/Schoenholz structure functions.

    Radial: G(i; mu, s) = sum_{j: s_j = s} exp(-(r_ij - mu)^2 / 2 width^2) for mu on the grid ``mus``
    (first, last, step). Angular (Behler): psi(i; xi, lam, zeta) = sum_{j<k} exp(-(r_ij^2 + r_ik^2 + r_jk^2)/xi^2)
    (1 + lam cos theta_jik)^zeta over neighbours within ``rc_angular`` (all species).
    """
    pos, b = _check(positions, species, box)
    spec = np.ascontiguousarray(species, dtype=np.int64)
    ns = _nsp(spec, nsp)
    grid = np.arange(mus[0], mus[1] + 1e-9, mus[2])
    rmax = max(grid[-1] + 4 * width, rc_angular)
    nl = nl if nl is not None and nl.rc >= rmax else neighbour_list(pos, b, rmax)
    g = _k.radial_shells(nl.start, nl.nbr, nl.r, spec, ns, grid, float(width)).reshape(pos.shape[0], -1)
    combos = [(x, la, z) for x in xi for la in lam for z in zeta]
    near = nl.within(rc_angular)
    ang = _k.behler_angular(near.start, near.dr3(), np.array([c[0] for c in combos]),
                            np.array([c[1] for c in combos]), np.array([c[2] for c in combos]), float(rc_angular))
    names = [f"G_{chr(ord('A') + s)}_{m:.2f}" for s in range(ns) for m in grid]
    names += [f"psi_xi{x:g}_l{la:+g}_z{z:g}" for x, la, z in combos]
    return np.concatenate([g, ang], 1), names


def p_hop(trajectory: np.ndarray, half_window: int) -> np.ndarray:
    """p_hop(i, t) = sqrt(<(r_i - <r_i>_B)^2>_A <(r_i - <r_i>_A)^2>_B), A = [t - h, t], B = [t, t + h] (frames).

    Args:
        trajectory: (F, N, d) unwrapped positions at equally spaced frames.
        half_window: h in frames (t_R = 2 h).

    Returns:
        (F - 2h, N): p_hop at frames t = h .. F - h - 1.
    """
    x = np.asarray(trajectory, dtype=np.float64)
    if x.ndim != 3:
        raise InputError(f"trajectory must be (F, N, d), got {x.shape}")
    h = int(half_window)
    nf = x.shape[0]
    if h < 1 or nf < 2 * h + 1:
        raise InputError(f"need half_window >= 1 and at least {2 * h + 1} frames, got {nf}")
    c1 = np.concatenate([np.zeros((1,) + x.shape[1:]), np.cumsum(x, 0)])
    c2 = np.concatenate([np.zeros((1, x.shape[1])), np.cumsum((x * x).sum(2), 0)])
    t = np.arange(h, nf - h)
    k = h + 1  # frames per half window, both ends included

    def mean1(a: np.ndarray) -> np.ndarray:  # window [a, a + h]
        return (c1[a + k] - c1[a]) / k

    def mean2(a: np.ndarray) -> np.ndarray:
        return (c2[a + k] - c2[a]) / k

    ma, mb = mean1(t - h), mean1(t)
    sa, sb = mean2(t - h), mean2(t)
    # <(r - c)^2>_W = <r^2>_W - 2 c.<r>_W + c^2
    va = sa - 2 * (mb * ma).sum(2) + (mb * mb).sum(2)
    vb = sb - 2 * (ma * mb).sum(2) + (ma * ma).sum(2)
    return np.sqrt(np.maximum(va, 0.0) * np.maximum(vb, 0.0))


# ---------------------------------------------------------------------------------------------- settings
@dataclass(frozen=True)
class DescriptorSettings:
    """Which descriptors a predictor uses; stored inside every saved model.

    Attributes:
        families: subset of ('glassmlp', 'boattini', 'sbo', 'softness', 'quench', 'cage'); 'quench' (the
            thermal-to-inherent displacement, :func:`quench_features`) needs ``inherent`` and the thermal
            positions; 'cage' (:func:`cage_features`, short MD runs: a dynamical input) needs ``inherent``,
            the thermal positions and ``cage = {"T": ...}``.
        model: interaction model for per-particle energies, inherent states and (unless ``cage`` names its own)
            the cage MD ('ka3d', 'ka3d_sf', 'ka2d').
        nsp: number of species channels; must cover the model's species (a config without ``nsp`` takes the
            model's; species outside it are an error).
        inherent: compute on the inherent state (FIRE) rather than the given configuration.
        lengths: GlassMLP coarse-graining lengths; rc_cg: their cutoff.
        boattini: keyword arguments of :func:`boattini_features`.
        glassmlp_cg_levels: recursive coarse-graining levels n = 1..levels of the whole GlassMLP block
            (x^(n)_i = (x^(n-1)_i + sum_j w_ij x^(n-1)_j)/(1 + sum_j w_ij), w_ij = exp(-r_ij / cg_length),
            r < rc_cg), appended after the plain block (0: none, the published GlassMLP set).
        cg_length: length of those weights (Boattini: 2).
    """

    families: tuple[str, ...] = ("glassmlp",)
    model: str = "ka3d"
    inherent: bool = True
    lengths: tuple[float, ...] = (0.0, 1.0, 2.0, 3.0, 4.0, 5.0)
    rc_cg: float = 5.0
    nsp: int = 2
    boattini: dict[str, Any] = field(default_factory=dict)
    softness: dict[str, Any] = field(default_factory=dict)
    quench: dict[str, Any] = field(default_factory=dict)
    cage: dict[str, Any] = field(default_factory=dict)
    ftol: float = 1e-6
    glassmlp_cg_levels: int = 0
    cg_length: float = 2.0

    def __post_init__(self) -> None:
        if "cage" in self.families and "model" not in self.cage:  # the cage MD runs the settings' model
            object.__setattr__(self, "cage", {**self.cage, "model": self.model})

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        if self.glassmlp_cg_levels == 0:  # keep the cache keys of settings written before these options
            d.pop("glassmlp_cg_levels")
            d.pop("cg_length")
        if not self.quench:
            d.pop("quench")
        if not self.cage:
            d.pop("cage")
        d["families"] = list(self.families)
        d["lengths"] = list(self.lengths)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> DescriptorSettings:
        known = {f.name for f in dataclasses.fields(cls)}
        bad = set(d) - known
        if bad:
            raise InputError(f"unknown descriptor settings: {sorted(bad)}")
        kw = dict(d)
        for k in ("families", "lengths"):
            if k in kw:
                if isinstance(kw[k], (str, bytes, int, float)):
                    raise InputError(f"descriptor setting {k} must be a list, got {kw[k]!r}")
                kw[k] = tuple(kw[k])
        for fam in kw.get("families", ()):
            if fam not in ("glassmlp", "boattini", "sbo", "softness", "quench", "cage"):
                raise InputError(f"unknown descriptor family {fam!r}")
        if "nsp" not in kw:  # the model's species (2 for the KA 3D models: the settings of saved predictors)
            from glassgen.systems.model import load_model

            kw["nsp"] = load_model(str(kw.get("model", cls.model))).nsp
        import inspect

        per_family = {"boattini": boattini_features, "softness": softness_features, "quench": quench_features,
                      "cage": cage_features}
        fixed = {"positions", "species", "box", "thermal", "inherent", "nl", "nsp"}
        for fam, fn in per_family.items():
            opts = kw.get(fam) or {}
            if not isinstance(opts, dict):
                raise InputError(f"descriptor settings {fam!r} must be a table of options")
            allowed = set(inspect.signature(fn).parameters) - fixed
            bad_opts = set(opts) - allowed
            if bad_opts:
                raise InputError(f"unknown {fam} descriptor options {sorted(bad_opts)} (allowed: {sorted(allowed)})")
        return cls(**kw)


def compute_descriptors(settings: DescriptorSettings, positions: np.ndarray, species: np.ndarray,
                        box: np.ndarray, thermal: np.ndarray | None = None) -> tuple[np.ndarray, list[str]]:
    """Features of one configuration (already the inherent state if ``settings.inherent``): (N, F), names.

    ``thermal``: (N, d) the thermal configuration ``positions`` was quenched from (needed by 'quench')."""
    pos, b = _check(positions, species, box)
    spec = np.asarray(species, dtype=np.int64)
    _nsp(spec, settings.nsp)
    rmax = settings.rc_cg
    if "softness" in settings.families:
        rmax = max(rmax, 5.4)
    nl = neighbour_list(pos, b, rmax)
    cols, names = [], []
    if "glassmlp" in settings.families:
        e = per_particle_energy(pos, spec, b, settings.model)
        c, _ = voronoi_cells(pos, b)
        x, nm = glassmlp_features(pos, spec, b, e, c, settings.lengths, settings.rc_cg, settings.nsp, nl=nl)
        cols.append(x)
        names += nm
        if settings.glassmlp_cg_levels > 0:
            sub = nl.within(settings.rc_cg)
            levels = coarse_grain(x, sub, np.exp(-sub.r / settings.cg_length), settings.glassmlp_cg_levels)
            for k, lv in enumerate(levels[1:], start=1):
                cols.append(lv)
                names += [f"{n_}_cg{k}" for n_ in nm]
    if "boattini" in settings.families:
        x, nm = boattini_features(pos, spec, b, nsp=settings.nsp, nl=nl, **settings.boattini)
        cols.append(x)
        names += nm
    if "sbo" in settings.families:
        x, nm = sbo_features(pos, b, nl=nl)
        cols.append(x)
        names += nm
    if "softness" in settings.families:
        x, nm = softness_features(pos, spec, b, nsp=settings.nsp, nl=nl, **settings.softness)
        cols.append(x)
        names += nm
    if "quench" in settings.families:
        if thermal is None or not settings.inherent:
            raise InputError("the 'quench' descriptors need inherent = true and the thermal configuration")
        x, nm = quench_features(thermal, pos, b, nl=nl, **settings.quench)
        cols.append(x)
        names += nm
    if "cage" in settings.families:
        if thermal is None or not settings.inherent:
            raise InputError("the 'cage' descriptors need inherent = true and the thermal configuration")
        if "T" not in settings.cage:
            raise InputError("the 'cage' descriptors need their temperature: cage = {T = ...}")
        x, nm = cage_features(thermal, pos, spec, b, nl=nl, **settings.cage)
        cols.append(x)
        names += nm
    if not cols:
        raise InputError("no descriptor family selected")
    return np.concatenate(cols, 1), names
