"""The activation store: round trip, the original VISTA layout, atomic and resumable writes, bad input."""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np
import pytest

from tests.conftest import write_original_vista_store, write_vista_store
from vista.errors import VistaError
from vista.store import ActivationStore, SplitSpec, StoreWriter, StreamConfig, TokenStream, layout
from vista.store.writer import partial_path


def test_round_trip_keeps_values_labels_indices_and_attributes(
    tmp_path: Path, rng: np.random.Generator
) -> None:
    acts = rng.normal(size=(50, 4, 8)).astype(np.float32)
    y = rng.integers(0, 3, size=50)
    p = write_vista_store(
        tmp_path / "s.h5", {"training": acts}, {"training": {"kind": y}}, {"kind": ["a", "b", "c"]}
    )
    with ActivationStore(p) as st:
        info = st.split("training")
        assert (info.n_rows, info.n_tokens, info.d_model, info.has_token_axis) == (50, 4, 8, True)
        np.testing.assert_array_equal(st.read_rows("training", 0, 50), acts.astype(np.float16))
        np.testing.assert_array_equal(st.labels("training")["kind"], y)
        np.testing.assert_array_equal(st.original_indices("training"), np.arange(50))
        assert st.class_names("training", "kind") == ["a", "b", "c"]
        assert st.format_version == layout.FORMAT_VERSION
        assert (
            st.attrs["encoder"] == "test" and st.attrs["d_model"] if "d_model" in st.attrs else True
        )
    with h5py.File(p) as f:  # the layout is the original one: nothing renamed
        assert f["training/encoded"].dtype == np.float16
        assert f["training/labels/kind"].dtype == np.int64
        assert json.loads(f["training/labels/kind"].attrs["class_names"]) == ["a", "b", "c"]


def test_reads_the_original_vista_layout_unchanged(
    tmp_path: Path, rng: np.random.Generator
) -> None:
    enc = rng.normal(size=(20, 5, 6)).astype(np.float32)
    race = rng.integers(0, 7, size=20)
    gender = rng.integers(0, 2, size=20)
    p = write_original_vista_store(
        tmp_path / "orig.h5", {"validation": (enc, {"race": race, "gender": gender})}
    )
    with ActivationStore(p) as st:
        assert st.format_version == 0
        info = st.split("validation")
        assert (info.n_rows, info.n_tokens, info.d_model) == (20, 5, 6)
        assert info.label_names == ("gender", "race")
        np.testing.assert_array_equal(st.read_rows("validation", 3, 7), enc[3:7].astype(np.float16))
        np.testing.assert_array_equal(st.original_indices("validation"), np.arange(20) * 3)
        # No stored names: FairFace's encodings (docs/originals.md §3.1) for a FairFace file.
        assert st.class_names("validation", "race")[0] == "White"
        assert st.class_names("validation", "gender") == ["Male", "Female"]


def test_writer_publishes_only_on_finish_and_resumes_to_the_same_bytes(
    tmp_path: Path, rng: np.random.Generator, monkeypatch: pytest.MonkeyPatch
) -> None:
    import vista.store.writer as writer

    monkeypatch.setattr(writer, "_TARGET_CHUNK_BYTES", 5 * 4 * 2)  # chunks of 5 rows
    acts = rng.normal(size=(30, 4)).astype(np.float32)
    spec = {
        "training": SplitSpec(n_rows=30, d_model=4, labels={"y": ["0", "1"]}),
        "validation": SplitSpec(n_rows=3, d_model=4, labels={"y": ["0", "1"]}),
    }
    y = rng.integers(0, 2, size=30)

    def write(path: Path, stop: int | None = None) -> None:
        w = StoreWriter(path, spec, {"encoder": "e"})
        for a in range(w.rows_written("training"), 30, 4):
            w.append("training", acts[a : a + 4], {"y": y[a : a + 4]}, np.arange(a, a + 4)[:30])
            if stop is not None and a + 4 >= stop:
                w.close()  # Ctrl-C: the incomplete chunk's rows are dropped
                return
        w.append("validation", acts[:3], {"y": y[:3]}, np.arange(3))
        w.finish()

    whole = tmp_path / "whole.h5"
    write(whole)
    path = tmp_path / "s.h5"
    write(path, stop=12)
    assert not path.exists() and partial_path(path).exists()
    with pytest.raises(VistaError, match="interrupted extraction"):
        ActivationStore(path)
    assert StoreWriter(path, spec, {"encoder": "e"}).rows_written("training") == 10
    write(path)
    assert path.exists() and not partial_path(path).exists()
    with ActivationStore(path) as st:
        np.testing.assert_array_equal(st.read_rows("training", 0, 30), acts.astype(np.float16))
        np.testing.assert_array_equal(st.labels("training")["y"], y)
    assert path.read_bytes() == whole.read_bytes()


