r"""Policy-guided Monte Carlo (PGMC): learned proposals, exact Metropolis-Hastings acceptance.

References: Bojesen, PRE 98, 063303 (2018); Galliano, Rende, Coslovich, JCP 161, 064503 (2024)
(shared/REFERENCE.md section 5).

A move is an action drawn from a policy q_theta (:class:`~glassgen.sampling.policies.Policy`), a
log proposal density forward and reverse, and a reward r. Each of ``n_chains`` independent chains
targets p(x) ~ exp(-U(x)/T) (fixed box and particle number; species may be exchanged by swaps) with

    log alpha = -beta dU + log q(x' -> x) - log q(x -> x'),

the reverse density evaluated in the new state (after the move). Energy differences are
O(neighbours) (:mod:`glassgen._kernels.pgmc`).

Learning (burn-in only): the objective is J(theta) = E[r alpha] with r = |delta|^2 for displacements
and r = 1 for swaps. Its gradient, with j = r alpha,

    grad J = E[ j grad log q(x -> x') ]  where alpha = 1,   E[ j grad log q(x' -> x) ]  where alpha < 1,

is estimated from extra trial proposals on the current states of all chains (perform, evaluate,
revert: the chains are not moved by trials), then one optimiser step is taken:

- ``plain``: theta += lr g;
- ``baseline``: the same gradient written as (j - b) grad log q_f + 1[alpha < 1] j (grad log q_r -
  grad log q_f), with b the leave-one-out mean of j (unbiased, lower variance);
- ``natural``: the baseline gradient preconditioned by the empirical Fisher matrix
  F = E[grad log q_f grad log q_f^T] (+ a small ridge) and divided by the estimate of J (the natural
  gradient of log J, so that lr does not depend on the reward's units): theta += lr F^{-1} g / J.

Between learning steps the chains advance with ordinary PGMC sweeps (whose policy changes during
burn-in). :meth:`PGMC.freeze` ends learning: from then on the policy is fixed and the chain is an exact
Markov chain with stationary distribution p.

Units: lengths sigma_AA, energies epsilon (total, not per particle), T in epsilon / k_B; times in
sweeps (N trial moves per chain).
"""

from __future__ import annotations

import json
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from glassgen._kernels.mc import build_cells, total_energy_mc
from glassgen._kernels.neighbors import mc_image_shifts
from glassgen._kernels.pgmc import (
    KIND_GAUSS,
    KIND_LOCAL,
    KIND_SWAP,
    MH_EXACT,
    N_RADIAL,
    N_SEL,
    ext_energy,
    partner_need,
    pgmc_moves,
    selection_features,
)
from glassgen.dynamics.schedule import DeferredInterrupt, open_checkpoint
from glassgen.errors import InputError, PhysicsError, check_temperature
from glassgen.provenance import atomic_path, provenance
from glassgen.sampling.policies import BLOCKS, Policy, local_log_q_and_score, score_gauss
from glassgen.systems.configuration import Configuration
from glassgen.systems.io import h5_write_attrs
from glassgen.systems.model import InteractionModel

__all__ = ["PGMCTarget", "PGMC", "TrialBatch", "PGMCResult", "policy_gradient", "OPTIMIZERS"]

OPTIMIZERS = ("plain", "baseline", "natural")
_FEATURE_REFRESH = 100  # sweeps between from-scratch recomputations of the swap-selection features


@dataclass(frozen=True)
class PGMCTarget:
    """The distribution p(x) ~ exp(-U(x)/T): pair model + optional external harmonic wells (toy targets).

    Attributes:
        box: (d,) box lengths; nsp: species; pp: the 8 flattened pair-parameter arrays of the kernel;
        rc_max: largest pair cutoff; T: temperature; ext_k: (nsp,) stiffness of the external well
        0.5 k |x - ext_c|^2 per species (0: none); ext_c: (d,) well centre; model: the pair model (or None).
    """

    box: np.ndarray
    nsp: int
    pp: tuple[np.ndarray, ...]
    rc_max: float
    T: float
    ext_k: np.ndarray
    ext_c: np.ndarray
    model: InteractionModel | None = None

    @property
    def beta(self) -> float:
        return 1.0 / self.T

    @property
    def dim(self) -> int:
        return int(self.box.shape[0])

    @classmethod
    def from_model(cls, model: InteractionModel, box: np.ndarray, T: float) -> PGMCTarget:
        """Canonical ensemble of a pair model at temperature T in the periodic box ``box``."""
        _check_T(T)
        p = model.kernel_params()
        return cls(np.asarray(box, dtype=np.float64).copy(), p.nsp, p.as_tuple(), p.rc_max, float(T),
                   np.zeros(p.nsp), np.zeros(model.dim), model)

    @classmethod
    def harmonic(cls, dim: int, std: float, T: float = 1.0, box: float = 40.0) -> PGMCTarget:
        """One free particle per chain in an isotropic harmonic well of standard deviation ``std`` per axis.

        The well k = T / std^2 is centred in a periodic box of edge ``box`` (the minimum image makes the
        well periodic; the tails beyond L/2 are negligible for std << L). Pair interactions are off.
        """
        _check_T(T)
        if not (std > 0 and box > 20 * std):
            raise InputError("harmonic target needs std > 0 and box > 20 std")
        z = np.zeros(1)
        pp = (np.ones(1), np.full(1, 4.0), np.full(1, 6.25), z, z.copy(), z.copy(), z.copy(), z.copy())
        return cls(np.full(dim, float(box)), 1, pp, 2.5, float(T), np.array([T / std**2]),
                   np.full(dim, 0.5 * box), None)


