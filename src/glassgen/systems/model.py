"""Interaction models as data: species-pair parameter matrices plus a named cutoff scheme.

A model is a frozen dataclass of ``(nsp, nsp)`` matrices read from ``configs/models/<name>.toml``.
Every pair potential in glassgen is one Lennard-Jones pair kernel combined with one cutoff scheme,
written as a polynomial correction (see :mod:`glassgen._kernels.pair`):

    V_ab(r) = 4 eps_ab [(sig_ab/r)^12 - (sig_ab/r)^6] + c0_ab + c1_ab r + c2_ab r^2 + c4_ab r^4,  r < r_c,ab

with, for r_c = f sig_ab (f = ``cutoff_factor``):

- ``cut``:           all c = 0 (plain truncation);
- ``cut_shift``:     c0 = -V_LJ(r_c) (energy continuous);
- ``shifted_force``: c0 = -V_LJ(r_c) + r_c V_LJ'(r_c), c1 = -V_LJ'(r_c) (energy and force continuous);
- ``quartic``:       c0 = 4 eps C0, c2 = 4 eps C2 / sig^2, c4 = 4 eps C4 / sig^4 (KA2D smoothing; V, V', V''
  vanish at r_c for the published C0, C2, C4).

Units: reduced LJ units (sigma_AA, epsilon_AA, m, k_B = 1).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from glassgen.config_values import read_toml
from glassgen.errors import InputError

__all__ = ["InteractionModel", "load_model", "default_swap_pairs", "available_models", "models_dir", "CUTOFF_SCHEMES",
           "KernelParams"]

CUTOFF_SCHEMES = ("cut", "cut_shift", "shifted_force", "quartic")


def models_dir() -> Path:
    """Directory of the model TOML files: ``$GLASSGEN_MODELS`` or the repository's ``configs/models``."""
    env = os.environ.get("GLASSGEN_MODELS")
    if env:
        return Path(env)
    here = Path(__file__).resolve()
    for parent in here.parents:
        cand = parent / "configs" / "models"
        if cand.is_dir():
            return cand
    return here.parent.parent / "data" / "models"


def available_models() -> list[str]:
    """Names of the models found in :func:`models_dir`."""
    d = models_dir()
    return sorted(p.stem for p in d.glob("*.toml")) if d.is_dir() else []


@dataclass(frozen=True)
class KernelParams:
    """Flattened ``(nsp*nsp,)`` float64 arrays that the Numba pair kernel reads (index a*nsp + b).

    ``sig2`` = sig^2, ``eps4`` = 4 eps, ``rc2`` = r_c^2, ``c0, c1, c2, c4`` the cutoff polynomial,
    ``rs2`` = (soft-core radius)^2, 0 where the soft core is off. ``rc_max`` is the largest cutoff.
    """

    nsp: int
    sig2: np.ndarray
    eps4: np.ndarray
    rc2: np.ndarray
    c0: np.ndarray
    c1: np.ndarray
    c2: np.ndarray
    c4: np.ndarray
    rs2: np.ndarray
    rc_max: float

    def as_tuple(self) -> tuple[np.ndarray, ...]:
        return (self.sig2, self.eps4, self.rc2, self.c0, self.c1, self.c2, self.c4, self.rs2)


def _sym(name: str, m: Any, nsp: int) -> np.ndarray:
    a = np.asarray(m, dtype=np.float64)
    if a.shape != (nsp, nsp):
        raise InputError(f"model parameter {name!r} must be a {nsp}x{nsp} matrix, got shape {a.shape}")
    if not np.all(np.isfinite(a)):
        raise InputError(f"model parameter {name!r} must be finite, got {a.tolist()}")
    if not np.allclose(a, a.T):
        raise InputError(f"model parameter {name!r} must be symmetric")
    if np.any(a <= 0):
        raise InputError(f"model parameter {name!r} must be positive")
    return a


