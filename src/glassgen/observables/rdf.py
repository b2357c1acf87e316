"""Partial radial distribution functions g_ab(r) in periodic orthorhombic boxes (2D and 3D).

Definition (ordered species pair (a, b), N_a particles of species a, volume V, d = 2 or 3):

    g_ab(r) = V / (N_a (N_b - delta_ab)) < sum_{i in a} sum_{j in b, j != i} delta(r - r_ij) > / s_d(r)

with s_d(r) dr the volume of the shell [r, r + dr) (2 pi r dr in 2D, 4 pi r^2 dr in 3D) and r_ij the
minimum-image distance. The pair count N_a (N_b - delta_ab) (not N_a N_b) makes g_ab = 1 exactly, in
expectation, for an ideal gas of any size; with N_a N_b the like-species partials would tend to
1 - 1/N_a instead. The two conventions differ by O(1/N_a). The total g(r) uses all N (N - 1) ordered
pairs. g_ab = g_ba.

Frames are averaged with ``reset=False``: each frame's normalised g is added, so the box and the
composition may change between frames (e.g. NPT).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import numba
import numpy as np

from glassgen._kernels.structure import pair_histogram, pair_histogram_serial
from glassgen.errors import InputError
from glassgen.observables._base import _guard, write_columns

__all__ = ["RDF"]

_SERIAL_PAIRS = 200_000  # below this many pairs per frame the serial kernel is used


def _shell_volumes(edges: np.ndarray, dim: int) -> np.ndarray:
    if dim == 2:
        return np.pi * (edges[1:] ** 2 - edges[:-1] ** 2)
    return 4.0 / 3.0 * np.pi * (edges[1:] ** 3 - edges[:-1] ** 3)


class RDF:
    """Partial and total radial distribution functions, compute contract of freud.

    Args:
        r_max: largest distance (length units, sigma_AA); must be <= min(L)/2 of every box computed.
        bins: number of uniform bins in ``[r_min, r_max)``.
        pairs: ``"all"`` (every species pair) or a sequence of ``(a, b)`` species pairs; all
            partials are always computed, ``pairs`` selects what :attr:`partials`, :meth:`write` and
            :func:`~glassgen.observables.plots.plot_rdf` report.
        r_min: smallest distance (default 0).
        n_species: number of species; by default ``species.max() + 1`` of the first frame.

    Example:
        >>> rdf = RDF(r_max=3.0, bins=150).compute(conf.positions, conf.species, conf.box)
        >>> rdf.bin_centers, rdf.g[0, 0]  # doctest: +SKIP
    """

    def __init__(self, r_max: float, bins: int, pairs: str | Sequence[tuple[int, int]] = "all",
                 r_min: float = 0.0, n_species: int | None = None) -> None:
        if not (np.isfinite(r_max) and r_max > 0):
            raise InputError(f"r_max must be positive, got {r_max}")
        if not (0 <= r_min < r_max):
            raise InputError(f"need 0 <= r_min < r_max, got r_min={r_min}, r_max={r_max}")
        if int(bins) < 1:
            raise InputError(f"bins must be >= 1, got {bins}")
        if isinstance(pairs, str):
            if pairs != "all":
                raise InputError(f"pairs must be 'all' or a sequence of (a, b), got {pairs!r}")
            self._pairs: list[tuple[int, int]] | None = None
        else:
            try:
                self._pairs = [(int(a), int(b)) for a, b in pairs]
            except (TypeError, ValueError) as exc:
                raise InputError(f"pairs must be 'all' or a sequence of (a, b), got {pairs!r}") from exc
        if n_species is not None and int(n_species) < 1:
            raise InputError(f"n_species must be >= 1, got {n_species}")
        self.r_max = float(r_max)
        self.r_min = float(r_min)
        self.bins = int(bins)
        self._n_species_arg = None if n_species is None else int(n_species)
        self._edges = np.linspace(self.r_min, self.r_max, self.bins + 1)
        self._reset()

    def _reset(self) -> None:
        self._nsp: int | None = self._n_species_arg
        self._dim: int | None = None
        self._g_sum: np.ndarray | None = None
        self._gt_sum: np.ndarray | None = None
        self._n_frames = 0
        self._density_sum = 0.0

    # ----------------------------------------------------------------- compute
    def compute(self, positions: Any, species: np.ndarray | None = None, box: np.ndarray | None = None,
                reset: bool = True) -> RDF:
        """Histogram one frame (or a stack of frames) and add it to the average.

        Args:
            positions: (N, d) or (F, N, d) float positions (length units), wrapped or not; or a
                :class:`~glassgen.systems.configuration.Configuration` (anything with ``positions``,
                ``species`` and ``box``), then ``species`` and ``box`` may be omitted.
            species: (N,) int species indices, 0-based (default: all 0).
            box: (d,) orthorhombic box lengths.
            reset: if True, forget previously computed frames first; if False, accumulate.

        Returns:
            self.

        Raises:
            InputError: bad shapes, ``r_max > min(L)/2``, or a species index outside ``n_species``.
        """
        if hasattr(positions, "positions") and hasattr(positions, "box"):
            conf = positions
            positions = conf.positions
            species = conf.species if species is None else species
            box = conf.box if box is None else box
        if box is None:
            raise InputError("RDF.compute needs the box lengths")
        pos = np.asarray(positions, dtype=np.float64)
        if pos.ndim == 2:
            pos = pos[None]
        if pos.ndim != 3 or pos.shape[2] not in (2, 3):
            raise InputError("positions must have shape (N, d) or (F, N, d) with d in (2, 3), "
                             f"got {pos.shape}")
        _, n, d = pos.shape
        if n < 2:
            raise InputError("g(r) needs at least two particles")
        if not np.all(np.isfinite(pos)):
            raise InputError("positions contain NaN or infinite values")
        spec = np.zeros(n, dtype=np.int32) if species is None else np.asarray(species)
        if spec.shape != (n,) or not np.issubdtype(spec.dtype, np.integer):
            raise InputError(f"species must be an integer array of shape ({n},), "
                             f"got {spec.dtype} {spec.shape}")
        if spec.min() < 0:
            raise InputError("species indices must be >= 0")
        spec = np.ascontiguousarray(spec, dtype=np.int32)
        bx = np.ascontiguousarray(np.broadcast_to(np.asarray(box, dtype=np.float64), (d,)))
        if np.any(~np.isfinite(bx)) or np.any(bx <= 0):
            raise InputError(f"box lengths must be positive and finite, got {bx}")
        if self.r_max > 0.5 * bx.min() * (1 + 1e-12):
            raise InputError(f"r_max = {self.r_max} exceeds min(L)/2 = {0.5 * bx.min()}: the minimum-image "
                             f"g(r) is only valid up to half the shortest box length")

        if reset:
            self._reset()
        if self._dim is not None and self._dim != d:
            raise InputError(f"cannot accumulate {d}D frames onto {self._dim}D ones")
        nsp = int(spec.max()) + 1 if self._nsp is None else self._nsp
        if spec.max() >= nsp:
            raise InputError(f"species index {int(spec.max())} out of range for n_species = {nsp}")
        if self._g_sum is None:
            self._nsp, self._dim = nsp, d
            self._g_sum = np.zeros((nsp, nsp, self.bins))
            self._gt_sum = np.zeros(self.bins)

        volume = float(np.prod(bx))
        shell = _shell_volumes(self._edges, d)
        counts = np.bincount(spec, minlength=nsp).astype(np.float64)
        npairs = np.outer(counts, counts) - np.diag(counts)  # N_a (N_b - delta_ab)
        with np.errstate(divide="ignore", invalid="ignore"):
            norm_ab = np.where(npairs > 0, volume / npairs, np.nan)
        norm_tot = volume / (n * (n - 1.0))
        nth = max(1, min(numba.get_num_threads(), n // 64))
        if n * (n - 1) // 2 < _SERIAL_PAIRS:
            nth = 1
        hbuf = np.empty((nth, nsp, nsp, self.bins), dtype=np.int64)
        for frame in pos:
            frame = np.ascontiguousarray(frame)
            if nth == 1:
                hist = pair_histogram_serial(frame, spec, bx, nsp, self.r_min, self.r_max, self.bins)
            else:
                hist = pair_histogram(frame, spec, bx, nsp, self.r_min, self.r_max, self.bins, hbuf)
            self._g_sum += hist * norm_ab[:, :, None] / shell
            self._gt_sum += hist.sum(axis=(0, 1)) * norm_tot / shell
            self._n_frames += 1
            self._density_sum += n / volume
        return self

    def compute_configuration(self, conf: Any, reset: bool = True) -> RDF:
        """:meth:`compute` on a :class:`~glassgen.systems.configuration.Configuration`."""
        return self.compute(conf.positions, conf.species, conf.box, reset=reset)

    # ----------------------------------------------------------------- results
    @property
    def bin_edges(self) -> np.ndarray:
        """(bins + 1,) bin edges (length units)."""
        return self._edges.copy()

    @property
    def bin_centers(self) -> np.ndarray:
        """(bins,) bin centres (length units)."""
        return 0.5 * (self._edges[1:] + self._edges[:-1])

    @property
    def n_frames(self) -> int:
        """Number of frames averaged (0 before compute)."""
        return self._n_frames

    @property
    def n_species(self) -> int:
        """Number of species (after compute, or if given to the constructor)."""
        return int(_guard(self, self._nsp, "n_species"))

    @property
    def g(self) -> np.ndarray:
        """(nsp, nsp, bins) partial g_ab(r), averaged over frames; NaN for an absent species."""
        g_sum = _guard(self, self._g_sum, "g")
        return g_sum / self._n_frames

    @property
    def g_total(self) -> np.ndarray:
        """(bins,) total g(r) over all N (N - 1) ordered pairs, averaged over frames."""
        gt = _guard(self, self._gt_sum, "g_total")
        return gt / self._n_frames

    @property
    def density(self) -> float:
        """Mean number density N / V over the frames."""
        _guard(self, self._g_sum, "density")
        return self._density_sum / self._n_frames

    @property
    def pairs(self) -> list[tuple[int, int]]:
        """The species pairs reported: all ``a <= b`` for ``pairs='all'``, else the requested ones."""
        if self._pairs is not None:
            return list(self._pairs)
        nsp = self.n_species
        return [(a, b) for a in range(nsp) for b in range(a, nsp)]

    @property
    def partials(self) -> dict[tuple[int, int], np.ndarray]:
        """``{(a, b): g_ab (bins,)}`` for the reported pairs."""
        g = self.g
        out = {}
        for a, b in self.pairs:
            if not (0 <= a < g.shape[0] and 0 <= b < g.shape[0]):
                raise InputError(f"species pair {(a, b)} out of range for {g.shape[0]} species")
            out[(a, b)] = g[a, b]
        return out

    def write(self, path: str | os.PathLike[str], **meta: Any) -> None:
        """Write ``r g_total g_ab...`` columns with a provenance header (atomic).

        Args:
            path: output text file.
            **meta: extra header entries (model, T, ...).
        """
        parts = self.partials
        cols = [self.bin_centers, self.g_total, *parts.values()]
        names = ["r", "g_total", *[f"g_{a}{b}" for a, b in parts]]
        write_columns(path, cols, names, analysis="rdf", r_max=self.r_max, bins=self.bins,
                      n_frames=self.n_frames, **meta)

    def __repr__(self) -> str:
        return f"RDF(r_max={self.r_max}, bins={self.bins}, r_min={self.r_min}, n_frames={self._n_frames})"
