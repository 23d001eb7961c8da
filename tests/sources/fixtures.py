"""Small image datasets written by the tests in the public formats vista reads.

Images carry their class in their colour (class c is brightest in channel c % 3), so encoders see a
real signal; sizes vary so the resize path runs.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import numpy as np
from PIL import Image

# HuggingFaceM4/FairFace's ClassLabel orders (they differ from the project's, docs/originals.md §3.1).
HF_FAIRFACE_NAMES = {
    "age": ["0-2", "3-9", "10-19", "20-29", "30-39", "40-49", "50-59", "60-69", "more than 70"],
    "gender": ["Male", "Female"],
    "race": [
        "East Asian",
        "Indian",
        "Black",
        "White",
        "Middle Eastern",
        "Latino_Hispanic",
        "Southeast Asian",
    ],
}


def image(cls: int, i: int, size: tuple[int, int] = (24, 20)) -> Image.Image:
    rng = np.random.default_rng(cls * 1000 + i)
    a = rng.integers(0, 60, size=(*size, 3)).astype(np.uint8)
    a[..., cls % 3] += 150
    return Image.fromarray(a)


def png_bytes(im: Image.Image) -> bytes:
    buf = io.BytesIO()
    im.save(buf, format="PNG")
    return buf.getvalue()


def make_image_folder(root: Path, per_class: int = 6, split_dirs: bool = False) -> Path:
    classes = ["cat", "dog", "fox"]
    parts = {"train": per_class, "val": max(2, per_class // 3)} if split_dirs else {"": per_class}
    for part, n in parts.items():
        for c, name in enumerate(classes):
            d = root / part / name if part else root / name
            d.mkdir(parents=True, exist_ok=True)
            for i in range(n):
                size = (24, 20) if i % 2 else (32, 32)
                image(c, i + (100 if part == "val" else 0), size).save(d / f"{i}.png")
    return root


def make_table(root: Path, fmt: str = "csv", n: int = 24, with_split: bool = False) -> Path:
    (root / "img").mkdir(parents=True, exist_ok=True)
    rows = []
    for i in range(n):
        shape, colour = i % 2, (i // 2) % 3
        image(colour, i).save(root / "img" / f"{i}.png")
        row = {"file": f"img/{i}.png", "shape": ["round", "square"][shape], "colour": colour}
        if with_split:
            row["split"] = "val" if i % 4 == 0 else "train"
        rows.append(row)
    if fmt == "csv":
        path = root / "table.csv"
        with open(path, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=list(rows[0]))
            w.writeheader()
            w.writerows(rows)
        return path
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = root / "table.parquet"
    pq.write_table(pa.Table.from_pylist(rows), path)
    return path


def fairface_rows(n: int, seed: int = 0) -> list[dict[str, str]]:
    rng = np.random.default_rng(seed)
    ages = HF_FAIRFACE_NAMES["age"]
    races = HF_FAIRFACE_NAMES["race"]
    return [
        {
            "age": ages[int(rng.integers(len(ages)))],
            "gender": ["Male", "Female"][int(rng.integers(2))],
            "race": races[int(rng.integers(len(races)))],
        }
        for _ in range(n)
    ]


def make_fairface_csv(
    root: Path, n_train: int = 20, n_val: int = 8
) -> tuple[Path, dict[str, list]]:
    """The original release: label CSVs beside train/ and val/ JPEG folders."""
    rows_by_split = {"train": fairface_rows(n_train, 1), "val": fairface_rows(n_val, 2)}
    for split, rows in rows_by_split.items():
        (root / split).mkdir(parents=True, exist_ok=True)
        with open(root / f"fairface_label_{split}.csv", "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["file", "age", "gender", "race", "service_test"])
            for i, r in enumerate(rows):
                image(i % 3, i, (28, 28)).convert("RGB").save(root / split / f"{i + 1}.jpg")
                w.writerow([f"{split}/{i + 1}.jpg", r["age"], r["gender"], r["race"], "True"])
    return root, rows_by_split


def make_fairface_parquet(
    root: Path, n_train: int = 20, n_val: int = 8
) -> tuple[Path, dict[str, list]]:
    """The HF layout (``HuggingFaceM4/FairFace``, config 0.25): parquet shards with ClassLabel ints."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    features = {
        "image": {"_type": "Image"},
        **{k: {"names": v, "_type": "ClassLabel"} for k, v in HF_FAIRFACE_NAMES.items()},
        "service_test": {"dtype": "bool", "_type": "Value"},
    }
    meta = {b"huggingface": json.dumps({"info": {"features": features}}).encode()}
    d = root / "0.25"
    d.mkdir(parents=True, exist_ok=True)
    rows_by_split = {"train": fairface_rows(n_train, 1), "validation": fairface_rows(n_val, 2)}
    for split, rows in rows_by_split.items():
        table = pa.table(
            {
                "image": [
                    {"bytes": png_bytes(image(i % 3, i, (28, 28))), "path": None}
                    for i in range(len(rows))
                ],
                **{
                    k: pa.array([HF_FAIRFACE_NAMES[k].index(r[k]) for r in rows], pa.int64())
                    for k in HF_FAIRFACE_NAMES
                },
                "service_test": [True] * len(rows),
            }
        )
        pq.write_table(table.replace_schema_metadata(meta), d / f"{split}-00000-of-00001.parquet")
    return d, rows_by_split


def make_hf_saved(root: Path, n: int = 18) -> Path:
    """A ``datasets.DatasetDict.save_to_disk`` directory: Arrow stream files + dataset_info.json."""
    import pyarrow as pa

    names = ["red", "green", "blue"]
    features = {"img": {"_type": "Image"}, "colour": {"names": names, "_type": "ClassLabel"}}
    splits = {"train": range(n), "test": range(n, n + 6)}
    for split, ids in splits.items():
        d = root / split
        d.mkdir(parents=True, exist_ok=True)
        t = pa.table(
            {
                "img": [{"bytes": png_bytes(image(i % 3, i)), "path": None} for i in ids],
                "colour": pa.array([i % 3 for i in ids], pa.int64()),
            }
        )
        with (
            pa.OSFile(str(d / "data-00000-of-00001.arrow"), "wb") as sink,
            pa.ipc.new_stream(sink, t.schema) as w,
        ):
            w.write_table(t)
        (d / "dataset_info.json").write_text(json.dumps({"features": features}))
        (d / "state.json").write_text(
            json.dumps({"_data_files": [{"filename": "data-00000-of-00001.arrow"}]})
        )
    (root / "dataset_dict.json").write_text(json.dumps({"splits": list(splits)}))
    return root


def dataset_fixture(name: str, tmp: Path) -> dict:
    """DatasetConfig keyword arguments that make the registered dataset ``name`` loadable offline."""
    if name == "imagefolder":
        return {"root": str(make_image_folder(tmp / "folder"))}
    if name == "table":
        return {
            "root": str(make_table(tmp / "table")),
            "path_column": "file",
            "labels": ["shape", "colour"],
        }
    if name == "hf":
        return {"root": str(make_hf_saved(tmp / "hf")), "image_column": "img"}
    if name == "fairface":
        return {"root": str(make_fairface_csv(tmp / "fairface")[0])}
    return {}
