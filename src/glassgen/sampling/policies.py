"""PGMC policies: parameters of the proposal distributions, their log-densities and score functions.

A :class:`Policy` is plain data (numpy arrays) that the Numba kernel :func:`glassgen._kernels.pgmc.pgmc_moves`
reads, plus a mixture of move kinds chosen with fixed, state-independent probabilities ``move_probs`` =
(Gaussian displacement, local displacement, species swap):

- ``gauss``: delta ~ N(0, sigma_s^2 I_d), log sigma_s = ``log_sigma[s]`` (one learned width per species);
- ``local``: delta ~ N(mu(env), sigma(env)^2 I_d) with (log sigma - ls0[s], c) = W2 tanh(W1 G + b1) + b2 and
  mu = c b / sqrt(1 + |b|^2), G (5,) radial descriptors and b (d,) a direction vector of the particle's
  environment (:func:`glassgen._kernels.pgmc.local_descriptors`); the reverse density uses the descriptors
  after the move. Parameters: ``ls0`` (nsp,), ``W1`` (H, 5), ``b1`` (H,), ``W2`` (2, H), ``b2`` (2,). An
  anisotropic network has a third output a (``W2`` (3, H), ``b2`` (3,)): the width along u = b / |b| is
  sigma exp(a), across it sigma;
- ``swap``: exchange the species of i in a and j in b, (a, b) = ``pairs[p]`` with probabilities
  ``pair_probs``; i chosen uniformly, or (``biased``) proportional to
  exp(theta_a . f_i + phi[p, 0] (e_i^b - e_i^a)) within its species (j likewise with theta_b and phi[p, 1]
  (e_j^a - e_j^b)), f_i = (energy of i, smooth coordination number of i) and e_i^b - e_i^a the energy
  change of flipping i alone to species b; all evaluated in the old and in the new state. phi = -beta / 2
  weights each candidate by exp(-beta dE / 2), the square root of the Boltzmann factor of flipping it alone
  (locally balanced selection; phi = -beta would be the heat bath): swaps whose energy change is small are
  proposed far more often than uniform choice would, and MH keeps the chain exact.

Blocks of learnable parameters: ``"gauss"`` (log_sigma), ``"local"`` (ls0, W1, b1, W2, b2), ``"swap"``
(theta, then phi). :func:`score_gauss`, :func:`score_local` and the kernel's selection records give grad log q of
each block (the estimator is in :mod:`glassgen.sampling.pgmc`). Policies are saved to one JSON file.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from glassgen._kernels.pgmc import N_RADIAL, N_SEL
from glassgen.errors import InputError
from glassgen.provenance import atomic_path, provenance

__all__ = ["Policy", "BLOCKS", "score_gauss", "local_log_q_and_score", "FORMAT", "default_local_fraction"]

BLOCKS = ("gauss", "local", "swap")
FORMAT = "glassgen-pgmc-policy-1"



def default_local_fraction(dim: int, n: int) -> float:
    """Fraction of environment-aware displacements that measured fastest (``benchmarks/pgmc.py`` seed
    studies, docs/pgmc.md): 1.0 in 3D (KA 3D N = 600, T = 0.6, 8 paired seeds: tau_alpha 1.66x shorter than
    with 0.3, the fraction used before 2026-12-05); in 2D 0.8 for at most 100 particles (KA2D N = 43,
    T = 0.3: 0.8 beats 0.3 and 0.6; the rest are swaps), else 0.3 (KA2D N = 1290, T = 0.3: 0.3 beats 0.8)."""
    if dim == 3:
        return 1.0
    return 0.8 if dim == 2 and n <= 100 else 0.3


@dataclass
class Policy:
    """Parameters of a PGMC proposal mixture (mutable during learning, then frozen by the sampler).

    Attributes:
        nsp: number of species; dim: spatial dimension (1, 2 or 3).
        move_probs: (3,) probabilities of (gauss, local, swap) trials (state independent).
        log_sigma: (nsp,) log widths of the Gaussian displacement (sigma_AA units).
        ls0, W1, b1, W2, b2: local-policy network (see the module docstring); W2 (2, H) and b2 (2,), or (3, H)
            and (3,) for the anisotropic policy.
        pairs: (P, 2) int species pairs that may be swapped; pair_probs: (P,) their probabilities.
        theta: (nsp, 2) selection parameters (energy, coordination) of biased swaps.
        biased: biased (True) or uniform (False) swap selection.
        phi: (P, 2) coefficients of the single-flip energy change in the selection of side 0 / side 1 of
            pair p (1 / epsilon; default 0).
        trainable: names of the blocks that learning updates.
        meta: free-form metadata (model, T, training history summary, provenance).
    """

    nsp: int
    dim: int
    move_probs: np.ndarray
    log_sigma: np.ndarray
    ls0: np.ndarray
    W1: np.ndarray
    b1: np.ndarray
    W2: np.ndarray
    b2: np.ndarray
    pairs: np.ndarray
    pair_probs: np.ndarray
    theta: np.ndarray
    biased: bool = False
    trainable: tuple[str, ...] = ("gauss", "local", "swap")
    meta: dict[str, Any] = field(default_factory=dict)
    phi: np.ndarray | None = None

    def __post_init__(self) -> None:
        f = np.float64
        self.move_probs = np.asarray(self.move_probs, dtype=f)
        self.log_sigma = np.ascontiguousarray(self.log_sigma, dtype=f)
        self.ls0 = np.ascontiguousarray(self.ls0, dtype=f)
        self.W1 = np.ascontiguousarray(self.W1, dtype=f)
        self.b1 = np.ascontiguousarray(self.b1, dtype=f)
        self.W2 = np.ascontiguousarray(self.W2, dtype=f)
        self.b2 = np.ascontiguousarray(self.b2, dtype=f)
        self.pairs = np.ascontiguousarray(np.asarray(self.pairs, dtype=np.int64).reshape(-1, 2))
        self.pair_probs = np.asarray(self.pair_probs, dtype=f).reshape(-1)
        self.theta = np.ascontiguousarray(self.theta, dtype=f)
        phi = np.zeros((self.pairs.shape[0], 2)) if self.phi is None else np.asarray(self.phi, dtype=f)
        self.phi = np.ascontiguousarray(phi.reshape(-1, 2) if phi.size % 2 == 0 else phi, dtype=f)
        nsp, h = self.nsp, self.W1.shape[0]
        n_out = self.b2.shape[0] if self.b2.ndim == 1 and self.b2.shape[0] in (2, 3) else 2
        if self.dim not in (1, 2, 3):
            raise InputError(f"policy dimension must be 1, 2 or 3, got {self.dim}")
        if self.move_probs.shape != (3,) or np.any(self.move_probs < 0) or abs(self.move_probs.sum() - 1) > 1e-9:
            raise InputError(f"move_probs must be 3 non-negative numbers summing to 1, got {self.move_probs}")
        shapes = {"log_sigma": (self.log_sigma, (nsp,)), "ls0": (self.ls0, (nsp,)),
                  "W1": (self.W1, (h, N_RADIAL)), "b1": (self.b1, (h,)), "W2": (self.W2, (n_out, h)),
                  "b2": (self.b2, (n_out,)), "theta": (self.theta, (nsp, N_SEL)),
                  "phi": (self.phi, (self.pairs.shape[0], 2))}
        for name, (a, shp) in shapes.items():
            if a.shape != shp:
                raise InputError(f"policy parameter {name} must have shape {shp}, got {a.shape}")
            if not np.all(np.isfinite(a)):
                raise InputError(f"policy parameter {name} is not finite")
        if self.move_probs[2] > 0:
            if self.pairs.shape[0] == 0:
                raise InputError("swap moves need at least one species pair")
            if np.any(self.pairs < 0) or np.any(self.pairs >= nsp) or np.any(self.pairs[:, 0] == self.pairs[:, 1]):
                raise InputError(f"swap pairs must be pairs of different species < {nsp}, got {self.pairs.tolist()}")
        if self.pair_probs.shape != (self.pairs.shape[0],) or (
                self.pairs.shape[0] and abs(self.pair_probs.sum() - 1) > 1e-9):
            raise InputError("pair_probs must have one probability per pair, summing to 1")
        unknown = set(self.trainable) - set(BLOCKS)
        if unknown:
            raise InputError(f"unknown trainable block(s) {sorted(unknown)} (choose from {BLOCKS})")
        self.trainable = tuple(self.trainable)
        self.biased = bool(self.biased)

    # ------------------------------------------------------------------ construction
    @classmethod
    def default(cls, nsp: int, dim: int, *, sigma: float | list[float] = 0.1, local_fraction: float = 0.0,
                swap_fraction: float = 0.0, swap_pairs: list[tuple[int, int]] | None = None, biased: bool = False,
                hidden: int = 8, trainable: tuple[str, ...] = BLOCKS, seed: int = 0,
                counts: np.ndarray | None = None, phi: float = 0.0, anisotropic: bool = False) -> Policy:
        """A policy with Gaussian widths ``sigma``, a local network that starts as that same Gaussian
        (W2 = 0, tiny random W1) and uniform-looking swaps (theta = 0).

        Args:
            nsp, dim: species count and dimension.
            sigma: initial width (scalar or per species).
            local_fraction, swap_fraction: probabilities of local displacements and swaps; the rest are
                Gaussian displacements.
            swap_pairs: species pairs (default: all pairs a < b); ``counts`` (nsp,) species counts give
                pair probabilities proportional to N_a N_b (default: equal).
            biased: biased swap selection.
            phi: initial coefficient of the single-flip energy change in the selection (every pair and
                side); -1 / (2 T) is the locally balanced (square-root) choice.
            hidden: hidden units H of the local network.
            anisotropic: give the local network a third output, the log ratio of the width along the
                environment's direction b to the width across it (starts at 0: isotropic).
            seed: seed of the random initial W1.
        """
        if not (0 <= local_fraction <= 1 and 0 <= swap_fraction <= 1 and local_fraction + swap_fraction <= 1 + 1e-12):
            raise InputError("local_fraction and swap_fraction must be in [0, 1] with sum <= 1")
        ls = np.log(np.broadcast_to(np.asarray(sigma, dtype=np.float64), (nsp,)).copy())
        if not np.all(np.isfinite(ls)):
            raise InputError(f"sigma must be positive, got {sigma}")
        rng = np.random.default_rng(seed)
        pairs = np.array(swap_pairs if swap_pairs is not None else
                         [(a, b) for a in range(nsp) for b in range(a + 1, nsp)], dtype=np.int64).reshape(-1, 2)
        if counts is not None and pairs.shape[0]:
            c = np.asarray(counts, dtype=np.float64)
            w = c[pairs[:, 0]] * c[pairs[:, 1]]
            pp = w / w.sum() if w.sum() > 0 else np.full(pairs.shape[0], 1.0 / pairs.shape[0])
        else:
            pp = np.full(pairs.shape[0], 1.0 / max(1, pairs.shape[0]))
        gauss = max(0.0, 1.0 - local_fraction - swap_fraction)  # 1 - 0.8 - 0.2 is -5.6e-17 in floating point
        return cls(nsp=nsp, dim=dim, move_probs=np.array([gauss, local_fraction, swap_fraction]),
                   log_sigma=ls, ls0=ls.copy(), W1=0.01 * rng.standard_normal((hidden, N_RADIAL)), b1=np.zeros(hidden),
                   W2=np.zeros((3 if anisotropic else 2, hidden)), b2=np.zeros(3 if anisotropic else 2),
                   pairs=pairs, pair_probs=pp,
                   theta=np.zeros((nsp, N_SEL)), biased=biased, trainable=tuple(trainable),
                   phi=np.full((pairs.shape[0], 2), float(phi)))

    def copy(self) -> Policy:
        """A deep copy."""
        return Policy.from_dict(self.to_dict())

    # ------------------------------------------------------------------ parameter blocks
    def vector(self, block: str) -> np.ndarray:
        """Flat copy of the parameters of ``block``."""
        if block == "gauss":
            return self.log_sigma.copy()
        if block == "local":
            return np.concatenate([self.ls0, self.W1.ravel(), self.b1, self.W2.ravel(), self.b2])
        if block == "swap":
            return np.concatenate([self.theta.ravel(), self.phi.ravel()])
        raise InputError(f"unknown block {block!r}")

    def set_vector(self, block: str, v: np.ndarray) -> None:
        """Set the parameters of ``block`` from a flat vector (inverse of :meth:`vector`)."""
        v = np.asarray(v, dtype=np.float64)
        if v.shape != self.vector(block).shape or not np.all(np.isfinite(v)):
            raise InputError(f"bad parameter vector for block {block!r}")
        if block == "gauss":
            self.log_sigma[:] = v
        elif block == "local":
            h, nsp = self.W1.shape[0], self.nsp
            k = 0
            for arr in (self.ls0, self.W1, self.b1, self.W2, self.b2):
                arr.ravel()[:] = v[k:k + arr.size]
                k += arr.size
            assert k == nsp + h * N_RADIAL + h + self.W2.size + self.b2.size
        else:
            self.theta.ravel()[:] = v[:self.theta.size]
            self.phi.ravel()[:] = v[self.theta.size:]

    @property
    def n_features(self) -> int:
        """Width F of the selection features a chain keeps: N_SEL, or N_SEL + nsp (the single-flip
        energies) when swaps are biased."""
        return N_SEL + self.nsp if (self.biased and self.move_probs[2] > 0) else N_SEL

    def selection_weights(self) -> np.ndarray:
        """(P, 2, F) weights w of the swap selection: side s of pair p draws k with P proportional to
        exp(w[p, s] . f_k), f_k the kernel's features (energy, coordination[, e_k^0 .. e_k^{nsp-1}])."""
        nf, pairs = self.n_features, self.pairs
        w = np.zeros((pairs.shape[0], 2, nf))
        if pairs.shape[0] == 0:
            return w
        w[:, 0, :N_SEL] = self.theta[pairs[:, 0]]
        w[:, 1, :N_SEL] = self.theta[pairs[:, 1]]
        if nf > N_SEL:
            for p, (a, b) in enumerate(pairs):
                w[p, 0, N_SEL + b] += self.phi[p, 0]
                w[p, 0, N_SEL + a] -= self.phi[p, 0]
                w[p, 1, N_SEL + a] += self.phi[p, 1]
                w[p, 1, N_SEL + b] -= self.phi[p, 1]
        return w

    @property
    def sigma(self) -> np.ndarray:
        """(nsp,) widths of the Gaussian displacement."""
        return np.exp(self.log_sigma)

    # ------------------------------------------------------------------ persistence
    def to_dict(self) -> dict[str, Any]:
        """JSON-able dict (format :data:`FORMAT`)."""
        return {"format": FORMAT, "nsp": self.nsp, "dim": self.dim, "move_probs": self.move_probs.tolist(),
                "log_sigma": self.log_sigma.tolist(), "ls0": self.ls0.tolist(), "W1": self.W1.tolist(),
                "b1": self.b1.tolist(), "W2": self.W2.tolist(), "b2": self.b2.tolist(),
                "pairs": self.pairs.tolist(), "pair_probs": self.pair_probs.tolist(), "theta": self.theta.tolist(),
                "phi": self.phi.tolist(), "biased": self.biased, "trainable": list(self.trainable), "meta": self.meta}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Policy:
        if d.get("format") != FORMAT:
            raise InputError(f"not a glassgen PGMC policy (format {d.get('format')!r}, expected {FORMAT!r})")
        try:
            return cls(nsp=int(d["nsp"]), dim=int(d["dim"]), move_probs=d["move_probs"], log_sigma=d["log_sigma"],
                       ls0=d["ls0"], W1=np.array(d["W1"]).reshape(-1, N_RADIAL), b1=d["b1"],
                       W2=np.array(d["W2"]).reshape(len(d["b2"]), -1), b2=d["b2"], pairs=d["pairs"],
                       pair_probs=d["pair_probs"],
                       theta=d["theta"], biased=d["biased"], trainable=tuple(d["trainable"]),
                       meta=dict(d.get("meta", {})), phi=d.get("phi"))
        except KeyError as exc:
            raise InputError(f"malformed PGMC policy: missing entry {exc}") from None
        except (TypeError, ValueError) as exc:
            raise InputError(f"malformed PGMC policy: {exc}") from None

    def save(self, path: str | os.PathLike[str], **prov: Any) -> Path:
        """Write the policy to one JSON file, atomically, with provenance (``prov``: seed, model, T, ...)."""
        doc = self.to_dict()
        doc["provenance"] = provenance(**prov)
        with atomic_path(path) as tmp:
            tmp.write_text(json.dumps(doc, indent=1, default=float))
        return Path(path)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Policy:
        """Read a policy written by :meth:`save`."""
        from glassgen.systems.io import read_json_object

        doc = read_json_object(path, "policy")
        pol = cls.from_dict(doc)
        pol.meta.setdefault("provenance", doc.get("provenance", {}))
        return pol


