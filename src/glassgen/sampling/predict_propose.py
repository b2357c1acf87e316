r"""Predict, then propose: particle selection biased by a structural score, exact Metropolis-Hastings.

Roadmap issue 8 (REFERENCE.md section 5: "replacing e_i by a predicted propensity is the 'predict, then
propose' template"). A scorer gives every particle a log-weight s_k(x); the particle (or the centre of a
region) to move is drawn with

    P(i | x) = exp(s_i(x)) / sum_k exp(s_k(x))          (over all N particles),

and after the proposal x -> x' the SAME rule is evaluated in the new state, so that

    log alpha = -beta dU + log P(i | x') - log P(i | x) + log q(x' -> x) - log q(x -> x').

(For swaps the selection runs within each species: :func:`glassgen.sampling.moves.predictor_swaps` for any
scorer, and the ``biased`` swaps of the PGMC kernel for the built-in feature scorer.)

Scorers (anything with ``scores(positions, species, box) -> (N,)``, :class:`SelectionScorer`):

- :class:`FeatureScorer`: s_k = theta[species_k] . (e_k, c_k), with e_k = sum_j u(r_kj) the pair energy
  of k and c_k a smooth coordination number (the PGMC selection features). Pair-additive, hence LOCAL:
  after moving particle i only i and the particles within the interaction range of its old or new position
  change score. :class:`PredictProposePGMC` runs these moves in Numba
  (:func:`glassgen._kernels.pgmc.biased_displacements`) with local updates; ``selection_report`` gives the
  mean number of rescored particles per move.
- :class:`CoarseEnergyScorer`: the exponentially coarse-grained per-particle energy (GlassMLP EPOT
  channel, :func:`glassgen.observables.fields.coarse_grain`) times a scale; not local (every particle's
  value depends on all energies within ~6 L): recomputed for all N particles twice per move.
- :class:`PredictorScorer`: adapter for a trained :mod:`glassgen.predictors` model (object or file,
  imported lazily); recomputed for all N particles twice per move (no locality contract).

Generic (non-local) scorers run through :func:`scorer_displacements` (Python, full recomputation), meant to
be interleaved with the Numba sweeps. Units: lengths sigma_AA, energies epsilon, beta = 1/T.
"""

from __future__ import annotations

import math
import os
from typing import Any

import numpy as np

from glassgen._kernels.neighbors import image_shifts, mc_image_shifts
from glassgen._kernels.pgmc import KIND_SWAP, MH_EXACT, N_SEL, biased_displacements, selection_features
from glassgen.errors import InputError, PhysicsError
from glassgen.sampling.moves import SelectionScorer, predictor_swaps
from glassgen.sampling.pgmc import PGMC, PGMCTarget, _Chain
from glassgen.sampling.policies import Policy

__all__ = ["SelectionScorer", "FeatureScorer", "CoarseEnergyScorer", "PredictorScorer", "PredictProposePGMC",
           "scorer_displacements", "predictor_swaps", "log_selection", "features_of"]

_FEATURE_REFRESH = 100


def log_selection(s: np.ndarray, k: int) -> float:
    """log P(k) = s_k - log sum_j exp(s_j) for (N,) log-weights s."""
    mx = float(np.max(s))
    return float(s[k] - mx - math.log(float(np.exp(s - mx).sum())))


def features_of(target: PGMCTarget, pos: np.ndarray, species: np.ndarray) -> np.ndarray:
    """(N, 2) selection features (pair energy e_k = sum_j u(r_kj), coordination c_k) from scratch, image mode."""
    pos = np.ascontiguousarray(np.asarray(pos, dtype=np.float64) % target.box)
    sp = np.ascontiguousarray(species, dtype=np.int32)
    n, d = pos.shape
    m = int(math.ceil(target.rc_max / float(target.box.min())))
    feat = np.zeros((n, N_SEL))
    selection_features(pos, sp, target.box, target.nsp, tuple(np.ascontiguousarray(a) for a in target.pp),
                       np.ones((target.nsp, target.nsp), dtype=np.bool_), False,
                       np.ones(d, dtype=np.int64), np.zeros((1, 1), dtype=np.int64), np.zeros(1, dtype=np.int64),
                       image_shifts(target.box, m), feat)
    return feat


