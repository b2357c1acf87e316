"""Flow-MCMC: independence Metropolis-Hastings with flow proposals, interleaved with local Metropolis MC.

Each of ``n_chains`` independent chains targets p(x) ~ exp(-beta U(x)) on the torus (fixed box, species
and particle labels). One iteration is

1. an independence Metropolis-Hastings (IMH) step (Gabrie, Rotskoff, Vanden-Eijnden, PNAS 119,
   e2109420119 (2022)): a batch x' ~ q (one proposal per chain) is accepted for chain k if

       log u < [-beta U(x') - log q(x')] - [-beta U(x_k) - log q(x_k)],   u ~ U(0, 1),

   all in float64. The proposal density q only needs to be known up to a constant common to all
   samples; configurations with U = +inf (overlaps) have log w = -inf and are always rejected;
2. ``local_sweeps`` sweeps of single-particle Metropolis displacements
   (:class:`glassgen.dynamics.mc.MonteCarlo`, one per chain), after which log q of the current states
   is recomputed with ``proposal.log_prob`` (batched over chains) before the next IMH step.

Both steps leave p invariant, so their composition does. With a pool-based proposal (a Boltzmann-prior
flow) "q" is the pushed-forward empirical law of the pool, drawn with replacement so proposals are
independent of the past: the chain is then consistent as the pool grows, and the pool's own importance-
sampling error adds to the chain's (``glassgen sample`` adds it in quadrature, an upper bound).
``local_sweeps=0`` gives pure IMH and ``proposal=None`` pure local MC (the baseline), through the same code
path.

Diagnostics: IMH and local acceptances, the integrated autocorrelation time of U per chain and pooled,
and the decay of the self-overlap Q(t) with a = 0.3 sigma_AA and its time tau_Q
(:mod:`glassgen.observables.overlap`). All times are in iterations with the convention
tau = 1 + 2 sum rho(t) (iterations per independent sample). Units: lengths sigma_AA, energies epsilon
(total, not per particle), T in epsilon / k_B.

The state is plain numpy (positions, energies, log q, counters, MC chains), so checkpoints could be added.
Particle species never change (no swap moves): a proposal generates positions for a fixed species array.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np
import torch

from glassgen.dynamics.batch import EnergyFn, model_energy, numba_threads
from glassgen.dynamics.forces import SERIAL_BELOW
from glassgen.dynamics.mc import MonteCarlo
from glassgen.errors import InputError, PhysicsError, check_temperature
from glassgen.flows.weights import log_weights
from glassgen.observables.overlap import OVERLAP_RADIUS, OverlapCorrelation, overlap_correlation
from glassgen.observables.thermo import (
    integrated_autocorrelation_time,
    pooled_autocorrelation,
)
from glassgen.progress import progress_bar
from glassgen.systems.configuration import Configuration, canonical_order

__all__ = ["Proposal", "EnergyFn", "model_energy", "FlowMCMC", "FlowMCMCResult", "pooled_autocorrelation_time"]

#: energy of a batch: (B, N, d) float64 positions -> (B,) float64 total energies (epsilon), +inf if invalid


@runtime_checkable
class Proposal(Protocol):
    """What flow-MCMC needs from a flow (or any other independent proposal).

    ``sample(n, T)`` returns x of shape (n, N, d), float64 positions (sigma_AA units, any periodic image),
    and log_q of shape (n,), float64: the log-density of the returned x on the torus (up to a constant
    common to all samples). ``log_prob(x, T)`` returns that same log-density (n,) float64 for given x
    (n, N, d) float64 (wrapped into [0, L)). The proposal owns its random state.
    """

    def sample(self, n: int, T: float) -> tuple[torch.Tensor, torch.Tensor]: ...

    def log_prob(self, x: torch.Tensor, T: float) -> torch.Tensor: ...


def pooled_autocorrelation_time(series: np.ndarray, c: float = 5.0) -> float:
    """Integrated autocorrelation time of several independent chains of the same process.

    The autocovariances of the chains (each about its own mean) are averaged, normalised to 1 at t = 0
    and summed, tau = 1 + 2 sum_{t=1}^{M} rho(t), with Sokal's window (smallest M <= n / 4 with M >= c tau(M);
    Geyer's initial positive sequence if anticorrelated), by
    :func:`glassgen.observables.thermo.autocorrelation_time_from_rho`. Chains that never changed
    contribute nothing; inf if none changed.

    Args:
        series: (n, n_chains) float64 time series (one column per chain).
        c: window constant.

    Returns:
        tau in units of the sampling interval.
    """
    s = np.asarray(series, dtype=np.float64)
    if s.ndim != 2 or s.shape[0] < 2:
        raise InputError(f"series must have shape (n >= 2, n_chains), got {s.shape}")
    est = pooled_autocorrelation(s, c)
    return math.inf if est is None else est.tau


@dataclass(frozen=True)
class FlowMCMCResult:
    """Result of :meth:`FlowMCMC.run` (times in iterations; energies total, epsilon).

    Attributes:
        energies: (n_iterations, n_chains) float64 U after each iteration (IMH step + local sweeps).
        final_positions: (n_chains, N, d) float64 final states, wrapped into [0, L).
        frames: (n_stored, n_chains, N, d) float64 wrapped states every ``store_every`` iterations, or None.
        frame_iterations: (n_stored,) iteration numbers of ``frames`` (1-based, within this run).
        imh_acceptance: fraction of accepted IMH proposals over all chains (nan without a proposal).
        imh_acceptance_per_chain: (n_chains,).
        local_acceptance: displacement acceptance of the local moves over all chains (nan if none).
        local_acceptance_per_chain: (n_chains,).
        tau_u: pooled integrated autocorrelation time of U (:func:`pooled_autocorrelation_time`).
        tau_u_per_chain: (n_chains,) per chain (inf for a chain whose U never changed).
        overlap: decay of the self-overlap Q(t) (lags in units of ``overlap_every``), or None.
        tau_q: integrated time of the normalised overlap function, in iterations (nan if not computed).
        T: temperature.
        local_sweeps: local MC sweeps per iteration.
        n_iterations: iterations in this run.
    """

    energies: np.ndarray
    final_positions: np.ndarray
    frames: np.ndarray | None
    frame_iterations: np.ndarray
    imh_acceptance: float
    imh_acceptance_per_chain: np.ndarray
    local_acceptance: float
    local_acceptance_per_chain: np.ndarray
    tau_u: float
    tau_u_per_chain: np.ndarray
    overlap: OverlapCorrelation | None
    tau_q: float
    T: float
    local_sweeps: int
    n_iterations: int


class FlowMCMC:
    """Many flow-MCMC chains in parallel (see module docstring).

    Args:
        proposal: a :class:`Proposal` (e.g. a trained flow), or None for pure local MC.
        conf_or_confs: one starting configuration (copied to every chain) or a sequence of
            ``n_chains`` configurations with the same species array and box.
        T: temperature (> 0), epsilon / k_B.
        n_chains: number of chains (>= 1).
        local_sweeps: local MC sweeps (N trial displacements each) per iteration; 0 = pure IMH.
        delta: maximal local displacement (scalar or one per species), sigma_AA units.
        seed: seed of the acceptance random numbers and of the MC chains (the proposal has its own).
        energy: batched energy (B, N, d) -> (B,) in epsilon; default :func:`model_energy` of the
            configuration's model. With ``local_sweeps > 0`` it must equal the model energy that the
            local moves use (checked on the initial states and on every accepted proposal).
        energy_rtol: tolerance of that check, relative to max(1, |U|).
    """

    def __init__(self, proposal: Proposal | None, conf_or_confs: Configuration | Sequence[Configuration],
                 T: float, n_chains: int, local_sweeps: int = 1, delta: float | list[float] = 0.1,
                 seed: int = 0, energy: EnergyFn | None = None, energy_rtol: float = 1e-6) -> None:
        T = check_temperature(T)
        if int(n_chains) != n_chains or n_chains < 1:
            raise InputError(f"n_chains must be a positive integer, got {n_chains}")
        if int(local_sweeps) != local_sweeps or local_sweeps < 0:
            raise InputError(f"local_sweeps must be a non-negative integer, got {local_sweeps}")
        if proposal is None and local_sweeps == 0:
            raise InputError("nothing to do: no proposal and local_sweeps=0")
        if proposal is not None and not isinstance(proposal, Proposal):
            raise InputError("proposal must have sample(n, T) and log_prob(x, T) methods")
        self.proposal = proposal
        self.T, self.beta = float(T), 1.0 / float(T)
        self.n_chains, self.local_sweeps = int(n_chains), int(local_sweeps)
        self.energy_rtol = float(energy_rtol)
        system = getattr(proposal, "system", None)
        species = system.species_array() if hasattr(system, "species_array") else None
        confs = self._confs(conf_or_confs, self.n_chains, species)
        c0 = confs[0]
        self.model = c0.model
        self.species, self.box = c0.species.copy(), c0.box.copy()
        self.n, self.dim = c0.n, c0.dim
        if energy is None:
            if self.model is None:
                raise InputError("the configuration has no interaction model: pass a model or energy=")
            energy = model_energy(self.model, self.species, self.box)
        self._energy_fn = energy
        ss = np.random.SeedSequence(int(seed))
        children = ss.spawn(self.n_chains + 1)
        self.rng = np.random.default_rng(children[0])
        self.chains: list[MonteCarlo] = []
        if self.local_sweeps > 0:
            with numba_threads(1 if self.n < SERIAL_BELOW else None):  # see model_energy
                self.chains = [MonteCarlo(cf, self.T, delta=delta, seed=int(ch.generate_state(1)[0]))
                               for cf, ch in zip(confs, children[1:], strict=True)]
            self.pos = np.stack([mc.pos for mc in self.chains]).astype(np.float64)
        else:
            self.pos = np.stack([cf.wrapped_positions() for cf in confs]).astype(np.float64)
        u0 = self._energy(self.pos)
        bad = np.flatnonzero(~np.isfinite(u0))
        if bad.size:
            raise InputError(f"initial configuration of chain {int(bad[0])} has infinite energy (overlap)")
        if self.chains:
            mc_u = np.array([mc.energy for mc in self.chains])
            self._check_energy(u0, mc_u, InputError)
            u0 = mc_u
        self.u = u0
        self.log_q: np.ndarray | None = None  # log q of the current states, computed at the first IMH step
        self.imh_tried = np.zeros(self.n_chains, dtype=np.int64)
        self.imh_accepted = np.zeros(self.n_chains, dtype=np.int64)
        self.iterations = 0
        self._device: torch.device | None = None

    # ------------------------------------------------------------------ helpers
    @staticmethod
    def _confs(conf_or_confs: Configuration | Sequence[Configuration], n_chains: int,
               species: np.ndarray | None = None) -> list[Configuration]:
        """The chains' starting configurations, each with the species array ``species`` (the proposal's; default
        that of the first configuration). A configuration with the same composition in another particle order
        (e.g. from swap MC) is relabelled: particles of one species are indistinguishable, so reordering them
        changes no Boltzmann weight."""
        confs = [conf_or_confs] * n_chains if isinstance(conf_or_confs, Configuration) else list(conf_or_confs)
        if len(confs) != n_chains or not all(isinstance(c, Configuration) for c in confs):
            raise InputError(f"expected one Configuration or {n_chains} of them, got {len(confs)} items")
        c0 = confs[0]
        target = c0.species if species is None else np.asarray(species, dtype=np.int64)
        if target.shape != (c0.n,):
            raise InputError(f"the proposal is for {target.size} particles, the configurations have {c0.n}")
        out = []
        for i, c in enumerate(confs):
            if c.positions.shape != c0.positions.shape:
                raise InputError(f"configuration {i} differs from configuration 0 in N or d")
            if not np.allclose(c.box, c0.box, rtol=1e-12, atol=0.0):
                raise InputError(f"configuration {i} has box {c.box.tolist()}, configuration 0 {c0.box.tolist()}")
            if not np.array_equal(c.species, target):
                try:
                    pos = canonical_order(c.positions, c.species, target)
                except InputError as err:
                    raise InputError(f"configuration {i}: {err} (the "
                                     f"{'proposal' if species is not None else 'first configuration'})") from None
                c = c.replace(positions=pos, species=target.copy(), velocities=None)
            out.append(c)
        return out

    def _energy(self, x: np.ndarray) -> np.ndarray:
        u = np.asarray(self._energy_fn(x), dtype=np.float64)
        if u.shape != (x.shape[0],):
            raise InputError(f"energy returned shape {u.shape}, expected ({x.shape[0]},)")
        return np.where(np.isfinite(u), u, np.inf)

    def _check_energy(self, u: np.ndarray, u_mc: np.ndarray, err: type[Exception]) -> None:
        diff = np.abs(u - u_mc)
        tol = self.energy_rtol * np.maximum(1.0, np.abs(u_mc))
        if np.any(diff > tol):
            k = int(np.argmax(diff - tol))
            raise err(f"energy function and local-move model disagree: {u[k]!r} vs {u_mc[k]!r} (chain {k})")

    def _sample(self) -> tuple[np.ndarray, np.ndarray]:
        assert self.proposal is not None
        # a pool base (Boltzmann prior) draws with replacement here: without replacement the next proposal
        # would depend on the past ones and the chain would over-weight high-weight states by O(1 / pool)
        base = getattr(getattr(self.proposal, "flow", None), "q0", None)
        pooled = hasattr(base, "with_replacement")
        before = base.with_replacement if pooled else None
        try:
            if pooled:
                base.with_replacement = True
            with torch.no_grad():
                x, lq = self.proposal.sample(self.n_chains, self.T)
        finally:
            if pooled:
                base.with_replacement = before
        self._device = x.device
        xs = x.detach().cpu().double().numpy()
        lqs = lq.detach().cpu().double().numpy()
        if xs.shape != (self.n_chains, self.n, self.dim) or lqs.shape != (self.n_chains,):
            raise InputError(f"proposal.sample returned shapes {tuple(xs.shape)}, {tuple(lqs.shape)}; expected "
                             f"{(self.n_chains, self.n, self.dim)}, {(self.n_chains,)}")
        return xs, lqs

    def _log_prob(self, pos: np.ndarray) -> np.ndarray:
        assert self.proposal is not None
        x = torch.as_tensor(pos, dtype=torch.float64, device=self._device)
        with torch.no_grad():
            lq = self.proposal.log_prob(x, self.T)
        out = lq.detach().cpu().double().numpy()
        if out.shape != (pos.shape[0],):
            raise InputError(f"proposal.log_prob returned shape {tuple(out.shape)}, expected ({pos.shape[0]},)")
        if np.any(np.isnan(out)):
            raise PhysicsError("proposal.log_prob returned NaN")
        return out

    def _wrap(self, x: np.ndarray) -> np.ndarray:
        return x - self.box * np.floor(x / self.box)

    # ------------------------------------------------------------------ steps
    def imh_step(self) -> np.ndarray:
        """One independence Metropolis-Hastings step of every chain; returns the (n_chains,) accept mask."""
        if self.proposal is None:
            raise InputError("imh_step needs a proposal")
        x_new, lq_new = self._sample()
        if self.log_q is None:  # first IMH step (after the sample, which tells the proposal's device)
            self.log_q = self._log_prob(self.pos)
        u_new = self._energy(x_new)
        lw_new = log_weights(self.beta, u_new, lq_new)
        with np.errstate(invalid="ignore", over="ignore"):
            lw_cur = -self.beta * self.u - self.log_q
            log_acc = lw_new - lw_cur
        accept = np.log(self.rng.random(self.n_chains)) < log_acc  # NaN (both -inf) -> False
        self.imh_tried += 1
        self.imh_accepted += accept
        idx = np.flatnonzero(accept)
        if idx.size:
            self.pos[idx] = self._wrap(x_new[idx])
            self.log_q[idx] = lq_new[idx]
            if self.chains:
                u_mc = np.empty(idx.size)
                for j, k in enumerate(idx):
                    self.chains[k].set_positions(x_new[k])
                    u_mc[j] = self.chains[k].energy
                self._check_energy(u_new[idx], u_mc, PhysicsError)
                self.u[idx] = u_mc
            else:
                self.u[idx] = u_new[idx]
        return accept

    def local_step(self) -> None:
        """``local_sweeps`` MC sweeps of every chain, then log q of the new states (if there is a proposal)."""
        if not self.chains:
            return
        for k, mc in enumerate(self.chains):
            mc.sweep(self.local_sweeps)
            self.pos[k] = mc.pos
            self.u[k] = mc.energy
        if self.proposal is not None and self.log_q is not None:
            self.log_q = self._log_prob(self.pos)

    # ------------------------------------------------------------------ driver
    def run(self, n_iterations: int, progress: bool = True, store_every: int = 0, overlap_every: int = 1,
            overlap_max_lag: int | None = None, overlap_radius: float = OVERLAP_RADIUS) -> FlowMCMCResult:
        """Run ``n_iterations`` iterations (IMH step, then local sweeps) of every chain.

        Args:
            n_iterations: number of iterations (>= 1).
            progress: draw a progress bar on stderr.
            store_every: keep the states every ``store_every`` iterations in ``frames`` (0: none).
            overlap_every: keep states every ``overlap_every`` iterations (plus the initial one) for the
                self-overlap decay; 0 disables it. Memory: 8 n_chains N d bytes per kept state.
            overlap_max_lag: largest overlap lag in kept states (default half of them).
            overlap_radius: a of the self-overlap, sigma_AA units.

        Returns:
            :class:`FlowMCMCResult` of this run (acceptances and times count this run only).
        """
        n_it = int(n_iterations)
        if n_it < 1 or n_it != n_iterations:
            raise InputError(f"n_iterations must be a positive integer, got {n_iterations}")
        if store_every < 0 or overlap_every < 0:
            raise InputError("store_every and overlap_every must be >= 0")
        tried0, acc0 = self.imh_tried.copy(), self.imh_accepted.copy()
        stats0 = np.array([mc.stats[:2].copy() for mc in self.chains]).reshape(-1, 2)
        energies = np.empty((n_it, self.n_chains))
        frames: list[np.ndarray] = []
        frame_its: list[int] = []
        ov_frames = [self.pos.copy()] if overlap_every > 0 else []
        label = "flow-MCMC" if self.proposal is not None else "local MC"
        with progress_bar(n_it, label, enabled=progress) as advance:
            for it in range(1, n_it + 1):
                if self.proposal is not None:
                    self.imh_step()
                self.local_step()
                self.iterations += 1
                energies[it - 1] = self.u
                if store_every and it % store_every == 0:
                    frames.append(self.pos.copy())
                    frame_its.append(it)
                if overlap_every and it % overlap_every == 0:
                    ov_frames.append(self.pos.copy())
                advance(1)
        tried, acc = self.imh_tried - tried0, self.imh_accepted - acc0
        with np.errstate(invalid="ignore", divide="ignore"):
            imh_pc = acc / tried if self.proposal is not None else np.full(self.n_chains, np.nan)
        imh = float(acc.sum() / tried.sum()) if self.proposal is not None else math.nan
        if self.chains:
            st = np.array([mc.stats[:2] for mc in self.chains]) - stats0
            with np.errstate(invalid="ignore", divide="ignore"):
                loc_pc = st[:, 1] / st[:, 0]
            loc = float(st[:, 1].sum() / st[:, 0].sum()) if st[:, 0].sum() else math.nan
        else:
            loc_pc, loc = np.full(self.n_chains, np.nan), math.nan
        tau_pc = np.full(self.n_chains, np.nan)
        tau = math.nan
        if n_it >= 4:
            for k in range(self.n_chains):
                col = energies[:, k]
                tau_pc[k] = math.inf if np.ptp(col) == 0 else integrated_autocorrelation_time(col)
            tau = pooled_autocorrelation_time(energies)
        overlap, tau_q = None, math.nan
        if len(ov_frames) >= 3:
            overlap = overlap_correlation(np.stack(ov_frames), self.box, a=overlap_radius, max_lag=overlap_max_lag)
            tau_q = overlap.tau * overlap_every
        return FlowMCMCResult(
            energies=energies, final_positions=self.pos.copy(),
            frames=np.stack(frames) if frames else None, frame_iterations=np.asarray(frame_its, dtype=np.int64),
            imh_acceptance=imh, imh_acceptance_per_chain=np.asarray(imh_pc, dtype=np.float64),
            local_acceptance=loc, local_acceptance_per_chain=np.asarray(loc_pc, dtype=np.float64),
            tau_u=tau, tau_u_per_chain=tau_pc, overlap=overlap, tau_q=float(tau_q), T=self.T,
            local_sweeps=self.local_sweeps, n_iterations=n_it)
