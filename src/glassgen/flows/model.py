"""The particle flow: a temperature-conditioned equivariant normalizing flow on the periodic box.

A configuration x (N, d) is described by the position of the pinned particle x_0 (index 0, a
particle of species 0) and the relative positions r_i = fold(x_i - x_0), i = 1..N-1, in the centred
box. The flow acts on r; x_0 is uniform. The density of a full configuration on the torus is

    log q(x) = log q_r(r | beta) - sum_k log L_k,

exactly invariant under global translations and under permutations of same-species particles other
than the pinned one (the pinned particle is the gauge that removes the translation zero mode).
All arithmetic, including every log-determinant accumulator, is float64.

:class:`ParticleFlow` subclasses normflows' ``ConditionalNormalizingFlow`` (the context is the
inverse temperature, shape (B, 1)); it overrides the methods whose normflows 1.7.3 versions
accumulate log-determinants in float32.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import normflows as nf
import numpy as np
import torch

from glassgen.errors import InputError
from glassgen.flows.base import BoltzmannPriorBase, UniformBase
from glassgen.flows.layers import AxisSplineCoupling, CircularShift, fold
from glassgen.systems.model import InteractionModel, load_model

__all__ = ["FlowArchitecture", "FlowSystem", "ParticleFlow", "to_relative", "to_full"]


def to_relative(x: torch.Tensor, box: torch.Tensor) -> torch.Tensor:
    """(B, N, d) positions (wrapped or not) -> (B, N-1, d) positions relative to particle 0, folded."""
    return fold(x[:, 1:, :] - x[:, :1, :], box)


def to_full(r: torch.Tensor, x0: torch.Tensor, box: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`to_relative`: (B, N-1, d) and pinned positions x0 (B, d) -> (B, N, d) in [0, L)."""
    x = torch.cat([x0[:, None, :], x0[:, None, :] + r], dim=1)
    return x - box * torch.floor(x / box)


@dataclass(frozen=True)
class FlowSystem:
    """The physical system a flow is built for: model name, species (N,) (species 0 first) and box (d,)."""

    model: str
    species: tuple[int, ...]
    box: tuple[float, ...]

    @classmethod
    def create(cls, model: str | InteractionModel, n: int, density: float | None = None) -> FlowSystem:
        m = load_model(model)
        if n < 2:
            raise InputError(f"a flow needs N >= 2 particles, got N={n}")
        counts = m.counts(n)
        species = np.repeat(np.arange(m.nsp), counts)
        return cls(m.name, tuple(int(s) for s in species), (m.box_length(n, density),) * m.dim)

    @property
    def interaction(self) -> InteractionModel:
        return load_model(self.model)

    @property
    def n(self) -> int:
        return len(self.species)

    @property
    def dim(self) -> int:
        return len(self.box)

    def species_array(self) -> np.ndarray:
        return np.asarray(self.species, dtype=np.int32)

    def box_array(self) -> np.ndarray:
        return np.asarray(self.box, dtype=np.float64)


