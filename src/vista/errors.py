"""The one exception type users see: a sentence that names the problem and the fix."""


class VistaError(Exception):
    """A user-facing error; the CLI prints its message alone, without a traceback."""
