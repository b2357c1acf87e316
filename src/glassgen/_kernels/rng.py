r"""Fast exact standard normal variates for the Numba kernels: the ziggurat method.

Numba's ``np.random.standard_normal`` (Marsaglia's polar method) costs about 22 ns per draw on the
development machine, which is a third of a trap-model KMC event. :func:`normal` is the ziggurat method of
Marsaglia & Tsang (J. Stat. Softw. 5, 8 (2000)) in the form of Doornik ("An improved ziggurat method to
generate normal random samples", 2005): 128 layers, the layer index and the abscissa taken from
*independent* bits, so the draws are exact standard normals (no correlation between layer and value), at
about 8 ns per draw.

Bits: one ``np.random.random()`` is a 53-bit uniform (two Mersenne-Twister words in Numba); its integer
j = r 2^53 gives the layer from the low 7 bits and u in [-1, 1) from the high 46 bits, which are
independent uniforms. The wedge and tail steps (about 1.2% of the draws) take further uniforms.

All draws come from Numba's generator, so ``np.random.seed`` inside a kernel makes them reproducible.
"""

import math

import numpy as np
from numba import njit

__all__ = ["normal", "normal_array", "ZIG_R"]

ZIG_C = 128
ZIG_R = 3.442619855899
ZIG_V = 9.91256303526217e-3


def _tables() -> tuple[np.ndarray, np.ndarray]:
    """Layer edges x (C + 1,) and ratios x[i+1]/x[i] (C,) of the 128-layer ziggurat (Doornik 2005)."""
    x = np.zeros(ZIG_C + 1)
    f = math.exp(-0.5 * ZIG_R * ZIG_R)
    x[0] = ZIG_V / f  # the bottom layer: rectangle plus tail, of area V
    x[1] = ZIG_R
    for i in range(2, ZIG_C):
        x[i] = math.sqrt(-2.0 * math.log(ZIG_V / x[i - 1] + f))
        f = math.exp(-0.5 * x[i] * x[i])
    x[ZIG_C] = 0.0
    return x, x[1:] / x[:-1]


_X, _RATIO = _tables()


@njit(cache=True)
def _tail(negative):
    """Normal variate restricted to |z| > R (Marsaglia's tail method), with the given sign."""
    while True:
        x = math.log(1.0 - np.random.random()) / ZIG_R
        y = math.log(1.0 - np.random.random())
        if -2.0 * y >= x * x:
            return x - ZIG_R if negative else ZIG_R - x


@njit(cache=True)
def normal():
    """One standard normal variate N(0, 1) (float64), from Numba's generator."""
    while True:
        j = np.int64(np.random.random() * 9007199254740992.0)  # 2^53: 53 independent bits
        i = j & 127
        u = (j >> 7) * (2.0 / 70368744177664.0) - 1.0  # high 46 bits -> [-1, 1)
        if abs(u) < _RATIO[i]:
            return u * _X[i]
        if i == 0:
            return _tail(u < 0.0)
        x = u * _X[i]
        f0 = math.exp(-0.5 * (_X[i] * _X[i] - x * x))
        f1 = math.exp(-0.5 * (_X[i + 1] * _X[i + 1] - x * x))
        if f1 + np.random.random() * (f0 - f1) < 1.0:
            return x


@njit(cache=True)
def normal_array(n, seed):
    """n standard normal variates (n,) from a freshly seeded generator (tests and diagnostics)."""
    np.random.seed(seed)
    out = np.empty(n)
    for k in range(n):
        out[k] = normal()
    return out