def _check_T(T: float) -> None:
    check_temperature(T)


class _Chain:
    """State of one chain: positions, species, cell lists, species member lists, features, counters."""

    def __init__(self, target: PGMCTarget, pos: np.ndarray, species: np.ndarray, n_features: int = N_SEL) -> None:
        box = target.box
        self._box = box
        n, d = pos.shape
        self.n, self.d = n, d
        self.pos = np.ascontiguousarray(pos - box * np.floor(pos / box), dtype=np.float64)
        self.species = np.array(species, dtype=np.int32, order="C")  # a copy: chains never share arrays
        ncell = np.floor(box / target.rc_max).astype(np.int64)
        self.use_cells = bool(d in (2, 3) and np.all(ncell >= 3))
        if self.use_cells:
            self.ncell = ncell
            self.shifts = np.zeros((1, d))
            self.cap = int(3 * n / float(np.prod(ncell))) + 16
            self.rebuild_cells()
        else:
            self.ncell = np.ones(d, dtype=np.int64)
            self.shifts = mc_image_shifts(box, target.rc_max)
            self.cap = 1
            self.cells = np.zeros((1, 1), dtype=np.int64)
            self.cell_count = np.zeros(1, dtype=np.int64)
            self.cell_of = np.zeros(n, dtype=np.int64)
            self.slot = np.zeros(n, dtype=np.int64)
        nsp = target.nsp
        self.members = np.full((nsp, n), -1, dtype=np.int64)
        self.member_pos = np.empty(n, dtype=np.int64)
        self.n_members = np.zeros(nsp, dtype=np.int64)
        for i, s in enumerate(self.species):
            self.members[s, self.n_members[s]] = i
            self.member_pos[i] = self.n_members[s]
            self.n_members[s] += 1
        self.feat = np.zeros((n, n_features))
        self.unwrapped = self.pos.copy()
        self.stats = np.zeros((3, 3))
        self.energy = 0.0
        self.energy_scale = 0.0  # largest |energy| since the last check: sets the round-off of the running sum

    def rebuild_cells(self) -> None:
        while True:
            cells, count, cell_of, slot, ok = build_cells(self.pos, self._box, self.ncell, self.cap)
            if ok:
                break
            self.cap *= 2
        self.cells, self.cell_count, self.cell_of, self.slot = cells, count, cell_of, slot

    def grid(self) -> tuple[Any, ...]:
        return (self.use_cells, self.ncell, self.cells, self.cell_count, self.cell_of, self.slot, self.shifts)

    ARRAYS = ("pos", "species", "members", "member_pos", "n_members", "feat", "unwrapped", "stats", "cells",
              "cell_count", "cell_of", "slot")


def _new_chain(target: PGMCTarget, pos: np.ndarray, species: np.ndarray, n_features: int = N_SEL) -> _Chain:
    return _Chain(target, pos, species, n_features)


@dataclass
class TrialBatch:
    """Records of learning trials (perform, evaluate, revert), concatenated over chains.

    Attributes (M trials): kind (M,) int; log_alpha (M,); reward (M,); species (M,) species of the moved
    particle, or the pair index for swaps; delta (M, d); env (M, 2, 5 + d) descriptors before/after
    (local moves); sel (M, 2, 2 F) selection scores f - <f> of side 0 and side 1, forward/reverse (swaps).
    """

    kind: np.ndarray
    log_alpha: np.ndarray
    reward: np.ndarray
    species: np.ndarray
    delta: np.ndarray
    env: np.ndarray
    sel: np.ndarray

    @property
    def alpha(self) -> np.ndarray:
        return np.exp(np.minimum(self.log_alpha, 0.0))


