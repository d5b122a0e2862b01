"""Bark's networks: the causal GPT (semantic, coarse), the fine transformer, the EnCodec decoder."""
