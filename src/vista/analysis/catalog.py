"""Importing this module registers every analysis (the ``ANALYSES`` registry loads it)."""

from vista.analysis import (  # noqa: F401
    ablation,
    absorption,
    alignment,
    compare,
    conjunction,
    dynamics,
    exemplars,
    feature_auc,
    fidelity,
    health,
    intersectional,
    probe,
    probes,
    reconstruction,
    recovery,
    scr,
    sdf,
    sparse_probing,
    stability,
    tpp,
)
