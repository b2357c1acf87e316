"""Extension point: species swaps whose particle selection is biased by an arbitrary predictor.

"Predict, then propose" (REFERENCE.md section 5): replace the local features of the biased swap by the
output of a structural predictor (propensity, softness, GNN, ...). Any object satisfying
:class:`SelectionScorer` plugs in: ``scores(positions, species, box)`` returns (N,) float64 log-weights
s_k; particle i of species a is chosen with probability exp(s_i) / sum_{k in a} exp(s_k).

Exactness: the scorer is evaluated in the current state AND in the proposed state (species of i and j
exchanged), and the reverse selection (j from a, i from b, with the new scores) enters the acceptance:
log alpha = -beta dU + log P'_a(j) + log P'_b(i) - log P_a(i) - log P_b(j). The scorer must be a
deterministic function of (positions, species, box); it may be expensive (it runs twice per move, in
Python), so these moves are meant to be interleaved, a few per sweep, with the Numba PGMC sweeps.
"""

from __future__ import annotations

import math
from typing import Protocol, runtime_checkable

import numpy as np

from glassgen._kernels.pgmc import swap_energy_change
from glassgen.errors import InputError
from glassgen.sampling.pgmc import PGMC

__all__ = ["SelectionScorer", "predictor_swaps"]


@runtime_checkable
class SelectionScorer(Protocol):
    """Log selection weights of every particle: (N, d) positions, (N,) int species, (d,) box -> (N,) float64."""

    def scores(self, positions: np.ndarray, species: np.ndarray, box: np.ndarray) -> np.ndarray: ...


def _log_p(s: np.ndarray, members: np.ndarray, k: int) -> float:
    x = s[members]
    mx = float(x.max())
    return float(s[k] - mx - math.log(np.exp(x - mx).sum()))


def predictor_swaps(sampler: PGMC, scorer: SelectionScorer, n_moves: int, pair: tuple[int, int],
                    reverse_in_new_state: bool = True) -> tuple[int, int]:
    """Run ``n_moves`` predictor-biased swap trials of species ``pair`` = (a, b) on every chain of ``sampler``.

    Random numbers come from ``sampler.rng``. ``reverse_in_new_state=False`` (a negative control for
    tests only) evaluates the reverse selection with the old scores, which breaks detailed balance.

    Returns:
        (tried, accepted) over all chains.
    """
    a, b = int(pair[0]), int(pair[1])
    t = sampler.target
    if a == b or not (0 <= a < t.nsp and 0 <= b < t.nsp):
        raise InputError(f"bad swap pair {pair}")
    pp = sampler._pp()
    tried = accepted = 0
    for c in sampler.chains:
        for _ in range(int(n_moves)):
            ma, mb = np.flatnonzero(c.species == a), np.flatnonzero(c.species == b)
            if ma.size == 0 or mb.size == 0:
                continue
            s_old = np.asarray(scorer.scores(c.pos, c.species, t.box), dtype=np.float64)
            if s_old.shape != (c.n,) or not np.all(np.isfinite(s_old)):
                raise InputError("a selection scorer must return N finite log-weights")
            pa = np.exp(s_old[ma] - s_old[ma].max())
            pb = np.exp(s_old[mb] - s_old[mb].max())
            i = int(sampler.rng.choice(ma, p=pa / pa.sum()))
            j = int(sampler.rng.choice(mb, p=pb / pb.sum()))
            lq_f = _log_p(s_old, ma, i) + _log_p(s_old, mb, j)
            de = float(swap_energy_change(i, j, c.pos, c.species, t.box, t.nsp, pp, c.use_cells, c.ncell, c.cells,
                                          c.cell_count, c.shifts, t.ext_k, t.ext_c))
            c.species[i], c.species[j] = b, a
            s_new = np.asarray(scorer.scores(c.pos, c.species, t.box), dtype=np.float64) if reverse_in_new_state \
                else s_old
            na, nb = np.flatnonzero(c.species == a), np.flatnonzero(c.species == b)
            lq_r = _log_p(s_new, na, j) + _log_p(s_new, nb, i)
            tried += 1
            if math.log(sampler.rng.random()) < -t.beta * de + lq_r - lq_f:
                accepted += 1
                pi, pj = c.member_pos[i], c.member_pos[j]
                c.members[a, pi], c.members[b, pj] = j, i
                c.member_pos[i], c.member_pos[j] = pj, pi
                c.energy += de
                sampler._refresh_features(c)
            else:
                c.species[i], c.species[j] = a, b
    return tried, accepted