def score_gauss(policy: Policy, species: np.ndarray, delta: np.ndarray) -> np.ndarray:
    """grad_{log_sigma} log q of Gaussian displacements: (M, nsp), (|delta|^2/sigma_s^2 - d) e_s.

    Args:
        species: (M,) species of the moved particles; delta: (M, d) displacements.
    """
    s = np.asarray(species, dtype=np.int64)
    d = delta.shape[1]
    g = np.zeros((s.size, policy.nsp))
    g[np.arange(s.size), s] = np.sum(delta**2, axis=1) * np.exp(-2 * policy.log_sigma[s]) - d
    return g


def local_log_q_and_score(policy: Policy, env: np.ndarray, delta: np.ndarray,
                          species: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """log q and grad log q (w.r.t. the ``local`` block) of local displacements, vectorised.

    Args:
        env: (M, 5 + d) descriptors (G, b) of the particle at the START of the displacement.
        delta: (M, d) displacement (use -delta with the post-move descriptors for the reverse density).
        species: (M,) species.

    Returns:
        (log_q (M,), score (M, P)) with P = len(policy.vector("local")); same formula as
        :func:`glassgen._kernels.pgmc.local_log_density`.
    """
    s = np.asarray(species, dtype=np.int64)
    f, b = env[:, :N_RADIAL], env[:, N_RADIAL:]
    d = b.shape[1]
    h = np.tanh(f @ policy.W1.T + policy.b1)
    o0 = h @ policy.W2[0] + policy.b2[0]
    o1 = h @ policy.W2[1] + policy.b2[1]
    aniso = policy.W2.shape[0] == 3
    o2 = h @ policy.W2[2] + policy.b2[2] if aniso else np.zeros(h.shape[0])
    ls = policy.ls0[s] + o0
    nb2 = np.sum(b * b, axis=1)
    bh = b / np.sqrt(1.0 + nb2)[:, None]
    z = delta - o1[:, None] * bh
    q = np.sum(z * z, axis=1)
    iv = np.exp(-2 * ls)
    # width sigma e^a along u = b / |b| (isotropic where b = 0): Sigma^-1 = sigma^-2 (I - gamma u u^T)
    on_axis = (o2 != 0.0) & (nb2 > 0.0)
    a = np.where(on_axis, o2, 0.0)
    gamma = -np.expm1(-2.0 * a)
    u = b / np.sqrt(np.where(nb2 > 0.0, nb2, 1.0))[:, None]
    zu = np.sum(z * u, axis=1)
    logq = -0.5 * (q - gamma * zu * zu) * iv - d * ls - a - 0.5 * d * math.log(2 * math.pi)
    g0 = (q - gamma * zu * zu) * iv - d  # d logq / d o0 (= d / d ls)
    g1 = iv * (np.sum(z * bh, axis=1) - gamma * zu * np.sum(u * bh, axis=1))  # d logq / d o1
    g2 = np.where(nb2 > 0.0, iv * np.exp(-2.0 * a) * zu * zu - 1.0, 0.0)  # d logq / d o2
    dh = g0[:, None] * policy.W2[0] + g1[:, None] * policy.W2[1]
    if aniso:
        dh = dh + g2[:, None] * policy.W2[2]
    da = dh * (1 - h * h)
    m, hdim = h.shape[0], h.shape[1]
    gls0 = np.zeros((m, policy.nsp))
    gls0[np.arange(m), s] = g0
    gW1 = (da[:, :, None] * f[:, None, :]).reshape(m, hdim * N_RADIAL)
    outs = [g0, g1, g2] if aniso else [g0, g1]
    gW2 = np.concatenate([g[:, None] * h for g in outs], axis=1)
    score = np.concatenate([gls0, gW1, da, gW2, *(g[:, None] for g in outs)], axis=1)
    return logq, score
