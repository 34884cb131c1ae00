"""refimpl: a NumPy ground truth for decoder-only transformers, GPT-2 to gpt-oss."""

from ._version import __version__
from .errors import ArgumentError, CheckpointError, ConfigError, RefimplError, TokenizerError
from .api import Model, load


__all__ = ["load", "Model", "RefimplError", "ArgumentError", "ConfigError", "CheckpointError", "TokenizerError",
           "__version__"]
