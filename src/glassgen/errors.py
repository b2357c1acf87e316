"""User-facing errors: one clear line, exit code 2 from the CLI, never a traceback."""

import math
from typing import Any

__all__ = ["GlassgenError", "InputError", "PhysicsError", "check_temperature", "T_MAX"]

#: Largest temperature accepted (reduced units, epsilon_AA / k_B): KA energies are O(1), so anything near this is
#: an ideal gas already, and much larger values overflow v^2 and Boltzmann factors.
T_MAX = 1e6


class GlassgenError(Exception):
    """Base class of every error glassgen reports to a user as one line."""


class InputError(GlassgenError, ValueError):
    """Bad input: missing or malformed file, wrong shape, unknown model, T <= 0, ..."""


class PhysicsError(GlassgenError, RuntimeError):
    """A state the physics cannot continue from: overlapping particles, non-finite energy, ..."""


def check_temperature(T: Any, what: str = "temperature") -> float:
    """``T`` as a float, or a one-line :class:`InputError` unless it is a finite number in (0, :data:`T_MAX`]."""
    try:
        t = float(T)
    except (TypeError, ValueError):
        raise InputError(f"{what} must be a number, got {T!r}") from None
    if isinstance(T, (str, bytes, bool)):
        raise InputError(f"{what} must be a number, got {T!r}")
    if not (math.isfinite(t) and 0 < t <= T_MAX):
        raise InputError(f"{what} must be positive and finite (at most {T_MAX:g} in reduced units), got T={t:g}")
    return t
