"""Readers that turn checkpoint files into (ModelConfig, canonical weights); see spec/weights.md."""
