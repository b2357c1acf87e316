"""User-facing errors: one clear line, exit code 2 from the CLI, never a traceback."""

__all__ = ["GlassgenError", "InputError", "PhysicsError"]


class GlassgenError(Exception):
    """Base class of every error glassgen reports to a user as one line."""


class InputError(GlassgenError, ValueError):
    """Bad input: missing or malformed file, wrong shape, unknown model, T <= 0, ..."""


class PhysicsError(GlassgenError, RuntimeError):
    """A state the physics cannot continue from: overlapping particles, non-finite energy, ..."""
