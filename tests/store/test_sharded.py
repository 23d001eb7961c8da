"""A store as a directory of shards: read exactly as the file it came from, converted both ways
exactly, and every broken shard or manifest refused in one sentence naming it."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from tests.conftest import write_vista_store
from vista.errors import VistaError
from vista.store import ActivationStore, ShardedStore, StreamConfig, TokenStream
from vista.store.sharded import MANIFEST, merge_store, shard_store

ROW_BYTES = 5 * 16 * 2  # tokens x width x float16


def _store(path: Path, seed: int = 0, d: int = 16) -> Path:
    rng = np.random.default_rng(seed)
    acts = {
        "training": rng.normal(size=(1000, 5, d)).astype(np.float32),
        "validation": rng.normal(size=(300, 5, d)).astype(np.float32),
    }
    labels = {s: {"digit": rng.integers(0, 3, len(a)), "odd": rng.integers(0, 2, len(a))}
              for s, a in acts.items()}  # fmt: skip
    names = {"digit": ["zero", "one", "two"], "odd": ["no", "yes"]}
    return write_vista_store(path, acts, labels, names)


@pytest.fixture
def pair(tmp_path: Path) -> tuple[Path, Path]:
    src = _store(tmp_path / "s.h5")
    with h5py.File(src, "a") as f:
        f.create_dataset("extras/true_directions", data=np.eye(4, dtype=np.float32))
    return src, shard_store(src, tmp_path / "s.shards", shard_bytes=330 * ROW_BYTES)


def test_a_sharded_store_reads_exactly_as_its_file(pair: tuple[Path, Path]) -> None:
    src, shards = pair
    doc = json.loads((shards / MANIFEST).read_text())
    assert [len(doc["splits"][s]["shards"]) for s in ("training", "validation")] == [4, 1]
    with ActivationStore(src) as a, ActivationStore(shards) as b:
        assert isinstance(b, ShardedStore)
        assert a.splits == b.splits and a.attrs == b.attrs and a.d_model == b.d_model
        for s, info in a.splits.items():
            for lo, hi in ((0, info.n_rows), (329, 331), (100, 999), (0, 1), (660, 990)):
                assert np.array_equal(a.read_rows(s, lo, hi), b.read_rows(s, lo, hi))
            for name, y in a.labels(s).items():
                assert np.array_equal(y, b.labels(s)[name])
                assert a.class_names(s, name) == b.class_names(s, name)
            assert np.array_equal(a.original_indices(s), b.original_indices(s))
        assert np.array_equal(a.extra("true_directions"), b.extra("true_directions"))


def test_each_shard_opens_alone_as_a_store(pair: tuple[Path, Path]) -> None:
    _, shards = pair
    doc = json.loads((shards / MANIFEST).read_text())
    for entry in doc["splits"]["training"]["shards"]:
        with ActivationStore(shards / entry["file"]) as st:
            assert st.split("training").n_rows == entry["stop"] - entry["start"]


def test_the_stream_gives_the_same_batches(pair: tuple[Path, Path]) -> None:
    src, shards = pair
    for shuffle in (False, True):
        cfg = StreamConfig(split="training", batch_size=96, shuffle=shuffle, seed=5)
        a, b = list(TokenStream(src, cfg).epoch(1)), list(TokenStream(shards, cfg).epoch(1))
        assert len(a) == len(b) and all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))


def test_merge_gives_back_the_file(pair: tuple[Path, Path], tmp_path: Path) -> None:
    src, shards = pair
    merged = merge_store(shards, tmp_path / "m.h5")
    with ActivationStore(src) as a, ActivationStore(merged) as b:
        assert a.splits.keys() == b.splits.keys() and a.attrs == b.attrs
        for s, info in a.splits.items():
            assert np.array_equal(a.read_rows(s, 0, info.n_rows), b.read_rows(s, 0, info.n_rows))
            assert all(np.array_equal(y, b.labels(s)[k]) for k, y in a.labels(s).items())
            assert np.array_equal(a.original_indices(s), b.original_indices(s))
        assert np.array_equal(a.extra("true_directions"), b.extra("true_directions"))


def _refused(shards: Path, match: str) -> None:
    before = {p.name: p.stat().st_mtime_ns for p in shards.iterdir()}
    with pytest.raises(VistaError, match=match) as e:
        ActivationStore(shards)
    assert "\n" not in str(e.value)
    assert {p.name: p.stat().st_mtime_ns for p in shards.iterdir()} == before  # nothing rewritten


def test_a_missing_shard_is_named(pair: tuple[Path, Path]) -> None:
    _, shards = pair
    (shards / "training-00002.h5").unlink()
    _refused(shards, r"Shard 'training-00002.h5' of .* is missing")


def test_a_truncated_shard_is_named(pair: tuple[Path, Path]) -> None:
    _, shards = pair
    f = shards / "training-00001.h5"
    f.write_bytes(f.read_bytes()[: f.stat().st_size // 2])
    _refused(shards, r"Shard 'training-00001.h5' .* bytes, not the .* truncated")


def test_a_shard_from_another_extraction_is_named(pair: tuple[Path, Path], tmp_path: Path) -> None:
    _, shards = pair
    other = shard_store(_store(tmp_path / "o.h5", seed=1), tmp_path / "o.shards",
                        shard_bytes=330 * ROW_BYTES)  # fmt: skip
    shutil.copy(other / "training-00001.h5", shards / "training-00001.h5")
    doc = json.loads((shards / MANIFEST).read_text())  # even with the size patched to match
    doc["splits"]["training"]["shards"][1]["bytes"] = (shards / "training-00001.h5").stat().st_size
    (shards / MANIFEST).write_text(json.dumps(doc))
    _refused(
        shards, r"Shard 'training-00001.h5' .* is not the shard this manifest was written with"
    )


def test_a_manifest_of_another_extraction_is_refused(
    pair: tuple[Path, Path], tmp_path: Path
) -> None:
    _, shards = pair
    other = shard_store(_store(tmp_path / "o.h5", seed=1), tmp_path / "o.shards",
                        shard_bytes=330 * ROW_BYTES)  # fmt: skip
    shutil.copy(other / MANIFEST, shards / MANIFEST)
    _refused(shards, r"Shard 'training-00000.h5' .* (bytes, not|is not the shard)")


def test_shards_of_another_width_are_refused(pair: tuple[Path, Path]) -> None:
    _, shards = pair
    doc = json.loads((shards / MANIFEST).read_text())
    doc["d_model"] = 32
    (shards / MANIFEST).write_text(json.dumps(doc))
    _refused(
        shards, r"Shard 'training-00000.h5' .* holds 330 rows of 5 x 16, not the 330 rows of 5 x 32"
    )


@pytest.mark.parametrize(("stop", "what"), [(300, "leave a gap"), (400, "overlap")])
def test_row_ranges_must_tile_the_split(pair: tuple[Path, Path], stop: int, what: str) -> None:
    _, shards = pair
    doc = json.loads((shards / MANIFEST).read_text())
    doc["splits"]["training"]["shards"][0]["stop"] = stop
    (shards / MANIFEST).write_text(json.dumps(doc))
    _refused(
        shards,
        rf"Shard 'training-00001.h5' .* starts at row 330, .* end at row {stop}: the row ranges {what}",
    )


def test_a_directory_without_a_manifest_and_a_garbled_one(tmp_path: Path) -> None:
    (tmp_path / "d").mkdir()
    with pytest.raises(VistaError, match="is a directory without manifest.json"):
        ActivationStore(tmp_path / "d")
    (tmp_path / "d" / MANIFEST).write_text(json.dumps({"format": "vista.sharded/1"}))
    with pytest.raises(VistaError, match=r"lacks or garbles \['splits', 'labels'"):
        ActivationStore(tmp_path / "d")
    (tmp_path / "d" / MANIFEST).write_text("{not json")
    with pytest.raises(VistaError, match="manifest"):
        ActivationStore(tmp_path / "d")


def test_conversions_refuse_an_existing_output(pair: tuple[Path, Path], tmp_path: Path) -> None:
    src, shards = pair
    with pytest.raises(VistaError, match="already exists"):
        shard_store(src, shards)
    with pytest.raises(VistaError, match="already exists"):
        merge_store(shards, src)


def test_training_on_shards_gives_the_same_sae(pair: tuple[Path, Path], tmp_path: Path) -> None:
    from tests.conftest import sae_cfg
    from vista.saes.io import load_sae
    from vista.train.config import TrainConfig, TrainerConfig
    from vista.train.fit import train_saes

    src, shards = pair
    tc = TrainConfig(max_tokens=3000, batch_size=256, lr_warmup_steps=2, init_tokens=1024)
    trc = TrainerConfig(logger="none", progress_bar=False)
    a = train_saes(src, [sae_cfg("topk", 16, 32)], tc, trc, tmp_path / "a")[0]
    b = train_saes(shards, [sae_cfg("topk", 16, 32)], tc, trc, tmp_path / "b")[0]
    for (name, x), (_, y) in zip(load_sae(a).state_dict().items(), load_sae(b).state_dict().items(),
                                 strict=True):  # fmt: skip
        assert torch.equal(x, y), name


def test_an_analysis_on_shards_equals_the_file(pair: tuple[Path, Path], tmp_path: Path) -> None:
    from tests.analysis.planted import identity_sae
    from vista.analysis.context import AnalysisSettings, Context
    from vista.analysis.runner import run_analyses

    src, shards = pair
    names = ["health", "reconstruction", "alignment", "feature_auc"]
    out = {}
    for i, store in enumerate((src, shards)):
        ctx = Context(identity_sae(16), store, AnalysisSettings(n_boot=20, split="validation"))
        out[store] = run_analyses(ctx, names, {}, tmp_path / f"out{i}").results
    for n in names:
        a, b = out[src][n], out[shards][n]
        assert {k: s.to_json() for k, s in a.scalars.items()} == {
            k: s.to_json() for k, s in b.scalars.items()
        }
        assert all(np.array_equal(v, b.arrays[k], equal_nan=True) for k, v in a.arrays.items())


def test_the_cli_shards_describes_and_unshards(pair: tuple[Path, Path], tmp_path: Path) -> None:
    src, _ = pair

    def vista(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "vista", *args], capture_output=True,
                              text=True, cwd=tmp_path)  # fmt: skip

    r = vista("shard", f"store={src}", "out=cli.shards", "shard_gb=0.0001", "compression=lz4")
    assert r.returncode == 0, r.stderr
    r = vista("info", "cli.shards")
    assert (
        r.returncode == 0
        and "sharded: 3 shards" in r.stdout
        and "/training/encoded (1000, 5, 16)" in r.stdout
    )
    r = vista("unshard", "store=cli.shards", "out=back.h5")
    assert r.returncode == 0, r.stderr
    with ActivationStore(src) as a, ActivationStore(tmp_path / "back.h5") as b:
        assert np.array_equal(a.read_rows("training", 0, 1000), b.read_rows("training", 0, 1000))
    r = vista("shard", f"store={src}", "out=cli.shards")
    assert (
        r.returncode == 2
        and "already exists" in r.stderr
        and len(r.stderr.strip().splitlines()) == 1
    )


def test_a_shard_entry_is_hashed_once_by_its_writer(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The sidecar a process writes beside its finished shard is what the manifest takes: the
    first process does not re-read the store; a sidecar that no longer fits its file is redone."""
    from vista.store import sharded

    shard = tmp_path / "training-00000.h5"
    shard.write_bytes(b"x" * 1000)
    first = sharded.entry_sidecar(tmp_path, shard.name, "training", 0, 10, "abc")
    assert first["sha256"] == sharded.file_digest(shard) and first["bytes"] == 1000

    def no_hashing(path: Path) -> str:
        raise AssertionError("re-hashed a shard whose sidecar fits it")

    monkeypatch.setattr(sharded, "file_digest", no_hashing)
    assert sharded.entry_sidecar(tmp_path, shard.name, "training", 0, 10, "abc") == first
    shard.write_bytes(b"y" * 999)  # replaced: the sidecar's size no longer fits
    with pytest.raises(AssertionError, match="re-hashed"):
        sharded.entry_sidecar(tmp_path, shard.name, "training", 0, 10, "abc")
    monkeypatch.undo()
    other = sharded.entry_sidecar(tmp_path, shard.name, "training", 0, 10, "another id")
    assert other["id"] == "another id" and other["bytes"] == 999
