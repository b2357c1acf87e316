"""The Boltzmann generator: a trained :class:`ParticleFlow` plus the exact target energy.

It owns sampling of full configurations, their log-densities on the torus, exact energies, importance
weights and checkpoints (bgflow's ``BoltzmannGenerator`` role). It implements the ``Proposal``
protocol of :mod:`glassgen.sampling.flow_mcmc` (``sample(n, T)``, ``log_prob(x, T)``).

Checkpoint format (``torch.save`` of a dict, written atomically): ``format = "glassgen-flow"``,
``system`` and ``architecture`` (dicts), ``state_dict``, ``T_range`` (the trained temperatures),
``prior_pool`` (Boltzmann-prior base only: {T_h: (P, N, d) positions}; one array in older files),
``training`` (history, config) and ``provenance``.
"""

from __future__ import annotations

import os
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch

from glassgen.dynamics.batch import model_energy
from glassgen.errors import InputError, check_temperature
from glassgen.flows.base import BoltzmannPriorBase
from glassgen.flows.energy import Energy, NumbaPairEnergy, TorchPairEnergy
from glassgen.flows.model import (
    FlowArchitecture,
    FlowSystem,
    ParticleFlow,
    beta_context,
    to_full,
    to_relative,
)
from glassgen.provenance import atomic_path, provenance

__all__ = ["BoltzmannGenerator", "CHECKPOINT_FORMAT"]

CHECKPOINT_FORMAT = "glassgen-flow"


