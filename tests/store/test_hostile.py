"""Hostile and broken stores: each defect is one sentence naming the file, the place and the fix
(never a KeyError, a JSON error or an HDF5 trace)."""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.conftest import write_vista_store
from vista.errors import VistaError
from vista.store import ActivationStore


def _raw(
    path: Path, encoded: object = None, labels: dict | None = None, names: object = None
) -> Path:
    with h5py.File(path, "w") as f:
        g = f.create_group("training")
        if isinstance(encoded, np.ndarray):
            g["encoded"] = encoded
        elif encoded == "group":
            g.create_group("encoded")
        for k, v in (labels or {}).items():
            g[f"labels/{k}"] = v
            if names is not None:
                g[f"labels/{k}"].attrs["class_names"] = names
    return path


@pytest.mark.parametrize(
    ("encoded", "message"),
    [
        ("group", "is a group, not an array of activations"),
        (np.zeros((0, 8), np.float32), "has no images"),
        (np.zeros((4, 0, 8), np.float32), "(no tokens or no dimensions)"),
        (np.zeros((4, 3, 0), np.float32), "(no tokens or no dimensions)"),
    ],
)
def test_broken_activation_arrays(tmp_path: Path, encoded: object, message: str) -> None:
    p = _raw(tmp_path / "s.h5", encoded)
    with pytest.raises(VistaError, match=message.replace("(", r"\(").replace(")", r"\)")):
        ActivationStore(p)


@settings(max_examples=25, deadline=None)
@given(
    values=st.lists(st.integers(-5, 12), min_size=1, max_size=30),
    n_names=st.integers(1, 8),
)
def test_label_values_must_be_class_indices_of_the_names(
    tmp_path_factory: pytest.TempPathFactory, values: list[int], n_names: int
) -> None:
    y = np.asarray(values, dtype=np.int64)
    names = json.dumps([f"c{i}" for i in range(n_names)])
    p = _raw(
        tmp_path_factory.mktemp("h") / "s.h5", np.zeros((len(y), 4), np.float32), {"y": y}, names
    )
    with ActivationStore(p) as s:
        if y.min() < -1:  # -1: an image without this label
            with pytest.raises(VistaError, match=r"has the negative value -\d+ \(row \d+\)"):
                s.labels("training")
        elif y.max() >= n_names:
            with pytest.raises(VistaError, match=rf"but only {n_names} class names"):
                s.labels("training")
        else:
            np.testing.assert_array_equal(s.labels("training")["y"], y)


@pytest.mark.parametrize("names", ["not json [", json.dumps({"a": 1}), json.dumps([1, 2])])
def test_class_names_that_are_not_a_json_list_of_strings(tmp_path: Path, names: str) -> None:
    p = _raw(tmp_path / "s.h5", np.zeros((3, 4), np.float32), {"y": np.zeros(3, np.int64)}, names)
    with ActivationStore(p) as s, pytest.raises(VistaError, match="not a JSON list of strings"):
        s.class_names("training", "y")


def test_a_corrupt_compressed_chunk_is_named_with_its_rows(tmp_path: Path) -> None:
    x = np.random.default_rng(0).normal(size=(4096, 16)).astype(np.float32)
    p = write_vista_store(tmp_path / "s.h5", {"training": x}, dtype="float32")
    with h5py.File(p, "r") as f:
        info = f["training/encoded"].id.get_chunk_info(0)
    with open(p, "r+b") as fh:
        fh.seek(info.byte_offset)  # the compressed frame's header
        fh.write(b"\xff" * min(64, info.size))
    with ActivationStore(p) as s, pytest.raises(VistaError, match=r"cannot be read .*corrupt"):
        s.read_rows("training", 0, 100)


@pytest.fixture
def small_disk(tmp_path: Path):
    """A 3 MiB tmpfs (where root may mount one), made larger by ``grow``."""
    import subprocess

    d = tmp_path / "disk"
    d.mkdir()
    try:
        r = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(d)], capture_output=True
        )
    except OSError:  # no mount command
        pytest.skip("mounting a tmpfs is not possible here")
    if r.returncode != 0:
        pytest.skip("mounting a tmpfs is not allowed here (needs root)")

    def grow() -> None:
        subprocess.run(["mount", "-o", "remount,size=32m", str(d)], check=True)

    yield d, grow
    subprocess.run(["umount", str(d)], check=False)


def test_a_full_disk_stops_with_a_sentence_and_resumes_once_space_is_freed(small_disk) -> None:
    from vista.store import StoreWriter
    from vista.store.layout import ROWS_WRITTEN_ATTR
    from vista.store.writer import SplitSpec, partial_path

    disk, grow = small_disk
    x = np.random.default_rng(0).normal(size=(6000, 128)).astype(np.float32)  # 3 MiB raw
    spec = {"training": SplitSpec(n_rows=len(x), d_model=128)}

    def write(w: StoreWriter) -> None:
        for s in range(w.rows_written("training"), len(x), 500):
            w.append("training", x[s : s + 500], {}, np.arange(s, min(s + 500, len(x))))

    out = disk / "s.h5"
    full = pytest.raises(VistaError, match="is full|filled up")
    with full, StoreWriter(out, spec, {"encoder": "t"}, dtype="float32", compression=None) as w:
        write(w)
    with h5py.File(partial_path(out)) as f:
        claimed = int(f["training"].attrs[ROWS_WRITTEN_ATTR])
        assert 0 < claimed < len(x)
        np.testing.assert_array_equal(f["training/encoded"][:claimed], x[:claimed])
    grow()  # space freed
    with StoreWriter(out, spec, {"encoder": "t"}, dtype="float32", compression=None) as w:
        assert w.rows_written("training") == claimed
        write(w)
        w.finish()
    with ActivationStore(out) as s:
        np.testing.assert_array_equal(s.read_rows("training", 0, len(x)), x)
