"""Base distributions of the particle flow, on relative coordinates r (B, M, d), M = N - 1.

* :class:`UniformBase`: every moving particle uniform in the box; log q0 = -M sum_k log L_k (exact).
* :class:`BoltzmannPriorBase`: equilibrium configurations at a higher temperature T_h (from our MC/MD)
  as the base (Jung, Biroli, Berthier 2024; Coretti et al. 2022). Its density is known up to the
  constant log Z_h: log q0(z) = -U(z) / T_h - log Z_h. ``log_prob`` returns -U(z)/T_h (the constant
  is common to all samples and cancels in self-normalised weights and in Metropolis–Hastings ratios;
  it does not cancel in log Z, which is then relative to Z_h). Sampling draws from a finite pool of
  stored configurations, so proposals are exact draws of the base only in the limit of a large,
  equilibrated pool; refresh the pool with :meth:`BoltzmannPriorBase.set_pool`.
"""

from __future__ import annotations

from collections.abc import Callable

import normflows as nf
import torch

from glassgen.errors import InputError

__all__ = ["UniformBase", "BoltzmannPriorBase"]


class UniformBase(nf.distributions.BaseDistribution):
    """Independent uniform positions of the M moving particles in the centred box.

    Args:
        box: (d,) float64 box lengths.
        n_moving: M.
    """

    def __init__(self, box: torch.Tensor, n_moving: int) -> None:
        super().__init__()
        self.register_buffer("box", box.clone())
        self.n_moving = int(n_moving)
        self.log_norm = -self.n_moving * float(torch.log(box).sum())

    def forward(self, num_samples: int = 1, context: torch.Tensor | None = None,
                generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        u = torch.rand(num_samples, self.n_moving, self.box.shape[0], dtype=self.box.dtype,
                       device=self.box.device, generator=generator)
        z = (u - 0.5) * self.box
        return z, torch.full((num_samples,), self.log_norm, dtype=self.box.dtype, device=self.box.device)

    def log_prob(self, z: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        return torch.full((z.shape[0],), self.log_norm, dtype=z.dtype, device=z.device)


class BoltzmannPriorBase(nf.distributions.BaseDistribution):
    """Configurations in equilibrium at T_h as the base; log q0 = -U/T_h (unnormalised, see module doc).

    Args:
        pool: (P, M, d) relative coordinates of equilibrium configurations at ``T_prior``.
        T_prior: temperature T_h of the pool.
        energy: callable mapping relative coordinates (B, M, d) float64 tensor -> (B,) potential
            energies (epsilon) as a float64 tensor (used by ``log_prob``).
        pool_energies: optional (P,) energies of the pool (else computed with ``energy``).
    """

    def __init__(self, pool: torch.Tensor, T_prior: float, energy: Callable[[torch.Tensor], torch.Tensor],
                 pool_energies: torch.Tensor | None = None) -> None:
        super().__init__()
        if not T_prior > 0:
            raise InputError(f"prior temperature must be positive, got {T_prior}")
        self.T_prior = float(T_prior)
        self.energy = energy
        self.set_pool(pool, pool_energies)

    def set_pool(self, pool: torch.Tensor, pool_energies: torch.Tensor | None = None) -> None:
        """Replace the stored configurations (P, M, d) (and their energies)."""
        if pool.ndim != 3 or pool.shape[0] < 1:
            raise InputError(f"prior pool must have shape (P, M, d), got {tuple(pool.shape)}")
        self.pool = pool.to(torch.float64)
        e = self.energy(self.pool) if pool_energies is None else pool_energies.to(torch.float64)
        if not torch.all(torch.isfinite(e)):
            raise InputError("prior pool contains configurations with non-finite energy")
        self.pool_energies = e

    def forward(self, num_samples: int = 1, context: torch.Tensor | None = None,
                generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        idx = torch.randint(0, self.pool.shape[0], (num_samples,), generator=generator)
        return self.pool[idx].clone(), -self.pool_energies[idx] / self.T_prior

    def log_prob(self, z: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        return -self.energy(z) / self.T_prior

