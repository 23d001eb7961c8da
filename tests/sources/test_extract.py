"""Extraction end to end: the CLI contract on user data, resume after an interruption, trained encoders."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest

from tests.sources.fixtures import make_image_folder
from tests.sources.test_encoders import tiny_hf
from vista.errors import VistaError
from vista.sources.datasets import DatasetConfig
from vista.sources.encoders import EncoderConfig
from vista.sources.extract import extract
from vista.store import ActivationStore, StoreWriter
from vista.train.classifier import train_encoder
from vista.train.config import EncoderTrainingConfig, TrainerConfig


def vista(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "vista", *args], cwd=cwd, capture_output=True, text=True, check=False
    )


def assert_same_store(p: Path, q: Path) -> None:
    """Bit-identical activations, labels and indices in every split."""
    with ActivationStore(p) as a, ActivationStore(q) as b:
        assert a.splits == b.splits
        for s in a.splits:
            n = a.split(s).n_rows
            assert np.array_equal(a.read_rows(s, 0, n), b.read_rows(s, 0, n))
            assert np.array_equal(a.original_indices(s), b.original_indices(s))
            la, lb = a.labels(s), b.labels(s)
            assert la.keys() == lb.keys() and all(np.array_equal(la[k], lb[k]) for k in la)


def test_cli_contract_imagefolder_through_an_hf_model(tmp_path: Path) -> None:
    pytest.importorskip("transformers")
    root = make_image_folder(tmp_path / "imgs", split_dirs=True)
    model = tiny_hf("dinov2_registers", tmp_path)
    out = tmp_path / "acts.h5"
    r = vista(
        "extract",
        "dataset=imagefolder",
        f"dataset.root={root}",
        "encoder=hf",
        f"encoder.path={model}",
        "encoder.layer=1",
        "encoder.tokens=patches",
        f"out={out}",
        cwd=tmp_path,
    )
    assert r.returncode == 0, r.stderr
    with ActivationStore(out) as st:
        assert st.split("training").n_rows == 18 and st.split("validation").n_rows == 6
        assert st.split("training").n_tokens == 16  # CLS and 4 registers dropped
        assert st.class_names("training", "class") == ["cat", "dog", "fox"]
        assert st.attrs["layer"].endswith("layer.1") and st.attrs["register_tokens"] == 4


def test_interrupted_extraction_resumes_to_the_same_file(tmp_path: Path, monkeypatch) -> None:
    """Ctrl-C between two batches: the rows of whole chunks stay, the resumed file is the
    uninterrupted one byte for byte."""
    import vista.store.writer as writer

    root = make_image_folder(tmp_path / "imgs", per_class=8)
    ds = DatasetConfig(name="imagefolder", root=str(root))
    enc = EncoderConfig(name="mobilenet_v2", image_size=32, layer="3", batch_size=4)
    with h5py.File(extract(ds, enc, tmp_path / "probe.h5")) as f:
        row_bytes = f["training"]["encoded"][0].nbytes
    monkeypatch.setattr(writer, "_TARGET_CHUNK_BYTES", 4 * row_bytes)  # chunks of 4 rows
    whole = extract(ds, enc, tmp_path / "whole.h5")

    calls = {"n": 0}
    real_append = StoreWriter.append

    def dying_append(self, *a, **k):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt  # as a user's Ctrl-C between two batches
        return real_append(self, *a, **k)

    monkeypatch.setattr(StoreWriter, "append", dying_append)
    with pytest.raises(KeyboardInterrupt):
        extract(ds, enc, tmp_path / "resumed.h5")
    partial = tmp_path / "resumed.h5.partial"
    assert partial.exists() and not (tmp_path / "resumed.h5").exists()
    with h5py.File(partial) as f:
        assert int(f["training"].attrs["rows_written"]) == 8
    monkeypatch.setattr(StoreWriter, "append", real_append)
    resumed = extract(ds, enc, tmp_path / "resumed.h5")
    assert_same_store(whole, resumed)
    assert resumed.read_bytes() == whole.read_bytes()


def test_extraction_killed_between_chunk_writes_resumes_bit_identical(
    tmp_path: Path, monkeypatch
) -> None:
    """A SIGKILL loses the rows buffered for the next chunk; the resumed run recomputes them.

    The 4-row chunk boundary (8) is not a batch boundary (batches of 3), so the resumed run must
    start mid-batch yet run the batches of the uninterrupted run.
    """
    import vista.store.writer as writer

    # features.17 at 64 px: 2x2 tokens of width 320; chunks of 4 rows.
    monkeypatch.setattr(writer, "_TARGET_CHUNK_BYTES", 4 * 4 * 320 * 2)
    root = make_image_folder(tmp_path / "imgs", per_class=8)
    ds = DatasetConfig(name="imagefolder", root=str(root))
    enc = EncoderConfig(
        name="mobilenet_v2", image_size=64, layer="17", batch_size=3, tokens="patches"
    )
    whole = extract(ds, enc, tmp_path / "whole.h5")
    with h5py.File(whole) as f:
        assert f["training"]["encoded"].chunks == (4, 4, 320)
    calls = {"n": 0}
    real_append = StoreWriter.append

    def killed_append(self, *a, **k):
        calls["n"] += 1
        real_append(self, *a, **k)
        if calls["n"] == 3:  # 9 rows appended, 8 on disk: die without closing
            self._file.close()
            self._file = None
            raise SystemExit("killed")

    monkeypatch.setattr(StoreWriter, "append", killed_append)
    with pytest.raises(SystemExit):
        extract(ds, enc, tmp_path / "resumed.h5")
    with h5py.File(tmp_path / "resumed.h5.partial") as f:
        assert int(f["training"].attrs["rows_written"]) == 8
    monkeypatch.setattr(StoreWriter, "append", real_append)
    resumed = extract(ds, enc, tmp_path / "resumed.h5")
    assert_same_store(whole, resumed)
    assert resumed.read_bytes() == whole.read_bytes()


@pytest.mark.slow
def test_alexnet_transformer_trains_and_extracts(tmp_path: Path) -> None:
    """Seed 002's model, small, learns the UCI digits; its residual stream is extracted per block."""
    opts = {
        "n_layer": 2,
        "n_embd": 64,
        "n_head": 4,
        "width": 0.25,
        "image_size": 64,
        "dropout": 0.1,
    }
    meta = train_encoder(
        DatasetConfig(name="digits"),
        EncoderTrainingConfig(
            architecture="alexnet_transformer", options=opts, epochs=6, batch_size=64, lr=3e-3
        ),
        tmp_path / "enc",
        TrainerConfig(progress_bar=False, accelerator="cpu"),
    )
    assert meta["val_accuracy"] > 0.7  # 10 classes: chance is 0.1
    out = extract(
        DatasetConfig(name="digits", limit=20),
        EncoderConfig(name="alexnet_transformer", path=str(tmp_path / "enc"), layer="0"),
        tmp_path / "a.h5",
    )
    with ActivationStore(out) as st:
        assert st.split("training").n_tokens == 36 and st.d_model == 64
        assert st.attrs["layer"] == "transformer.blocks.0"


