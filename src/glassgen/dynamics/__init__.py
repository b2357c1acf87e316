"""Thin drivers over the kernels: forces, MD integrators and thermostats, FIRE, Metropolis MC."""
