r"""Structuro-elasto-plasticity (StEP) lattice model under athermal quasistatic shear, 2D and 3D.

Zhang, Ridout, ..., Liu, Phys. Rev. Research 4, 043026 (2022) (the "PRR" model; public code
OsCeZrCd/gridModel, branch strainConserved) and Xiao et al., PNAS (2023) for ductility. The facts used
here are collected in REFERENCE section 7; the kernels are in :mod:`glassgen._kernels.lattice`.

Construction (2D, L x L periodic lattice, lattice spacing 1; strains dimensionless; stress in units of
the shear modulus ``mu``):

- Eshelby propagator in Fourier space (q = 2 pi n / L, G(q = 0) = 0):
  xy->xy -4 qx^2 qy^2 / q^4, dev->dev -(qx^2 - qy^2)^2 / q^4, xy<->dev -2 qx qy (qx^2 - qy^2) / q^4.
  Real space by inverse FFT, then normalised as the reference code: the diagonal blocks are scaled so
  that the self term is -1 + 1/N and every site loses a further 1/N (self term -1, kernel sum -1:
  the strain released by a site is removed from the system, the macroscopic strain is conserved by the
  load); the cross terms get the factor of their source component.
- Softness S ~ N(mean, std^2) initially (PRR: N(-1.66, 2.0^2)); initial elastic strain components
  N(0, 0.01^2) (the reference's PRR version); Weibull yield strains with mean 0.087261 - 0.0049821 S and
  shape 2.0758 - 0.024151 S + 0.0029429 S^2; strain coupling dS = 101.3 d|e|^2 (every site, every frame
  and every AQS step); co-rearrangement of sites in a 21 x 21 box around the initiator with probability
  exp(-r / 1.40179); 0.1 strain released per frame.
- Softness change around an initiating site, every frame of its rearrangement (reference code
  ``dsFromRearranger``, src/gridModel.cpp of branch strainConserved): near-field mean change
  -18.3 [I_xy sin 2theta + I_dev cos 2theta] / r^2 for 0 < r < 30 (I: the frame's released strain);
  for r < 10 a restoring step eta (S_target(r) + c - S) with eta(r) = 0.1 * 0.6 r^-3.1 (eta(0) = 0.06;
  the reference uses the fixed intensity 0.1, not |I|), noise sqrt(eta (2 - eta)) * 2.0 * xi, and on
  every site a uniform shift -0.1 * sum_{r<10} 0.6 r^-3.1 * c / N that removes the expected effect of
  the shift c (an input, default 0).

  The restoring target, and what makes a hard start soften. In the reference code S_target(r) is a
  running mean per distance bin round(r) (11 bins), started at the constant meanSoftness = -1.66 (the
  PRR softness, which there is also the mean of the initial softness) and updated
  S_target <- 0.999 S_target + 0.001 S at every restoring step. Measured with this module
  (``restore_ema=0.001``, L = 32, 4 seeds, shear to 0.4): S_target relaxes to the sample's own local
  softness within ~0.05 strain and the mean softness is then conserved (up to the +-0.4 transient), so a
  hard start (mean -6) stays hard, a soft one (mean 2) stays soft and neither shows an overshoot
  (drop (peak - flow)/flow: 0.03 +- 0.02 and 0.05 +- 0.01). Nothing else in the reference changes the
  mean: the coupling is a function of |e|^2 (reversible), the near field and the noise average to zero
  and the c shift is compensated. glassgen's PRR default therefore freezes the target
  (``restore_ema = 0``) at the PRR steady-state softness ``restore_target = -1.66``: S relaxes toward
  -1.66 (+ c) wherever plastic activity is, which is what makes a low-softness (well-annealed) start
  soften under flow and the steady state forget the initial mean; a start at N(-1.66, 2^2) is
  stationary. With the PRR numbers the relaxation strain is ~0.3, and a mean -6 start gives a stress
  overshoot (peak near gamma ~ 0.05-0.1) while a mean +2 start strain-hardens (tests/test_step_model.py).
  ``restore_ema = 0.001`` restores the reference's running mean; ``restore_target = None`` starts it at
  the sample mean (glassgen's earlier reading).
- Loading: AQS simple shear: add the smallest e_xy increment that destabilises one site (at most
  ``max_dgamma``; the reference has no cap), relax the avalanche (most unstable site first, frame by
  frame), repeat.

3D (documented glassgen construction; the published model is 2D): a single strain component e_xy with
the propagator -(4 qx^2 qy^2 + q^2 qz^2) / q^4 (REFERENCE section 7) normalised the same way; near-field
mean change -18.3 I_xy (2 x y / r^2) / r^3 (the xy quadrupole with a 1/r^d decay); the co-rearrangement
box is 21^3 and the restoring kernel is the same function of r. The amplitudes are free parameters.

Outputs: stress-strain curve (mu * mean e_xy before and after each avalanche), softness statistics,
the plastic-strain map (accumulated released e_xy per site), avalanche sizes (events, sites, frames,
released strain) and two ductility measures (glassgen's definitions, see :func:`ductility`).
"""