class BoltzmannGenerator:
    """A flow that proposes configurations of a system, and the exact energy that judges them.

    Args:
        flow: the :class:`ParticleFlow`.
        T_range: (T_min, T_max) the flow was trained for (sampling outside it raises, unless
            ``allow_extrapolation``).
        allow_extrapolation: permit temperatures outside ``T_range``.
    """

    def __init__(self, flow: ParticleFlow, T_range: tuple[float, float] | None = None,
                 allow_extrapolation: bool = False) -> None:
        self.flow = flow
        self.system: FlowSystem = flow.system
        self.T_range = T_range
        self.allow_extrapolation = allow_extrapolation
        self.training: dict[str, Any] = {}
        self.provenance: dict[str, Any] = {}
        self._exact = model_energy(self.system.interaction, self.system.species_array(),
                                   self.system.box_array())
        self.box = flow.box
        self.last_pool_chains: np.ndarray | None = None  # chain label of each sample of the last sample()

    # ------------------------------------------------------------------ construction
    @classmethod
    def create(cls, model: str, n: int, arch: FlowArchitecture | None = None, density: float | None = None,
               prior_pool: np.ndarray | dict[float, np.ndarray] | None = None) -> BoltzmannGenerator:
        """A fresh (identity-initialised) generator for ``model`` with ``n`` particles.

        ``prior_pool``: equilibrium configurations, (P, N, d) at ``arch.T_prior`` or {T_h: (P, N, d)} for
        every T_h of ``arch.T_priors``; required when ``arch.base == "boltzmann"``.
        """
        arch = arch or FlowArchitecture()
        system = FlowSystem.create(model, n, density)
        base = None
        if arch.base == "boltzmann":
            if prior_pool is None:
                raise InputError("a Boltzmann-prior flow needs a pool of configurations at T_prior")
            base = _prior_base(system, prior_pool, arch)
        elif arch.base != "uniform":
            raise InputError(f"unknown flow base {arch.base!r} (use 'uniform' or 'boltzmann')")
        return cls(ParticleFlow(system, arch, base))

    # ------------------------------------------------------------------ temperatures
    def check_temperature(self, T: float) -> None:
        _check_in_range(T, self.T_range if not self.allow_extrapolation else None)

    # ------------------------------------------------------------------ sampling and densities
    @torch.no_grad()
    def sample(self, n: int, T: float, batch: int = 1024, generator: torch.Generator | None = None
               ) -> tuple[torch.Tensor, torch.Tensor]:
        """Draw ``n`` configurations at temperature ``T``.

        Returns:
            x: (n, N, d) float64 positions in [0, L) (the pinned particle uniform in the box).
            log_q: (n,) float64 log-density of x on the torus (normalised for a uniform base; up to
                the constant -log Z_h for a Boltzmann-prior base).
        """
        self.check_temperature(T)
        xs, lqs, draws = [], [], []
        base = self.flow.q0
        for start in range(0, n, batch):
            m = min(batch, n - start)
            r, lq = self.flow.sample(m, beta_context(T, m))
            x0 = torch.rand(m, self.system.dim, dtype=torch.float64, generator=generator) * self.box
            xs.append(to_full(r, x0, self.box))
            lqs.append(lq + self.flow.log_pinned)
            if isinstance(base, BoltzmannPriorBase):
                draws.append(base.last_draw)
        self.last_pool_chains = self.pool_chains(*(torch.cat(d) for d in zip(*draws, strict=True))) if draws else None
        return torch.cat(xs), torch.cat(lqs)

    def pool_chains(self, pool: torch.Tensor, index: torch.Tensor) -> np.ndarray | None:
        """(n,) label of the MD/MC chain that produced each drawn pool configuration, or None when unknown.

        A pool of P = ``data_per_T`` configurations made by ``data_chains`` chains (training config) is stored
        chain after chain, ceil(P / chains) per chain (:func:`glassgen.flows.reference_data.reference_data`);
        a pool of held-out chains (``pool_holdout_chains``) starts at a chain boundary, so the same chain
        length labels it. Labels are unique across pools. Used for chain-aware importance-sampling errors
        (configurations of one chain are correlated; see :func:`glassgen.flows.weights.reweighted_mean`)."""
        cfg = (self.training or {}).get("config", {})
        chains = int(cfg.get("data_chains", 0) or 0)
        base = self.flow.q0
        if chains < 2 or not isinstance(base, BoltzmannPriorBase):
            return None
        if cfg.get("data_per_T"):
            per_chain = torch.full_like(pool, -(-int(cfg["data_per_T"]) // chains))
        else:
            sizes = torch.as_tensor([p.shape[0] for p in base.pools])
            per_chain = torch.div(sizes[pool] + chains - 1, chains, rounding_mode="floor")
        return (pool * chains + torch.div(index, per_chain, rounding_mode="floor")).numpy()

    @torch.no_grad()
    def log_prob(self, x: torch.Tensor, T: float, batch: int = 1024) -> torch.Tensor:
        """log q(x) (n,) float64 of full configurations x (n, N, d), wrapped or not."""
        x = torch.as_tensor(x, dtype=torch.float64)
        if x.ndim != 3 or tuple(x.shape[1:]) != (self.system.n, self.system.dim):
            raise InputError(f"configurations must have shape (n, {self.system.n}, {self.system.dim}), "
                             f"got {tuple(x.shape)}")
        out = []
        for start in range(0, x.shape[0], batch):
            xb = x[start:start + batch]
            out.append(self.flow.log_prob(to_relative(xb, self.box), beta_context(T, xb.shape[0]))
                       + self.flow.log_pinned)
        return torch.cat(out)

    def energies(self, x: torch.Tensor | np.ndarray) -> np.ndarray:
        """Exact potential energies U (n,) in epsilon (Numba engine); +inf for non-finite energies and
        overlapping configurations (see :func:`glassgen.dynamics.batch.model_energy`)."""
        return self._exact(np.asarray(torch.as_tensor(x, dtype=torch.float64).detach().cpu().numpy()))

    def log_weights(self, energies: np.ndarray, log_q: torch.Tensor | np.ndarray, T: float) -> np.ndarray:
        """log w = -U/T - log q (float64; -inf where U is infinite)."""
        lq = np.asarray(torch.as_tensor(log_q, dtype=torch.float64).cpu().numpy())
        e = np.asarray(energies, dtype=np.float64)
        with np.errstate(invalid="ignore"):
            lw = -e / T - lq
        lw[~np.isfinite(e)] = -np.inf
        return lw

    def training_energy(self, soft_core: float, device: str | torch.device = "cpu") -> Energy:
        """Differentiable U (epsilon) of full configurations with a soft core (for reverse-KL training).

        On the CPU the Numba engine (:class:`NumbaPairEnergy`); on a CUDA device the same potential in torch
        (:class:`TorchPairEnergy`, tested equal to the Numba one), so that the energy and its gradient are
        computed where the flow lives, without a round trip through host memory."""
        args = (self.system.interaction, self.system.species_array(), self.system.box_array())
        if torch.device(device).type == "cuda":
            return TorchPairEnergy(*args, soft_core=soft_core).to(device)
        return NumbaPairEnergy(*args, soft_core=soft_core)

    # ------------------------------------------------------------------ checkpoints
    def state(self, **extra: Any) -> dict[str, Any]:
        base = self.flow.q0
        return {
            "format": CHECKPOINT_FORMAT,
            "system": asdict(self.system),
            "architecture": self.flow.arch.as_dict(),
            "state_dict": self.flow.state_dict(),
            "T_range": None if self.T_range is None else [float(t) for t in self.T_range],
            "prior_pool": ({t: to_full(p, torch.zeros(p.shape[0], self.system.dim, dtype=torch.float64),
                                       self.box).numpy() for t, p in zip(base.T_priors, base.pools, strict=True)}
                           if isinstance(base, BoltzmannPriorBase) else None),
            "training": self.training,
            "provenance": self.provenance or provenance(model=self.system.model, N=self.system.n),
            **extra,
        }

    def save(self, path: str | os.PathLike[str], **extra: Any) -> Path:
        """Write the checkpoint atomically; returns the path."""
        with atomic_path(path) as tmp:
            torch.save(self.state(**extra), tmp)
        return Path(path)

    @classmethod
    def from_state(cls, ck: dict[str, Any]) -> BoltzmannGenerator:
        if not isinstance(ck, dict) or ck.get("format") != CHECKPOINT_FORMAT:
            raise InputError("not a glassgen flow checkpoint")
        try:
            s = ck["system"]
            system = FlowSystem(s["model"], tuple(s["species"]), tuple(s["box"]))
            arch = FlowArchitecture(**ck["architecture"])
            base = None
            if arch.base == "boltzmann":
                base = _prior_base(system, ck["prior_pool"], arch)
            flow = ParticleFlow(system, arch, base)
            flow.load_state_dict(ck["state_dict"])
        except (KeyError, TypeError, ValueError, RuntimeError) as exc:  # missing entries, wrong shapes
            first = str(exc).strip().splitlines()[0][:160] if str(exc).strip() else ""
            raise InputError(f"malformed flow checkpoint: {type(exc).__name__} {first}".rstrip()) from None
        if not all(bool(torch.isfinite(v).all()) for v in flow.state_dict().values() if v.is_floating_point()):
            raise InputError("malformed flow checkpoint: non-finite weights")
        gen = cls(flow, tuple(ck["T_range"]) if ck.get("T_range") else None)
        gen.training = ck.get("training", {})
        gen.provenance = ck.get("provenance", {})
        return gen

    @property
    def training_steps(self) -> tuple[int, int] | None:
        """(steps trained, steps the training config asks for), or None for a checkpoint without that record."""
        cfg, step = self.training.get("config"), self.training.get("step")
        if not isinstance(cfg, dict) or step is None:
            return None
        try:
            return int(step), int(cfg["steps_per_rung"]) * len(cfg["T_ladder"])
        except (KeyError, TypeError, ValueError):
            return None

    @classmethod
    def load(cls, path: str | os.PathLike[str], T: float | None = None) -> BoltzmannGenerator:
        """Load a checkpoint written by :meth:`save` (one-line error for missing or malformed files). With
        ``T``, a temperature outside the trained range is refused before the flow is built (building a
        generator with Boltzmann priors computes the energies of its pools: seconds)."""
        p = Path(path)
        if not p.is_file():
            raise InputError(f"flow checkpoint not found: {p}")
        try:
            ck = torch.load(p, map_location="cpu", weights_only=False)
        except Exception as exc:  # noqa: BLE001 - any unpickling failure is a malformed file
            from glassgen.systems.io import file_kind

            raise InputError(f"cannot read flow checkpoint {p} ({type(exc).__name__}): it is "
                             f"{file_kind(p) or 'an unreadable file'}, not a "
                             "flow checkpoint (glassgen flow train writes them)") from None
        if T is not None:
            _check_in_range(T, tuple(ck["T_range"]) if isinstance(ck, dict) and ck.get("T_range") else None)
        return cls.from_state(ck)


def _check_in_range(T: float, T_range: tuple[float, float] | None) -> None:
    """One-line error unless T is positive and (given a range) within the trained range."""
    check_temperature(T)
    if T_range is not None:
        lo, hi = T_range
        if not (lo - 1e-9 <= T <= hi + 1e-9):
            raise InputError(f"T={T} is outside the trained range [{lo}, {hi}] of this flow "
                             "(train one over a wider range; in Python, allow_extrapolation=True lifts this check)")


def _prior_base(system: FlowSystem, pool: np.ndarray | dict[float, np.ndarray], arch: FlowArchitecture
                ) -> BoltzmannPriorBase:
    box = torch.as_tensor(system.box_array())
    temps = arch.prior_temperatures
    pools = dict(pool) if isinstance(pool, dict) else {temps[-1]: pool}
    pools = {float(t): p for t, p in pools.items()}
    if sorted(pools) != list(temps):
        raise InputError(f"prior pools at T = {sorted(pools)} do not match the architecture's {list(temps)}")
    rel = {}
    for t, p in pools.items():
        pool_t = torch.as_tensor(np.asarray(p, dtype=np.float64))
        if pool_t.ndim != 3 or tuple(pool_t.shape[1:]) != (system.n, system.dim):
            raise InputError(f"prior pool at T={t} must have shape (P, {system.n}, {system.dim}), "
                             f"got {tuple(pool_t.shape)}")
        rel[t] = to_relative(pool_t, box)
    u = NumbaPairEnergy(system.interaction, system.species_array(), system.box_array())

    def energy(r: torch.Tensor) -> torch.Tensor:  # differentiable (forward-KL training through the base)
        return u.energy(to_full(r, torch.zeros(r.shape[0], system.dim, dtype=torch.float64), box))

    return BoltzmannPriorBase(rel, None, energy, log_volume=float(np.log(system.box_array()).sum()))
