"""Thermostats as small state machines acting on the velocities of a velocity-Verlet integrator.

Each thermostat tracks the energy it exchanged with the bath so that ``E + bath`` (or the
Nose-Hoover extended energy) is a conserved quantity that tests can check.

- :class:`NoseHooverChain`: Martyna-Tuckerman-Klein chain (Mol. Phys. 87, 1117 (1996)), Trotter split
  around velocity Verlet; masses Q_1 = N_f T tau^2, Q_j = T tau^2. Deterministic.
- :class:`Langevin`: the O part of BAOAB (Leimkuhler & Matthews 2013): v <- c v + sqrt((1 - c^2) T/m) xi,
  c = exp(-dt/tau); applied between the two half drifts.
- :class:`Bussi`: stochastic velocity rescaling (Bussi, Donadio, Parrinello, JCP 126, 014101 (2007)),
  canonical for any tau; applied as two half-step rescalings.
"""

from __future__ import annotations

import math

import numpy as np

from glassgen._kernels.integrators import nhc_half_step

__all__ = ["NoseHooverChain", "Langevin", "Bussi"]


class NoseHooverChain:
    """Nose-Hoover chain of length ``chain`` for ``n_dof`` degrees of freedom."""

    def __init__(self, T: float, tau: float, dt: float, n_dof: int, chain: int = 3) -> None:
        self.T, self.dt, self.n_dof = float(T), float(dt), int(n_dof)
        self.Q = np.full(chain, T * tau * tau)
        self.Q[0] *= n_dof
        self.xi = np.zeros(chain)
        self.vxi = np.zeros(chain)
        self.bath = 0.0

    def half_step(self, k2: float) -> float:
        """Propagate the chain by dt/2 given 2K = sum m v^2; returns the velocity scale factor."""
        return nhc_half_step(self.Q, self.xi, self.vxi, float(k2), self.T, float(self.n_dof), self.dt)

    def energy(self) -> float:
        """Thermostat energy: sum Q v_xi^2 / 2 + N_f T xi_1 + T sum_{j>1} xi_j."""
        return float(0.5 * np.sum(self.Q * self.vxi**2) + self.n_dof * self.T * self.xi[0]
                     + self.T * np.sum(self.xi[1:]))

    def state(self) -> dict[str, np.ndarray]:
        return {"xi": self.xi.copy(), "vxi": self.vxi.copy()}

    def load(self, st: dict[str, np.ndarray]) -> None:
        self.xi[:] = st["xi"]
        self.vxi[:] = st["vxi"]


class Langevin:
    """Ornstein-Uhlenbeck velocity update of BAOAB with friction 1/tau, on the zero-momentum subspace.

    The random kick is projected (mass-weighted) onto zero total momentum, so the centre of mass stays at
    rest and the kinetic temperature with N_f = dN - d is T (as LAMMPS ``fix langevin ... zero yes``). Without
    the projection the centre-of-mass mode is thermalised too and T_kin reads dN / (dN - d) too high
    (+2.4 % at KA2D N = 43)."""

    def __init__(self, T: float, tau: float, dt: float, masses: np.ndarray) -> None:
        self.c = math.exp(-dt / tau)
        self.sig = np.sqrt((1.0 - self.c**2) * T / masses)[:, None]
        self.masses = masses[:, None]
        self.total_mass = float(np.sum(masses))
        self.bath = 0.0

    def apply(self, vel: np.ndarray, rng: np.random.Generator) -> None:
        k_old = 0.5 * float(np.sum(self.masses * vel * vel))
        kick = self.sig * rng.standard_normal(vel.shape)
        kick -= np.sum(self.masses * kick, axis=0) / self.total_mass  # no net momentum
        vel *= self.c
        vel += kick
        self.bath += k_old - 0.5 * float(np.sum(self.masses * vel * vel))

    def energy(self) -> float:
        return self.bath


class Bussi:
    """Stochastic velocity rescaling towards the canonical kinetic-energy distribution."""

    def __init__(self, T: float, tau: float, dt: float, n_dof: int) -> None:
        self.T, self.n_dof = float(T), int(n_dof)
        self.c = math.exp(-0.5 * dt / tau)  # applied every half step
        self.bath = 0.0

    def scale(self, k2: float, rng: np.random.Generator) -> float:
        """Scale factor for the velocities given 2K (one half step)."""
        kk = 0.5 * k2
        if kk <= 0:
            return 1.0
        target = 0.5 * self.n_dof * self.T
        r1 = rng.standard_normal()
        rest = 2.0 * rng.standard_gamma(0.5 * (self.n_dof - 1)) if self.n_dof > 1 else 0.0
        c = self.c
        new = (kk + (1 - c) * (target * (rest + r1 * r1) / self.n_dof - kk)
               + 2.0 * r1 * math.sqrt(kk * target / self.n_dof * (1 - c) * c))
        alpha2 = new / kk
        sign = -1.0 if (r1 + math.sqrt(c * self.n_dof * kk / ((1 - c) * target))) < 0 else 1.0
        self.bath += kk - new
        return sign * math.sqrt(max(alpha2, 0.0))

    def energy(self) -> float:
        return self.bath
