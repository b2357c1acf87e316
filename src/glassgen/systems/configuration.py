"""Configurations: a structure of arrays (positions, species, box, model), never per-particle objects."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from glassgen.errors import InputError
from glassgen.systems.model import InteractionModel, load_model

__all__ = ["Configuration", "canonical_order", "minimum_image", "random_configuration"]


def minimum_image(dr: np.ndarray, box: np.ndarray) -> np.ndarray:
    """Apply the minimum-image convention to displacement vectors.

    Args:
        dr: (..., d) displacements.
        box: (d,) orthorhombic box lengths.

    Returns:
        (..., d) displacements with every component in [-L/2, L/2).
    """
    return dr - box * np.round(dr / box)


def canonical_order(pos: np.ndarray, species: np.ndarray, canonical: np.ndarray) -> np.ndarray:
    """Positions (N, d) of a configuration whose species were permuted (by swaps, or written in another particle
    order), reordered so that particle i has species ``canonical[i]``: the k-th particle of each species goes to
    that species' k-th slot. Particles of one species are indistinguishable, so no energy or Boltzmann weight
    changes. Needs the same composition (checked)."""
    species, canonical = np.asarray(species), np.asarray(canonical)
    if not np.array_equal(np.sort(species), np.sort(canonical)):
        raise InputError(f"species counts {np.bincount(species).tolist()} differ from the canonical "
                         f"{np.bincount(canonical).tolist()}")
    out = np.empty_like(pos)
    out[np.argsort(canonical, kind="stable")] = pos[np.argsort(species, kind="stable")]
    return out


@dataclass(frozen=True)
class Configuration:
    """One configuration of a periodic orthorhombic system.

    Attributes:
        positions: (N, d) float64 coordinates; wrapped or unwrapped (kernels wrap as needed).
        species: (N,) int32 species indices, 0-based, into ``model.species``.
        box: (d,) float64 box lengths; the box is [0, L) (or centred, it does not matter: periodic).
        model: the interaction model, or ``None`` for bare geometry.
        velocities: optional (N, d) float64.
        metadata: free-form header entries read from a file (temperature, step, ...).
    """

    positions: np.ndarray
    species: np.ndarray
    box: np.ndarray
    model: InteractionModel | None = None
    velocities: np.ndarray | None = None
    metadata: dict = dataclasses.field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        pos = np.ascontiguousarray(self.positions, dtype=np.float64)
        if pos.ndim != 2 or pos.shape[1] not in (2, 3):
            raise InputError(f"positions must have shape (N, 2) or (N, 3), got {pos.shape}")
        n, d = pos.shape
        if n == 0:
            raise InputError("a configuration needs at least one particle")
        if not np.all(np.isfinite(pos)):
            raise InputError("positions contain NaN or infinite values")
        spec = np.ascontiguousarray(self.species)
        if spec.shape != (n,):
            raise InputError(f"species must have shape ({n},), got {spec.shape}")
        if not np.issubdtype(spec.dtype, np.integer):
            raise InputError("species must be integer indices")
        spec = spec.astype(np.int32)
        box = np.asarray(self.box, dtype=np.float64)
        if box.shape not in ((), (1,), (d,)):
            raise InputError(f"box must be one length or {d} lengths for {d}D positions, got shape {box.shape}")
        box = np.ascontiguousarray(np.broadcast_to(box, (d,)))
        if np.any(~np.isfinite(box)) or np.any(box <= 0):
            raise InputError(f"box lengths must be positive and finite, got {box}")
        # unwrapped coordinates may leave the box, but not by 1e6 box lengths (where wrapping loses all precision)
        far = np.abs(pos) / box > 1e6
        if np.any(far):
            k = int(np.argmax(np.any(far, axis=1)))
            raise InputError(f"particle {k} lies more than 1e6 box lengths outside the box (position "
                             f"{pos[k].tolist()}, box {box.tolist()})")
        if spec.min() < 0:
            raise InputError("species indices must be >= 0")
        if self.model is not None:
            if self.model.dim != d:
                raise InputError(f"model {self.model.name!r} is {self.model.dim}D but positions are {d}D")
            if spec.max() >= self.model.nsp:
                raise InputError(f"species index {int(spec.max())} out of range for model "
                                 f"{self.model.name!r} ({self.model.nsp} species)")
        vel = self.velocities
        if vel is not None:
            vel = np.ascontiguousarray(vel, dtype=np.float64)
            if vel.shape != (n, d):
                raise InputError(f"velocities must have shape {(n, d)}, got {vel.shape}")
            if not np.all(np.isfinite(vel)):
                raise InputError("velocities contain NaN or infinite values")
        object.__setattr__(self, "positions", pos)
        object.__setattr__(self, "species", spec)
        object.__setattr__(self, "box", box)
        object.__setattr__(self, "velocities", vel)

    # -------------------------------------------------------------- properties
    @property
    def n(self) -> int:
        """Number of particles N."""
        return int(self.positions.shape[0])

    @property
    def dim(self) -> int:
        """Spatial dimension d."""
        return int(self.positions.shape[1])

    @property
    def volume(self) -> float:
        """Box volume (area in 2D)."""
        return float(np.prod(self.box))

    @property
    def density(self) -> float:
        """Number density N / V."""
        return self.n / self.volume

    def wrapped_positions(self) -> np.ndarray:
        """(N, d) positions folded into [0, L)."""
        return self.wrapped_and_images()[0]

    def wrapped_and_images(self) -> tuple[np.ndarray, np.ndarray]:
        """(N, d) positions folded into [0, L) and (N, d) int64 image counts n, positions = wrapped + n L."""
        img = np.floor(self.positions / self.box).astype(np.int64)
        x = self.positions - img * self.box
        return np.where(x >= self.box, 0.0, x), img  # floor rounding can leave x == L

    def replace(self, **changes: object) -> Configuration:
        """A copy with some fields replaced (the configuration itself is immutable)."""
        return dataclasses.replace(self, **changes)  # type: ignore[arg-type]

    def with_model(self, model: str | InteractionModel) -> Configuration:
        """The same configuration bound to another model (checked for dimension and species)."""
        return self.replace(model=load_model(model))

    def require_model(self) -> InteractionModel:
        """The model, or a clear error if the configuration has none."""
        if self.model is None:
            raise InputError("this configuration has no interaction model; pass --model")
        return self.model


def random_configuration(model: str | InteractionModel, n: int, density: float | None = None,
                         seed: int | np.random.Generator | None = 0) -> Configuration:
    """Uniformly random positions with the model's composition (overlaps NOT removed).

    Use :func:`glassgen.dynamics.initial.random_state` for a physical initial state.
    """
    m = load_model(model)
    if n < 1:
        raise InputError(f"N must be positive, got {n}")
    rng = np.random.default_rng(seed)
    L = m.box_length(n, density)
    box = np.full(m.dim, L)
    counts = m.counts(n)
    species = np.repeat(np.arange(m.nsp, dtype=np.int32), counts)
    pos = rng.random((n, m.dim)) * box
    return Configuration(pos, species, box, m)
