"""Velocity-Verlet pieces (unit-stride loops over (N, d) arrays)."""

import math

from numba import njit

__all__ = ["kick", "drift", "kick_drift", "nhc_half_step"]


@njit(cache=True, error_model="numpy")
def kick(vel, forces, inv_mass, h):
    """v += h F / m; returns sum m v^2 (= 2K) after the kick. inv_mass: (N,)."""
    n, d = vel.shape
    k2 = 0.0
    for i in range(n):
        im = inv_mass[i]
        for k in range(d):
            v = vel[i, k] + h * forces[i, k] * im
            vel[i, k] = v
            k2 += v * v / im
    return k2


@njit(cache=True, error_model="numpy")
def drift(pos, vel, h):
    """x += h v."""
    n, d = pos.shape
    for i in range(n):
        for k in range(d):
            pos[i, k] += h * vel[i, k]


@njit(cache=True, error_model="numpy")
def kick_drift(pos, vel, forces, inv_mass, h, dt, scale):
    """v = scale v + h F / m, then x += dt v (a thermostat scaling and the first half of a
    velocity-Verlet step in one pass; scale = 1 for plain velocity Verlet)."""
    n, d = pos.shape
    for i in range(n):
        im = inv_mass[i]
        for k in range(d):
            v = vel[i, k] * scale + h * forces[i, k] * im
            vel[i, k] = v
            pos[i, k] += dt * v


@njit(cache=True, error_model="numpy")
def nhc_half_step(Q, xi, vxi, k2, T, n_dof, dt):
    """Nose-Hoover chain propagated by dt/2 (Trotter, MTK): updates xi, vxi in place.

    Args:
        Q: (M,) thermostat masses; xi, vxi: (M,) positions and velocities of the chain.
        k2: 2K = sum m v^2 of the particles. Returns the velocity scale factor exp(-vxi_1 dt/2).
    """
    h = 0.5 * dt
    M = Q.shape[0]
    g = (Q[M - 2] * vxi[M - 2] ** 2 - T) / Q[M - 1] if M > 1 else (k2 - n_dof * T) / Q[0]
    vxi[M - 1] += 0.5 * h * g
    for j in range(M - 2, -1, -1):
        vxi[j] *= math.exp(-0.25 * h * vxi[j + 1])
        g = (k2 - n_dof * T) / Q[0] if j == 0 else (Q[j - 1] * vxi[j - 1] ** 2 - T) / Q[j]
        vxi[j] += 0.5 * h * g
        vxi[j] *= math.exp(-0.25 * h * vxi[j + 1])
    s = math.exp(-h * vxi[0])
    k2 *= s * s
    for j in range(M):
        xi[j] += h * vxi[j]
    for j in range(M - 1):
        vxi[j] *= math.exp(-0.25 * h * vxi[j + 1])
        g = (k2 - n_dof * T) / Q[0] if j == 0 else (Q[j - 1] * vxi[j - 1] ** 2 - T) / Q[j]
        vxi[j] += 0.5 * h * g
        vxi[j] *= math.exp(-0.25 * h * vxi[j + 1])
    g = (Q[M - 2] * vxi[M - 2] ** 2 - T) / Q[M - 1] if M > 1 else (k2 - n_dof * T) / Q[0]
    vxi[M - 1] += 0.5 * h * g
    return s
