"""Propensity predictors: descriptors, ridge, GlassMLP, GNN, softness (see :mod:`glassgen.predictors.base`)."""

from glassgen.predictors.base import REGISTRY, Predictor, load_predictor
from glassgen.predictors.descriptors import DescriptorSettings
from glassgen.predictors.glassmlp import GlassMLPPredictor
from glassgen.predictors.gnn import GNNPredictor
from glassgen.predictors.ridge import RidgePredictor
from glassgen.predictors.softness import SoftnessPredictor

__all__ = ["Predictor", "load_predictor", "REGISTRY", "DescriptorSettings", "RidgePredictor", "GlassMLPPredictor",
           "GNNPredictor", "SoftnessPredictor"]
