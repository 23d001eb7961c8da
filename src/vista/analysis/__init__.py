"""Evaluations composed from metrics: health, reconstruction, alignment, probes."""