from __future__ import annotations

import dataclasses
import math
import time
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from glassgen._kernels.lattice import avalanche, min_shear_to_yield, shear_all
from glassgen.config_values import check_types, type_hints
from glassgen.errors import InputError

__all__ = ["StepParams", "propagator", "StepModel", "StepResult", "ductility"]


@dataclass(frozen=True)
class StepParams:
    """Parameters of the StEP model (defaults: the PRR model, REFERENCE section 7).

    Attributes:
        L: lattice side (even); dim: 2 or 3.
        s_mean, s_std: initial softness distribution N(s_mean, s_std^2).
        yield_mean: (m0, m1) of the Weibull mean m0 + m1 S.
        yield_shape: (w0, w1, w2) of the Weibull shape w0 + w1 S + w2 S^2.
        coupling: dS / d|e|^2.
        near_field: amplitude A of the near-field mean change A [I . angular] / r^2 (2D) or / r^3 (3D).
        r_soft: range of the near-field change (30).
        restore_amp, restore_exp: eta(r) = restore_amp * i * r^restore_exp (r > 0), restore_amp * i at r = 0,
            with i = restore_intensity (reference: fixed 0.1), or the frame's |I| if restore_intensity = 0.
        restore_shift: shift c of the restoring target (input of the model; default 0).
        restore_range: range of the restoring and noise steps (reference: r < 10).
        restore_intensity: intensity entering eta and the compensating shift (reference: 0.1; 0: |I|).
        restore_target: initial value of the restoring target S_target(r) in every distance bin
            (-1.66, the PRR softness, as the reference's meanSoftness); None (or "sample" in a config):
            the mean of the initial softness.
        restore_ema: weight of the running-mean update S_target <- (1 - w) S_target + w S
            (reference: 0.001; glassgen's PRR default 0: a fixed target, see the module docstring).
        s_noise: softness noise scale of the restoring step.
        co_range: half side of the co-rearrangement box (10: a 21^d box); co_length: probability exp(-r/co_length).
        release: strain released per frame.
        e0_std: std of the initial elastic strain components (reference PRR version: 0.01).
        mu: shear modulus (stress = mu * mean e_xy).
        max_dgamma: largest applied strain increment of one AQS step.
        max_frames: guard on the frames of one avalanche.
    """

    L: int = 64
    dim: int = 2
    s_mean: float = -1.66
    s_std: float = 2.0
    yield_mean: tuple[float, float] = (0.087261, -0.0049821)
    yield_shape: tuple[float, float, float] = (2.0758, -0.024151, 0.0029429)
    coupling: float = 101.3
    near_field: float = -18.3
    r_soft: float = 30.0
    restore_amp: float = 0.6
    restore_exp: float = -3.1
    restore_shift: float = 0.0
    restore_range: float = 10.0
    restore_intensity: float = 0.1
    restore_target: float | None = -1.66
    restore_ema: float = 0.0
    s_noise: float = 2.0
    co_range: int = 10
    co_length: float = 1.40179
    release: float = 0.1
    e0_std: float = 0.01
    mu: float = 1.0
    max_dgamma: float = 1e-3
    max_frames: int = 10_000_000

    def __post_init__(self) -> None:
        if self.dim not in (2, 3):
            raise InputError(f"StEP dim must be 2 or 3, got {self.dim}")
        if self.L < 4 or self.L % 2:
            raise InputError(f"StEP lattice side L must be even and >= 4, got {self.L}")
        for name in ("s_std", "release", "co_length", "max_dgamma", "r_soft", "mu"):
            if not getattr(self, name) > 0:
                raise InputError(f"StEP parameter {name} must be positive, got {getattr(self, name)}")
        bad = [f.name for f in dataclasses.fields(self) if isinstance(getattr(self, f.name), float)
               and not math.isfinite(getattr(self, f.name))]
        bad += [k for k in ("yield_mean", "yield_shape") if not all(math.isfinite(x) for x in getattr(self, k))]
        if bad:
            raise InputError(f"StEP parameter(s) {', '.join(bad)} must be finite")
        if not 0.0 <= self.restore_ema <= 1.0:
            raise InputError(f"StEP parameter restore_ema must be in [0, 1], got {self.restore_ema}")
        if self.co_range < 0 or self.max_frames < 1:
            raise InputError(f"StEP needs co_range >= 0 (the initiator rearranges) and max_frames >= 1, got "
                             f"co_range={self.co_range}, max_frames={self.max_frames}")
        for name in ("restore_range", "restore_intensity", "e0_std", "restore_amp"):
            if not getattr(self, name) >= 0:
                raise InputError(f"StEP parameter {name} must be >= 0, got {getattr(self, name)}")
        if len(self.yield_mean) != 2 or len(self.yield_shape) != 3:
            raise InputError("yield_mean needs 2 coefficients and yield_shape 3")
        self._check_yield_law()

    def _check_yield_law(self) -> None:
        """The Weibull mean m0 + m1 S and shape w0 + w1 S + w2 S^2 must stay above the kernel's floors (1e-4 and
        0.1, where :func:`glassgen._kernels.lattice.yield_strain` clamps them) over the bulk of the initial
        softness, S in s_mean +- 3 s_std: a site below the mean's floor yields at (almost) zero strain, so the
        model would run but no longer be the fitted law (PRR: s_mean + 3 s_std < 17.5)."""
        lo, hi = self.s_mean - 3 * self.s_std, self.s_mean + 3 * self.s_std
        m0, m1 = self.yield_mean
        s_worst = hi if m1 < 0 else lo
        if not m0 + m1 * s_worst > 1e-4:
            bound = ""
            if m1 != 0:
                s_crit = (1e-4 - m0) / m1
                bound = (f"; needs s_mean < {s_crit - 3 * self.s_std:.4g}" if m1 < 0
                         else f"; needs s_mean > {s_crit + 3 * self.s_std:.4g}")
            raise InputError(f"StEP mean yield strain {m0:g} {'-' if m1 < 0 else '+'} {abs(m1):g} S must stay positive "
                             f"over the initial softness S = s_mean +- 3 s_std = {lo:.4g} ... {hi:.4g}: it is "
                             f"{m0 + m1 * s_worst:.3g} at S = {s_worst:.4g}{bound}")
        w0, w1, w2 = self.yield_shape
        cand = [lo, hi] + ([-w1 / (2 * w2)] if w2 != 0 and lo < -w1 / (2 * w2) < hi else [])
        s_min = min(cand, key=lambda x: w0 + w1 * x + w2 * x * x)
        if not w0 + w1 * s_min + w2 * s_min**2 > 0.1:
            raise InputError(f"StEP Weibull shape w0 + w1 S + w2 S^2 must stay above 0.1 over the initial softness "
                             f"S = {lo:.4g} ... {hi:.4g} (s_mean +- 3 s_std): it is "
                             f"{w0 + w1 * s_min + w2 * s_min**2:.3g} at S = {s_min:.4g}")

    def check_ranges(self) -> None:
        """The interaction ranges must fit in the periodic lattice (a user-level job checks this; the kernels
        themselves use minimum images and run on any lattice, which their tests and benchmarks use).

        The co-rearrangement box has side 2 co_range + 1 (needs co_range < L/2, else it wraps onto itself),
        the near field acts for r < r_soft and the restoring step for r < restore_range (need <= L/2): beyond
        L/2 a site lies nearer to a periodic image of the initiator than to the initiator, and the kernel
        applies the field of the nearest image only, so the stated range is not what runs.
        """
        h = self.L / 2
        bad = [f"co_range = {self.co_range} (needs < {h:g})"] if self.co_range >= h else []
        bad += [f"{k} = {getattr(self, k):g} (needs <= {h:g})" for k in ("r_soft", "restore_range")
                if getattr(self, k) > h]
        if bad:
            raise InputError(f"StEP interaction range(s) beyond half the lattice (L = {self.L}): {', '.join(bad)}; "
                             "raise --L or lower them in [params] of a --config")

    @property
    def nc(self) -> int:
        """Strain components per site: 2 in 2D (xy, dev), 1 in 3D (xy)."""
        return 2 if self.dim == 2 else 1

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> StepParams:
        """From a config mapping (unknown keys are an :class:`InputError`)."""
        allowed = set(cls.__dataclass_fields__)
        unknown = sorted(set(d) - allowed)
        if unknown:
            raise InputError(f"unknown StEP parameter(s): {', '.join(unknown)} (allowed: {', '.join(sorted(allowed))})")
        kw = dict(d)
        if isinstance(kw.get("restore_target"), str):
            if kw["restore_target"] != "sample":
                raise InputError(f"restore_target must be a number or \"sample\", got {kw['restore_target']!r}")
            kw["restore_target"] = None
        kw = check_types(kw, type_hints(cls), "StEP parameters")
        for k in ("yield_mean", "yield_shape"):
            if k in kw:
                kw[k] = tuple(float(v) for v in kw[k])
        return cls(**kw)


