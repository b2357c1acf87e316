"""Equivariant flow layers for particles in a periodic box (Wirnsberger et al., MLST 3, 025009 (2022)).

Flow variables are the positions of the M = N - 1 *moving* particles relative to a pinned particle
(index 0), folded into the centred box [-L/2, L/2)^d: ``r`` of shape (B, M, d), float64. Every layer
maps ``(r, context) -> (r', logdet)`` with ``logdet`` of shape (B,) in float64 and is exactly
invertible. Layers are :class:`normflows.flows.Flow` subclasses; the spline is normflows'
``rational_quadratic_spline`` primitive, called here on inputs that are folded into its interval
first, with the circular boundary condition (equal end derivatives) imposed by us. (normflows 1.7.3's
``unconstrained_rational_quadratic_spline`` silently maps inputs outside [-B, B] to themselves with
log-det 0 and its containers accumulate log-dets in float32: neither is used.)

* :class:`CircularShift`: r_a -> fold(r_a + s_a), a learned shift per axis, log-det 0.
* :class:`AxisSplineCoupling`: the coordinate along one axis ``a`` of every moving particle goes
  through its own circular rational-quadratic spline whose knots come from a permutation-equivariant
  conditioner that sees only the *other* axes of all particles (pinned one included), the species
  one-hot, a pinned-particle flag and the context (inverse temperature).
* :class:`EquivariantConditioner`: circular Fourier features -> linear embedding (+ context embedding)
  -> transformer encoder without positional encoding -> zero-initialised linear head, so every
  coupling is the identity at initialisation.

Symmetries: permuting moving particles of one species permutes the outputs (the log-det is a sum
over particles, hence invariant); a global translation of all N particles leaves the relative
coordinates, and therefore everything, unchanged.
"""

from __future__ import annotations

import math

import normflows as nf
import torch
from normflows.utils.splines import DEFAULT_MIN_DERIVATIVE, rational_quadratic_spline
from torch import nn

__all__ = ["fold", "CircularShift", "AxisSplineCoupling", "EquivariantConditioner"]


def fold(r: torch.Tensor, box: torch.Tensor) -> torch.Tensor:
    """Fold coordinates into the centred box [-L/2, L/2) (componentwise, any leading shape).

    Round-off of ``r / box + 0.5`` can leave a value one ulp outside (e.g. just below L/2 folds to
    -L/2 - 1 ulp, outside the splines' range): such values are mapped onto the interval's end points."""
    half = 0.5 * box
    out = r - box * torch.floor(r / box + 0.5)
    out = torch.where(out < -half, -half.expand_as(out), out)
    return torch.where(out >= half, -half.expand_as(out), out)


