"""The token stream: every row exactly once per epoch, seeded, sharded without overlap."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import write_original_vista_store, write_vista_store
from vista.errors import VistaError
from vista.store import StreamConfig, TokenStream, writer
from vista.store import stream as stream_mod


def _ids_store(
    path: Path, n_rows: int, n_tokens: int | None, compression: str | None = "zstd"
) -> Path:
    """Each token's first coordinate is its global token id (exact in float16 below 2048)."""
    t = n_tokens or 1
    ids = np.arange(n_rows * t, dtype=np.float32).reshape(n_rows, t)
    acts = np.stack([ids, -ids], axis=-1)
    if n_tokens is None:
        acts = acts[:, 0, :]
    return write_vista_store(path, {"training": acts}, compression=compression)


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    n_rows=st.integers(1, 300),
    n_tokens=st.sampled_from([None, 1, 3, 7]),
    batch=st.integers(1, 64),
    buffer=st.integers(1, 200),
    shuffle=st.booleans(),
    min_block=st.sampled_from([1, 5, 64]),
    compression=st.sampled_from([None, "zstd"]),
    readers=st.sampled_from([1, 3]),
)
def test_every_token_exactly_once_per_epoch(
    tmp_path_factory, n_rows, n_tokens, batch, buffer, shuffle, min_block, compression, readers
) -> None:
    if n_rows * (n_tokens or 1) > 2000:
        n_rows = 2000 // (n_tokens or 1)
    path = _ids_store(tmp_path_factory.mktemp("s") / "s.h5", n_rows, n_tokens, compression)
    cfg = StreamConfig(
        batch_size=batch,
        buffer_tokens=buffer,
        shuffle=shuffle,
        seed=3,
        prefetch_blocks=1,
        readers=readers,
    )
    old = stream_mod._TARGET_BLOCK_TOKENS
    stream_mod._TARGET_BLOCK_TOKENS = min_block
    try:
        s = TokenStream(path, cfg)
        batches = list(s.epoch(0))
    finally:
        stream_mod._TARGET_BLOCK_TOKENS = old
    ids = np.concatenate([b[:, 0] for b in batches]).astype(np.int64)
    total = n_rows * (n_tokens or 1)
    assert sorted(ids.tolist()) == list(range(total))
    assert all(len(b) == batch for b in batches[:-1]) and 0 < len(batches[-1]) <= batch
    assert all(b.dtype == np.float32 and b.shape[1] == 2 for b in batches)
    np.testing.assert_array_equal(np.concatenate(batches)[:, 1], -np.concatenate(batches)[:, 0])
    if not shuffle:
        assert ids.tolist() == list(range(total))


def test_shuffling_is_seeded_and_changes_with_the_epoch(tmp_path: Path) -> None:
    path = _ids_store(tmp_path / "s.h5", 1000, None)
    cfg = StreamConfig(batch_size=50, buffer_tokens=300, seed=1)
    a = np.concatenate(list(TokenStream(path, cfg).epoch(0)))[:, 0]
    b = np.concatenate(list(TokenStream(path, cfg).epoch(0)))[:, 0]
    c = np.concatenate(list(TokenStream(path, cfg).epoch(1)))[:, 0]
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    assert not np.array_equal(a, np.sort(a))


