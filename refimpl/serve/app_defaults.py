"""Defaults of `refimpl serve` that the command line shows without importing the web stack."""

DEFAULT_MAX_BODY_BYTES = 4 * 1024 * 1024  # larger request bodies get 413
DEFAULT_MAX_TOKENS = 256  # tokens to draw when a chat request gives no max_tokens / max_completion_tokens