def propagator(L: int, dim: int = 2) -> np.ndarray:
    """Normalised Eshelby propagator G (nc, nc, L^dim) indexed by the flat (C-order) offset.

    G[a, b, off] is the change of strain component b at offset ``off`` from a site releasing a unit of
    component a (module docstring): G[a, a, 0] = -1, sum_off G[a, a, off] = -1, sum_off G[a, b, off] = 0
    for a != b.
    """
    n = L**dim
    q1 = 2 * np.pi * np.fft.fftfreq(L)
    qs = np.meshgrid(*([q1] * dim), indexing="ij")
    q2 = sum(q**2 for q in qs)
    with np.errstate(divide="ignore", invalid="ignore"):
        if dim == 2:
            qx, qy = qs
            kq = [[-4 * qx**2 * qy**2 / q2**2, -2 * qx * qy * (qx**2 - qy**2) / q2**2],
                  [-2 * qx * qy * (qx**2 - qy**2) / q2**2, -((qx**2 - qy**2) ** 2) / q2**2]]
        else:
            qx, qy, qz = qs
            kq = [[-(4 * qx**2 * qy**2 + q2 * qz**2) / q2**2]]
    nc = len(kq)
    G = np.zeros((nc, nc, n))
    factor = np.zeros(nc)
    real = [[None] * nc for _ in range(nc)]
    for a in range(nc):
        for b in range(nc):
            g = np.array(kq[a][b], dtype=np.float64)
            g.flat[0] = 0.0
            real[a][b] = np.fft.ifftn(g).real.ravel()
        factor[a] = (-1.0 + 1.0 / n) / real[a][a][0]
    for a in range(nc):
        for b in range(nc):
            G[a, b] = real[a][b] * factor[a] - (1.0 / n if a == b else 0.0)
    return G


