"""Models as data, configurations and their file formats."""

from glassgen.systems.configuration import Configuration
from glassgen.systems.model import InteractionModel, available_models, load_model

__all__ = ["Configuration", "InteractionModel", "available_models", "load_model"]