class FeatureScorer:
    """s_k = theta[species_k, 0] e_k + theta[species_k, 1] c_k (pair energy, coordination): a LOCAL scorer.

    Args:
        target: the system (pair model, box) whose features are scored.
        theta: (nsp, 2) coefficients, or (2,) shared by every species, or a scalar (energy only).
            theta_energy > 0 favours high-energy (loosely bound, more mobile) particles.
    """

    local = True

    def __init__(self, target: PGMCTarget, theta: float | np.ndarray) -> None:
        th = np.asarray(theta, dtype=np.float64)
        if th.ndim == 0:
            th = np.array([float(th), 0.0])
        self.theta = np.ascontiguousarray(np.broadcast_to(th, (target.nsp, N_SEL)).copy())
        if not np.all(np.isfinite(self.theta)):
            raise InputError("selection theta must be finite")
        self.target = target

    def scores(self, positions: np.ndarray, species: np.ndarray, box: np.ndarray) -> np.ndarray:
        f = features_of(self.target, positions, species)
        return np.einsum("ka,ka->k", self.theta[np.asarray(species)], f)


class CoarseEnergyScorer:
    """s_k = scale * EPOT_k^L: per-particle energy E_j = e_j / 2 coarse-grained with w = exp(-r/L).

    Not local: every call recomputes all N values (energies in Numba, coarse-graining with a k-d tree).
    """

    local = False

    def __init__(self, target: PGMCTarget, L: float = 1.0, scale: float = 1.0) -> None:
        if L < 0 or not math.isfinite(scale):
            raise InputError("coarse-graining length must be >= 0 and scale finite")
        self.target, self.L, self.scale = target, float(L), float(scale)

    def scores(self, positions: np.ndarray, species: np.ndarray, box: np.ndarray) -> np.ndarray:
        from glassgen.observables.fields import coarse_grain

        e = 0.5 * features_of(self.target, positions, species)[:, 0]
        return self.scale * coarse_grain(e, np.asarray(positions) % box, box, self.L)


class PredictorScorer:
    """Adapter: a trained predictor (object with ``score(positions, species, box) -> (N,)`` or a saved file,
    loaded with :func:`glassgen.predictors.base.load_predictor`) as a selection scorer.

    s_k = scale * (p_k - mean(p)) / std(p), standardised per configuration so that ``scale`` is the log-odds
    range (a deterministic function of the configuration: exactness is kept). Recomputed for all N
    particles twice per move.
    """

    local = False

    def __init__(self, predictor: Any, scale: float = 1.0) -> None:
        if isinstance(predictor, (str, os.PathLike)):
            try:
                from glassgen.predictors.base import load_predictor
            except ImportError as exc:  # the predictors package is optional here
                raise InputError(f"cannot load predictor {predictor}: {exc}") from exc
            predictor = load_predictor(predictor)
        if not callable(getattr(predictor, "score", None)):
            raise InputError("a predictor must have score(positions, species, box) -> (N,)")
        self.predictor, self.scale = predictor, float(scale)

    def scores(self, positions: np.ndarray, species: np.ndarray, box: np.ndarray) -> np.ndarray:
        p = np.asarray(self.predictor.score(positions, species, box), dtype=np.float64)
        sd = float(p.std())
        return self.scale * (p - p.mean()) / (sd if sd > 0 else 1.0)


def _chain_shifts(target: PGMCTarget) -> np.ndarray:
    return mc_image_shifts(target.box, target.rc_max)


