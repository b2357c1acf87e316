"""Torch energies of the pair-potential models, and the autograd bridge to the Numba energy.

Reduced LJ units throughout (sigma_AA, epsilon_AA, m, k_B = 1): positions in sigma_AA, energies in
epsilon_AA unless a class says it returns U / kT.

Classes
-------
- :class:`Energy`: bgflow-style base class, ``energy(x) -> (B,)`` with ``dim = N * d``.
- :class:`TorchPairEnergy`: the model's potential energy U written in torch (differentiable,
  cpu/cuda, float32/float64), exact for any box (periodic-image sums when L < 2 r_c).
- :class:`NumbaPairEnergy`: the same U computed by :class:`glassgen.dynamics.forces.ForceField`
  (Numba) through :class:`NumbaEnergyFunction`, a ``torch.autograd.Function`` whose backward is the
  Numba force (dU/dx = -F).
- :class:`BoltzmannEnergy`: ``U(x) / T``, the reduced energy a Boltzmann generator is trained on.

The pair potential (see :mod:`glassgen._kernels.pair` and :class:`glassgen.systems.model.InteractionModel`):

    u_ab(r) = 4 eps_ab [(sig_ab/r)^12 - (sig_ab/r)^6] + c0 + c1 r + c2 r^2 + c4 r^4     (r < r_c,ab)

and 0 beyond r_c,ab. With a soft core (``soft_core = f > 0``, r_s,ab = f sig_ab), below r_s the
potential continues linearly, ``u(r) = u(r_s) + u'(r_s) (r - r_s)``, so overlapping particles have a
finite energy; the Numba kernel does the same, so both engines agree to rounding.

Input shapes accepted by every energy here: ``(B, N, d)``, flattened ``(B, N*d)``, or a single
configuration ``(N, d)``. Energies are returned with shape ``(B,)`` (``()`` for a single
configuration); forces have the shape of the input.
"""

from __future__ import annotations

import abc
import math
from typing import Any

import numpy as np
import torch
from torch.autograd.function import once_differentiable

from glassgen.dynamics.forces import ForceField
from glassgen.errors import InputError, check_temperature
from glassgen.systems.model import InteractionModel, load_model

__all__ = ["Energy", "BoltzmannEnergy", "TorchPairEnergy", "NumbaEnergyFunction", "NumbaPairEnergy"]


# ----------------------------------------------------------------------------------------- helpers
def _as_batch(x: torch.Tensor, n: int, d: int) -> tuple[torch.Tensor, str]:
    """View ``x`` as (B, N, d); the returned tag says how to shape results back."""
    if x.dim() == 3 and x.shape[1:] == (n, d):
        return x, "batch"
    if x.dim() == 2 and x.shape[1] == n * d:
        return x.reshape(x.shape[0], n, d), "flat"
    if x.dim() == 2 and x.shape == (n, d):
        return x.unsqueeze(0), "single"
    raise InputError(f"positions must have shape (B, {n}, {d}), (B, {n * d}) or ({n}, {d}); "
                     f"got {tuple(x.shape)}")


def _energy_out(u: torch.Tensor, tag: str) -> torch.Tensor:
    return u[0] if tag == "single" else u


def _check_system(model: str | InteractionModel, species: Any, box: Any
                  ) -> tuple[InteractionModel, np.ndarray, np.ndarray]:
    m = load_model(model)
    if isinstance(species, torch.Tensor):
        species = species.detach().cpu().numpy()
    if isinstance(box, torch.Tensor):
        box = box.detach().cpu().numpy()
    sp = np.asarray(species)
    if sp.ndim != 1 or sp.size == 0 or not np.issubdtype(sp.dtype, np.integer):
        raise InputError(f"species must be a non-empty 1D integer array, got shape {sp.shape}, "
                         f"dtype {sp.dtype}")
    if sp.min() < 0 or sp.max() >= m.nsp:
        raise InputError(f"species indices must be in 0..{m.nsp - 1} for model {m.name!r}")
    bx = np.array(np.broadcast_to(np.asarray(box, dtype=np.float64), (m.dim,)))  # writable copy
    if not np.all(np.isfinite(bx)) or np.any(bx <= 0):
        raise InputError(f"box lengths must be positive and finite, got {bx}")
    return m, sp.astype(np.int64), bx