@dataclass(frozen=True)
class InteractionModel:
    """A pair-potential model for a mixture (frozen; compare models by ``name`` and parameters).

    Attributes:
        name: short identifier (``ka3d``, ``ka3d_sf``, ``ka2d``, ``ka2``).
        dim: spatial dimension, 2 or 3.
        species: species labels, index order of the matrices.
        composition: number fractions per species (sum 1).
        density: default number density N/V.
        masses: per-species masses.
        sigma, epsilon: (nsp, nsp) LJ parameters.
        cutoff_scheme: one of :data:`CUTOFF_SCHEMES`.
        cutoff_factor: r_c,ab = cutoff_factor * sigma_ab.
        quartic: (C0, C2, C4) of the quartic smoothing (only for ``quartic``).
    """

    name: str
    dim: int
    species: tuple[str, ...]
    composition: tuple[float, ...]
    density: float
    masses: np.ndarray
    sigma: np.ndarray
    epsilon: np.ndarray
    cutoff_scheme: str
    cutoff_factor: float = 2.5
    quartic: tuple[float, float, float] = (0.0, 0.0, 0.0)
    description: str = ""
    source_text: str = field(default="", repr=False, compare=False)

    def __post_init__(self) -> None:
        nsp = len(self.species)
        if self.dim not in (2, 3):
            raise InputError(f"model {self.name!r}: dim must be 2 or 3, got {self.dim}")
        if self.cutoff_scheme not in CUTOFF_SCHEMES:
            raise InputError(f"model {self.name!r}: unknown cutoff_scheme {self.cutoff_scheme!r} "
                             f"(choose from {', '.join(CUTOFF_SCHEMES)})")
        if len(self.composition) != nsp or abs(sum(self.composition) - 1.0) > 1e-6:
            raise InputError(f"model {self.name!r}: composition must have {nsp} fractions summing to 1")
        object.__setattr__(self, "sigma", _sym("sigma", self.sigma, nsp))
        object.__setattr__(self, "epsilon", _sym("epsilon", self.epsilon, nsp))
        masses = np.asarray(self.masses, dtype=np.float64)
        if masses.shape != (nsp,) or np.any(masses <= 0):
            raise InputError(f"model {self.name!r}: masses must be {nsp} positive numbers")
        object.__setattr__(self, "masses", masses)
        if not self.cutoff_factor > 0:
            raise InputError(f"model {self.name!r}: cutoff_factor must be positive")
        if not (math.isfinite(self.density) and self.density > 0):
            raise InputError(f"model {self.name!r}: density must be positive and finite, got {self.density}")

    # ------------------------------------------------------------------ derived quantities
    @property
    def nsp(self) -> int:
        """Number of species."""
        return len(self.species)

    @property
    def rcut(self) -> np.ndarray:
        """(nsp, nsp) cutoff radii r_c,ab."""
        return self.cutoff_factor * self.sigma

    def counts(self, n: int) -> np.ndarray:
        """Integer species counts for ``n`` particles (largest-remainder rounding of the composition)."""
        frac = np.asarray(self.composition) * n
        base = np.floor(frac).astype(np.int64)
        rest = n - base.sum()
        order = np.argsort(-(frac - base), kind="stable")
        base[order[:rest]] += 1
        return base

    def box_length(self, n: int, density: float | None = None) -> float:
        """Edge of the cubic (square) box holding ``n`` particles at ``density`` (default: model's)."""
        rho = self.density if density is None else density
        if not (isinstance(rho, (int, float, np.floating, np.integer)) and math.isfinite(rho) and rho > 0):
            raise InputError(f"density must be a positive number, got {rho!r}")
        if not (isinstance(n, (int, np.integer)) and n > 0):
            raise InputError(f"the particle number must be a positive integer, got {n!r}")
        return float((n / rho) ** (1.0 / self.dim))

    def kernel_params(self, soft_core: float = 0.0) -> KernelParams:
        """Flattened parameters for the Numba/torch kernels.

        Args:
            soft_core: if > 0, below r_s = soft_core * sig_ab the potential is continued linearly
                (value and slope of the exact potential at r_s), so overlapping particles have finite
                energy. Used for random initial states and flow training; 0 means exact.
        """
        sig, eps = self.sigma, self.epsilon
        rc = self.rcut
        s6 = (sig / rc) ** 6
        v_rc = 4 * eps * (s6 * s6 - s6)
        dv_rc = 4 * eps * (-12 * s6 * s6 + 6 * s6) / rc  # dV_LJ/dr at r_c
        z = np.zeros_like(sig)
        c0, c1, c2, c4 = z.copy(), z.copy(), z.copy(), z.copy()
        if self.cutoff_scheme == "cut_shift":
            c0 = -v_rc
        elif self.cutoff_scheme == "shifted_force":
            c0 = -v_rc + rc * dv_rc
            c1 = -dv_rc
        elif self.cutoff_scheme == "quartic":
            C0, C2, C4 = self.quartic
            c0 = 4 * eps * C0
            c2 = 4 * eps * C2 / sig**2
            c4 = 4 * eps * C4 / sig**4
        if soft_core < 0 or soft_core >= self.cutoff_factor:
            raise InputError(f"soft_core must be in [0, {self.cutoff_factor}), got {soft_core}")
        rs2 = (soft_core * sig) ** 2

        def flat(a: np.ndarray) -> np.ndarray:
            return np.ascontiguousarray(a, dtype=np.float64).ravel()

        return KernelParams(self.nsp, flat(sig**2), flat(4 * eps), flat(rc**2), flat(c0), flat(c1),
                            flat(c2), flat(c4), flat(rs2), float(rc.max()))

    def species_index(self, label: str | int) -> int:
        """Map a species label (name, or 1-based integer as in xyz/LAMMPS files) to an index."""
        s = str(label).strip()
        if s in self.species:
            return self.species.index(s)
        try:
            k = int(s)
        except ValueError:
            raise InputError(f"unknown species {label!r} for model {self.name!r} "
                             f"(species {', '.join(self.species)})") from None
        if not 1 <= k <= self.nsp:
            raise InputError(f"species label {k} out of range 1..{self.nsp} for model {self.name!r}")
        return k - 1

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (TOML-able) of the model."""
        d: dict[str, Any] = {
            "name": self.name, "description": self.description, "dim": self.dim,
            "species": list(self.species), "composition": list(self.composition),
            "density": self.density, "masses": self.masses.tolist(),
            "cutoff_scheme": self.cutoff_scheme, "cutoff_factor": self.cutoff_factor,
            "sigma": self.sigma.tolist(), "epsilon": self.epsilon.tolist(),
        }
        if self.cutoff_scheme == "quartic":
            d["quartic"] = list(self.quartic)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any], source_text: str = "") -> InteractionModel:
        """Build a model from a parsed TOML dict (clear errors for missing keys)."""
        required = ("name", "dim", "species", "composition", "density", "cutoff_scheme", "sigma", "epsilon")
        missing = [k for k in required if k not in d]
        if missing:
            raise InputError(f"model definition lacks {', '.join(missing)}")
        unknown = sorted(set(d) - set(required) - {"masses", "cutoff_factor", "quartic", "description"})
        if unknown:
            raise InputError(f"model definition {d.get('name', '?')!r}: unknown key(s) {', '.join(unknown)} (known: "
                             f"{', '.join(required)}, masses, cutoff_factor, quartic, description)")
        nsp = len(d["species"])
        try:
            return cls._from_checked_dict(d, nsp, source_text)
        except (TypeError, ValueError) as exc:
            if isinstance(exc, InputError):
                raise
            raise InputError(f"model definition {d.get('name', '?')!r}: a value has the wrong type ({exc})") from None

    @classmethod
    def _from_checked_dict(cls, d: dict[str, Any], nsp: int, source_text: str) -> InteractionModel:
        return cls(
            name=str(d["name"]), dim=int(d["dim"]), species=tuple(str(s) for s in d["species"]),
            composition=tuple(float(x) for x in d["composition"]), density=float(d["density"]),
            masses=np.asarray(d.get("masses", [1.0] * nsp), dtype=np.float64),
            sigma=np.asarray(d["sigma"], dtype=np.float64), epsilon=np.asarray(d["epsilon"], dtype=np.float64),
            cutoff_scheme=str(d["cutoff_scheme"]), cutoff_factor=float(d.get("cutoff_factor", 2.5)),
            quartic=tuple(float(x) for x in d.get("quartic", (0.0, 0.0, 0.0))),  # type: ignore[arg-type]
            description=str(d.get("description", "")), source_text=source_text,
        )


def default_swap_pairs(model_name: str) -> list[tuple[int, int]]:
    """Species pairs worth swapping: KA2D and KA2 swap through C (A-C, B-C); plain KA has none
    (A-B swaps cost ~70 epsilon, REFERENCE.md section 1)."""
    return [(0, 2), (1, 2)] if model_name in ("ka2d", "ka2") else []


def load_model(name_or_path: str | os.PathLike[str] | InteractionModel) -> InteractionModel:
    """Load a model by name (``ka3d``, ``ka3d_sf``, ``ka2d``, ``ka2``) or from a TOML file path."""
    if isinstance(name_or_path, InteractionModel):
        return name_or_path
    s = str(name_or_path)
    path = Path(s)
    if path.suffix == ".toml" and not path.is_file():
        raise InputError(f"model file not found: {s}")
    if not (path.suffix == ".toml" and path.is_file()):
        path = models_dir() / f"{s}.toml"
        if not path.is_file():
            avail = ", ".join(available_models()) or "none found"
            raise InputError(f"unknown model {s!r} (available: {avail})")
    data, text = read_toml(path, "model file")
    return InteractionModel.from_dict(data, source_text=text)