def test_the_window_draws_each_batch_from_blocks_all_over_the_split(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(writer, "_TARGET_CHUNK_BYTES", 200)  # chunks of 50 rows of 4 bytes
    path = _ids_store(tmp_path / "s.h5", 2000, 1, compression=None)
    monkeypatch.setattr(stream_mod, "_TARGET_BLOCK_TOKENS", 50)  # 40 blocks of 50 rows
    s = TokenStream(path, StreamConfig(batch_size=50, buffer_tokens=2000, seed=5))
    assert len(s.blocks) == 40 and s.window_tokens == 2000  # one window holds them all
    first = next(iter(s.epoch(0)))[:, 0].astype(int)
    # 50 tokens drawn without replacement from 2000 tokens in 40 blocks reach about 29 blocks
    # (40 * (1 - (39/40)^50)); a stream that shuffled within blocks only would reach 1.
    assert len(set((first // 50).tolist())) >= 20


def test_the_memory_bound_shrinks_the_window_and_keeps_every_token(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(writer, "_TARGET_CHUNK_BYTES", 400)  # chunks of 100 rows of 4 bytes
    path = _ids_store(tmp_path / "s.h5", 1500, 1, compression=None)
    monkeypatch.setattr(stream_mod, "_TARGET_BLOCK_TOKENS", 100)
    # 2 windows x d_model 2 x 2 bytes x 400 tokens = 3200 bytes: windows of 400 tokens.
    cfg = StreamConfig(batch_size=64, buffer_tokens=10**6, buffer_gb=3200 / 1e9, seed=2)
    s = TokenStream(path, cfg)
    assert s.window_tokens == 400
    batches = list(s.epoch(0))
    ids = np.concatenate(batches)[:, 0].astype(int)
    assert sorted(ids.tolist()) == list(range(1500))
    assert all(len(b) == 64 for b in batches[:-1])
    # A window holds 4 blocks, so the first 400 tokens come from 4 blocks only.
    assert len(set((ids[:384] // 100).tolist())) == 4


def test_drop_last_drops_only_the_short_batch(tmp_path: Path) -> None:
    path = _ids_store(tmp_path / "s.h5", 103, None)
    batches = list(TokenStream(path, StreamConfig(batch_size=10, drop_last=True)).epoch(0))
    assert len(batches) == 10 and all(len(b) == 10 for b in batches)


@pytest.mark.parametrize("world", [2, 3])
def test_ranks_get_disjoint_shares_that_cover_the_split(tmp_path: Path, world: int) -> None:
    path = _ids_store(tmp_path / "s.h5", 1200, 1)
    old = stream_mod._TARGET_BLOCK_TOKENS
    stream_mod._TARGET_BLOCK_TOKENS = 64
    try:
        shares = [
            np.concatenate(
                list(
                    TokenStream(path, StreamConfig(batch_size=32, rank=r, world_size=world)).epoch(
                        2
                    )
                )
            )[:, 0]
            for r in range(world)
        ]
    finally:
        stream_mod._TARGET_BLOCK_TOKENS = old
    all_ids = np.concatenate(shares).astype(int)
    assert sorted(all_ids.tolist()) == list(range(1200))
    assert all(len(s) > 0 for s in shares)


def test_streams_the_original_layout_flattening_tokens(
    tmp_path: Path, rng: np.random.Generator
) -> None:
    enc = rng.normal(size=(12, 4, 3)).astype(np.float32)
    path = write_original_vista_store(
        tmp_path / "o.h5", {"training": (enc, {"race": np.zeros(12, int)})}, batch=5
    )
    got = np.concatenate(
        list(TokenStream(path, StreamConfig(batch_size=7, shuffle=False)).epoch(0))
    )
    np.testing.assert_array_equal(got, enc.reshape(-1, 3).astype(np.float16).astype(np.float32))


def test_nan_activations_name_the_rows(tmp_path: Path) -> None:
    acts = np.ones((40, 3), np.float32)
    path = tmp_path / "s.h5"
    write_vista_store(path, {"training": acts})
    import h5py

    with h5py.File(path, "r+") as f:
        f["training/encoded"][17, 1] = np.nan
    with pytest.raises(VistaError, match="Rows 0-40 .*NaN"):
        list(TokenStream(path, StreamConfig(batch_size=8)).epoch(0))


def test_unknown_split_is_named(labelled_store: Path) -> None:
    with pytest.raises(VistaError, match="no split 'test'"):
        TokenStream(labelled_store, StreamConfig(split="test"))


def _prefetching() -> list[str]:
    import threading

    return [t.name for t in threading.enumerate() if t.name == "vista-prefetch"]


def test_a_consumer_that_stops_early_ends_the_reading_threads(tmp_path: Path) -> None:
    """Closing an epoch (or the endless training iterable) stops and joins its prefetching thread
    and its reading threads before it returns: none is left to touch h5py while the interpreter
    exits (a daemon thread killed there holding h5py's lock hangs the process)."""
    import contextlib

    from vista.train.data import TokenBatches

    path = _ids_store(tmp_path / "s.h5", 3000, None)
    cfg = StreamConfig(batch_size=16, buffer_tokens=256, readers=2, prefetch_blocks=2)
    assert not _prefetching()
    with contextlib.closing(TokenStream(path, cfg).epoch(0)) as batches:
        next(batches)
        assert _prefetching()
    assert not _prefetching()
    data = TokenBatches(path, cfg)
    a, b = iter(data), iter(data)
    for _ in range(200):  # past the end of an epoch: a new epoch, a new thread
        next(a)
    next(b)
    assert len(_prefetching()) == 2
    data.close()
    assert not _prefetching()
    with pytest.raises(StopIteration):
        next(a)


def test_threads_still_prefetching_at_exit_are_stopped_first(tmp_path: Path) -> None:
    """A stream nobody closed is stopped (and joined) by the exit hook, before finalisation."""
    path = _ids_store(tmp_path / "s.h5", 3000, None)
    batches = TokenStream(path, StreamConfig(batch_size=16, buffer_tokens=256)).epoch(0)
    next(batches)
    assert _prefetching()
    stream_mod._stop_all()
    assert not _prefetching()
    batches.close()
