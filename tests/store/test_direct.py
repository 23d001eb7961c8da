"""Reading rows into the caller's array: the byte-level path of uncompressed stores equals h5py's
reading, the other layouts fall back to h5py, and parallel readers get the same rows."""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import h5py
import numpy as np
import pytest

from tests.conftest import write_original_vista_store, write_vista_store
from vista.errors import VistaError
from vista.store import ActivationStore, shard_store, writer
from vista.store.stream import iter_row_blocks


def _ranges(n: int, rng: np.random.Generator, k: int = 25) -> list[tuple[int, int]]:
    out = [(0, n), (n - 1, n), (0, 1)]
    for _ in range(k):
        a = int(rng.integers(0, n))
        out.append((a, int(rng.integers(a + 1, n + 1))))
    return out


def _into(st: ActivationStore, split: str, a: int, b: int) -> np.ndarray:
    info = st.split(split)
    out = np.full((b - a, *info.row_shape), np.nan, dtype=info.dtype)
    st.read_rows_into(split, a, b, out)
    return out


@pytest.mark.parametrize("compression", [None, "zstd", "lz4"])
@pytest.mark.parametrize("shape", [(203, 5, 7), (1001, 9)])
def test_read_rows_into_equals_h5py_reading(
    tmp_path: Path,
    rng: np.random.Generator,
    compression: str | None,
    shape: tuple[int, ...],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(writer, "_TARGET_CHUNK_BYTES", 1000)  # many chunks of a few rows
    acts = rng.normal(size=shape).astype(np.float16)
    path = write_vista_store(tmp_path / "s.h5", {"training": acts}, compression=compression)
    with ActivationStore(path) as st:
        assert (st._direct_rows("training") is not None) == (compression is None)
        with h5py.File(path, "r") as f:
            chunks = f["training/encoded"].chunks
        assert chunks[0] < shape[0]  # several chunks, the last one partial
        for a, b in _ranges(shape[0], rng):
            np.testing.assert_array_equal(_into(st, "training", a, b), acts[a:b])


def test_an_unchunked_original_file_is_read_from_its_bytes(
    tmp_path: Path, rng: np.random.Generator
) -> None:
    enc = rng.normal(size=(30, 4, 6)).astype(np.float16)
    path = tmp_path / "contiguous.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("training/encoded", data=enc)  # contiguous: no chunks, no filters
    with ActivationStore(path) as st:
        direct = st._direct_rows("training")
        assert direct is not None and direct.chunk_rows == 30
        for a, b in _ranges(30, rng):
            np.testing.assert_array_equal(_into(st, "training", a, b), enc[a:b])


def test_the_original_layout_reads_the_same(tmp_path: Path, rng: np.random.Generator) -> None:
    enc = rng.normal(size=(12, 4, 3)).astype(np.float32)
    path = write_original_vista_store(
        tmp_path / "o.h5", {"training": (enc, {"race": np.zeros(12, int)})}, batch=5
    )
    with ActivationStore(path) as st:
        for a, b in _ranges(12, rng):
            np.testing.assert_array_equal(
                _into(st, "training", a, b), st.read_rows("training", a, b)
            )


def test_a_big_endian_dataset_falls_back_to_h5py(tmp_path: Path, rng: np.random.Generator) -> None:
    enc = rng.normal(size=(20, 3)).astype(">f4")
    path = tmp_path / "be.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("training/encoded", data=enc, chunks=(4, 3))
    with ActivationStore(path) as st:
        assert st._direct_rows("training") is None
        np.testing.assert_array_equal(_into(st, "training", 3, 17), enc[3:17])


def test_threads_reading_at_once_get_the_right_rows(
    tmp_path: Path, rng: np.random.Generator, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(writer, "_TARGET_CHUNK_BYTES", 4096)
    acts = rng.normal(size=(4000, 3, 8)).astype(np.float16)
    path = write_vista_store(tmp_path / "s.h5", {"training": acts}, compression=None)
    ranges = _ranges(4000, rng, k=200)
    with ActivationStore(path) as st, ThreadPoolExecutor(4) as pool:
        got = list(pool.map(lambda r: _into(st, "training", *r), ranges))
    for (a, b), rows in zip(ranges, got, strict=True):
        np.testing.assert_array_equal(rows, acts[a:b])


def test_a_file_truncated_after_opening_is_named(tmp_path: Path, rng: np.random.Generator) -> None:
    acts = rng.normal(size=(500, 16)).astype(np.float16)
    path = write_vista_store(tmp_path / "s.h5", {"training": acts}, compression=None)
    with ActivationStore(path) as st:
        assert st._direct_rows("training") is not None
        os.truncate(path, path.stat().st_size // 3)
        with pytest.raises(VistaError, match="truncated"):
            _into(st, "training", 0, 500)


def test_sharded_rows_into_cross_shard_boundaries(tmp_path: Path, rng: np.random.Generator) -> None:
    acts = rng.normal(size=(300, 2, 8)).astype(np.float16)
    src = write_vista_store(tmp_path / "s.h5", {"training": acts})
    for codec in (None, "zstd"):
        out = shard_store(src, tmp_path / f"sh-{codec}", shard_bytes=40 * 32, compression=codec)
        with ActivationStore(out) as st:
            assert len(st.manifest["splits"]["training"]["shards"]) > 5
            for a, b in _ranges(300, rng):
                np.testing.assert_array_equal(_into(st, "training", a, b), acts[a:b])


@pytest.mark.parametrize("readers", [1, 2, 3])
def test_row_blocks_come_in_order_with_any_number_of_readers(
    tmp_path: Path, rng: np.random.Generator, readers: int
) -> None:
    acts = rng.normal(size=(257, 3, 4)).astype(np.float16)
    path = write_vista_store(tmp_path / "s.h5", {"training": acts}, compression=None)
    blocks = list(iter_row_blocks(path, "training", 20, readers=readers))
    assert [a for a, _ in blocks] == list(range(0, 257, 20))
    np.testing.assert_array_equal(np.concatenate([r for _, r in blocks]), acts)


def test_row_blocks_name_nan_rows(tmp_path: Path) -> None:
    path = write_vista_store(
        tmp_path / "s.h5", {"training": np.ones((100, 4), np.float16)}, compression=None
    )
    with h5py.File(path, "r+") as f:
        f["training/encoded"][57, 2] = np.inf
    with pytest.raises(VistaError, match="Rows 40-60 .*NaN or infinite"):
        list(iter_row_blocks(path, "training", 20, readers=2))
