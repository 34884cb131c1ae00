"""Errors raised by refimpl.

Every error is a `RefimplError` (a `ValueError`), and its message names the
argument, file, tensor or field at fault and what was expected versus found.
"""


class RefimplError(ValueError):
    """Base class of every error refimpl raises on bad input."""


class ArgumentError(RefimplError):
    """A layer function was called with an argument that breaks its contract."""


class ConfigError(RefimplError):
    """A model configuration is missing a field or its fields contradict each other."""


class CheckpointError(RefimplError):
    """A weight file is unreadable, truncated, or disagrees with the configuration."""


class TokenizerError(RefimplError):
    """A vocabulary or chat template cannot be read or used."""
