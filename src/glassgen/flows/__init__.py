"""Torch side of glassgen: energies for flows (and the autograd bridge to the Numba energy)."""

from glassgen.flows.energy import (
    BoltzmannEnergy,
    Energy,
    NumbaEnergyFunction,
    NumbaPairEnergy,
    TorchPairEnergy,
)

__all__ = ["Energy", "BoltzmannEnergy", "TorchPairEnergy", "NumbaEnergyFunction", "NumbaPairEnergy"]
