"""The on-disk layout of an activation store (specified in docs/storage.md).

The layout is the original VISTA extractor's, unchanged, so files it wrote are read as they are:

    /                               attrs: model, dataset (+ vista attributes below)
    /{split}/encoded                float (N, T, D) or (N, D)
    /{split}/labels/<name>          int64 (N,)
    /{split}/original_indices       int64 (N,)

vista adds attributes only, never new required datasets.
"""

from __future__ import annotations

FORMAT_VERSION = 1
SPLITS = ("training", "validation")
ENCODED = "encoded"
LABELS = "labels"
EXTRAS = "extras"
"""Group of auxiliary arrays (not read by training or evaluation)."""
ORIGINAL_INDICES = "original_indices"

# Root attributes vista writes; a file without FORMAT_ATTR is an original VISTA file (version 0).
FORMAT_ATTR = "vista_format_version"
ROOT_ATTRS = ("encoder", "layer", "token_selection", "d_model", "dataset", "model")
# Attribute on each label dataset: a JSON list of class names, index = label value.
CLASS_NAMES_ATTR = "class_names"
# Attributes on a split group of a file under construction (removed when the file is finished).
ROWS_WRITTEN_ATTR = "rows_written"

# FairFace label encodings of the original extractor (docs/originals.md §3.1), used when a version-0 file from
# a FairFace extraction carries no class names.
FAIRFACE_CLASS_NAMES: dict[str, list[str]] = {
    "race": [
        "White",
        "Black",
        "Latino_Hispanic",
        "East Asian",
        "Southeast Asian",
        "Indian",
        "Middle Eastern",
    ],
    "gender": ["Male", "Female"],
    "age": ["0-2", "3-9", "10-19", "20-29", "30-39", "40-49", "50-59", "60-69", "70+"],
}


def zstd_filter(level: int = 3) -> dict:
    """h5py dataset keyword arguments for hdf5plugin's Zstd filter, as the original extractor used."""
    import hdf5plugin

    return dict(hdf5plugin.Zstd(clevel=level))
