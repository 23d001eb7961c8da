"""``vista bench``: a vision SAEBench. A grid of SAEs trained on one pass over a store, baselines
fitted to the same store, every benchmark analysis on each, one merged table, Pareto plots, and a
DVC pipeline (``vista bench init``) that reruns only what a changed parameter affects."""
