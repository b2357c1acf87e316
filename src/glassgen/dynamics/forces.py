"""ForceField: energies, forces, virial and per-particle energies of a configuration (Numba engine).

Manages a half Verlet neighbour list with a skin: it is rebuilt when the two largest displacements
since the last build add up to the skin (no pair distance can have shrunk by more than their sum;
this is exact, and lasts longer than the usual "one particle moved skin/2"). Positions may be
unwrapped; the list works in its own frame (positions shifted by whole boxes at build time), so MD
can integrate unwrapped coordinates.
Internally particles are reordered by cell at every build (as LAMMPS' atom sorting does), so that
neighbours are close in memory: the force loop ran 2x faster in cell order than in random order.
Inputs and outputs keep the caller's particle order.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numba
import numpy as np

from glassgen._kernels.forces import balanced_bounds, half_list_forces, half_list_forces_serial
from glassgen._kernels.neighbors import (
    build_half_list_brute,
    build_half_list_cells,
    cell_neighbours,
    cell_sort,
    gather_frame,
    half_stencil,
    image_shifts,
    scatter_rows,
    scatter_sum,
)
from glassgen._kernels.pair import kernel_variant
from glassgen.errors import InputError, PhysicsError
from glassgen.systems.configuration import Configuration
from glassgen.systems.model import InteractionModel, load_model

__all__ = ["ForceField", "ForceResult", "potential_energy", "OVERLAP_FACTOR"]

#: below this many particles the default is one thread
SERIAL_BELOW = 1000

#: cells per list cutoff (cell edge >= (r_c + skin) / CELLS_PER_CUTOFF) when the box allows it
CELLS_PER_CUTOFF = 2

#: particles closer than OVERLAP_FACTOR * sigma_ab are reported as overlapping (LJ energy > 4e5 eps)
OVERLAP_FACTOR = 0.5


@dataclass(frozen=True)
class ForceResult:
    """Result of one force evaluation.

    Attributes:
        energy: total potential energy U (epsilon), float.
        forces: (N, d) forces F_i = -dU/dr_i.
        virial: W = sum over pairs of r_ij . f_ij (epsilon); pressure P = (N T + W / d) / V... see
            :meth:`ForceField.pressure`.
        per_particle: (N,) e_i = half the sum of i's pair energies (sum e_i = U), or None.
        min_distance_ratio: smallest r_ij / sigma_ab over interacting pairs.
    """

    energy: float
    forces: np.ndarray
    virial: float
    per_particle: np.ndarray | None
    min_distance_ratio: float


class ForceField:
    """Energy and forces of an interaction model in a fixed periodic box.

    Args:
        model: model name or :class:`InteractionModel`.
        species: (N,) int species indices.
        box: (d,) box lengths.
        skin: Verlet skin (sigma_AA units); 0 rebuilds the list at every call.
        soft_core: soft-core factor (see :meth:`InteractionModel.kernel_params`); 0 = exact.
        threads: Numba threads for the force loop (default: numba's current setting for N >= 1000,
            1 below, where thread synchronisation costs more than the pair loop).
        check_overlap: raise :class:`PhysicsError` when particles overlap (r < 0.5 sigma_ab) or the
            energy is not finite.
    """

    def __init__(self, model: str | InteractionModel, species: np.ndarray, box: np.ndarray,
                 skin: float = 0.3, soft_core: float = 0.0, threads: int | None = None,
                 check_overlap: bool = True) -> None:
        self.model = load_model(model)
        self.species = np.ascontiguousarray(species, dtype=np.int32)
        self.box = np.ascontiguousarray(box, dtype=np.float64)
        self.n = int(self.species.shape[0])
        self.dim = int(self.box.shape[0])
        if self.dim != self.model.dim:
            raise InputError(f"model {self.model.name!r} is {self.model.dim}D but the box is {self.dim}D")
        if skin < 0:
            raise InputError("skin must be >= 0")
        self.skin = float(skin)
        self.params = self.model.kernel_params(soft_core)
        p = self.params
        self._variant = kernel_variant(p.c1, p.c2, p.c4, p.rs2)
        if self._variant == 6:  # no model has both a linear and a polynomial term: use the general loop
            self._variant = 7
        self.check_overlap = check_overlap
        if threads is None:
            threads = numba.get_num_threads() if self.n >= SERIAL_BELOW else 1
        self.threads = max(1, min(int(threads), numba.config.NUMBA_NUM_THREADS))
        rl = self.model.rcut + self.skin
        self._rl2 = np.ascontiguousarray((rl**2).ravel())
        rl_max = float(rl.max())
        # cells of edge >= rl/2 with a pruned 5^d stencil (LAMMPS' bins are half the cutoff too): about
        # half the candidate pairs of rl-sized cells; rl-sized cells, then all pairs, in smaller boxes
        self._use_cells = False
        self._ncell = np.ones(self.dim, dtype=np.int64)
        self._m = int(math.ceil(rl_max / float(self.box.min())))
        for sub in (CELLS_PER_CUTOFF, 1):
            ncell = np.floor(self.box / (rl_max / sub)).astype(np.int64)
            if np.all(ncell >= 2 * sub + 1):
                self._use_cells = True
                self._ncell = ncell
                self._m = 1
                self._segments = cell_neighbours(ncell, half_stencil(self.box / ncell, rl_max, sub))
                break
        if (2 * self._m + 1) ** self.dim > 32767:  # checked before the (2m+1)^d image table is built
            raise InputError(f"box {self.box.min():.3g} too small for the cutoff {rl_max:.3g}: too many periodic "
                             "images (density too high or N too small)")
        self._shifts = image_shifts(self.box, self._m)
        # neighbour capacity: expected half-list count plus margin
        vol_sphere = (4.0 / 3.0 * math.pi if self.dim == 3 else math.pi) * rl_max**self.dim
        rho = self.n / float(np.prod(self.box))
        self._cap = int(0.75 * rho * vol_sphere) + 24
        self._alloc()
        self._ref = None  # positions (list frame) at the last build
        self._image = np.zeros((self.n, self.dim), dtype=np.int64)
        self._local = np.empty((self.n, self.dim))
        self._perm = np.arange(self.n, dtype=np.int64)
        self._species_sorted = self.species
        self._fbuf = np.empty((self.threads, self.n, self.dim))
        self._ebuf = np.zeros((self.threads, 4))
        self._no_peratom = np.empty(0)
        self._peratom = self._no_peratom
        self.builds = 0

    def _alloc(self) -> None:
        self._nbr = np.empty((self.n, self._cap), dtype=np.int32)
        self._code = np.empty((self.n, self._cap), dtype=np.int16)
        self._count = np.zeros(self.n, dtype=np.int32)

    @classmethod
    def for_configuration(cls, conf: Configuration, **kw: object) -> ForceField:
        """A ForceField for the model, species and box of ``conf``."""
        return cls(conf.require_model(), conf.species, conf.box, **kw)  # type: ignore[arg-type]

    # ------------------------------------------------------------------ neighbour list
    def _build(self, pos: np.ndarray) -> None:
        image = np.floor(pos / self.box).astype(np.int64)
        wrapped = np.ascontiguousarray(pos - image * self.box)
        nsp = self.model.nsp
        if self._use_cells:
            start, parts, cell_of = cell_sort(wrapped, self.box, self._ncell)
            self._perm = parts
            wrapped = np.ascontiguousarray(wrapped[parts])
            image = np.ascontiguousarray(image[parts])
            cell_of = np.ascontiguousarray(cell_of[parts])
        else:
            self._perm = np.arange(self.n, dtype=np.int64)
        self._species_sorted = np.ascontiguousarray(self.species[self._perm])
        while True:
            if self._use_cells:
                need = build_half_list_cells(wrapped, self._species_sorted, nsp, self._rl2, self._shifts,
                                             self._segments, start, cell_of, self._nbr, self._code,
                                             self._count)
            else:
                need = build_half_list_brute(wrapped, self._species_sorted, nsp, self._rl2, self._shifts,
                                             self._m, self._nbr, self._code, self._count)
            if need <= self._cap:
                break
            self._cap = int(need * 1.2) + 8
            self._alloc()
        self._image = image
        self._ref = wrapped
        self._built_at = np.array(pos, dtype=np.float64, copy=True)
        self._bounds = balanced_bounds(self._count, self.threads)
        self.builds += 1

    def _frame(self, positions: np.ndarray) -> np.ndarray:
        pos = np.ascontiguousarray(positions, dtype=np.float64)
        if pos.shape != (self.n, self.dim):
            raise InputError(f"positions must have shape {(self.n, self.dim)}, got {pos.shape}")
        if self._ref is None:
            self._build(pos)
            return self._ref  # type: ignore[return-value]
        d1, d2 = gather_frame(pos, self._perm, self.box, self._image, self._ref, self._local)
        if not math.isfinite(d1):
            raise PhysicsError("non-finite positions")
        if math.sqrt(d1) + math.sqrt(d2) >= self.skin:
            self._build(pos)
            return self._ref  # type: ignore[return-value]
        return self._local

    def invalidate(self) -> None:
        """Force a neighbour-list rebuild at the next call (after positions jump)."""
        self._ref = None

    @property
    def list_positions(self) -> np.ndarray | None:
        """(N, d) positions (caller's order, as given) at which the current neighbour list was built; None before
        the first build or after :meth:`invalidate`. A checkpoint keeps them so that :meth:`restore_list` gives
        the same list, and a resumed run the same sums in the same order, bit for bit."""
        return None if self._ref is None else self._built_at

    def restore_list(self, positions: np.ndarray) -> None:
        """Rebuild the neighbour list at ``positions`` (N, d), as :attr:`list_positions` recorded them."""
        self._build(np.ascontiguousarray(positions, dtype=np.float64))

    # ------------------------------------------------------------------ evaluation
    def _evaluate(self, positions: np.ndarray, per_particle: bool, out: np.ndarray) -> tuple[float, float, float]:
        """Forces into ``out`` (N, d) (caller's order), per-atom energies (sorted order) into
        ``self._peratom`` when asked; returns (U, W, max sig^2/r^2) after the overlap checks."""
        local = self._frame(positions)
        peratom = np.empty(self.n) if per_particle else self._no_peratom
        p = self.params
        if self.threads == 1:
            e, w, smax = half_list_forces_serial(local, self._species_sorted, p.nsp, p.sig2, p.eps4, p.rc2, p.c0, p.c1,
                                                 p.c2, p.c4, p.rs2, self._shifts, self._nbr, self._code,
                                                 self._count, per_particle, self._fbuf[0], peratom, self._variant)
        else:
            e, w, smax = half_list_forces(local, self._species_sorted, p.nsp, p.sig2, p.eps4, p.rc2, p.c0, p.c1, p.c2,
                                          p.c4, p.rs2, self._shifts, self._nbr, self._code, self._count,
                                          self._bounds, self._fbuf, self._ebuf, per_particle, peratom, self._variant)
        scatter_sum(self._fbuf, self._perm, out)
        self._peratom = peratom
        if self.check_overlap:
            if smax * OVERLAP_FACTOR**2 > 1.0:
                raise PhysicsError(f"overlapping particles: a pair is at {1.0 / math.sqrt(smax):.3f} sigma_ab "
                                   f"(< {OVERLAP_FACTOR}); remove overlaps first (glassgen minimize --soft)")
            if not math.isfinite(e):
                raise PhysicsError(f"non-finite potential energy ({e})")
        return e, w, smax

    def forces_into(self, positions: np.ndarray, out: np.ndarray) -> tuple[float, float]:
        """MD fast path: forces at ``positions`` (N, d) written into ``out`` (N, d); returns (U, W)
        (potential energy and virial, as in :class:`ForceResult`)."""
        e, w, _ = self._evaluate(positions, False, out)
        return e, w

    def compute(self, positions: np.ndarray, per_particle: bool = False,
                out: np.ndarray | None = None) -> ForceResult:
        """Energy, forces and virial at ``positions`` ((N, d), wrapped or unwrapped).

        Args:
            positions: (N, d) float64.
            per_particle: also return e_i (N,).
            out: optional (N, d) array to receive the forces (avoids an allocation per MD step).
        """
        forces = out if out is not None else np.empty((self.n, self.dim))
        e, w, smax = self._evaluate(positions, per_particle, forces)
        pa = None
        if per_particle:
            pa = np.empty(self.n)
            scatter_rows(self._peratom, self._perm, pa)
        ratio = 1.0 / math.sqrt(smax) if smax > 0 else math.inf
        return ForceResult(float(e), forces, float(w), pa, ratio)

    def energy(self, positions: np.ndarray) -> float:
        """Total potential energy U."""
        return self.compute(positions).energy

    def pressure(self, virial: float, kinetic_temperature: float) -> float:
        """P = rho T + W / (d V)."""
        vol = float(np.prod(self.box))
        return self.n * kinetic_temperature / vol + virial / (self.dim * vol)


def potential_energy(conf: Configuration, per_particle: bool = False) -> ForceResult:
    """One-shot energy/forces of a configuration (builds a fresh neighbour list, no skin)."""
    ff = ForceField.for_configuration(conf, skin=0.0)
    return ff.compute(conf.positions, per_particle=per_particle)
