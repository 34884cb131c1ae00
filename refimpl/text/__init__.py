"""Text side of a model: tokenizers (refimpl.text.tokenizer) and chat formats (refimpl.text.chat)."""
