"""Base distributions of the particle flow, on relative coordinates r (B, M, d), M = N - 1.

* :class:`UniformBase`: every moving particle uniform in the box; log q0 = -M sum_k log L_k (exact).
* :class:`BoltzmannPriorBase`: equilibrium configurations at a higher temperature T_h (from our MC/MD)
  as the base (Jung, Biroli, Berthier 2024; Coretti et al. 2022). On relative coordinates its density is
  exp(-U/T_h) / Z_h^rel with Z_h^rel = Z_h / V (translation invariance; Z_h over all N positions), so
  log q0(z) = -U(z) / T_h + log V - log Z_h. ``log_prob`` returns -U(z)/T_h + log V (``log_volume``), leaving
  out log Z_h only: with the pinned particle's -log V the flow's log q is the full-coordinate Boltzmann
  density up to log Z_h, and log Z estimates log(Z_T / Z_h), as the annealed weights do (the constant is
  common to all samples and cancels in self-normalised weights and Metropolis–Hastings ratios; before
  2026-12-04 log V was left out and log Z came out log V too high). Sampling draws from a finite pool of
  stored configurations, so estimates are consistent as the pool grows (the pool's own error adds; every
  "exact" below means exact for the pool's empirical law); refresh the pools with
  :meth:`BoltzmannPriorBase.set_pools`. Draws go through the
  pool without replacement (a fresh random permutation each pass), so n <= P draws use n distinct
  configurations and a pass over the pool uses each once: importance-sampling estimates then carry the
  pool's own information, not repeated copies of it (their error bars still assume the pool's
  configurations are independent; MD pools are correlated over the sampling interval). Several pools (a
  ladder of priors at T_h1 < T_h2 < ...) serve a temperature-conditioned flow: target T starts from the
  coldest pool strictly hotter than T.
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

    With pools at several temperatures (a ladder of priors), a sample for the target temperature T (the
    context, beta = 1/T) starts from the *coldest pool strictly hotter than T*; above every pool the
    hottest one is used. The flow then always transforms configurations of a hotter state: it never
    hands back the pool of the target temperature itself. The choice depends only on T, so for one
    target temperature the base is one fixed density and weights and Metropolis–Hastings ratios are exact.

    Args:
        pools: {T_h: (P, M, d) relative coordinates of equilibrium configurations at T_h}, or one
            (P, M, d) tensor with ``T_prior``.
        T_prior: temperature of a single pool (ignored when ``pools`` is a dict).
        energy: callable mapping relative coordinates (B, M, d) float64 tensor -> (B,) potential
            energies (epsilon) as a float64 tensor (used by ``log_prob``).
        pool_energies: optional energies matching ``pools`` (same structure; else computed).
        log_volume: log V = sum_k log L_k of the box (0 leaves log q0 relative to Z_h^rel instead of Z_h).
    """

    def __init__(self, pools: dict[float, torch.Tensor] | torch.Tensor, T_prior: float | None,
                 energy: Callable[[torch.Tensor], torch.Tensor],
                 pool_energies: dict[float, torch.Tensor] | torch.Tensor | None = None,
                 log_volume: float = 0.0) -> None:
        super().__init__()
        self.log_volume = float(log_volume)
        #: draw with replacement (independent draws of the pool's empirical law): independence MH needs
        #: proposals that do not depend on the past; set by flow-MCMC for its proposals
        self.with_replacement = False
        if not isinstance(pools, dict):
            if T_prior is None:
                raise InputError("a single prior pool needs its temperature T_prior")
            pools = {float(T_prior): pools}
            pool_energies = None if pool_energies is None else {float(T_prior): pool_energies}
        if not pools:
            raise InputError("a Boltzmann prior needs at least one pool of configurations")
        for t in pools:
            if not float(t) > 0:
                raise InputError(f"prior temperature must be positive, got {t}")
        self.energy = energy
        self.set_pools(pools, pool_energies)

    def set_pools(self, pools: dict[float, torch.Tensor],
                  pool_energies: dict[float, torch.Tensor] | None = None) -> None:
        """Replace the stored configurations {T_h: (P, M, d)} (and their energies)."""
        temps = sorted(float(t) for t in pools)
        self.T_priors = tuple(temps)
        self.pools: list[torch.Tensor] = []
        self.pool_energies: list[torch.Tensor] = []
        for t in temps:
            pool = pools[t]
            if pool.ndim != 3 or pool.shape[0] < 1:
                raise InputError(f"prior pool at T={t} must have shape (P, M, d), got {tuple(pool.shape)}")
            pool = pool.to(torch.float64)
            e = self.energy(pool) if pool_energies is None else pool_energies[t].to(torch.float64)
            if not torch.all(torch.isfinite(e)):
                raise InputError(f"prior pool at T={t} contains configurations with non-finite energy")
            self.pools.append(pool)
            self.pool_energies.append(e.detach())
        self._order: list[torch.Tensor | None] = [None] * len(self.pools)
        self._cursor = [0] * len(self.pools)
        self.last_draw: tuple[torch.Tensor, torch.Tensor] | None = None

    def draw_state(self) -> dict:
        """Position in the current pass over every pool (for bitwise-resumable training)."""
        return {"order": [None if o is None else o.clone() for o in self._order], "cursor": list(self._cursor)}

    def set_draw_state(self, state: dict) -> None:
        self._order = [None if o is None else o.clone() for o in state["order"]]
        self._cursor = list(state["cursor"])

    def _draw(self, j: int, k: int, generator: torch.Generator | None) -> torch.Tensor:
        """k indices into pool j, without replacement within a pass over the pool (or, with
        ``with_replacement``, independent uniform indices)."""
        p = self.pools[j].shape[0]
        if self.with_replacement:
            return torch.randint(0, p, (k,), generator=generator)
        out = []
        while k > 0:
            if self._order[j] is None or self._cursor[j] >= p:
                self._order[j] = torch.randperm(p, generator=generator)
                self._cursor[j] = 0
            take = min(k, p - self._cursor[j])
            out.append(self._order[j][self._cursor[j]:self._cursor[j] + take])
            self._cursor[j] += take
            k -= take
        return torch.cat(out)

    # single-pool view (the common case)
    @property
    def T_prior(self) -> float:
        """Temperature of the hottest pool."""
        return self.T_priors[-1]

    def pool_index(self, context: torch.Tensor | None, n: int) -> torch.Tensor:
        """(n,) index of the pool serving each sample: the coldest T_h > T, else the hottest."""
        if len(self.pools) == 1:
            return torch.zeros(n, dtype=torch.long)
        if context is None:
            raise InputError("a ladder of prior pools needs the temperature (context) of every sample")
        T = 1.0 / context.reshape(-1).to(torch.float64).cpu()
        th = torch.as_tensor(self.T_priors, dtype=torch.float64)
        idx = torch.clamp(torch.searchsorted(th, T * (1.0 + 1e-12), right=True), max=len(self.pools) - 1)
        return idx.expand(n) if idx.numel() == 1 else idx

    def prior_temperature(self, T: float) -> float:
        """T_h of the pool that serves target temperature T."""
        k = int(self.pool_index(torch.tensor([[1.0 / T]], dtype=torch.float64), 1)[0])
        return self.T_priors[k]

    def draw_pool(self, T: float, n: int) -> tuple[torch.Tensor, float]:
        """n configurations (n, M, d) of the pool serving target T (without replacement), and its T_h."""
        t_h = self.prior_temperature(T)
        k = self.T_priors.index(t_h)
        idx = self._draw(k, n, None)
        self.last_draw = (torch.full((n,), k, dtype=torch.long), idx.cpu())
        return self.pools[k][idx], t_h

    def forward(self, num_samples: int = 1, context: torch.Tensor | None = None,
                generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        k = self.pool_index(context, num_samples)
        m, d = self.pools[0].shape[1:]
        z = torch.empty(num_samples, m, d, dtype=torch.float64, device=self.pools[0].device)
        lq = torch.empty(num_samples, dtype=torch.float64, device=self.pools[0].device)
        drawn = torch.empty(num_samples, dtype=torch.long)
        for j in torch.unique(k).tolist():
            rows = torch.nonzero(k == j).reshape(-1)
            idx = self._draw(j, rows.numel(), generator)
            z[rows] = self.pools[j][idx]
            lq[rows] = -self.pool_energies[j][idx] / self.T_priors[j] + self.log_volume
            drawn[rows.cpu()] = idx.cpu()
        self.last_draw = (k.cpu(), drawn)  # (pool, index in the pool) of each sample of this call
        return z, lq

    def log_prob(self, z: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        th = torch.as_tensor(self.T_priors, dtype=torch.float64, device=z.device)
        return -self.energy(z) / th[self.pool_index(context, z.shape[0]).to(z.device)] + self.log_volume
