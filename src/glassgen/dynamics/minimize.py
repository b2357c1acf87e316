"""FIRE energy minimisation to inherent states (Bitzek et al. PRL 97, 170201 (2006); FIRE 2.0 of
Guenole et al., Comput. Mater. Sci. 175, 109584 (2020): semi-implicit Euler, half-step backtracking).

Also the removal of overlaps from random states: minimise first with a soft core (finite energies),
then with the exact potential.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from glassgen.dynamics.forces import ForceField
from glassgen.errors import InputError
from glassgen.progress import progress_bar
from glassgen.systems.configuration import Configuration

__all__ = ["FireResult", "fire_minimize", "inherent_state", "remove_overlaps"]


@dataclass(frozen=True)
class FireResult:
    """Outcome of a minimisation.

    Attributes:
        configuration: minimised configuration (positions unwrapped-consistent with the input).
        energy: final potential energy U (total).
        max_force: final max_i |F_i|.
        iterations: number of force evaluations.
        converged: max_force < ftol.
    """

    configuration: Configuration
    energy: float
    max_force: float
    iterations: int
    converged: bool


def fire_minimize(conf: Configuration, ftol: float = 1e-10, max_iter: int = 100000, dt: float = 0.005,
                  dt_max: float = 0.05, max_step: float = 0.1, soft_core: float = 0.0,
                  check_overlap: bool = True, progress: bool = False,
                  forcefield: ForceField | None = None) -> FireResult:
    """Minimise the potential energy with FIRE 2.0 until max_i |F_i| < ftol.

    Args:
        conf: starting configuration (with a model).
        ftol: force tolerance (epsilon / sigma).
        max_iter: iteration cap.
        dt, dt_max: initial and largest FIRE time steps.
        max_step: largest displacement of any particle per iteration.
        soft_core: soft-core factor of the potential (0: exact).
        check_overlap: raise on overlapping particles (off while removing overlaps).
        forcefield: reuse an existing ForceField (same model, species and box).
    """
    if ftol <= 0:
        raise InputError("ftol must be positive")
    ff = forcefield or ForceField.for_configuration(conf, skin=0.3, soft_core=soft_core,
                                                    check_overlap=check_overlap)
    x = conf.positions.copy()
    v = np.zeros_like(x)
    f = np.empty_like(x)
    res = ff.compute(x, out=f)
    alpha0, alpha, f_alpha, f_inc, f_dec, n_delay = 0.1, 0.1, 0.99, 1.1, 0.5, 5
    dt_min = 0.02 * dt
    n_pos = 0
    fmax = float(np.sqrt((f * f).sum(1)).max())
    it = 0
    with progress_bar(max_iter, "FIRE", progress) as advance:
        while fmax >= ftol and it < max_iter:
            p = float(np.vdot(f, v))
            if p > 0:
                n_pos += 1
                if n_pos > n_delay:
                    dt = min(dt * f_inc, dt_max)
                    alpha *= f_alpha
            else:
                n_pos = 0
                dt = max(dt * f_dec, dt_min)
                alpha = alpha0
                x -= 0.5 * dt * v
                v[:] = 0.0
            v += dt * f
            vn = math.sqrt(float(np.vdot(v, v)))
            fn = math.sqrt(float(np.vdot(f, f)))
            if fn > 0:
                v *= 1.0 - alpha
                v += (alpha * vn / fn) * f
            step = dt * v
            smax = float(np.sqrt((step * step).sum(1)).max())
            if smax > max_step:
                step *= max_step / smax
            x += step
            res = ff.compute(x, out=f)
            fmax = float(np.sqrt((f * f).sum(1)).max())
            it += 1
            if it % 1000 == 0:
                advance(1000)
    return FireResult(conf.replace(positions=x, velocities=None), res.energy, fmax, it, fmax < ftol)


def inherent_state(conf: Configuration, ftol: float = 1e-10, max_iter: int = 200000) -> FireResult:
    """The inherent state (local potential-energy minimum) reached by FIRE from ``conf``."""
    return fire_minimize(conf, ftol=ftol, max_iter=max_iter)


def remove_overlaps(conf: Configuration, soft_core: float = 0.8, target_ratio: float = 0.7,
                    max_iter: int = 20000) -> Configuration:
    """Push overlapping particles apart: FIRE on the soft-cored potential, then a few exact steps.

    Stops once the closest pair is beyond ``target_ratio`` sigma_ab and the exact energy is finite.
    """
    ff = ForceField.for_configuration(conf, skin=0.3, soft_core=soft_core, check_overlap=False)
    cur = conf
    for _ in range(20):
        r = fire_minimize(cur, ftol=1e-3, max_iter=max_iter // 20, forcefield=ff, check_overlap=False)
        cur = r.configuration
        ratio = ForceField.for_configuration(cur, skin=0.0, check_overlap=False).compute(
            cur.positions).min_distance_ratio
        if ratio > target_ratio:
            break
    exact = fire_minimize(cur, ftol=1e-2, max_iter=2000, check_overlap=True)
    return exact.configuration
