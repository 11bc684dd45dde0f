"""Errors a user can act on. The CLI prints them as one line and exits non-zero, without a traceback."""


class LivesightError(Exception):
    """Base class of user-facing errors: the message names the problem and, where there is one, the field."""

    exit_code = 2


class ConfigError(LivesightError):
    """The configuration is invalid; the message lists every problem with its field path."""


class SourceError(LivesightError):
    """A video source cannot be opened or decoded."""


class ModelLoadError(LivesightError):
    """Model weights or tokenizer cannot be loaded."""


class ServeError(LivesightError):
    """The server cannot start (e.g. the port is in use)."""