# -------------------------------------------------------------------------------------- base class
class Energy(torch.nn.Module, abc.ABC):
    """bgflow-style energy: a module mapping configurations to one energy per configuration.

    Subclasses implement :meth:`_energy` on ``(B, N, d)`` input and state their unit (epsilon for a
    potential energy, kT for a reduced energy). No trailing singleton dimension: ``energy`` returns
    ``(B,)``.

    Args:
        n_particles: N.
        spatial_dim: d.
    """

    def __init__(self, n_particles: int, spatial_dim: int) -> None:
        super().__init__()
        self.n_particles = int(n_particles)
        self.spatial_dim = int(spatial_dim)

    @property
    def dim(self) -> int:
        """Event dimension N * d (size of one flattened configuration)."""
        return self.n_particles * self.spatial_dim

    @property
    def event_shape(self) -> tuple[int, int]:
        """(N, d)."""
        return (self.n_particles, self.spatial_dim)

    @abc.abstractmethod
    def _energy(self, x: torch.Tensor) -> torch.Tensor:
        """Energy of ``x`` (B, N, d) -> (B,)."""

    def energy(self, x: torch.Tensor) -> torch.Tensor:
        """Energy of each configuration.

        Args:
            x: (B, N, d), (B, N*d) or (N, d) positions.

        Returns:
            (B,) energies (``()`` for a single (N, d) configuration), dtype/device of ``x``.
        """
        x3, tag = _as_batch(x, self.n_particles, self.spatial_dim)
        return _energy_out(self._energy(x3), tag)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Same as :meth:`energy`."""
        return self.energy(x)

    def forces(self, x: torch.Tensor) -> torch.Tensor:
        """Minus the gradient of :meth:`energy` with respect to ``x`` (bgflow's ``force``).

        Args:
            x: positions of any accepted shape.

        Returns:
            Tensor of the shape of ``x``: F = -dE/dx (epsilon/sigma for a potential energy, 1/sigma for
            an energy in kT). Detached from the graph.
        """
        with torch.enable_grad():
            xg = x.detach().requires_grad_(True)
            e = self.energy(xg)
            (g,) = torch.autograd.grad(e.sum(), xg)
        return -g


class BoltzmannEnergy(Energy):
    """Reduced energy ``U(x) / T`` (units of kT, k_B = 1) of a potential-energy module.

    Args:
        pair_energy: an :class:`Energy` returning U in epsilon (e.g. :class:`TorchPairEnergy`).
        temperature: T > 0 (epsilon / k_B).
    """

    def __init__(self, pair_energy: Energy, temperature: float) -> None:
        check_temperature(temperature)
        super().__init__(pair_energy.n_particles, pair_energy.spatial_dim)
        self.pair_energy = pair_energy
        self.temperature = float(temperature)

    @property
    def beta(self) -> float:
        """1 / T."""
        return 1.0 / self.temperature

    def _energy(self, x: torch.Tensor) -> torch.Tensor:
        return self.pair_energy._energy(x) / self.temperature


# ------------------------------------------------------------------------------------- torch energy
_PARAM_NAMES = ("sig2", "eps4", "rc2", "c0", "c1", "c2", "c4", "rs2", "us", "dus", "rs")


class TorchPairEnergy(Energy):
    """Total potential energy U (epsilon) of a periodic mixture, in torch.

    Every pair (i, j) and every periodic image n is summed once,

        U = 1/2 sum_i sum_j sum_n' u_ab(|x_j + n L - x_i|),

    where the prime excludes (i = i, n = 0); a particle's own images (i = j, n != 0) thus count with
    weight 1/2 each, i.e. once per +-n pair, as in the Numba half neighbour list. Displacements are
    first folded to the minimum image, then, when some L_k < 2 r_c,max, shifted by n_k L_k with
    n_k in [-m_k, m_k], m_k = ceil(r_c,max / L_k) (this covers every image within r_c). When all
    L_k >= 2 r_c,max only the minimum image is used (fast path). Positions may be unwrapped.

    Only the interacting pair-images (r < r_c,ab, excluding i = j at n = 0) are evaluated, gathered
    with a boolean mask and scattered back, so no excluded entry can put a NaN into the gradient. With
    a soft core the exact branch is evaluated at max(r, r_s) and the linear branch at
    sqrt(max(r^2, tiny)) (``torch.where`` between them), so gradients stay finite; coincident
    particles get force 0, as in the Numba kernel. Without a soft core, overlapping particles have
    the (huge or infinite) exact energy: nothing is masked.

    Memory: the displacements form a (B, N, N, S, d) block (S = number of images, 1 on the fast
    path) plus a few (B, N, N, S) temporaries, and ~15 temporaries per interacting pair-image; in
    float64 that is roughly ``8 B N^2 S (d + 4)`` bytes plus ``120 B P`` bytes for P interacting
    pair-images (P ~ N^2 S / 2 in small boxes, a few % of N^2 in large ones). Rows are processed in
    chunks of at most ``max_pairs`` pair-images, which bounds the peak without a gradient; with a
    gradient, autograd keeps every chunk's intermediates. Fine for N up to a few hundred in a batch
    (e.g. B = 256, N = 32, S = 27: ~0.6 GB with gradient), or one configuration of a few thousand.

    Args:
        model: model name or :class:`InteractionModel`.
        species: (N,) int species indices (0-based).
        box: (d,) box lengths (or a scalar for a cubic box).
        soft_core: soft-core factor f (r_s = f sig_ab), 0 for the exact potential.
        max_pairs: maximal number of pair-images B * rows * N * S evaluated per chunk.
    """

    def __init__(self, model: str | InteractionModel, species: Any, box: Any, soft_core: float = 0.0,
                 max_pairs: int = 2**21) -> None:
        m, sp, bx = _check_system(model, species, box)
        super().__init__(sp.shape[0], m.dim)
        self.model = m
        self.soft_core = float(soft_core)
        self.max_pairs = int(max_pairs)
        kp = m.kernel_params(soft_core)
        self.rc_max = kp.rc_max
        # constants of the linear continuation below r_s: u(r_s), u'(r_s), r_s (0 where off)
        rs2 = kp.rs2
        on = rs2 > 0
        r2 = np.where(on, rs2, 1.0)
        s6 = (kp.sig2 / r2) ** 3
        r = np.sqrt(r2)
        us = kp.eps4 * (s6 * s6 - s6) + kp.c0 + kp.c1 * r + kp.c2 * r2 + kp.c4 * r2 * r2
        dus = (kp.eps4 * (-12.0 * s6 * s6 + 6.0 * s6) / r + kp.c1 + 2.0 * kp.c2 * r
               + 4.0 * kp.c4 * r2 * r)
        vals = {"sig2": kp.sig2, "eps4": kp.eps4, "rc2": kp.rc2, "c0": kp.c0, "c1": kp.c1, "c2": kp.c2,
                "c4": kp.c4, "rs2": rs2, "us": np.where(on, us, 0.0), "dus": np.where(on, dus, 0.0),
                "rs": np.where(on, r, 0.0)}
        self._has_c1 = bool(np.any(kp.c1 != 0))
        self._has_soft = bool(np.any(on))
        self.register_buffer("params", torch.as_tensor(np.stack([vals[k] for k in _PARAM_NAMES])),
                             persistent=False)  # (11, nsp*nsp) float64
        self.register_buffer("species", torch.as_tensor(sp), persistent=False)  # (N,) int64
        self.register_buffer("box", torch.as_tensor(bx), persistent=False)  # (d,) float64
        self.use_images = bool(np.any(bx < 2.0 * self.rc_max))
        if self.use_images:
            mk = [int(math.ceil(self.rc_max / L)) for L in bx]
            grids = np.meshgrid(*[np.arange(-q, q + 1) for q in mk], indexing="ij")
            n_img = np.stack([g.ravel() for g in grids], axis=1).astype(np.float64)
            self.image_range = tuple(mk)
        else:
            n_img = np.zeros((1, m.dim))
            self.image_range = (0,) * m.dim
        central = int(np.flatnonzero(np.all(n_img == 0, axis=1))[0])
        self._central = central
        self.register_buffer("shifts", torch.as_tensor(n_img * bx), persistent=False)  # (S, d)

    @property
    def n_images(self) -> int:
        """Number S of periodic images summed per pair (1 on the minimum-image fast path)."""
        return int(self.shifts.shape[0])

    def extra_repr(self) -> str:
        return (f"model={self.model.name!r}, N={self.n_particles}, box={self.box.tolist()}, "
                f"soft_core={self.soft_core}, images={self.n_images}")

    # ------------------------------------------------------------------ pair terms
    def _pair_u(self, r2: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
        """Pair energies u at squared distances ``r2`` (all < r_c^2, > 0 unless coincident).

        Args:
            r2: (P,) squared distances of the interacting pair-images.
            p: (11, P) their parameters, rows in the order of ``_PARAM_NAMES``.
        """
        sig2, eps4, rc2, c0, c1, c2, c4, rs2, us, dus, rs = p
        if self._has_soft:
            soft = r2 < rs2
            r2e = torch.where(soft, rs2, r2)  # the exact branch never sees r < r_s
        else:
            r2e = r2
        s2 = sig2 / r2e
        s6 = s2 * s2 * s2
        u = eps4 * (s6 * s6 - s6) + c0 + c2 * r2e + c4 * r2e * r2e
        if self._has_c1:
            u = u + c1 * torch.sqrt(r2e)
        if self._has_soft:
            # clamp: r = 0 (coincident particles) gets zero gradient instead of 0 * inf = NaN
            r = torch.sqrt(r2.clamp_min(torch.finfo(r2.dtype).tiny))
            u = torch.where(soft, us + dus * (r - rs), u)
        return u

    def _row_energies(self, x: torch.Tensor) -> torch.Tensor:
        """(B, N) per-particle energies e_i = 1/2 sum_{j, n}' u_ij(n) for x (B, N, d)."""
        if x.shape[1:] != (self.n_particles, self.spatial_dim):
            raise InputError(f"positions must have shape (B, {self.n_particles}, {self.spatial_dim}), "
                             f"got {tuple(x.shape)}")
        dev, dt = x.device, x.dtype
        params = self.params.to(device=dev, dtype=dt)
        box = self.box.to(device=dev, dtype=dt)
        shifts = self.shifts.to(device=dev, dtype=dt)
        species = self.species.to(device=dev)
        nsp = self.model.nsp
        bsz, n, _ = x.shape
        s = shifts.shape[0]
        rows = max(1, self.max_pairs // max(1, bsz * n * s))
        cols = torch.arange(n, device=dev)
        central = torch.zeros(s, dtype=torch.bool, device=dev)
        central[self._central] = True
        out = []
        for i0 in range(0, n, rows):
            i1 = min(n, i0 + rows)
            dr = x[:, None, :, :] - x[:, i0:i1, None, :]  # (B, ci, N, d): x_j - x_i
            dr = dr - box * torch.round(dr / box)
            ab = species[i0:i1, None] * nsp + species[None, :]  # (ci, N)
            p = params[:, ab][:, None]  # (11, 1, ci, N): broadcast over the batch
            selfpair = (torch.arange(i0, i1, device=dev)[:, None] == cols[None, :])  # (ci, N)
            if self.use_images:
                dr = dr[..., None, :] + shifts  # (B, ci, N, S, d)
                p = p[..., None]
                selfpair = selfpair[..., None] & central  # (ci, N, S)
            r2 = (dr * dr).sum(-1)
            valid = (r2 < p[2]) & ~selfpair  # interacting pair-images
            # evaluate u only there (a few % of the pairs in a large box), scatter back with zeros
            uv = self._pair_u(r2[valid], p.expand(p.shape[0], *r2.shape)[:, valid])
            u = torch.zeros_like(r2).masked_scatter(valid, uv)
            if self.use_images:
                u = u.sum(-1)
            out.append(0.5 * u.sum(-1))  # (B, ci)
        return torch.cat(out, dim=1)

    def _energy(self, x: torch.Tensor) -> torch.Tensor:
        return self._row_energies(x).sum(-1)

    def per_particle(self, x: torch.Tensor) -> torch.Tensor:
        """Per-particle energies e_i = half the sum of i's pair energies (sum_i e_i = U).

        Args:
            x: (B, N, d), (B, N*d) or (N, d) positions.

        Returns:
            (B, N) energies in epsilon ((N,) for a single configuration).
        """
        x3, tag = _as_batch(x, self.n_particles, self.spatial_dim)
        e = self._row_energies(x3)
        return e[0] if tag == "single" else e


# ----------------------------------------------------------------------------- Numba autograd bridge
class NumbaEnergyFunction(torch.autograd.Function):
    """U(x) from a Numba :class:`ForceField`, with dU/dx = -F saved in the forward pass.

    ``apply(x, forcefield)`` with x (B, N, d) returns U (B,) in x's dtype/device (computed in float64
    on the CPU). Only first derivatives are available (the backward is not differentiable).
    """

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, forcefield: ForceField) -> torch.Tensor:
        pos = x.detach().to(device="cpu", dtype=torch.float64).numpy()
        bsz = pos.shape[0]
        energies = np.empty(bsz)
        grads = np.empty_like(pos)
        for b in range(bsz):
            res = forcefield.compute(pos[b])
            energies[b] = res.energy
            grads[b] = -res.forces
        ctx.save_for_backward(torch.as_tensor(grads, dtype=x.dtype, device=x.device))
        return torch.as_tensor(energies, dtype=x.dtype, device=x.device)

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad_output: torch.Tensor) -> tuple[torch.Tensor, None]:
        (grad,) = ctx.saved_tensors
        return grad_output[:, None, None] * grad, None


class NumbaPairEnergy(Energy):
    """Total potential energy U (epsilon) from the Numba engine, differentiable through torch.

    Wraps :class:`glassgen.dynamics.forces.ForceField` (``skin=0``: the neighbour list is rebuilt at
    every configuration; ``check_overlap=False``: overlaps are not raised, the energy is returned as
    computed, possibly huge or infinite without a soft core). Same model, box rules and soft core as
    :class:`TorchPairEnergy`; runs on the CPU and loops over the batch.

    Args:
        model: model name or :class:`InteractionModel`.
        species: (N,) int species indices.
        box: (d,) box lengths.
        soft_core: soft-core factor (0 = exact).
    """

    def __init__(self, model: str | InteractionModel, species: Any, box: Any,
                 soft_core: float = 0.0) -> None:
        m, sp, bx = _check_system(model, species, box)
        super().__init__(sp.shape[0], m.dim)
        self.model = m
        self.soft_core = float(soft_core)
        self.forcefield = ForceField(m, sp.astype(np.int32), bx, skin=0.0, soft_core=soft_core,
                                     check_overlap=False)

    def _energy(self, x: torch.Tensor) -> torch.Tensor:
        return NumbaEnergyFunction.apply(x, self.forcefield)
