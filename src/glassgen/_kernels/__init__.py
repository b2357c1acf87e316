"""Numba kernels: arrays in, arrays out. No torch, no Python objects, no global random state.

Shapes and dtypes are checked once by the Python wrappers in :mod:`glassgen.dynamics`; the kernels
trust them. Pair parameters are the flattened ``(nsp*nsp,)`` arrays of
:class:`glassgen.systems.model.KernelParams` (index ``a*nsp + b``).
"""