def scorer_displacements(sampler: PGMC, scorer: SelectionScorer, n_moves: int, sigma: float | np.ndarray,
                         reverse_in_new_state: bool = True) -> dict[str, float]:
    """``n_moves`` Gaussian displacement trials per chain with selection by ANY scorer (Python, exact).

    The scorer runs on the full configuration before and after every trial (2 N particle scores per
    trial). ``reverse_in_new_state=False`` is a negative control (tests only): the reverse selection
    uses the old scores, i.e. the selection ratio is dropped.

    Returns:
        {"tried", "accepted", "rescored_per_move"} over all chains.
    """
    from glassgen._kernels.pgmc import _energy

    t = sampler.target
    sig = np.broadcast_to(np.asarray(sigma, dtype=np.float64), (t.nsp,))
    pp = sampler._pp()
    tried = accepted = 0
    for c in sampler.chains:
        for _ in range(int(n_moves)):
            s_old = np.asarray(scorer.scores(c.pos, c.species, t.box), dtype=np.float64)
            if s_old.shape != (c.n,) or not np.all(np.isfinite(s_old)):
                raise InputError("a selection scorer must return N finite log-weights")
            p = np.exp(s_old - s_old.max())
            i = int(sampler.rng.choice(c.n, p=p / p.sum()))
            si = int(c.species[i])
            delta = sig[si] * sampler.rng.standard_normal(t.dim)
            xnew = (c.pos[i] + delta) % t.box
            args = (c.pos, c.species, t.box, t.nsp, pp, c.use_cells, c.ncell, c.cells, c.cell_count, c.shifts,
                    t.ext_k, t.ext_c)
            de = float(_energy(i, xnew, si, *args) - _energy(i, c.pos[i], si, *args))
            lp_f = log_selection(s_old, i)
            old = c.pos[i].copy()
            c.pos[i] = xnew
            lp_r = log_selection(np.asarray(scorer.scores(c.pos, c.species, t.box), dtype=np.float64), i) \
                if reverse_in_new_state else lp_f
            tried += 1
            if math.log(sampler.rng.random()) < -t.beta * de + lp_r - lp_f:
                if c.use_cells:
                    c.rebuild_cells()
                c.unwrapped[i] += delta
                c.energy += de
                sampler._refresh_features(c)
                accepted += 1
            else:
                c.pos[i] = old
    return {"tried": float(tried), "accepted": float(accepted), "rescored_per_move": float(2 * sampler.n)}