def _scores(policy: Policy, tb: TrialBatch, block: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(mask over trials, grad log q forward (m, P), grad log q reverse (m, P)) of ``block``."""
    if block == "gauss":
        mask = tb.kind == KIND_GAUSS
        g = score_gauss(policy, tb.species[mask], tb.delta[mask])
        return mask, g, g
    if block == "local":
        mask = tb.kind == KIND_LOCAL
        s, dl = tb.species[mask], tb.delta[mask]
        _, gf = local_log_q_and_score(policy, tb.env[mask, 0], dl, s)
        _, gr = local_log_q_and_score(policy, tb.env[mask, 1], -dl, s)
        return mask, gf, gr
    mask = tb.kind == KIND_SWAP
    pidx = tb.species[mask]
    pairs = policy.pairs[pidx]
    m = int(mask.sum())
    nf = tb.sel.shape[2] // 2
    rows = np.arange(m)
    sel = tb.sel[mask]
    out = []
    for r in (0, 1):  # forward, reverse: grad log q = scores of the features each parameter multiplies
        g_theta = np.zeros((m, policy.nsp, N_SEL))
        g_theta[rows, pairs[:, 0]] += sel[:, r, :N_SEL]
        g_theta[rows, pairs[:, 1]] += sel[:, r, nf:nf + N_SEL]
        g_phi = np.zeros((m, policy.phi.shape[0], 2))
        if nf > N_SEL:  # d logit / d phi[p, side] = e^partner - e^own
            a, b = N_SEL + pairs[:, 0], N_SEL + pairs[:, 1]
            g_phi[rows, pidx, 0] = sel[rows, r, b] - sel[rows, r, a]
            g_phi[rows, pidx, 1] = sel[rows, r, nf + a] - sel[rows, r, nf + b]
        out.append(np.concatenate([g_theta.reshape(m, policy.nsp * N_SEL), g_phi.reshape(m, policy.phi.size)],
                                  axis=1))  # explicit widths: a batch without swap trials has m = 0
    return mask, out[0], out[1]


#: trials per parameter below which the natural gradient shrinks its Fisher matrix (see policy_gradient)
FISHER_MIN_TRIALS = 4


def policy_gradient(policy: Policy, tb: TrialBatch, block: str, optimizer: str = "natural",
                    ridge: float = 1e-3) -> tuple[np.ndarray, float, int]:
    """Ascent direction for ``block`` from a trial batch (see the module docstring).

    Returns:
        (direction (P,), estimate of J = E[r alpha] over the block's trials, number of trials used).
        ``plain``/``baseline`` return the gradient estimate; ``natural`` returns (F + lam I)^-1 g / J with
        lam = ridge * tr(F) / P, or (P / m) * tr(F) / P when the block has fewer than
        ``FISHER_MIN_TRIALS`` * P trials (P parameters, m trials).
    """
    if optimizer not in OPTIMIZERS:
        raise InputError(f"unknown optimizer {optimizer!r} (choose from {', '.join(OPTIMIZERS)})")
    mask, gf, gr = _scores(policy, tb, block)
    m = int(mask.sum())
    if m < 2:
        return np.zeros(policy.vector(block).size), math.nan, m
    la = tb.log_alpha[mask]
    full = la >= 0.0
    j = tb.reward[mask] * np.exp(np.minimum(la, 0.0))
    if optimizer == "plain":
        g = np.mean(j[:, None] * np.where(full[:, None], gf, gr), axis=0)
        return g, float(j.mean()), m
    b = (j.sum() - j) / (m - 1)  # leave-one-out baseline
    g = np.mean((j - b)[:, None] * gf + (~full * j)[:, None] * (gr - gf), axis=0)
    if optimizer == "baseline":
        return g, float(j.mean()), m
    fisher = gf.T @ gf / m
    n_par = fisher.shape[0]
    # ridge relative to the mean diagonal; with fewer than FISHER_MIN_TRIALS trials per parameter the
    # estimated Fisher matrix is rank-poor and its inverse turns noise into large steps (the local policy
    # of KA2D N = 1290 collapsed from ~100 trials for 66 parameters): shrink towards the diagonal scale by P / m
    shrink = ridge if m >= FISHER_MIN_TRIALS * n_par else max(ridge, n_par / m)
    lam = shrink * max(float(np.trace(fisher)) / n_par, 1e-12)
    jm = float(j.mean())
    if jm <= 0:
        return np.zeros_like(g), jm, m
    # natural gradient of log J: F^-1 g / J (scale-free in the reward, same direction as F^-1 grad J)
    return np.linalg.solve(fisher + lam * np.eye(fisher.shape[0]), g) / jm, jm, m


@dataclass
class PGMCResult:
    """Output of :meth:`PGMC.run` (times in sweeps; energies total, epsilon).

    Attributes:
        sample_sweeps: (S,) sweeps of the energy samples; energies: (S, n_chains).
        frame_sweeps: (F,) sweeps of the stored frames; frames: (F, n_chains, N, d) UNWRAPPED positions
            (accumulated accepted displacements); frame_species: (F, n_chains, N) species at the frames.
        final_positions (n_chains, N, d) wrapped; final_species (n_chains, N).
        acceptance: per move kind; info: run metadata (cpu seconds, sweeps, policy summary).
    """

    sample_sweeps: np.ndarray
    energies: np.ndarray
    frame_sweeps: np.ndarray
    frames: np.ndarray | None
    frame_species: np.ndarray | None
    final_positions: np.ndarray
    final_species: np.ndarray
    acceptance: dict[str, float]
    info: dict[str, Any] = field(default_factory=dict)

    def fs(self, q: float, species: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(lag sweeps, F_s(q, t)) from the frames, frame 0 as time origin, pooled over chains.

        Particles keep their labels through swaps; ``species`` selects by the species at frame 0
        (None: all particles).
        """
        from glassgen.observables.dynamics import SelfIntermediateScattering

        if self.frames is None or self.frames.shape[0] < 2:
            raise InputError("no trajectory frames stored (pass frame_sweeps to run)")
        t = self.frame_sweeps.astype(np.float64)
        fs = SelfIntermediateScattering(q)
        for c in range(self.frames.shape[1]):
            sp = self.frame_species[0, c].astype(np.int64) if species is not None else None
            fs.compute(t - t[0], self.frames[:, c], sp, reset=(c == 0))
        return fs.lag_times, (fs.fs if species is None else fs.fs_by_species[species])


class PGMC:
    """Policy-guided Monte Carlo on ``n_chains`` independent chains.

    Args:
        target: the distribution to sample (:class:`PGMCTarget`).
        policy: the proposal policy (copied; learning updates the copy in :attr:`policy`).
        starts: list of (positions (N, d), species (N,)) per chain, or Configurations.
        seed: seed of the sampler's ``np.random.Generator`` (all chains draw from it).
        selection_tree: draw biased swap selections from per-species sum trees, O(neighbours + log N) per
            swap (default); False scans the members, O(N_a + N_b): the same law up to round-off, kept as the
            reference for tests and benchmarks.
        feature_updates: how biased swaps get the selection features of the current state. "incremental":
            every accepted move updates those of the particles it changes (O(neighbours) per move, also for
            displacements). "deferred": displacements do not touch them; each production sweep runs its
            displacement trials first and its swap trials after them, and the features are recomputed from
            scratch (O(N)) before the first swap that follows an accepted displacement. The random
            proposals are the same; only their order within a sweep differs (a fixed composition of exact
            Metropolis-Hastings kernels, so the chain stays exact). Deferred is the default: at N = 43 and
            1290 (KA2D, T = 0.3) it costs 0.73-0.83 of the incremental time per move (benchmarks/pgmc_cost.py).
        flip_energies: which single-flip energies e_k^t a chain with single-flip selection keeps. "partners"
            (default): t = s_k and the swap partners of s_k only (``partner_need``; the others never enter a
            selection weight), summed afresh when a swap makes one needed. "all": every t, as before
            2026-12-05; the same chain up to round-off, kept as the reference for tests and benchmarks.
    """

    def __init__(self, target: PGMCTarget, policy: Policy, starts: list[Any], seed: int = 0,
                 selection_tree: bool = True, feature_updates: str = "deferred",
                 flip_energies: str = "partners") -> None:
        if not starts:
            raise InputError("PGMC needs at least one chain")
        if policy.nsp != target.nsp or policy.dim != target.dim:
            raise InputError(f"policy is for nsp={policy.nsp}, dim={policy.dim}; target has nsp={target.nsp}, "
                             f"dim={target.dim}")
        self.target = target
        self.policy = policy.copy()
        # the run's identity (learning changes the policy): the whole initial policy
        self._initial_policy = json.dumps({k: v for k, v in self.policy.to_dict().items() if k != "meta"},
                                          sort_keys=True, default=float)
        self.seed = int(seed)
        self.rng = np.random.default_rng(seed)
        self.selection_tree = bool(selection_tree)
        if feature_updates not in ("incremental", "deferred"):
            raise InputError(f"feature_updates must be 'incremental' or 'deferred', got {feature_updates!r}")
        self.feature_updates = feature_updates
        if flip_energies not in ("partners", "all"):
            raise InputError(f"flip_energies must be 'partners' or 'all', got {flip_energies!r}")
        self.flip_energies = flip_energies
        self.frozen = False
        self.sweeps = 0
        self.chains: list[_Chain] = []
        for st in starts:
            pos, sp = (st.positions, st.species) if isinstance(st, Configuration) else st
            pos = np.asarray(pos, dtype=np.float64)
            sp = np.asarray(sp)
            if pos.ndim != 2 or pos.shape[1] != target.dim or sp.shape != (pos.shape[0],):
                raise InputError(f"chain start must be positions (N, {target.dim}) and species (N,)")
            if sp.min() < 0 or sp.max() >= target.nsp:
                raise InputError("species index out of range")
            self.chains.append(_new_chain(target, pos, sp, self.policy.n_features))
        if len({c.n for c in self.chains}) != 1:
            raise InputError("all chains must have the same number of particles")
        self.n = self.chains[0].n
        self.history: list[dict[str, float]] = []
        for c in self.chains:
            c.energy = math.nan  # nothing to check against yet
            self._refresh(c)

    # ------------------------------------------------------------------ helpers
    @property
    def n_chains(self) -> int:
        return len(self.chains)

    def _pp(self) -> tuple[np.ndarray, ...]:
        return tuple(np.ascontiguousarray(a) for a in self.target.pp)

    def _need(self) -> np.ndarray:
        """(nsp, nsp) bool: the single-flip energies each species keeps (kernel ``selection_features``)."""
        nsp = self.target.nsp
        if self.flip_energies == "all":
            return np.ones((nsp, nsp), dtype=np.bool_)
        return partner_need(nsp, self.policy.pairs[:, 0], self.policy.pairs[:, 1])

    def _energy_of(self, c: _Chain) -> float:
        t = self.target
        sig2, eps4, rc2, c0, c1, c2, c4, rs2 = t.pp
        e = float(total_energy_mc(c.pos, c.species, t.box, t.nsp, sig2, eps4, rc2, c0, c1, c2, c4, rs2,
                                  c.use_cells, c.ncell, c.cells, c.cell_count, c.shifts))
        if np.any(t.ext_k > 0):
            e += sum(float(ext_energy(c.pos[i], c.species[i], t.ext_k, t.ext_c, t.box)) for i in range(c.n))
        return e

    def _checked_energy(self, c: _Chain) -> float:
        """The chain's energy from scratch; the incrementally updated one must agree with it up to round-off
        (1e-8 relative), else :class:`PhysicsError` (a bookkeeping bug, not noise)."""
        fresh = self._energy_of(c)
        # round-off of a running sum is relative to the largest |energy| it held: a start with overlapping
        # particles (U ~ 1e12) relaxed to U ~ -2 keeps ~1e-4 of it, which is not a bookkeeping bug
        tol = max(1e-8 * max(1.0, abs(fresh)), 64 * 2.0**-52 * c.energy_scale)
        if math.isfinite(c.energy) and math.isfinite(fresh) and abs(fresh - c.energy) > tol:
            raise PhysicsError(f"PGMC energy bookkeeping drifted: incremental {c.energy!r}, recomputed {fresh!r}")
        c.energy_scale = abs(fresh)
        return fresh

    def _refresh(self, c: _Chain) -> None:
        """Recompute the energy (checked, :meth:`_checked_energy`) and the selection features from scratch."""
        c.energy = self._checked_energy(c)
        if not math.isfinite(c.energy):
            raise PhysicsError(f"non-finite energy ({c.energy}) of a PGMC chain (overlapping particles?)")
        self._refresh_features(c)

    def _refresh_features(self, c: _Chain) -> None:
        t = self.target
        selection_features(c.pos, c.species, t.box, t.nsp, self._pp(), self._need(), c.use_cells, c.ncell, c.cells,
                           c.cell_count,
                           c.shifts, c.feat)

    def recompute_energies(self) -> np.ndarray:
        """(n_chains,) total energies from scratch (bookkeeping check against :attr:`energies`)."""
        return np.array([self._energy_of(c) for c in self.chains])

    @property
    def energies(self) -> np.ndarray:
        """(n_chains,) current total energies (epsilon), accumulated from accepted moves."""
        return np.array([c.energy for c in self.chains])

    @property
    def _track(self) -> int:
        """Feature mode of the kernel: 0 none (uniform swaps), 1 incremental, 2 deferred."""
        pol = self.policy
        if not (pol.biased and pol.move_probs[2] > 0):
            return 0
        return 2 if self.feature_updates == "deferred" else 1

    def _draw(self, m: int, swaps_last: bool = False) -> tuple[np.ndarray, ...]:
        """Random numbers of m trials; ``swaps_last`` (m a multiple of N): within each sweep of N trials,
        the swap trials are moved after the displacements (stable order)."""
        pol, rng, d = self.policy, self.rng, self.target.dim
        kind = rng.choice(3, size=m, p=pol.move_probs).astype(np.int8)
        idx = rng.integers(0, self.n, m)
        if pol.move_probs[2] > 0:
            sw = kind == KIND_SWAP
            idx[sw] = rng.choice(pol.pairs.shape[0], size=int(sw.sum()), p=pol.pair_probs)
        xi = rng.standard_normal((m, d))
        usel = rng.random((m, 2))
        logu = np.log(rng.random(m))
        draws = (kind, idx.astype(np.int64), xi, usel, logu)
        if swaps_last:
            k = m // self.n
            order = np.argsort((kind == KIND_SWAP).reshape(k, self.n), axis=1, kind="stable")
            order = (order + self.n * np.arange(k)[:, None]).ravel()
            draws = tuple(np.ascontiguousarray(a[order]) for a in draws)
        return draws

    def _call(self, c: _Chain, draws: tuple[np.ndarray, ...], commit: bool, mh_mode: int,
              rec: tuple[np.ndarray, ...]) -> None:
        t, pol = self.target, self.policy
        kind, idx, xi, usel, logu = draws
        track = self._track
        need = self._need()
        start = 0
        while True:
            de, start = pgmc_moves(c.pos, c.species, t.box, t.nsp, self._pp(), need, t.beta, t.ext_k, t.ext_c,
                                   c.use_cells, c.ncell, c.cells, c.cell_count, c.cell_of, c.slot, c.shifts,
                                   c.members, c.member_pos, c.n_members, c.feat, track, c.unwrapped,
                                   pol.log_sigma, pol.ls0, pol.W1, pol.b1, pol.W2, pol.b2, pol.pairs[:, 0].copy(),
                                   pol.pairs[:, 1].copy(), pol.selection_weights(), pol.biased, self.selection_tree,
                                   kind, idx, xi,
                                   usel, logu, start, commit, mh_mode, c.stats, *rec)
            c.energy += de
            c.energy_scale = max(c.energy_scale, abs(c.energy))
            if start >= kind.shape[0]:
                break
            c.cap *= 2  # a cell overflowed: grow and continue with the same random numbers
            c.rebuild_cells()
        if c.energy_scale > 1e6 * max(1.0, abs(c.energy)):  # relaxed from a huge U (overlaps): the running sum
            c.energy = self._energy_of(c)  # kept ~1e-16 of it; recorded energies come from scratch from here on
            c.energy_scale = abs(c.energy)

    def _empty_rec(self) -> tuple[np.ndarray, ...]:
        d = self.target.dim
        return (np.zeros((0, 2)), np.zeros((0, 2), dtype=np.int64), np.zeros((0, d)), np.zeros((0, 2, N_RADIAL + d)),
                np.zeros((0, 2, 2 * self.policy.n_features)))

    # ------------------------------------------------------------------ moves
    def sweep(self, n_sweeps: int = 1, mh_mode: int = MH_EXACT) -> None:
        """Advance every chain by ``n_sweeps`` sweeps of N trial moves (``mh_mode``: tests only)."""
        rec = self._empty_rec()
        left = int(n_sweeps)
        max_chunk = max(1, 100_000 // self.n)
        while left > 0:
            # chunks end at multiples of _FEATURE_REFRESH sweeps, so the random stream (and thus the chain)
            # only depends on where runs start and stop, which a resumed run reproduces
            k = min(left, max_chunk, _FEATURE_REFRESH - self.sweeps % _FEATURE_REFRESH)
            for c in self.chains:
                self._call(c, self._draw(k * self.n, swaps_last=self._track == 2), True, mh_mode, rec)
                if not math.isfinite(c.energy):
                    raise PhysicsError("non-finite energy in PGMC")
            self.sweeps += k
            left -= k
            if self.sweeps % _FEATURE_REFRESH == 0:
                for c in self.chains:
                    if self.policy.biased:  # bound the round-off drift of the incrementally updated features
                        self._refresh(c)
                    else:  # check the running energy only (the chain's numbers stay as they are) ...
                        big = c.energy_scale > 1e6 * max(1.0, abs(c.energy))
                        fresh = self._checked_energy(c)
                        if big:  # ... unless it came down from a huge start (overlaps): then from scratch
                            c.energy = fresh

    def trials(self, n_per_chain: int) -> TrialBatch:
        """Extra trial proposals on the current states (perform, evaluate, revert); chains do not move."""
        d = self.target.dim
        out = []
        for c in self.chains:
            m = int(n_per_chain)
            rec = (np.zeros((m, 2)), np.zeros((m, 2), dtype=np.int64), np.zeros((m, d)),
                   np.zeros((m, 2, N_RADIAL + d)), np.zeros((m, 2, 2 * self.policy.n_features)))
            draws = self._draw(m)
            stats = c.stats.copy()
            self._call(c, draws, False, MH_EXACT, rec)
            c.stats[:] = stats  # trials are not part of the chain's statistics
            out.append((draws[0], *rec))
        cat = [np.concatenate([o[k] for o in out]) for k in range(6)]
        return TrialBatch(kind=cat[0].astype(np.int64), log_alpha=cat[1][:, 0], reward=cat[1][:, 1],
                          species=cat[2][:, 0], delta=cat[3], env=cat[4], sel=cat[5])

    # ------------------------------------------------------------------ learning
    def learn(self, n_iterations: int, trials_per_chain: int = 100, sweeps_between: int = 1,
              optimizer: str = "natural", lr: float | dict[str, float] = 0.1, max_step: float = 0.5,
              blocks: tuple[str, ...] | None = None, progress: bool = False,
              checkpoint: str | os.PathLike[str] | None = None, checkpoint_every: int = 20) -> list[dict[str, float]]:
        """Policy-gradient learning during burn-in (see the module docstring).

        Each iteration: ``sweeps_between`` PGMC sweeps of every chain with the current policy, then
        ``trials_per_chain`` trial proposals per chain, then one optimiser step per trainable block
        that has moves (step clipped to ``max_step`` per component).

        With ``checkpoint``, the state (chains, RNG, policy, history) is written there every
        ``checkpoint_every`` iterations and at the end; if the file exists, learning continues from it and
        gives the same result as an uninterrupted run (tested).

        Returns:
            The history: one dict per iteration with J estimates and parameters summaries.
        """
        from glassgen.progress import progress_bar

        if self.frozen:
            raise InputError("the policy is frozen (production phase): learning would break detailed balance")
        if optimizer not in OPTIMIZERS:
            raise InputError(f"unknown optimizer {optimizer!r} (choose from {', '.join(OPTIMIZERS)})")
        for b in blocks or ():
            if b not in BLOCKS:
                raise InputError(f"unknown block {b!r} (choose from {', '.join(BLOCKS)})")
        if int(trials_per_chain) * self.n_chains < 2:
            raise InputError("learning needs at least 2 trial proposals per iteration (trials per chain x chains)")
        settings = {"trials_per_chain": int(trials_per_chain), "sweeps_between": int(sweeps_between),
                    "optimizer": optimizer, "lr": lr, "max_step": float(max_step),
                    "blocks": None if blocks is None else list(blocks)}
        done = 0
        if checkpoint is not None and Path(checkpoint).is_file():
            _, _, extra = self.load_checkpoint(checkpoint)
            if extra.get("phase") != "learn":
                raise InputError(f"checkpoint {checkpoint} is not a learning checkpoint; delete it or change --out")
            if extra.get("settings") != json.loads(json.dumps(settings, default=float)):
                raise InputError(f"checkpoint {checkpoint} was written with other learning settings; delete it or "
                                 "change --out")
            self.history = list(extra["history"])
            done = int(extra["iterations_done"])
        pol = self.policy
        kind_of = {"gauss": 0, "local": 1, "swap": 2}
        # theta and phi act only through biased selection: uniform swaps have nothing to learn
        blocks = tuple(b for b in (blocks or pol.trainable) if pol.move_probs[kind_of[b]] > 0
                       and (b != "swap" or pol.biased))
        rates = lr if isinstance(lr, dict) else {b: float(lr) for b in BLOCKS}

        def save() -> None:
            if checkpoint is not None:
                self.save_checkpoint(checkpoint, [], [], {"phase": "learn", "iterations_done": done,
                                                          "history": self.history, "settings": settings})

        # a Ctrl-C takes effect at the end of the iteration in progress, with a checkpoint there
        with DeferredInterrupt(active=checkpoint is not None) as interrupted, \
                progress_bar(n_iterations, "PGMC learning", progress) as advance:
            advance(min(done, int(n_iterations)))
            for _ in range(done, int(n_iterations)):
                if sweeps_between > 0:
                    self.sweep(sweeps_between)
                tb = self.trials(trials_per_chain)
                rec: dict[str, float] = {"iteration": float(len(self.history))}
                for b in blocks:
                    direction, j, m = policy_gradient(pol, tb, b, optimizer)
                    if m < 2:
                        continue
                    step = np.clip(rates.get(b, 0.1) * direction, -max_step, max_step)
                    pol.set_vector(b, pol.vector(b) + step)
                    rec[f"J_{b}"] = j
                    rec[f"acc_{b}"] = float(np.mean(tb.alpha[tb.kind == kind_of[b]]))
                rec.update({f"sigma_{s}": float(v) for s, v in enumerate(pol.sigma)})
                self.history.append(rec)
                done += 1
                if done % max(1, int(checkpoint_every)) == 0 or interrupted.seen:
                    save()
                if interrupted.seen and done < int(n_iterations):
                    raise KeyboardInterrupt
                advance(1)
        save()
        return self.history

    def freeze(self) -> Policy:
        """End learning: the policy is fixed from now on (production chains are exact). Returns it."""
        self.frozen = True
        return self.policy

    # ------------------------------------------------------------------ production
    @property
    def acceptance(self) -> dict[str, float]:
        """Acceptance ratio per move kind over all chains (production and learning sweeps, not trials)."""
        st = sum(c.stats for c in self.chains)
        names = ("gauss", "local", "swap")
        return {names[k]: float(st[k, 1] / st[k, 0]) if st[k, 0] else math.nan for k in range(3)}

    def mean_squared_jump(self) -> float:
        """Mean accepted |delta|^2 per displacement trial (expected squared jump distance)."""
        st = sum(c.stats for c in self.chains)
        tried = st[0, 0] + st[1, 0]
        return float((st[0, 2] + st[1, 2]) / tried) if tried else math.nan

    def reset_stats(self) -> None:
        for c in self.chains:
            c.stats[:] = 0

    def _signature(self) -> str:
        return json.dumps({"n": self.n, "chains": self.n_chains, "T": self.target.T, "seed": self.seed,
                           "model": self.target.model.name if self.target.model else None,
                           "policy": self._initial_policy,
                           **({"feature_updates": "deferred"} if self.feature_updates == "deferred" else {}),
                           **({"flip_energies": "all"} if self.flip_energies == "all" else {})})

    def save_checkpoint(self, path: str | os.PathLike[str], samples: list[tuple[int, np.ndarray]],
                        frames: list[tuple[int, np.ndarray, np.ndarray]], extra: dict[str, Any] | None = None) -> None:
        """Everything needed to continue a run bit-for-bit: chain arrays, energies, RNG, policy, records."""
        with atomic_path(path) as tmp, h5py.File(tmp, "w") as f:
            h5_write_attrs(f, provenance(seed=self.seed, T=self.target.T,
                                         model=self.target.model.name if self.target.model else None))
            f.attrs["signature"] = self._signature()
            f.attrs["rng"] = json.dumps(self.rng.bit_generator.state)
            f.attrs["sweeps"] = self.sweeps
            f.attrs["frozen"] = self.frozen
            f.attrs["policy"] = json.dumps(self.policy.to_dict(), default=float)
            f.attrs["extra"] = json.dumps(extra or {}, default=float)
            for k, c in enumerate(self.chains):
                g = f.create_group(f"chains/{k}")
                g.attrs["energy"] = c.energy
                g.attrs["cap"] = c.cap
                for name in _Chain.ARRAYS:
                    g.create_dataset(name, data=getattr(c, name))
            if samples:
                f.create_dataset("samples/sweeps", data=np.array([s for s, _ in samples]))
                f.create_dataset("samples/energies", data=np.stack([e for _, e in samples]))
            if frames:
                f.create_dataset("frames/sweeps", data=np.array([s for s, _, _ in frames]))
                f.create_dataset("frames/positions", data=np.stack([p for _, p, _ in frames]), compression="gzip")
                f.create_dataset("frames/species", data=np.stack([s for _, _, s in frames]), compression="gzip")

    def load_checkpoint(self, path: str | os.PathLike[str]) -> tuple[list[tuple[int, np.ndarray]],
                                                                     list[tuple[int, np.ndarray, np.ndarray]],
                                                                     dict[str, Any]]:
        with open_checkpoint(path, self._signature()) as f:
            self.rng.bit_generator.state = json.loads(str(f.attrs["rng"]))
            self.sweeps = int(f.attrs["sweeps"])
            self.frozen = bool(f.attrs["frozen"])
            self.policy = Policy.from_dict(json.loads(str(f.attrs["policy"])))
            extra = json.loads(str(f.attrs["extra"]))
            for k, c in enumerate(self.chains):
                g = f[f"chains/{k}"]
                c.energy = float(g.attrs["energy"])
                c.energy_scale = abs(c.energy)
                c.cap = int(g.attrs["cap"])
                for name in _Chain.ARRAYS:
                    setattr(c, name, np.ascontiguousarray(g[name][()]))
            samples = []
            if "samples" in f:
                samples = list(zip((int(s) for s in f["samples/sweeps"][()]), f["samples/energies"][()], strict=True))
            frames = []
            if "frames" in f:
                frames = list(zip((int(s) for s in f["frames/sweeps"][()]), f["frames/positions"][()],
                                  f["frames/species"][()], strict=True))
        return samples, frames, extra

    def run(self, n_sweeps: int, sample_every: int = 10, frame_sweeps: list[int] | np.ndarray | None = None,
            progress: bool = False, checkpoint: str | os.PathLike[str] | None = None,
            checkpoint_every: int = 1000) -> PGMCResult:
        """Production run with the frozen policy (freezes it if needed).

        Energies of every chain are sampled every ``sample_every`` sweeps; frames (unwrapped positions and
        species of every chain) at ``frame_sweeps`` (relative to the start of this run). With
        ``checkpoint``, the state is saved every ``checkpoint_every`` sweeps and a present checkpoint is
        resumed: the resumed run ends in exactly the state of an uninterrupted one.
        """
        from glassgen.dynamics.schedule import check_resumed_schedule, run_events

        self.freeze()
        sample_every = max(1, int(sample_every))
        wanted = set() if frame_sweeps is None else {int(s) for s in frame_sweeps if 0 <= int(s) <= n_sweeps}
        samples: list[tuple[int, np.ndarray]] = []
        frames: list[tuple[int, np.ndarray, np.ndarray]] = []
        last_done = -1
        base = self.sweeps
        extra = {"cpu_s": 0.0, "base": base}
        if checkpoint is not None and Path(checkpoint).is_file():
            samples, frames, extra = self.load_checkpoint(checkpoint)
            base = int(extra["base"])
            last_done = self.sweeps - base
            check_resumed_schedule(checkpoint, last_done, [f[0] for f in frames], wanted, len(samples), sample_every,
                                   n_sweeps)

        def advance_to(current: int, target: int) -> None:
            t0 = time.process_time()
            self.sweep(target - current)
            extra["cpu_s"] += time.process_time() - t0

        def on_event(ev: int) -> None:
            if ev % sample_every == 0 or ev == n_sweeps:
                samples.append((ev, self.energies))
            if ev in wanted:
                frames.append((ev, np.stack([c.unwrapped for c in self.chains]),
                               np.stack([c.species for c in self.chains])))

        save = None if checkpoint is None else (lambda: self.save_checkpoint(checkpoint, samples, frames, extra))
        events = sorted(set(range(0, n_sweeps + 1, sample_every)) | wanted | {n_sweeps})
        run_events(n_sweeps, events, last_done, advance_to, on_event, save, checkpoint_every, progress, "PGMC")
        fr = np.stack([p for _, p, _ in frames]) if frames else None
        fs = np.stack([s for _, _, s in frames]) if frames else None
        info = {"sweeps": self.sweeps - base, "cpu_s": extra["cpu_s"], "n_chains": self.n_chains,
                "sigma": self.policy.sigma.tolist(), "mean_squared_jump": self.mean_squared_jump(),
                "feature_updates": self.feature_updates}
        return PGMCResult(sample_sweeps=np.array([s for s, _ in samples], dtype=np.int64),
                          energies=np.stack([e for _, e in samples]) if samples else np.zeros((0, self.n_chains)),
                          frame_sweeps=np.array([s for s, _, _ in frames], dtype=np.int64), frames=fr,
                          frame_species=fs, final_positions=np.stack([c.pos for c in self.chains]),
                          final_species=np.stack([c.species for c in self.chains]), acceptance=self.acceptance,
                          info=info)
