"""Samplers built on the simulation core and on flows: flow-MCMC (IMH with flow proposals + local MC),
parallel tempering."""

from glassgen.sampling.flow_mcmc import (
    EnergyFn,
    FlowMCMC,
    FlowMCMCResult,
    Proposal,
    model_energy,
    pooled_autocorrelation_time,
)
from glassgen.sampling.independence import ChainSummary, IndependenceChains, independence_chains, summarize_chains
from glassgen.sampling.tempering import ParallelTempering

__all__ = ["Proposal", "EnergyFn", "model_energy", "FlowMCMC", "FlowMCMCResult", "pooled_autocorrelation_time",
           "IndependenceChains", "independence_chains",
           "ChainSummary", "summarize_chains", "ParallelTempering"]
