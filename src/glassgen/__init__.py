"""glassgen: machine learning of glassy dynamics.

Reduced Lennard-Jones units throughout: lengths in sigma_AA, energies in epsilon_AA, masses in m
(all masses 1 unless a model says otherwise), time in sqrt(m sigma^2 / epsilon), k_B = 1.

Layers (imports go one way, downward):
``_kernels`` (Numba) -> ``systems`` (models as data, configurations, I/O) -> ``dynamics`` ->
``observables`` -> ``flows``, ``sampling``, ``predictors``, ``models`` -> ``bench`` -> ``api``, ``cli``.
"""

__all__ = ["__version__"]
__version__ = "0.1.0"
