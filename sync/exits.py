"""How a long-running agent stops: its exit codes and the error that carries one.

>>> ServiceError("no such volume", EXIT_CONFIG).exit_code
78
"""

from __future__ import annotations

#: Exit codes of a long-running agent (``damas sync agent`` without ``--once``).
EXIT_STOPPED = 0  # stopped by SIGTERM or SIGINT, volume recorded stopped
EXIT_HELD = 75  # another agent holds the volume (its state directory or the volume)
EXIT_CREDENTIALS = 77  # the credentials or the state directory are unusable or unsafe
EXIT_CONFIG = 78  # no such volume, an invalid volume, an unusable state directory


class ServiceError(Exception):
    """A reason to stop that retrying cannot fix; ``exit_code`` says which."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code


__all__ = ["EXIT_CONFIG", "EXIT_CREDENTIALS", "EXIT_HELD", "EXIT_STOPPED", "ServiceError"]
