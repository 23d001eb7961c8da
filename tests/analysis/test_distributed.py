"""The shared encode pass on several processes equals the one-process pass (issue 23, part 4)."""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.conftest import write_vista_store
from vista.analysis.distributed import block_range, encode_split_shared
from vista.analysis.encoding import EncodedSplit, encode_split
from vista.errors import VistaError
from vista.saes import make_sae
from vista.sources.extract import Ranks


def _token_store(path: Path, n: int = 203, t: int = 5, d: int = 12, nan_at: int = -1) -> Path:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(n, t, d)).astype(np.float32)
    y = {"c": rng.integers(0, 3, n)}
    write_vista_store(path, {"training": x, "validation": x}, {"training": y, "validation": y})
    if nan_at >= 0:
        import h5py

        with h5py.File(path, "r+") as f:
            f["validation/encoded"][nan_at, 1, 2] = np.nan
    return path


def _sae(d: int = 12, d_sae: int = 40) -> Any:
    return make_sae(
        {"architecture": "topk", "d_model": d, "d_sae": d_sae, "k": 4, "seed": 3}
    ).eval()


def _on_threads(world: int, run: Any) -> list[Any]:
    """``run(ranks)`` for every rank of a ``world``-process job, each on its own thread, sharing
    a real barrier (the processes of a launch, without the launch)."""
    barrier = threading.Barrier(world, timeout=600)
    out: list[Any] = [None] * world
    errors: list[BaseException | None] = [None] * world

    def one(r: int) -> None:
        try:
            out[r] = run(Ranks(rank=r, world=world, barrier=barrier.wait))
        except BaseException as e:
            errors[r] = e

    threads = [threading.Thread(target=one, args=(r,)) for r in range(world)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    return [*out, *errors]


def test_block_ranges_cover_every_image_once_in_whole_blocks() -> None:
    assert [block_range(10, 3, r, 2) for r in range(2)] == [(0, 6), (6, 10)]  # blocks 0-1, 2-3
    assert [block_range(10, 3, r, 3) for r in range(3)] == [(0, 3), (3, 6), (6, 10)]
    assert [block_range(2, 3, r, 3) for r in range(3)] == [(0, 0), (0, 0), (0, 2)]  # too few
    for n, rpb, w in [(203, 8, 3), (1000, 7, 8), (5, 1, 5)]:
        ranges = [block_range(n, rpb, r, w) for r in range(w)]
        assert ranges[0][0] == 0 and ranges[-1][1] == n
        assert all(a[1] == b[0] for a, b in itertools.pairwise(ranges))
        assert all(a % rpb == 0 for a, _ in ranges)


def _assert_same_pass(a: EncodedSplit, b: EncodedSplit) -> None:
    for name in ("pooled_raw", "image_sq_error", "image_scatter", "image_cosine", "image_l0",
                 "firing_counts"):  # fmt: skip
        assert np.array_equal(getattr(a, name), getattr(b, name)), name
    assert np.array_equal(a.dense_codes(), b.dense_codes()) and a.sparse == b.sparse
    assert a.health == b.health
    assert a.reconstruction.keys() == b.reconstruction.keys()
    for k, v in a.reconstruction.items():  # float64 sums, added in another order
        assert b.reconstruction[k] == pytest.approx(v, rel=1e-12, abs=1e-15), k
    pa, pb = a.positions.state(), b.positions.state()  # the tokens analysis's sums
    assert pa.keys() == pb.keys()
    for k, v in pa.items():
        np.testing.assert_allclose(pb[k], v, rtol=1e-12, atol=1e-12, err_msg=k)


@pytest.mark.parametrize("dense_mb", [128.0, 0.0])
def test_three_processes_give_the_one_process_pass(tmp_path: Path, dense_mb: float) -> None:
    store, sae = _token_store(tmp_path / "s.h5"), _sae()
    one = encode_split(sae, store, "validation", batch_tokens=40, dense_codes_mb=dense_mb)
    scratch = tmp_path / "run" / "analyses" / ".encode-validation"
    got = _on_threads(3, lambda ranks: encode_split_shared(
        sae, store, "validation", ranks, scratch, batch_tokens=40, dense_codes_mb=dense_mb))  # fmt: skip
    shared, rest, errors = got[0], got[1:3], got[3:]
    assert errors == [None, None, None] and rest == [None, None]
    _assert_same_pass(one, shared)
    assert not scratch.exists()  # the processes' shares are removed once merged


def test_a_failure_in_one_process_is_its_sentence_everywhere_and_nobody_waits(
    tmp_path: Path,
) -> None:
    """NaN activations in the last process's images: it raises them, the first names it; every
    process returns (none is left at the barrier)."""
    store = _token_store(tmp_path / "s.h5", nan_at=190)
    scratch = tmp_path / "scratch"
    got = _on_threads(3, lambda ranks: encode_split_shared(
        _sae(), store, "validation", ranks, scratch, batch_tokens=40))  # fmt: skip
    errors = got[3:]
    assert isinstance(errors[2], VistaError) and "NaN" in str(errors[2])
    assert isinstance(errors[0], VistaError)
    assert str(errors[0]) == f"Process 2 of the encode pass failed: {errors[2]}"
    assert errors[1] is None and got[1] is None


def _numbers(scalar: Any) -> list[float]:
    """The numbers of a result scalar (its value, interval and n), without its words."""
    if isinstance(scalar, dict):
        return [x for v in scalar.values() for x in _numbers(v)]
    if isinstance(scalar, list):
        return [x for v in scalar for x in _numbers(v)]
    return [float(scalar)] if isinstance(scalar, int | float) and scalar is not None else []


@pytest.mark.slow
def test_vista_analyze_on_two_gloo_processes_equals_one(tmp_path: Path) -> None:
    """``vista analyze ... trainer.devices=2``: the pass split over two CPU processes (Lightning,
    gloo), the analyses on the first: the same numbers as one process, from a sharded store."""
    from vista.saes.io import save_sae
    from vista.store import ActivationStore
    from vista.store.sharded import shard_store

    store = _token_store(tmp_path / "s.h5", n=400)
    shards = shard_store(store, tmp_path / "s.shards", shard_bytes=40 * 5 * 12 * 2)  # 40 images
    with ActivationStore(shards) as st:
        assert len(st.manifest["splits"]["validation"]["shards"]) == 10
    sae_dir = tmp_path / "sae"
    save_sae(_sae(), sae_dir)
    common = [sys.executable, "-m", "vista", "analyze", f"sae={sae_dir}",
              "analysis=[health,reconstruction,feature_auc]", "eval.n_boot=50", "eval.n_perm=50",
              "trainer.accelerator=cpu"]  # fmt: skip
    runs = {
        "one": [f"store={store}"],
        "two": [f"store={shards}", "trainer.devices=2", "trainer.strategy=ddp"],
    }
    for name, extra in runs.items():
        r = subprocess.run([*common, *extra, f"out_dir={tmp_path / name}"], cwd=tmp_path,
                           capture_output=True, text=True, check=False)  # fmt: skip
        assert r.returncode == 0, r.stderr[-3000:]
        assert r.stdout.count("results:") == 1  # printed by the first process only
    for analysis in ("health", "reconstruction", "feature_auc"):
        a, b = (json.loads((tmp_path / n / "analyses" / analysis / "result.json").read_text())
                for n in runs)  # fmt: skip
        assert a["scalars"].keys() == b["scalars"].keys()
        for k, v in a["scalars"].items():
            assert _numbers(b["scalars"][k]) == pytest.approx(_numbers(v), rel=1e-9, abs=1e-12), k
    assert not (tmp_path / "two" / "analyses" / ".encode-validation").exists()
