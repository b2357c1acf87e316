"""Engine-independent results of a dynamics run (the Numba engine and LAMMPS both return these)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from glassgen.systems.configuration import Configuration

__all__ = ["Thermo", "Trajectory", "MDResult", "ENSEMBLES", "THERMOSTATS"]

#: ensembles understood by every engine
ENSEMBLES = ("nve", "nvt")
#: NVT thermostats: Nose-Hoover chain, Langevin (BAOAB in Numba; fix langevin in LAMMPS),
#: Bussi stochastic velocity rescaling (fix temp/csvr in LAMMPS)
THERMOSTATS = ("nhc", "langevin", "bussi")


@dataclass(frozen=True)
class Thermo:
    """Thermodynamic time series, all (n_samples,) float64 arrays (totals, not per particle).

    Attributes:
        step: MD step index; time: step * dt; potential: U; kinetic: K = sum m v^2 / 2;
        temperature: kinetic temperature 2K / N_f (N_f = d N - d); pressure: rho T_kin + W/(dV);
        conserved: the integrator's conserved quantity (E for NVE, extended energy for NHC; NaN otherwise).
    """

    step: np.ndarray
    time: np.ndarray
    potential: np.ndarray
    kinetic: np.ndarray
    temperature: np.ndarray
    pressure: np.ndarray
    conserved: np.ndarray

    def as_dict(self) -> dict[str, np.ndarray]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


@dataclass(frozen=True)
class Trajectory:
    """Stored frames: times (F,), steps (F,), positions (F, N, d) UNWRAPPED, optional velocities (F, N, d) and,
    for runs whose species change (MC species swaps), each frame's species (F, N)."""

    times: np.ndarray
    steps: np.ndarray
    positions: np.ndarray
    velocities: np.ndarray | None = None
    species: np.ndarray | None = None


@dataclass(frozen=True)
class MDResult:
    """Final configuration (with velocities), thermo series and trajectory of one run."""

    final: Configuration
    thermo: Thermo
    trajectory: Trajectory | None
    info: dict = field(default_factory=dict)