class PredictProposePGMC(PGMC):
    """PGMC whose displacements select the particle with a :class:`FeatureScorer` (local score updates).

    Every sweep of N trials per chain is drawn from the policy's own move mixture (Gaussian / local / swap;
    swaps biased if the policy is), as in PGMC, and then a ``select_fraction`` of its *displacement* trials
    are replaced by biased Gaussian displacements (:func:`~glassgen._kernels.pgmc.biased_displacements`,
    widths from the policy), run first; swaps keep the policy's share, so PGMC and this sampler make the
    same number of swap trials. Both are exact MH kernels for the same target, and their numbers per sweep do
    not depend on the state, so the composition is exact. The selection features are kept
    current through every move kind and recomputed from scratch every 100 sweeps (round-off).

    Args:
        target, policy, starts, seed: as :class:`~glassgen.sampling.pgmc.PGMC`.
        theta_select: (nsp, 2) / (2,) / scalar selection coefficients (see :class:`FeatureScorer`);
            0 gives uniform selection (the control).
        select_fraction: fraction of the policy's displacement trials made selection-biased (1: all).
        mh_mode: MH_EXACT, or MH_STALE_REVERSE for the negative control (selection only in the old state).
    """

    def __init__(self, target: PGMCTarget, policy: Policy, starts: list[Any], seed: int = 0,
                 theta_select: float | np.ndarray = 0.0, select_fraction: float = 1.0,
                 mh_mode: int = MH_EXACT) -> None:
        # the biased displacements select from the features, so every move keeps them current
        super().__init__(target, policy, starts, seed, feature_updates="incremental")
        if not 0.0 <= select_fraction <= 1.0:
            raise InputError("select_fraction must be in [0, 1]")
        self.scorer = FeatureScorer(target, theta_select)
        self.select_fraction = float(select_fraction)
        self.sel_mode = int(mh_mode)
        self.sel_stats = np.zeros(4)

    @property
    def theta_select(self) -> np.ndarray:
        return self.scorer.theta

    def _call_tracked(self, c: _Chain, draws: tuple[np.ndarray, ...]) -> None:
        from glassgen._kernels.pgmc import pgmc_moves

        t, pol = self.target, self.policy
        kind, idx, xi, usel, logu = draws
        rec = self._empty_rec()
        start = 0
        while True:
            de, start = pgmc_moves(c.pos, c.species, t.box, t.nsp, self._pp(), self._need(), t.beta, t.ext_k,
                                   t.ext_c,
                                   c.use_cells, c.ncell, c.cells, c.cell_count, c.cell_of, c.slot, c.shifts,
                                   c.members, c.member_pos, c.n_members, c.feat, 1, c.unwrapped,
                                   pol.log_sigma, pol.ls0, pol.W1, pol.b1, pol.W2, pol.b2, pol.pairs[:, 0].copy(),
                                   pol.pairs[:, 1].copy(), pol.selection_weights(), pol.biased, self.selection_tree,
                                   kind, idx, xi,
                                   usel, logu, start, True, MH_EXACT, c.stats, *rec)
            c.energy += de
            if start >= kind.shape[0]:
                break
            c.cap *= 2
            c.rebuild_cells()

    def _call_biased(self, c: _Chain, m: int) -> None:
        t, rng = self.target, self.rng
        xi = rng.standard_normal((m, t.dim))
        usel = rng.random(m)
        logu = np.log(rng.random(m))
        start = 0
        while True:
            de, start = biased_displacements(c.pos, c.species, t.box, t.nsp, self._pp(), self._need(), t.beta,
                                             t.ext_k, t.ext_c,
                                             c.use_cells, c.ncell, c.cells, c.cell_count, c.cell_of, c.slot,
                                             c.shifts, c.feat, c.unwrapped, self.policy.log_sigma,
                                             self.scorer.theta, xi, usel, logu, start, self.sel_mode,
                                             self.sel_stats)
            c.energy += de
            if start >= m:
                break
            c.cap *= 2
            c.rebuild_cells()

    def sweep(self, n_sweeps: int = 1, mh_mode: int = MH_EXACT) -> None:
        """Advance every chain by ``n_sweeps`` sweeps (N trials each: biased displacements, then the policy's
        remaining moves)."""
        for _ in range(int(n_sweeps)):
            for c in self.chains:
                draws = self._draw(self.n)
                disp = np.flatnonzero(draws[0] != KIND_SWAP)
                nb = int(round(self.select_fraction * disp.size))
                keep = np.ones(self.n, dtype=bool)
                keep[disp[:nb]] = False
                if nb:
                    self._call_biased(c, nb)
                if keep.any():
                    self._call_tracked(c, tuple(np.ascontiguousarray(a[keep]) for a in draws))
                if not math.isfinite(c.energy):
                    raise PhysicsError("non-finite energy in predict-then-propose PGMC")
            self.sweeps += 1
            if self.sweeps % _FEATURE_REFRESH == 0:
                for c in self.chains:
                    self._refresh_features(c)

    def selection_report(self) -> dict[str, float]:
        """Biased-selection statistics: trials, acceptance, mean rescored particles per trial (vs N)."""
        tried, acc, r2, rescored = self.sel_stats
        return {"tried": float(tried), "acceptance": float(acc / tried) if tried else math.nan,
                "mean_squared_jump": float(r2 / tried) if tried else math.nan,
                "rescored_per_move": float(rescored / tried) if tried else math.nan, "N": float(self.n),
                "recomputed": "i from scratch + neighbours of its old/new position by differences"}

    def drift(self) -> float:
        """Largest |feature - feature from scratch| over chains (bookkeeping check of the local updates), over
        the features each particle keeps (single-flip energies only for its species' swap partners)."""
        out = 0.0
        need = self._need()
        for c in self.chains:
            f = c.feat.copy()
            self._refresh_features(c)
            kept = np.concatenate([np.ones((c.n, N_SEL), bool), need[c.species][:, :f.shape[1] - N_SEL]], axis=1)
            out = max(out, float(np.abs(f - c.feat)[kept].max()))
        return out

