"""Tiny random models in refimpl's canonical weight names (spec/weights.md), for model tests.

The builders live in refimpl.conformance.tiny so that the installed conformance suite can use them too.
"""

from refimpl.conformance.tiny import tiny_config, tiny_weights

__all__ = ["tiny_config", "tiny_weights"]
