"""Analyses of a trained SAE on a store: one file per analysis, one registry, one ``Result`` type.

Each analysis module exposes a config dataclass and ``run(context, config) -> Result`` and
registers both with ``register_analysis``; ``runner.run_analyses`` runs any subset on one
``Context``, whose single encode pass every analysis of the call shares.
"""