def test_resuming_with_another_encoder_is_refused_and_loses_nothing(
    tmp_path: Path, monkeypatch
) -> None:
    pytest.importorskip("transformers")
    root = make_image_folder(tmp_path / "imgs", per_class=8)
    ds = DatasetConfig(name="imagefolder", root=str(root))
    model = tiny_hf("vit", tmp_path)
    enc = EncoderConfig(name="hf", path=str(model), batch_size=4)
    real_append, calls = StoreWriter.append, {"n": 0}

    def dying_append(self, *a, **k):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        return real_append(self, *a, **k)

    monkeypatch.setattr(StoreWriter, "append", dying_append)
    with pytest.raises(KeyboardInterrupt):
        extract(ds, enc, tmp_path / "s.h5")
    monkeypatch.setattr(StoreWriter, "append", real_append)
    import torch
    import transformers

    torch.manual_seed(1)  # other weights at the same path
    transformers.ViTModel(transformers.ViTModel.from_pretrained(model).config).save_pretrained(
        model
    )
    with pytest.raises(VistaError, match="was started with another encoder"):
        extract(ds, enc, tmp_path / "s.h5")
    assert (tmp_path / "s.h5.partial").exists()


def test_sharded_extraction_equals_the_file_and_resumes_per_shard(
    tmp_path: Path, monkeypatch
) -> None:
    """``shard_gb``: the same rows as a one-file extraction, in shards; a run stopped mid-way keeps
    its finished shards, resumes the one it was writing, and gives the same store."""
    import json

    from vista.store import StreamConfig, TokenStream
    from vista.store.sharded import MANIFEST

    root = make_image_folder(tmp_path / "imgs", per_class=8)
    ds = DatasetConfig(name="imagefolder", root=str(root))
    enc = EncoderConfig(name="mobilenet_v2", image_size=32, layer="3", batch_size=4)
    whole = extract(ds, enc, tmp_path / "whole.h5")
    with ActivationStore(whole) as st:
        row_gb = st.read_rows("training", 0, 1).nbytes / 1024**3
    shard_gb = 5 * row_gb  # 5 images, rounded to whole batches of 4: shards of 4 images
    one = extract(ds, enc, tmp_path / "one", shard_gb=shard_gb)
    assert_same_store(whole, one)
    doc = json.loads((one / MANIFEST).read_text())
    with ActivationStore(whole) as st:
        n = st.split("training").n_rows
    sizes = [e["stop"] - e["start"] for e in doc["splits"]["training"]["shards"]]
    assert sizes == [4] * (n // 4) + ([n % 4] if n % 4 else [])
    cfg = StreamConfig(split="training", batch_size=8, shuffle=True, seed=1)
    assert all(np.array_equal(x, y) for x, y in
               zip(TokenStream(whole, cfg).epoch(0), TokenStream(one, cfg).epoch(0), strict=True))  # fmt: skip

    calls = {"n": 0}
    real_append = StoreWriter.append

    def dying_append(self, *a, **k):
        calls["n"] += 1
        if calls["n"] == 4:  # in the fourth shard (one batch of 4 per shard)
            raise KeyboardInterrupt
        return real_append(self, *a, **k)

    monkeypatch.setattr(StoreWriter, "append", dying_append)
    with pytest.raises(KeyboardInterrupt):
        extract(ds, enc, tmp_path / "resumed", shard_gb=shard_gb)
    done = sorted(p.name for p in (tmp_path / "resumed").iterdir())
    assert MANIFEST not in done and "training-00000.h5" in done
    kept = {n: (tmp_path / "resumed" / n).stat().st_mtime_ns for n in done if n.endswith(".h5")}
    with pytest.raises(VistaError, match="without manifest.json"):  # unfinished: not a store yet
        ActivationStore(tmp_path / "resumed")
    # Each finished shard was hashed by the process that wrote it, into its sidecar.
    from vista.store.sharded import SIDECAR, file_digest

    side = json.loads((tmp_path / "resumed" / f"training-00000.h5{SIDECAR}").read_text())
    assert side["sha256"] == file_digest(tmp_path / "resumed" / "training-00000.h5")
    monkeypatch.setattr(StoreWriter, "append", real_append)
    resumed = extract(ds, enc, tmp_path / "resumed", shard_gb=shard_gb)
    assert_same_store(one, resumed)
    assert all((resumed / n).stat().st_mtime_ns == t for n, t in kept.items())  # not rewritten
    assert not list(resumed.glob(f"*{SIDECAR}"))  # collected into the manifest, then removed
    for e in doc["splits"]["training"]["shards"]:
        assert (resumed / e["file"]).read_bytes() == (one / e["file"]).read_bytes()
    with pytest.raises(VistaError, match="already exists"):
        extract(ds, enc, tmp_path / "resumed", shard_gb=shard_gb)


def test_a_sharded_extraction_refuses_another_encoders_shards(tmp_path: Path) -> None:
    from vista.store.sharded import MANIFEST

    root = make_image_folder(tmp_path / "imgs", per_class=8)
    ds = DatasetConfig(name="imagefolder", root=str(root))
    enc = EncoderConfig(name="mobilenet_v2", image_size=32, layer="3", batch_size=4)
    out = extract(ds, enc, tmp_path / "s", shard_gb=1e-5)
    (out / MANIFEST).unlink()  # as if interrupted before the manifest
    other = EncoderConfig(name="mobilenet_v2", image_size=32, layer="4", batch_size=4)
    with pytest.raises(VistaError, match=r"is a shard of another extraction \(its .* differs\)"):
        extract(ds, other, out, shard_gb=1e-5)


def test_two_processes_over_gloo_write_the_one_process_store_and_resume_a_lost_shard(
    tmp_path: Path,
) -> None:
    """`trainer.devices=2`: Lightning starts two CPU processes (gloo); each writes its contiguous
    shards, the first the manifest. The store is byte for byte the one-process sharded store.
    A rank's lost shard (as after a kill before the manifest) is all a rerun writes."""
    from vista.store.sharded import MANIFEST

    root = make_image_folder(tmp_path / "imgs", per_class=8)
    common = ["extract", "dataset=imagefolder", f"dataset.root={root}", "encoder=mobilenet_v2",
              "encoder.image_size=32", "encoder.layer=3", "encoder.batch_size=4", "shard_gb=1e-5"]  # fmt: skip
    ddp = ["trainer.devices=2", "trainer.accelerator=cpu", "trainer.strategy=ddp"]
    r = vista(*common, "out=one", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    r = vista(*common, *ddp, "out=two", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    names = sorted(p.name for p in (tmp_path / "one").iterdir())
    assert len(names) > 4 and names == sorted(p.name for p in (tmp_path / "two").iterdir())
    for n in names:
        assert (tmp_path / "one" / n).read_bytes() == (tmp_path / "two" / n).read_bytes(), n
    # rank 1's last shard is lost with the manifest; the others are kept as they are
    lost = [n for n in names if n.endswith(".h5")][-1]
    (tmp_path / "two" / lost).unlink()
    (tmp_path / "two" / MANIFEST).unlink()
    kept = {
        n: (tmp_path / "two" / n).stat().st_mtime_ns
        for n in names
        if n.endswith(".h5") and n != lost
    }
    r = vista(*common, *ddp, "out=two", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert all((tmp_path / "two" / n).stat().st_mtime_ns == t for n, t in kept.items())
    for n in names:
        assert (tmp_path / "one" / n).read_bytes() == (tmp_path / "two" / n).read_bytes(), n
    r = vista(*common[:-1], *ddp, "out=three", cwd=tmp_path)  # shard_gb automatic: shards
    assert r.returncode == 0 and (tmp_path / "three" / MANIFEST).is_file(), r.stderr
    r = vista(*common[:-1], *ddp, "shard_gb=0", "out=four", cwd=tmp_path)  # one file: refused
    assert r.returncode == 2 and "give shard_gb" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


def test_a_relative_dataset_root_is_recorded_absolute(tmp_path: Path, monkeypatch) -> None:
    """A report run from another directory finds the images (issue 26)."""
    import json

    make_image_folder(tmp_path / "imgs", per_class=4)
    monkeypatch.chdir(tmp_path)
    enc = EncoderConfig(name="mobilenet_v2", image_size=32, layer="3", batch_size=4)
    out = extract(DatasetConfig(name="imagefolder", root="imgs"), enc, tmp_path / "s.h5")
    with ActivationStore(out) as st:
        assert st.attrs["dataset_root"] == str((tmp_path / "imgs").resolve())
        assert json.loads(st.attrs["dataset_config"])["root"] == str((tmp_path / "imgs").resolve())


def test_shard_gb_automatic_is_one_file_below_the_threshold_and_shards_above(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``shard_gb=-1`` (the default): one file for a small store, even at an out path without a
    suffix (its lock lies beside it, so it never becomes a directory); shards of the automatic
    size above the threshold, with the same rows."""
    from vista.sources import extract as ex
    from vista.store.sharded import MANIFEST

    root = make_image_folder(tmp_path / "imgs", per_class=8)
    ds = DatasetConfig(name="imagefolder", root=str(root))
    enc = EncoderConfig(name="mobilenet_v2", image_size=32, layer="3", batch_size=4)
    small = extract(ds, enc, tmp_path / "store")  # no suffix
    assert small.is_file() and not (tmp_path / "store.lock").exists()
    with ActivationStore(small) as st:
        row = st.read_rows("training", 0, 1).nbytes
        n = sum(s.n_rows for s in st.splits.values())
    monkeypatch.setattr(ex, "AUTO_SHARD_GB", n * row / 2 / 1024**3)  # half this store
    monkeypatch.setattr(ex, "AUTO_SHARD_SIZE_GB", 8 * row / 1024**3)  # 8 images per shard
    big = extract(ds, enc, tmp_path / "big")
    assert big.is_dir() and (big / MANIFEST).is_file()
    with ActivationStore(big) as st:
        assert len(st.manifest["splits"]["training"]["shards"]) > 1
    assert_same_store(small, big)


def test_resolve_shard_gb_by_hand() -> None:
    from vista.sources.extract import AUTO_SHARD_GB, AUTO_SHARD_SIZE_GB, resolve_shard_gb

    limit = int(AUTO_SHARD_GB * 1024**3)
    assert resolve_shard_gb(-1, limit, 1) == 0.0  # at the threshold: one file
    assert resolve_shard_gb(-1, limit + 1, 1) == AUTO_SHARD_SIZE_GB
    assert resolve_shard_gb(-1, 10, 2) == AUTO_SHARD_SIZE_GB  # several processes: shards
    assert resolve_shard_gb(0, 10 * limit, 1) == 0.0  # explicit: as given
    assert resolve_shard_gb(0.5, 10, 1) == 0.5


def test_shard_and_buffer_sizes_out_of_range_are_named() -> None:
    from vista.conf.bounds import problems
    from vista.conf.schema import ExtractJob
    from vista.train.config import TrainConfig

    assert problems(ExtractJob(out="x", shard_gb=-1.0)) == []
    assert any(
        "shard_gb=-2.0 must be -1" in p for p in problems(ExtractJob(out="x", shard_gb=-2.0))
    )
    assert any("train.buffer_gb=0.0" in p for p in TrainConfig(buffer_gb=0.0).problems())
    assert any("train.readers=-1" in p for p in TrainConfig(readers=-1).problems())


def test_loading_processes_and_writing_behind_give_the_serial_bytes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``workers``: images decoded and preprocessed by DataLoader worker processes ahead of the
    forward pass, and activations written by a thread behind it (as on a GPU): the bytes of a
    serial loop over the same batches."""
    import torch

    from vista.sources import loader
    from vista.sources.datasets import make_dataset
    from vista.sources.encoders import make_encoder
    from vista.sources.hooks import capture_tokens, find_module

    root = make_image_folder(tmp_path / "imgs", per_class=7)  # 21 images: a last partial batch
    ds_cfg = DatasetConfig(name="imagefolder", root=str(root))
    enc_cfg = EncoderConfig(name="mobilenet_v2", image_size=32, layer="3", batch_size=4)
    serial = extract(ds_cfg, enc_cfg, tmp_path / "serial.h5", workers=0)
    procs = extract(ds_cfg, enc_cfg, tmp_path / "procs.h5", workers=2)
    monkeypatch.setattr(loader, "writes_behind", lambda device: True)
    behind = extract(ds_cfg, enc_cfg, tmp_path / "behind.h5", workers=2)
    assert procs.read_bytes() == serial.read_bytes() == behind.read_bytes()
    # the reference: a plain loop, batch after batch, in this test
    ds, enc = make_dataset(ds_cfg), make_encoder(enc_cfg)
    _, module = find_module(enc.model, enc.resolve_layer("3"))
    with ActivationStore(serial) as st:
        for split in st.splits:
            idx = st.original_indices(split)
            with torch.no_grad():
                want = np.concatenate([
                    capture_tokens(enc.run, module, enc.preprocess(ds.load(idx[a : a + 4])), "all")
                    .numpy().astype(np.float16)
                    for a in range(0, len(idx), 4)
                ])  # fmt: skip
            assert np.array_equal(st.read_rows(split, 0, len(idx)), want)


def test_a_failed_write_behind_stops_the_batches_and_is_raised_here() -> None:
    """The writing thread's error reaches the caller; the batches before it were written, in
    order, and no later one."""
    import threading

    import torch

    from vista.sources.loader import BatchImages, run_batches

    batches = [np.arange(a, a + 2) for a in range(0, 20, 2)]
    images = BatchImages(batches, lambda idx: idx, lambda x: torch.tensor(x, dtype=torch.float32))
    seen: list[int] = []

    def consume(i: int, acts: np.ndarray) -> None:
        if i == 3:
            raise OSError("disk full")
        seen.append(i)
        assert np.array_equal(acts, 2 * batches[i])

    with pytest.raises(OSError, match="disk full"):
        run_batches(images, lambda x: 2 * x, consume, device=torch.device("cpu"), workers=0,
                    write_behind=True)  # fmt: skip
    assert seen == [0, 1, 2]
    assert not [t for t in threading.enumerate() if t.name == "vista-write"]


def test_an_unreadable_image_in_a_loading_process_is_one_sentence(tmp_path: Path) -> None:
    """A worker's refusal reaches the user as its own sentence, not wrapped in the worker's
    traceback; nothing is published."""
    root = make_image_folder(tmp_path / "imgs", per_class=7)
    (root / "dog" / "3.png").write_bytes(b"not a png")
    ds = DatasetConfig(name="imagefolder", root=str(root))
    enc = EncoderConfig(name="mobilenet_v2", image_size=32, layer="3", batch_size=4)
    for workers in (0, 2):  # in this process, in a loading process
        out = tmp_path / f"w{workers}.h5"
        with pytest.raises(VistaError) as e:
            extract(ds, enc, out, workers=workers)
        msg = str(e.value)
        assert msg.startswith("Could not read the") and "3.png" in msg and "\n" not in msg
        assert not out.exists()


def test_resolve_workers_by_hand(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    import torch

    from vista.sources import loader

    cpu, gpu = torch.device("cpu"), torch.device("cuda", 0)
    assert loader.resolve_workers(-1, cpu) == 0  # the forward pass has every core
    assert loader.resolve_workers(3, cpu) == 3 and loader.resolve_workers(0, gpu) == 0
    monkeypatch.setattr(os, "sched_getaffinity", lambda _pid: set(range(16)), raising=False)
    assert loader.resolve_workers(-1, gpu) == 8  # capped
    assert loader.resolve_workers(-1, gpu, local_processes=4) == 3  # 16 cores / 4, one kept
    monkeypatch.setattr(os, "sched_getaffinity", lambda _pid: {0}, raising=False)
    assert loader.resolve_workers(-1, gpu) == 1
    with pytest.raises(VistaError, match="workers=-2"):
        loader.resolve_workers(-2, cpu)