class CircularShift(nf.flows.Flow):
    """Learned circular shift of every moving particle along each axis (volume preserving).

    Args:
        box: (d,) float64 box lengths.
    """

    def __init__(self, box: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("box", box.clone())
        self.shift = nn.Parameter(torch.zeros_like(box))

    def forward(self, z: torch.Tensor, context: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        return fold(z + self.shift, self.box), z.new_zeros(z.shape[0])

    def inverse(self, z: torch.Tensor, context: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        return fold(z - self.shift, self.box), z.new_zeros(z.shape[0])


class EquivariantConditioner(nn.Module):
    """Per-particle spline parameters from the other axes of all particles (permutation equivariant).

    Args:
        box: (d,) box lengths.
        species: (N,) int species of all particles, index 0 is the pinned one.
        n_species: number of species of the model (one-hot width).
        axis: the axis the coupling transforms (excluded from the features).
        n_out: outputs per moving particle.
        n_freq: Fourier frequencies k = 1..n_freq per conditioning axis.
        width: transformer model width D.
        n_layers, n_heads, ff_width: transformer encoder size (no positional encoding, pre-norm).
        context_dim: width of the context vector (1: inverse temperature features).
    """

    def __init__(self, box: torch.Tensor, species: torch.Tensor, n_species: int, axis: int, n_out: int,
                 n_freq: int = 4, width: int = 32, n_layers: int = 2, n_heads: int = 4, ff_width: int = 64,
                 context_dim: int = 1) -> None:
        super().__init__()
        d = box.shape[0]
        self.other = [k for k in range(d) if k != axis]
        self.register_buffer("other_box", box[self.other].clone())
        self.register_buffer("freqs", torch.arange(1, n_freq + 1, dtype=box.dtype))
        onehot = torch.nn.functional.one_hot(species.long(), n_species).to(box.dtype)
        pinned = torch.zeros(species.shape[0], 1, dtype=box.dtype)
        pinned[0, 0] = 1.0
        self.register_buffer("static", torch.cat([onehot, pinned], dim=1))  # (N, nsp + 1)
        n_feat = 2 * n_freq * len(self.other) + n_species + 1
        self.embed = nn.Linear(n_feat, width)
        self.context_embed = nn.Sequential(nn.Linear(context_dim, width), nn.SiLU(), nn.Linear(width, width))
        layer = nn.TransformerEncoderLayer(width, n_heads, ff_width, dropout=0.0, batch_first=True,
                                           norm_first=True, activation="gelu")
        self.encoder = nn.TransformerEncoder(layer, n_layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(width)
        self.head = nn.Linear(width, n_out)
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)

    def forward(self, coords: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        """Args: coords (B, N, d) all particles (pinned first), context (B, c). Returns (B, N-1, n_out)."""
        other = coords[..., self.other] / self.other_box  # (B, N, d-1), in box units
        ang = 2.0 * math.pi * other[..., None] * self.freqs  # (B, N, d-1, K)
        feat = torch.cat([torch.cos(ang).flatten(2), torch.sin(ang).flatten(2),
                          self.static.expand(coords.shape[0], -1, -1)], dim=-1)
        h = self.embed(feat) + self.context_embed(context)[:, None, :]
        h = self.norm(self.encoder(h))
        return self.head(h[:, 1:, :])


class AxisSplineCoupling(nf.flows.Flow):
    """Circular rational-quadratic spline on one axis of every moving particle.

    Args:
        box: (d,) float64 box lengths.
        species: (N,) species of all particles (pinned first).
        n_species: number of species of the model.
        axis: transformed axis.
        n_bins: spline bins (K); K widths, K heights and K knot derivatives (the last equals the
            first: circular) per particle.
        **conditioner: keyword arguments of :class:`EquivariantConditioner`.
    """

    def __init__(self, box: torch.Tensor, species: torch.Tensor, n_species: int, axis: int, n_bins: int = 16,
                 **conditioner: int) -> None:
        super().__init__()
        self.axis = int(axis)
        self.n_bins = int(n_bins)
        self.register_buffer("box", box.clone())
        self.half = float(box[axis]) / 2.0
        self.conditioner = EquivariantConditioner(box, species, n_species, axis, 3 * n_bins, **conditioner)
        # softplus(offset) + min_derivative == 1: identity spline for zero conditioner output
        self.deriv_offset = math.log(math.expm1(1.0 - DEFAULT_MIN_DERIVATIVE))

    def _transform(self, z: torch.Tensor, context: torch.Tensor | None,
                   inverse: bool) -> tuple[torch.Tensor, torch.Tensor]:
        bsz, m, _ = z.shape
        if context is None:
            raise ValueError("AxisSplineCoupling needs a context tensor (B, c)")
        z = fold(z, self.box)
        coords = torch.cat([z.new_zeros(bsz, 1, z.shape[2]), z], dim=1)
        p = self.conditioner(coords, context).reshape(bsz * m, 3 * self.n_bins)
        k = self.n_bins
        w, h, dv = p[:, :k], p[:, k:2 * k], p[:, 2 * k:] + self.deriv_offset
        dv = torch.cat([dv, dv[:, :1]], dim=1)  # circular: equal slopes at both ends
        x = z[..., self.axis].reshape(bsz * m)
        y, lad = rational_quadratic_spline(x, w, h, dv, inverse=inverse, left=-self.half, right=self.half,
                                           bottom=-self.half, top=self.half)
        out = z.clone()
        out[..., self.axis] = y.reshape(bsz, m)
        return fold(out, self.box), lad.reshape(bsz, m).sum(dim=1)

    def forward(self, z: torch.Tensor, context: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        return self._transform(z, context, inverse=False)

    def inverse(self, z: torch.Tensor, context: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        return self._transform(z, context, inverse=True)