def _min_image_offsets(L: int, dim: int, rmax: float, box_half: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Distinct lattice offsets (minimum image) with r < rmax (or |o_k| <= box_half): (offs (M, d), r (M,))."""
    c = np.arange(L)
    c = np.where(c > L // 2, c - L, c)  # minimum image, ties at +L/2
    offs = np.stack(np.meshgrid(*([c] * dim), indexing="ij"), -1).reshape(-1, dim)
    r = np.sqrt((offs**2).sum(1))
    keep = np.all(np.abs(offs) <= box_half, 1) if box_half is not None else r < rmax
    offs, r = offs[keep], r[keep]
    order = np.argsort(r, kind="stable")
    return offs[order].astype(np.int64), r[order]


@dataclass(frozen=True)
class StepResult:
    """Outcome of a shear run.

    Attributes:
        gamma: (n,) applied strain after each AQS step.
        stress_before, stress_after: (n,) mu * mean e_xy before and after the avalanche of each step.
        aval_events, aval_sites, aval_frames: (n,) int64 avalanche sizes; aval_released: (n,) sum |I|.
        softness_mean, softness_std: (n,) softness statistics after each step.
        plastic_map: (L,)*dim accumulated plastic e_xy; softness_map: final softness (L,)*dim.
        softness_initial: (N,) initial softness.
        frames_per_s: avalanche frames per second of kernel time; wall_s: total time.
        completed: every avalanche ended stable.
    """

    gamma: np.ndarray
    stress_before: np.ndarray
    stress_after: np.ndarray
    aval_events: np.ndarray
    aval_sites: np.ndarray
    aval_frames: np.ndarray
    aval_released: np.ndarray
    softness_mean: np.ndarray
    softness_std: np.ndarray
    plastic_map: np.ndarray
    softness_map: np.ndarray
    softness_initial: np.ndarray
    frames_per_s: float
    wall_s: float
    completed: bool
    params: dict[str, Any] = field(default_factory=dict)


class StepModel:
    """A StEP lattice under AQS shear: ``StepModel(params, seed).shear(gamma_max)``.

    Args:
        params: :class:`StepParams`.
        seed: int seed or ``np.random.Generator`` (initial state and avalanche noise).
    """

    def __init__(self, params: StepParams, seed: int | np.random.Generator = 0) -> None:
        self.params = p = params
        self.rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
        n = p.L**p.dim
        self.coords = np.stack(np.unravel_index(np.arange(n), (p.L,) * p.dim), 1).astype(np.int64)
        self.G = propagator(p.L, p.dim)
        self.e = self.rng.normal(0.0, p.e0_std, (n, p.nc))
        self.S = self.rng.normal(p.s_mean, p.s_std, n)
        self.S0 = self.S.copy()
        self.u = self.rng.random(n)
        self.ep = np.zeros((n, p.nc))
        self.gamma = 0.0
        # co-rearrangement offsets (the initiator first, probability 1)
        co, r = _min_image_offsets(p.L, p.dim, 0.0, box_half=p.co_range)
        self.co_off, self.co_p = co, np.exp(-r / p.co_length)
        # softness offsets: near field (0 < r < r_soft) and restoring (r < restore_range)
        so, sr = _min_image_offsets(p.L, p.dim, max(p.r_soft, p.restore_range))
        nf = np.zeros((so.shape[0], p.nc))
        nz = (sr > 0) & (sr < p.r_soft)
        if p.dim == 2:
            th = np.arctan2(so[nz, 1], so[nz, 0])
            nf[nz, 0] = p.near_field * np.sin(2 * th) / sr[nz] ** 2
            nf[nz, 1] = p.near_field * np.cos(2 * th) / sr[nz] ** 2
        else:
            nf[nz, 0] = p.near_field * (2 * so[nz, 0] * so[nz, 1] / sr[nz] ** 2) / sr[nz] ** 3
        rest = sr < p.restore_range
        eta = np.where(rest, p.restore_amp * np.where(sr > 0, sr, 1.0) ** p.restore_exp, 0.0)
        if p.restore_intensity > 0 and eta.max() * p.restore_intensity > 1.0:  # the AR(1) step needs eta <= 1
            raise InputError(f"StEP restoring step eta = restore_amp * restore_intensity * r^restore_exp reaches "
                             f"{eta.max() * p.restore_intensity:.3g} > 1 within restore_range")
        # running-mean bins: nearest integer distance (the reference's floor(r + 0.5))
        sbin = np.where(rest, np.floor(sr + 0.5), -1).astype(np.int64)
        self.soft_off, self.soft_r, self.soft_nf, self.soft_eta, self.soft_bin = so, sr, nf, eta, sbin
        # expected restoring change per unit intensity is sum(eta) * c: remove it uniformly
        self.comp = -float(eta.sum()) * p.restore_shift / n
        m0 = float(self.S.mean()) if p.restore_target is None else float(p.restore_target)
        self.mavg = np.full(int(sbin.max()) + 1 if sbin.max() >= 0 else 1, m0)

    def _seed(self) -> int:
        return int(self.rng.integers(2**31 - 1))

    def stress(self) -> float:
        """mu * mean e_xy."""
        return float(self.params.mu * self.e[:, 0].mean())

    def relax(self) -> tuple[int, int, int, float, bool]:
        """Relax the current avalanche; returns (frames, events, sites, released, completed)."""
        p = self.params
        m0, m1 = p.yield_mean
        w0, w1, w2 = p.yield_shape
        return avalanche(self.e, self.S, self.u, self.ep, self.coords, p.L, self.G, m0, m1, w0, w1, w2,
                         p.coupling, p.release, self.co_off, self.co_p, self.soft_off, self.soft_nf, self.soft_eta,
                         self.soft_bin, p.restore_intensity, p.restore_shift, p.s_noise, self.comp, self.mavg,
                         p.restore_ema, p.max_frames, self._seed())

    def shear(self, gamma_max: float, max_steps: int = 1_000_000,
              progress: Callable[[float], None] | None = None) -> StepResult:
        """AQS simple shear from the current strain to ``gamma_max``.

        Args:
            gamma_max: final applied strain.
            max_steps: guard on the number of AQS steps.
            progress: callback receiving increments of applied strain.

        Returns:
            the :class:`StepResult`.
        """
        p = self.params
        if not gamma_max > self.gamma:
            raise InputError(f"gamma_max must exceed the current strain {self.gamma}, got {gamma_max}")
        m0, m1 = p.yield_mean
        w0, w1, w2 = p.yield_shape
        rec: dict[str, list[float]] = {k: [] for k in ("gamma", "sb", "sa", "ev", "si", "fr", "rel", "sm", "ss")}
        t0 = time.perf_counter()
        t_kernel = 0.0
        frames_total = 0
        completed = True
        # relax any initially unstable site first
        self.relax()
        for _ in range(max_steps):
            if self.gamma >= gamma_max:
                break
            dg = min_shear_to_yield(self.e, self.S, self.u, m0, m1, w0, w1, w2)
            dg = min(dg + 1e-10, p.max_dgamma, gamma_max - self.gamma + 1e-12)
            shear_all(self.e, self.S, dg, p.coupling)
            self.gamma += dg
            sb = self.stress()
            tk = time.perf_counter()
            fr, ev, si, rel, ok = self.relax()
            t_kernel += time.perf_counter() - tk
            frames_total += fr
            completed &= bool(ok)
            for k, v in zip(rec, (self.gamma, sb, self.stress(), ev, si, fr, rel, self.S.mean(), self.S.std()),
                            strict=True):
                rec[k].append(v)
            if progress is not None:
                progress(dg)
        if self.gamma < gamma_max:  # the step guard ran out before the final strain: not a completed run
            completed = False
            warnings.warn(f"StEP shear stopped after {max_steps} AQS steps at strain {self.gamma:.4g} < gamma_max "
                          f"{gamma_max:g}", stacklevel=2)
        shape = (p.L,) * p.dim
        return StepResult(gamma=np.array(rec["gamma"]), stress_before=np.array(rec["sb"]),
                          stress_after=np.array(rec["sa"]), aval_events=np.array(rec["ev"], np.int64),
                          aval_sites=np.array(rec["si"], np.int64), aval_frames=np.array(rec["fr"], np.int64),
                          aval_released=np.array(rec["rel"]), softness_mean=np.array(rec["sm"]),
                          softness_std=np.array(rec["ss"]), plastic_map=self.ep[:, 0].reshape(shape).copy(),
                          softness_map=self.S.reshape(shape).copy(), softness_initial=self.S0.copy(),
                          frames_per_s=frames_total / t_kernel if t_kernel > 0 else float("nan"),
                          wall_s=time.perf_counter() - t0, completed=completed, params=asdict(p))


def ductility(res: StepResult, band_fraction: float = 0.125, flow_fraction: float = 0.25,
              n_bins: int = 20) -> dict[str, float]:
    """Overshoot and strain-localisation measures of a shear run (glassgen's definitions).

    The applied strain [0, gamma_max] is cut into ``n_bins`` equal windows and the stress after the avalanches
    is averaged in each; the flow stress sigma_flow is the mean over the last ``flow_fraction`` of the strain.

    - ``overshoot`` = (largest window mean before the flow region - sigma_flow) / sigma_flow: > 0 for a stress
      peak, < 0 for strain hardening. Window means of the same quantity on both sides, so no pre/post-avalanche
      offset enters; the maximum over windows still adds noise of order ``flow_fluctuation``.
    - ``flow_fluctuation``: the noise of one window mean, std(stress in the flow region) / sqrt(steps per
      window) / sigma_flow (exact for uncorrelated steps; AQS stresses are correlated over a few steps, so it
      is a lower bound): the yardstick of that noise; an overshoot of several times it is a peak.
    - ``overshoot_peak``: the single largest stress before an avalanche against sigma_flow. Biased upward
      (a maximum over every step, before the avalanche): nonzero even for a stationary start; for
      comparison only.
    - ``localization``: the largest share of the total |plastic strain| held by a slab of
      ``band_fraction`` * L consecutive planes normal to any axis, rescaled so that 0 is homogeneous
      and 1 is everything in one slab. ``ductility`` = 1 - localization.

    Returns:
        dict with ``sigma_peak``, ``gamma_peak`` (the window of the overshoot's peak, its centre), ``sigma_flow``,
        ``overshoot``, ``flow_fluctuation``, ``overshoot_peak``, ``localization``, ``ductility``.
    """
    keys = ("sigma_peak", "gamma_peak", "sigma_flow", "overshoot", "flow_fluctuation", "overshoot_peak",
            "localization", "ductility")
    g, s = res.gamma, res.stress_after
    if g.size < 4:
        return dict.fromkeys(keys, float("nan"))
    g_flow = g[-1] * (1 - flow_fraction)
    flow = float(s[g >= g_flow].mean())
    edges = np.linspace(0.0, g[-1], n_bins + 1)
    centres = 0.5 * (edges[:-1] + edges[1:])
    binned = np.array([s[(g > a) & (g <= b)].mean() if np.any((g > a) & (g <= b)) else np.nan
                       for a, b in zip(edges[:-1], edges[1:], strict=True)])
    before = (edges[1:] <= g_flow + 1e-12) & np.isfinite(binned)
    if np.any(before):
        jp = int(np.flatnonzero(before)[np.argmax(binned[before])])
        sigma_peak, gamma_peak = float(binned[jp]), float(centres[jp])
    else:
        sigma_peak = gamma_peak = float("nan")
    pm = np.abs(res.plastic_map)
    L = pm.shape[0]
    w = max(1, int(round(band_fraction * L)))
    best = 0.0
    tot = pm.sum()
    for ax in range(pm.ndim):
        prof = pm.sum(axis=tuple(k for k in range(pm.ndim) if k != ax))
        ext = np.concatenate([prof, prof[: w - 1]])
        win = np.convolve(ext, np.ones(w), mode="valid")[:L]
        best = max(best, float(win.max() / tot) if tot > 0 else 0.0)
    frac0 = w / L
    loc = max(0.0, (best - frac0) / (1 - frac0))
    ok = flow > 0
    nan = float("nan")
    return {"sigma_peak": sigma_peak, "gamma_peak": gamma_peak, "sigma_flow": flow,
            "overshoot": (sigma_peak - flow) / flow if ok else nan,
            "flow_fluctuation": (float(np.std(s[g >= g_flow], ddof=1)) / math.sqrt(g.size / n_bins) / flow
                                 if ok and np.sum(g >= g_flow) > 1 else nan),
            "overshoot_peak": (float(res.stress_before.max()) - flow) / flow if ok else nan,
            "localization": loc, "ductility": 1.0 - loc}
