"""The one exception type users see: a sentence that names the problem and the fix."""


class VistaError(Exception):
    """A user-facing error; the CLI prints its message alone, without a traceback."""


class Stopped(VistaError):  # noqa: N818  (a stop, not an error of the user)
    """A run stopped by a signal after saving what it needs to resume; exits with ``exit_code``."""

    def __init__(self, message: str, exit_code: int = 143) -> None:
        super().__init__(message)
        self.exit_code = exit_code
