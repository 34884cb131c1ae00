"""Reference operations, one module per layer family."""
