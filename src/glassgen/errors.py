"""User-facing errors: one clear line, exit code 2 from the CLI, never a traceback."""

import math
from typing import Any

__all__ = ["GlassgenError", "InputError", "PhysicsError", "check_temperature", "T_MIN", "T_MAX"]

#: Temperature range accepted (reduced units, epsilon_AA / k_B). KA energies are O(1): above T_MAX the system is an
#: ideal gas already and larger values overflow v^2 and Boltzmann factors; below T_MIN (a millionth of the glass
#: transition) thermal motion is below round-off of the positions and 1/T overflows Boltzmann factors.
T_MIN, T_MAX = 1e-6, 1e6


class GlassgenError(Exception):
    """Base class of every error glassgen reports to a user as one line."""


class InputError(GlassgenError, ValueError):
    """Bad input: missing or malformed file, wrong shape, unknown model, T <= 0, ..."""


class PhysicsError(GlassgenError, RuntimeError):
    """A state the physics cannot continue from: overlapping particles, non-finite energy, ..."""


def check_temperature(T: Any, what: str = "temperature") -> float:
    """``T`` as a float, or a one-line :class:`InputError` unless it is a number in [:data:`T_MIN`, :data:`T_MAX`]."""
    try:
        t = float(T)
    except (TypeError, ValueError):
        raise InputError(f"{what} must be a number, got {T!r}") from None
    if isinstance(T, (str, bytes, bool)):
        raise InputError(f"{what} must be a number, got {T!r}")
    if not (math.isfinite(t) and t > 0):
        raise InputError(f"{what} must be positive and finite, got T={t:g}")
    if not T_MIN <= t <= T_MAX:
        raise InputError(f"{what} must be positive and finite, within [{T_MIN:g}, {T_MAX:g}] in reduced units, "
                         f"got T={t:g}")
    return t
