"""Small labelled image sets inside scikit-learn and scikit-image: UCI digits, the LFW subset."""

from __future__ import annotations

import numpy as np

from vista.errors import VistaError
from vista.sources.datasets.base import (
    DatasetConfig,
    LabelledImages,
    register_dataset,
    split_by_stratification,
)


@register_dataset("digits")
def load_digits(cfg: DatasetConfig) -> LabelledImages:
    """scikit-learn's UCI digits: 1,797 8x8 images (values 0..16), split stratified on the digit."""
    from sklearn.datasets import load_digits as sk_load_digits

    d = sk_load_digits()
    ds = LabelledImages(
        name="digits",
        images=(d.images / 16.0).astype(np.float32),
        labels={"digit": d.target.astype(np.int64)},
        class_names={"digit": [str(i) for i in range(10)]},
        splits={},
    )
    return split_by_stratification(ds, cfg)


@register_dataset("lfw")
def load_lfw(cfg: DatasetConfig) -> LabelledImages:
    """scikit-image's LFW subset: 100 faces then 100 non-faces, 25x25 grey, label ``face``."""
    try:
        from skimage.data import lfw_subset
    except ImportError:
        raise VistaError(
            "The lfw dataset needs scikit-image; install it with `pip install scikit-image`."
        ) from None
    images = np.asarray(lfw_subset(), dtype=np.float32)
    face = np.zeros(len(images), dtype=np.int64)
    face[:100] = 1
    ds = LabelledImages(
        name="lfw",
        images=images,
        labels={"face": face},
        class_names={"face": ["non-face", "face"]},
        splits={},
    )
    return split_by_stratification(ds, cfg)
