"""Independence Metropolis–Hastings over a stream of importance-weighted proposals.

Proposals x_1, x_2, ... are drawn independently from a proposal law q and carry log-weights
log w_j = log p(x_j) - log q(x_j) + c (any constant c). A chain in state x moves to the next proposal x'
with probability min(1, w' / w), i.e. if log u < log w' - log w: the independence sampler of Tierney (1994),
whose stationary law is p for every q that covers p. The weights need only be exact in the
importance-sampling sense, so the same chain serves

* a flow, log w = -U(x)/T - log q(x) (Gabrié, Rotskoff, Vanden-Eijnden, PNAS 119, e2109420119 (2022));
* annealed pool configurations with their AIS weights (:func:`glassgen.sampling.annealed.anneal`). These
  weights are exact importance weights on the space of whole annealing paths (Neal, Stat. Comput. 11,
  125 (2001)), so the chain is an exact Markov chain on paths whose end points have law p ("annealed
  flow-MCMC": a stochastic normalizing flow with identity deterministic layers, Wu, Koehler, Noe NeurIPS
  2020, as the proposal).

This module only decides acceptances: it works on indices into an array of already generated
proposals, so any proposal mechanism plugs in. Proposal j goes to chain j mod n_chains as that chain's
iteration j // n_chains; each chain starts from its first proposal (a draw from q, not from p: discard a
burn-in). Log-space throughout, float64; NaN weights count as -inf (never accepted).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from glassgen.errors import InputError
from glassgen.observables.overlap import overlap_correlation
from glassgen.observables.thermo import mean_and_error_of_chains
from glassgen.sampling.flow_mcmc import pooled_autocorrelation_time

__all__ = ["IndependenceChains", "independence_chains", "ChainSummary", "summarize_chains"]


@dataclass(frozen=True)
class IndependenceChains:
    """States of the chains of :func:`independence_chains`.

    Attributes:
        index: (n_iterations, n_chains) int64 index (into the proposals) of each chain's state after each
            iteration; row 0 holds the chains' starting proposals.
        accepted: (n_iterations, n_chains) bool, whether the iteration's proposal was accepted (row 0 True).
        acceptance: fraction of accepted proposals over iterations 1 ... n_iterations - 1 of all chains.
        acceptance_per_chain: (n_chains,) the same per chain.
    """

    index: np.ndarray
    accepted: np.ndarray
    acceptance: float
    acceptance_per_chain: np.ndarray


def independence_chains(log_w: np.ndarray, n_chains: int, seed: int = 0) -> IndependenceChains:
    """Run ``n_chains`` independence Metropolis–Hastings chains over importance-weighted proposals.

    Args:
        log_w: (M,) float64 log importance weights of M independent proposals, in the order they were
            drawn (up to a common constant); -inf or NaN for proposals of zero target density.
        n_chains: number of chains (1 <= n_chains <= M // 2); M // n_chains iterations each, any
            remainder of proposals is unused.
        seed: seed of the uniform numbers of the accept tests.

    Returns:
        :class:`IndependenceChains`.
    """
    lw = np.asarray(log_w, dtype=np.float64)
    if lw.ndim != 1:
        raise InputError(f"log_w must have shape (M,), got {lw.shape}")
    n_chains = int(n_chains)
    if n_chains < 1 or lw.size < 2 * n_chains:
        raise InputError(f"need n_chains >= 1 and at least 2 proposals per chain, got {lw.size} proposals "
                         f"for {n_chains} chains")
    lw = np.where(np.isnan(lw), -np.inf, lw)
    n_it = lw.size // n_chains
    props = np.arange(n_it * n_chains).reshape(n_it, n_chains)  # proposal of chain c at iteration t
    log_u = np.log(np.random.default_rng(seed).random((n_it, n_chains)))
    index = np.empty((n_it, n_chains), dtype=np.int64)
    accepted = np.zeros((n_it, n_chains), dtype=bool)
    cur = props[0].copy()
    index[0], accepted[0] = cur, True
    for t in range(1, n_it):
        new = props[t]
        with np.errstate(invalid="ignore"):
            log_acc = lw[new] - lw[cur]  # from a zero-weight state: +inf (any finite proposal) or NaN (stay)
        acc = log_u[t] < log_acc  # NaN compares False
        cur = np.where(acc, new, cur)
        index[t], accepted[t] = cur, acc
    per_chain = accepted[1:].mean(axis=0) if n_it > 1 else np.full(n_chains, np.nan)
    return IndependenceChains(index=index, accepted=accepted, acceptance=float(accepted[1:].mean()),
                              acceptance_per_chain=per_chain.astype(np.float64))


@dataclass(frozen=True)
class ChainSummary:
    """Statistics of independence chains over configurations (after burn-in).

    Attributes:
        acceptance: fraction of accepted proposals (all iterations after the first).
        tau_u: pooled integrated autocorrelation time of U, in iterations (one proposal per chain each).
        tau_q: integrated time of the self-overlap decay, in iterations (nan with fewer than 3 kept iterations).
        u_per_n: chain mean of U/N (epsilon).
        u_per_n_err: its chain-aware error (:func:`glassgen.observables.thermo.mean_and_error_of_chains`).
        u_per_n_chain: (kept iterations, n_chains) U/N of each chain's state.
        positions: (kept iterations, n_chains, N, d) each chain's state.
        burn_in: iterations discarded at the start.
    """

    acceptance: float
    tau_u: float
    tau_q: float
    u_per_n: float
    u_per_n_err: float
    u_per_n_chain: np.ndarray
    positions: np.ndarray
    burn_in: int


def summarize_chains(chains: IndependenceChains, energies: np.ndarray, positions: np.ndarray, box: np.ndarray,
                     burn_fraction: float = 0.2) -> ChainSummary:
    """U/N, acceptance and the integrated times of U and of the self-overlap of independence chains.

    Args:
        chains: result of :func:`independence_chains` over these proposals.
        energies: (M,) float64 total potential energies of the proposals (epsilon).
        positions: (M, N, d) float64 proposal configurations.
        box: (d,) box lengths.
        burn_fraction: fraction of the iterations discarded at the start (the chains start from q, not p).

    Returns:
        :class:`ChainSummary`.
    """
    n = positions.shape[1]
    burn = int(chains.index.shape[0] * burn_fraction)
    kept = chains.index[burn:]
    if kept.shape[0] < 2:
        raise InputError(f"too few iterations after burn-in: {kept.shape[0]}")
    u = np.asarray(energies, dtype=np.float64)[kept] / n
    states = np.asarray(positions, dtype=np.float64)[kept]
    mean, err = mean_and_error_of_chains(u.T.ravel(), u.shape[1])
    tau_q = overlap_correlation(states, box).tau if u.shape[0] >= 3 else float("nan")
    return ChainSummary(acceptance=chains.acceptance, tau_u=pooled_autocorrelation_time(u), tau_q=float(tau_q),
                        u_per_n=mean, u_per_n_err=err, u_per_n_chain=u, positions=states, burn_in=burn)
