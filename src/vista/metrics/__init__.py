"""Metrics: small pure functions of tensors and the streaming accumulators built on them."""