@dataclass(frozen=True)
class FlowArchitecture:
    """Hyper-parameters of :class:`ParticleFlow` (stored in every checkpoint).

    Attributes:
        n_blocks: blocks of [circular shift + one spline coupling per axis].
        n_bins: spline bins per coupling.
        n_freq: Fourier frequencies per conditioning axis.
        width, n_layers, n_heads, ff_width: transformer conditioner size.
        base: ``uniform`` or ``boltzmann`` (high-temperature prior; needs a pool at run time).
        T_prior: temperature of the Boltzmann prior (one pool).
        T_priors: temperatures of a ladder of prior pools (overrides ``T_prior`` when not empty); target
            T is served by the coldest pool strictly hotter than T (:class:`BoltzmannPriorBase`).
    """

    n_blocks: int = 4
    n_bins: int = 16
    n_freq: int = 4
    width: int = 32
    n_layers: int = 2
    n_heads: int = 4
    ff_width: int = 64
    base: str = "uniform"
    T_prior: float = 2.0
    T_priors: tuple[float, ...] = ()
    extra: dict = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "T_priors", tuple(float(t) for t in self.T_priors))
        if any(not t > 0 for t in (*self.T_priors, self.T_prior)):
            raise InputError(f"prior temperatures must be positive, got {list(self.T_priors) or self.T_prior}")
        if len(set(self.T_priors)) != len(self.T_priors):
            raise InputError(f"prior temperatures must be distinct, got {list(self.T_priors)}")

    @property
    def prior_temperatures(self) -> tuple[float, ...]:
        """Temperatures of the prior pools (Boltzmann base), ascending."""
        return tuple(sorted(self.T_priors)) if self.T_priors else (float(self.T_prior),)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class ParticleFlow(nf.ConditionalNormalizingFlow):
    """Temperature-conditioned equivariant flow on relative coordinates (B, N-1, d), float64.

    Args:
        system: the :class:`FlowSystem`.
        arch: the :class:`FlowArchitecture`.
        base: optional base distribution (default: :class:`UniformBase`; pass a
            :class:`BoltzmannPriorBase` for the high-temperature prior).
    """

    def __init__(self, system: FlowSystem, arch: FlowArchitecture | None = None,
                 base: nf.distributions.BaseDistribution | None = None) -> None:
        arch = arch or FlowArchitecture()
        box = torch.as_tensor(system.box_array())
        species = torch.as_tensor(system.species_array()).long()
        nsp = system.interaction.nsp
        layers: list[nf.flows.Flow] = []
        cond = dict(n_freq=arch.n_freq, width=arch.width, n_layers=arch.n_layers, n_heads=arch.n_heads,
                    ff_width=arch.ff_width)
        for _ in range(arch.n_blocks):
            layers.append(CircularShift(box))
            for axis in range(system.dim):
                layers.append(AxisSplineCoupling(box, species, nsp, axis, arch.n_bins, **cond))
        q0 = base if base is not None else UniformBase(box, system.n - 1)
        super().__init__(q0, layers)
        self.system, self.arch = system, arch
        self.register_buffer("box", box.clone())
        self.double()

    @property
    def log_pinned(self) -> float:
        """log density of the pinned particle's position: -sum_k log L_k."""
        return -float(np.log(self.system.box_array()).sum())

    # --- float64 replacements of normflows' accumulating methods ------------------------------------
    def forward_and_log_det(self, z: torch.Tensor, context: torch.Tensor | None = None
                            ) -> tuple[torch.Tensor, torch.Tensor]:
        log_det = torch.zeros(z.shape[0], dtype=torch.float64, device=z.device)
        for flow in self.flows:
            z, ld = flow(z, context=context)
            log_det = log_det + ld
        return z, log_det

    def inverse_and_log_det(self, x: torch.Tensor, context: torch.Tensor | None = None
                            ) -> tuple[torch.Tensor, torch.Tensor]:
        log_det = torch.zeros(x.shape[0], dtype=torch.float64, device=x.device)
        for flow in reversed(self.flows):
            x, ld = flow.inverse(x, context=context)
            log_det = log_det + ld
        return x, log_det

    def sample(self, num_samples: int = 1, context: torch.Tensor | None = None
               ) -> tuple[torch.Tensor, torch.Tensor]:
        """Relative coordinates r (n, N-1, d) and log q_r(r) (n,)."""
        z, log_q0 = self.q0(num_samples, context=context)
        r, ld = self.forward_and_log_det(z, context)
        return r, log_q0 - ld

    def log_prob(self, x: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        """log q_r(r) (B,) of relative coordinates r (B, N-1, d)."""
        z, ld = self.inverse_and_log_det(x, context)
        return self.q0.log_prob(z, context=context) + ld

    def forward_kld(self, x: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        return -torch.mean(self.log_prob(x, context))

    def reverse_kld(self, *args: Any, **kwargs: Any) -> torch.Tensor:  # pragma: no cover - guard
        raise NotImplementedError("use glassgen.flows.training (float64 reverse KL on the Boltzmann energy)")


def beta_context(T: float | np.ndarray | torch.Tensor, n: int | None = None) -> torch.Tensor:
    """Context tensor (B, 1) float64 of inverse temperatures from a scalar T (with ``n``) or (B,) T's."""
    t = torch.as_tensor(T, dtype=torch.float64)
    if t.ndim == 0:
        if not float(t) > 0:
            raise InputError(f"temperature must be positive, got T={float(t)}")
        t = t.expand(n if n is not None else 1)
    if torch.any(~(t > 0)):
        raise InputError("temperatures must be positive")
    return (1.0 / t)[:, None].contiguous()


__all__ += ["beta_context", "BoltzmannPriorBase", "UniformBase"]