def test_writer_writes_whole_chunks_and_a_killed_writer_loses_only_the_buffer(
    tmp_path: Path, rng: np.random.Generator
) -> None:
    path = tmp_path / "s.h5"
    spec = {"training": SplitSpec(n_rows=1000, n_tokens=3, d_model=512)}
    acts = rng.normal(size=(1000, 3, 512)).astype(np.float32)
    w = StoreWriter(path, spec, {}, compression="gzip")
    chunk = w._file["training"]["encoded"].chunks[0]  # type: ignore[index]
    assert chunk == (1 << 20) // (3 * 512 * 2) == 341  # 1 MiB chunks of 3 KiB rows
    for a in range(0, 700, 100):
        w.append("training", acts[a : a + 100], {}, np.arange(a, a + 100))
    assert w.rows_written("training") == 700
    with h5py.File(partial_path(path)) as f:
        assert f["training"].attrs["rows_written"] == 682  # two whole chunks on disk
    w._file.close()  # type: ignore[union-attr]  # SIGKILL: the 18 buffered rows are lost
    w._file = None
    w = StoreWriter(path, spec, {}, compression="gzip")
    assert w.rows_written("training") == 682
    w.append("training", acts[682:1000], {}, np.arange(682, 1000))
    w.finish()
    with ActivationStore(path) as st:
        np.testing.assert_array_equal(st.read_rows("training", 0, 1000), acts.astype(np.float16))
        np.testing.assert_array_equal(st.original_indices("training"), np.arange(1000))


def test_writer_refuses_values_beyond_float16(tmp_path: Path) -> None:
    w = StoreWriter(tmp_path / "s.h5", {"training": SplitSpec(n_rows=2, d_model=2)}, {})
    with pytest.raises(VistaError, match=r"beyond the range of float16.*dtype=float32"):
        w.append("training", np.array([[1e5, 0.0]], np.float32), {}, np.arange(1))
    w.close()


