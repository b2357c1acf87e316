"""Velocity-Verlet pieces (unit-stride loops over (N, d) arrays)."""

from numba import njit

__all__ = ["kick", "drift", "kick_drift"]


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
def kick_drift(pos, vel, forces, inv_mass, h, dt):
    """v += h F / m, then x += dt v (the first half of a velocity-Verlet step)."""
    n, d = pos.shape
    for i in range(n):
        im = inv_mass[i]
        for k in range(d):
            v = vel[i, k] + h * forces[i, k] * im
            vel[i, k] = v
            pos[i, k] += dt * v
