"""Every registered dataset loads with labels, class names and disjoint splits; each format reads right."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from tests.sources.fixtures import (
    HF_FAIRFACE_NAMES,
    dataset_fixture,
    make_fairface_csv,
    make_fairface_parquet,
    make_hf_saved,
    make_image_folder,
    make_table,
)
from vista.errors import VistaError
from vista.sources.datasets import DATASET_REGISTRY, DatasetConfig, make_dataset, stratified_split
from vista.sources.datasets.morpho import measure_digits, quantile_bins
from vista.store.layout import FAIRFACE_CLASS_NAMES


@pytest.mark.parametrize("name", sorted(DATASET_REGISTRY))
def test_registered_dataset_contract(name: str, tmp_path: Path) -> None:
    ds = make_dataset(DatasetConfig(name=name, limit=64, **dataset_fixture(name, tmp_path)))
    assert len(ds.labels) >= 1
    for label, y in ds.labels.items():
        assert y.dtype == np.int64 and len(y) == len(ds)
        assert y.min() >= 0 and y.max() < len(ds.class_names[label])
    idx = [ds.splits[s] for s in ds.splits]
    assert len(np.unique(np.concatenate(idx))) == sum(len(i) for i in idx)
    assert set(ds.store_splits) == {"training", "validation"}
    for parts in ds.store_splits.values():
        assert set(parts) <= set(ds.splits)
        assert sum(len(ds.splits[p]) for p in parts) > 0
    batch = ds.load(ds.splits[next(iter(ds.splits))][:4])
    assert len(batch) == 4
    assert all(np.asarray(im).ndim in (2, 3) for im in batch)


def test_mnist_is_complete() -> None:
    ds = make_dataset(DatasetConfig(name="mnist"))
    assert {k: len(v) for k, v in ds.splits.items()} == {
        "train": 50000,
        "val": 10000,
        "test": 10000,
    }
    assert np.bincount(ds.labels["digit"]).min() > 6000
    assert ds.images.shape[1:] == (28, 28) and ds.images.min() >= 0.0 and ds.images.max() <= 1.0


def test_fashion_and_animal_mnist_are_complete() -> None:
    f = make_dataset(DatasetConfig(name="fashion_mnist"))
    assert {k: len(v) for k, v in f.splits.items()} == {"train": 60000, "test": 10000}
    assert np.bincount(f.labels["clothing"][f.splits["train"]]).tolist() == [6000] * 10
    assert f.class_names["clothing"][9] == "Ankle boot" and f.images.dtype == np.uint8
    a = make_dataset(DatasetConfig(name="animal_mnist"))
    assert len(a) == 10000 and np.bincount(a.labels["animal"]).tolist() == [1000] * 10
    # Stratified 15%: 150 of each animal held out.
    assert np.bincount(a.labels["animal"][a.splits["val"]]).tolist() == [150] * 10


def test_stratified_split_keeps_every_joint_cell() -> None:
    rng = np.random.default_rng(0)
    labels = {"a": rng.integers(0, 3, 1000), "b": rng.integers(0, 2, 1000)}
    labels["a"][:1] = 7  # a singleton cell stays in training
    train, val = stratified_split(labels, ["a", "b"], 0.2, seed=1)
    assert len(np.intersect1d(train, val)) == 0 and len(train) + len(val) == 1000
    cells = Counter(zip(labels["a"].tolist(), labels["b"].tolist()))
    val_cells = Counter(zip(labels["a"][val].tolist(), labels["b"][val].tolist()))
    for cell, n in cells.items():
        expected = 0 if n == 1 else min(max(round(0.2 * n), 1), n - 1)
        assert val_cells.get(cell, 0) == expected, cell
    again = stratified_split(labels, ["a", "b"], 0.2, seed=1)[1]
    other = stratified_split(labels, ["a", "b"], 0.2, seed=2)[1]
    assert np.array_equal(val, again) and not np.array_equal(val, other)
    with pytest.raises(VistaError, match="Cannot stratify on"):
        stratified_split(labels, ["c"], 0.2, 0)


def test_morpho_measures_on_hand_drawn_strokes() -> None:
    img = np.zeros((3, 28, 28))
    img[0, 4:24, 10:13] = 1.0  # upright bar, 3 wide, 20 tall
    img[1, 4:24, 12] = 1.0  # upright line, 1 wide
    for r in range(4, 24):  # leaning right: higher rows sit further right
        c = 20 - (r - 4) // 2
        img[2, r, c : c + 3] = 1.0
    m = measure_digits(img)
    assert m["area"].tolist() == [60, 20, 60]
    assert m["width"].tolist() == [3, 1, 12] and m["height"].tolist() == [20, 20, 20]
    assert m["thickness"][1] == pytest.approx(1.0)
    assert 2.5 < m["thickness"][0] <= 3.0
    assert m["slant"][0] == pytest.approx(0.0) and m["slant"][1] == pytest.approx(0.0)
    # The shear of the leaning stroke: x moves 1/2 pixel per row -> atan(0.5).
    assert m["slant"][2] == pytest.approx(np.arctan(0.5), abs=0.03)
    assert m["length"][1] == 20


def test_quantile_bins_merge_ties() -> None:
    v = np.array([1.0, 1.0, 1.0, 1.0, 2.0, 3.0])
    idx, names = quantile_bins(v, np.arange(6), 3)
    assert len(names) == len(np.unique(idx)) and idx[0] == 0 and idx[-1] == len(names) - 1


def test_morpho_mnist_carries_intersecting_labels() -> None:
    ds = make_dataset(DatasetConfig(name="morpho_mnist"))
    assert {"digit", "thickness", "slant", "width", "area"} <= set(ds.labels)
    assert np.bincount(ds.labels["thickness"]).min() > 15000
    # Real attributes: 1s are the thinnest-area digit, 0s and 8s the largest.
    area = ds.measures["area"]
    per_digit = [area[ds.labels["digit"] == d].mean() for d in range(10)]
    assert int(np.argmin(per_digit)) == 1


def _names(ds, label):
    return [ds.class_names[label][i] for i in ds.labels[label]]


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_fairface_both_formats_use_the_spec_encoding(fmt: str, tmp_path: Path) -> None:
    root, rows = (make_fairface_csv if fmt == "csv" else make_fairface_parquet)(tmp_path)
    ds = make_dataset(DatasetConfig(name="fairface", root=str(root)))
    for k in ("age", "gender", "race"):
        assert ds.class_names[k] == FAIRFACE_CLASS_NAMES[k]
    flat = [r for split_rows in rows.values() for r in split_rows]
    assert _names(ds, "race") == [r["race"] for r in flat]
    assert _names(ds, "age") == [r["age"].replace("more than 70", "70+") for r in flat]
    assert len(ds.splits["train"]) == 20 and len(ds.splits["val"]) == 8
    assert np.asarray(ds.load(np.array([0]))[0]).shape == (28, 28, 3)


def test_fairface_hf_indices_are_remapped_by_name(tmp_path: Path) -> None:
    root, rows = make_fairface_parquet(tmp_path)
    ds = make_dataset(DatasetConfig(name="fairface", root=str(root)))
    hf_white = HF_FAIRFACE_NAMES["race"].index("White")
    assert hf_white != 0
    for i, r in enumerate(rows["train"]):
        assert ds.labels["race"][i] == FAIRFACE_CLASS_NAMES["race"].index(r["race"])
        assert ds.labels["gender"][i] == ["Male", "Female"].index(r["gender"])


def test_fairface_train_only_is_split_on_the_joint_labels(tmp_path: Path) -> None:
    root, _ = make_fairface_csv(tmp_path, n_train=60, n_val=0)
    (root / "fairface_label_val.csv").unlink()
    ds = make_dataset(DatasetConfig(name="fairface", root=str(root)))
    assert ds.split_info["stratify"] == ["age", "gender", "race"]
    assert len(ds.splits["train"]) + len(ds.splits["val"]) == 60


def test_imagefolder_with_and_without_split_folders(tmp_path: Path) -> None:
    flat = make_dataset(
        DatasetConfig(name="imagefolder", root=str(make_image_folder(tmp_path / "a")))
    )
    assert flat.class_names["class"] == ["cat", "dog", "fox"]
    assert np.bincount(flat.labels["class"]).tolist() == [6, 6, 6]
    assert flat.split_info["method"] == "stratified"
    split = make_dataset(
        DatasetConfig(
            name="imagefolder", root=str(make_image_folder(tmp_path / "b", split_dirs=True))
        )
    )
    assert len(split.splits["train"]) == 18 and len(split.splits["val"]) == 6
    img = split.load(split.splits["val"][:1])[0]
    assert img.shape[-1] == 3 and img.dtype == np.uint8


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_table_reads_labels_and_its_own_split(fmt: str, tmp_path: Path) -> None:
    path = make_table(tmp_path, fmt, with_split=True)
    ds = make_dataset(
        DatasetConfig(
            name="table",
            root=str(path),
            path_column="file",
            labels=["shape", "colour"],
            split_column="split",
        )
    )
    assert ds.class_names["shape"] == ["round", "square"]
    assert ds.class_names["colour"] == ["0", "1", "2"]
    assert ds.labels["shape"].tolist() == [i % 2 for i in range(24)]
    assert ds.splits["val"].tolist() == [i for i in range(24) if i % 4 == 0]


def test_hf_saved_dataset_dir(tmp_path: Path) -> None:
    ds = make_dataset(
        DatasetConfig(name="hf", root=str(make_hf_saved(tmp_path)), image_column="img")
    )
    assert ds.class_names["colour"] == ["red", "green", "blue"]
    assert len(ds.splits["train"]) == 18 and len(ds.splits["val"]) == 6
    img = ds.load(np.array([4]))[0]
    assert img.shape == (24, 20, 3) and int(np.argmax(img.reshape(-1, 3).mean(0))) == 4 % 3


@pytest.mark.parametrize("layout", ["save_to_disk", "parquet_snapshot"])
def test_hf_directories_written_by_the_datasets_library(layout: str, tmp_path: Path) -> None:
    """The real ``datasets`` package writes the directory; vista reads it with pyarrow alone."""
    hf = pytest.importorskip("datasets")
    from tests.sources.fixtures import image

    names = ["red", "green", "blue"]
    features = hf.Features({"img": hf.Image(), "colour": hf.ClassLabel(names=names)})
    parts = {"train": range(12), "validation": range(12, 18)}
    dd = hf.DatasetDict(
        {
            split: hf.Dataset.from_dict(
                {
                    "img": [image(i % 3, i) for i in ids],
                    "colour": [(i + 1) % 3 for i in ids],
                },
                features=features,
            )
            for split, ids in parts.items()
        }
    )
    root = tmp_path / "hfdata"
    if layout == "save_to_disk":
        dd.save_to_disk(str(root))
    else:  # what a hub snapshot of a dataset repository holds
        for split, d in dd.items():
            (root / "data").mkdir(parents=True, exist_ok=True)
            d.to_parquet(str(root / "data" / f"{split}-00000-of-00001.parquet"))
    ds = make_dataset(DatasetConfig(name="hf", root=str(root), image_column="img"))
    assert ds.class_names["colour"] == names
    assert len(ds.splits["train"]) == 12 and len(ds.splits["val"]) == 6
    rows = np.concatenate([ds.splits["train"], ds.splits["val"]])
    assert sorted(rows.tolist()) == list(range(18))
    for i in (0, 5, 13):
        img = ds.load(np.array([i]))[0]
        np.testing.assert_array_equal(img, np.asarray(image(i % 3, i)))
        assert ds.labels["colour"][i] == (i + 1) % 3


def test_bad_dataset_inputs_get_one_sentence(tmp_path: Path) -> None:
    path = make_table(tmp_path)
    with pytest.raises(VistaError, match="has no column 'path'"):
        make_dataset(DatasetConfig(name="table", root=str(path), labels=["shape"]))
    with pytest.raises(VistaError, match="dataset.labels is empty"):
        make_dataset(DatasetConfig(name="table", root=str(path), path_column="file"))
    (tmp_path / "img" / "3.png").write_bytes(b"not a png")
    ds = make_dataset(
        DatasetConfig(name="table", root=str(path), path_column="file", labels=["shape"])
    )
    with pytest.raises(VistaError, match="Could not read"):
        ds.load(np.array([3]))
    with pytest.raises(VistaError, match="does not exist"):
        make_dataset(DatasetConfig(name="imagefolder", root=str(tmp_path / "nope")))
    with pytest.raises(VistaError, match="Unknown dataset option"):
        make_dataset({"name": "mnist", "colour": 1})


def test_unknown_dataset_lists_the_registry() -> None:
    with pytest.raises(VistaError, match="choose one of"):
        make_dataset(DatasetConfig(name="imagenet-21k"))