def test_a_partial_file_for_another_spec_is_refused_not_overwritten(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import vista.store.writer as writer

    monkeypatch.setattr(writer, "_TARGET_CHUNK_BYTES", 2 * 2 * 2)  # chunks of 2 rows
    path = tmp_path / "s.h5"
    w = StoreWriter(path, {"training": SplitSpec(n_rows=4, d_model=2)}, {"encoder": "a"})
    w.append("training", np.ones((2, 2), np.float32), {}, np.arange(2))
    w.close()
    with pytest.raises(VistaError, match="was started with other splits"):
        StoreWriter(path, {"training": SplitSpec(n_rows=4, d_model=3)}, {"encoder": "a"})
    with pytest.raises(VistaError, match="was started with another encoder \\('a', not 'b'\\)"):
        StoreWriter(path, {"training": SplitSpec(n_rows=4, d_model=2)}, {"encoder": "b"})
    w = StoreWriter(path, {"training": SplitSpec(n_rows=4, d_model=2)}, {"encoder": "a"})
    assert w.rows_written("training") == 2  # nothing was lost
    w.close()
    w = StoreWriter(
        path, {"training": SplitSpec(n_rows=4, d_model=3)}, {"encoder": "a"}, resume=False
    )
    assert w.rows_written("training") == 0  # resume=false starts over
    w.close()


def test_writer_refuses_incomplete_splits_and_nan(tmp_path: Path) -> None:
    w = StoreWriter(tmp_path / "s.h5", {"training": SplitSpec(n_rows=4, d_model=2)}, {})
    with pytest.raises(VistaError, match="NaN"):
        w.append("training", np.array([[np.nan, 0.0]], np.float32), {}, np.arange(1))
    with pytest.raises(VistaError, match="1 of 4|0 of 4"):
        w.finish()
    with pytest.raises(VistaError, match="shape"):
        w.append("training", np.ones((1, 3), np.float32), {}, np.arange(1))
    w.close()


def test_missing_file_says_how_to_fix(tmp_path: Path) -> None:
    with pytest.raises(VistaError, match="does not exist.*vista extract"):
        ActivationStore(tmp_path / "nope.h5")


def test_corrupt_file_is_reported_in_one_sentence(tmp_path: Path) -> None:
    p = tmp_path / "bad.h5"
    p.write_bytes(b"not an hdf5 file at all" * 10)
    with pytest.raises(VistaError, match="not a readable HDF5 file"):
        ActivationStore(p)


def test_truncated_store_is_reported(tmp_path: Path, rng: np.random.Generator) -> None:
    p = write_vista_store(
        tmp_path / "s.h5", {"training": rng.normal(size=(2000, 64)).astype(np.float32)}
    )
    data = p.read_bytes()
    p.write_bytes(data[: len(data) // 3])
    with pytest.raises(VistaError), ActivationStore(p) as st:
        st.read_rows("training", 0, 2000)


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (
            lambda g: g.create_dataset("encoded", data=np.zeros((2, 2, 2, 2), np.float16)),
            "expected \\(N, D\\)",
        ),
        (lambda g: g.create_dataset("encoded", data=np.zeros((2, 3), np.int32)), "floating point"),
        (
            lambda g: (
                g.create_dataset("encoded", data=np.zeros((2, 3), np.float16)),
                g.create_dataset("labels/y", data=np.zeros(5, np.int64)),
            ),
            "one value per image",
        ),
        (
            lambda g: (
                g.create_dataset("encoded", data=np.zeros((2, 3), np.float16)),
                g.create_dataset("labels/y", data=np.zeros(2, np.float32)),
            ),
            "integer class indices",
        ),
    ],
)
def test_wrong_shapes_and_dtypes_are_named(tmp_path: Path, make, message: str) -> None:
    p = tmp_path / "s.h5"
    with h5py.File(p, "w") as f:
        make(f.create_group("training"))
    with pytest.raises(VistaError, match=message):
        ActivationStore(p)


def test_a_file_without_encoded_is_not_a_store(tmp_path: Path) -> None:
    p = tmp_path / "s.h5"
    with h5py.File(p, "w") as f:
        f.create_dataset("x", data=np.zeros(3))
    with pytest.raises(VistaError, match="not an activation store"):
        ActivationStore(p)


def test_unknown_label_lists_the_available_ones(labelled_store: Path) -> None:
    with (
        ActivationStore(labelled_store) as st,
        pytest.raises(VistaError, match="available labels: \\['shape'\\]"),
    ):
        st.labels("validation", ["age"])


@pytest.mark.parametrize("dtype", ["float16", "float32", "float64"])
def test_all_finite_reads_the_exponent_bits(dtype: str) -> None:
    from vista.store.stream import all_finite

    info = np.finfo(dtype)
    ok = np.array(
        [0.0, -0.0, info.max, -info.max, info.tiny, info.smallest_subnormal, 1.5], dtype=dtype
    )
    assert all_finite(ok)
    for bad in (np.nan, np.inf, -np.inf):
        x = ok.copy()
        x[3] = bad
        assert not all_finite(x) and not all_finite(x.reshape(1, -1))
    assert all_finite(ok[::2]) and not all_finite(np.array([1.0, np.nan], dtype=dtype)[::1])


def test_stored_dtype_batches_are_the_float32_batches_uncast(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    store = write_vista_store(
        tmp_path / "s.h5", {"training": rng.normal(size=(300, 4, 8)).astype(np.float32)}
    )
    for shuffle in (False, True):
        a = list(TokenStream(store, StreamConfig(batch_size=64, shuffle=shuffle)).epoch(0))
        b = list(
            TokenStream(store, StreamConfig(batch_size=64, shuffle=shuffle, dtype="stored")).epoch(
                0
            )
        )
        assert all(
            x.dtype == np.float32 and y.dtype == np.float16 for x, y in zip(a, b, strict=True)
        )
        assert all(np.array_equal(x, y.astype(np.float32)) for x, y in zip(a, b, strict=True))
