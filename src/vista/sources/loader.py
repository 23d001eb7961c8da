"""Feeding an encoder at its device's rate: images are loaded and preprocessed ahead of the forward
pass in DataLoader worker processes, handed over in pinned memory and copied without blocking;
activations are copied back and written behind it, in a thread.

Without this pipeline a GPU waits for every batch's decoding and preprocessing and for every
write: the three run one after another. The batches are those of a serial extraction, in its
order, so the activations are the same bit for bit (tests/sources/test_extract.py).
"""

from __future__ import annotations

import contextlib
import os
import queue
import threading
from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

from vista.errors import VistaError

MAX_AUTO_WORKERS = 8
"""``workers=-1`` on an accelerator: at most this many loading processes per device."""


def resolve_workers(workers: int, device: torch.device, local_processes: int = 1) -> int:
    """The loading processes to start (0: load in this process, between forward passes).

    ``-1`` (automatic) is 0 on the CPU, where the forward pass already uses every core and
    loading processes would only take cores from it; on an accelerator, the cores of this
    machine shared among its processes, at most ``MAX_AUTO_WORKERS`` each.
    """
    if workers < -1:
        raise VistaError(f"workers={workers} must be -1 (automatic), 0 or a count of processes.")
    if workers >= 0:
        return workers
    if device.type == "cpu":
        return 0
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return max(1, min(MAX_AUTO_WORKERS, (cores or 1) // max(1, local_processes) - 1))


def writes_behind(device: torch.device) -> bool:
    """Whether activations are written by a thread behind the forward pass: on an accelerator,
    which then never waits for a write; not on the CPU, where the forward pass has every core and
    the thread only takes them from it (measured: docs/benchmarks.md)."""
    return device.type != "cpu"


@dataclass(frozen=True)
class _Failure:
    """A refusal raised while loading (an unreadable image), carried to the main process as its
    sentence: a DataLoader would re-raise it wrapped in the worker's traceback."""

    message: str


class BatchImages(torch.utils.data.Dataset):
    """Item ``i``: the preprocessed images of batch ``i`` (one item per batch, so a worker
    preprocesses a whole batch at once, as a serial extraction does)."""

    def __init__(
        self,
        batches: Sequence[np.ndarray],
        load: Callable[[np.ndarray], Any],
        preprocess: Callable[[Any], Tensor],
    ) -> None:
        self.batches = batches
        self.load = load
        self.preprocess = preprocess

    def __len__(self) -> int:
        return len(self.batches)

    def __getitem__(self, i: int) -> Tensor | _Failure:
        try:
            return self.preprocess(self.load(self.batches[i]))
        except VistaError as e:
            return _Failure(str(e))


def _loaded(
    images: BatchImages, workers: int, pin: bool
) -> Generator[Tensor | _Failure, None, None]:
    """The batches' inputs in order: loaded ahead by ``workers`` processes, or here (0)."""
    if workers == 0:
        for i in range(len(images)):
            yield images[i]
        return
    loader = torch.utils.data.DataLoader(
        images, batch_size=None, num_workers=workers, pin_memory=pin, prefetch_factor=2
    )
    yield from loader


class _Behind:
    """Runs ``consume`` on each item given to ``put``, in order: in a thread, at most ``depth``
    items behind (``threaded``), or at once. ``finish`` waits for the last item and re-raises
    the thread's first error here."""

    def __init__(self, consume: Callable[[Any], None], threaded: bool, depth: int = 2) -> None:
        self.consume = consume
        self.q: queue.Queue[Any] = queue.Queue(maxsize=depth)
        self.error: BaseException | None = None
        self.thread: threading.Thread | None = None
        if threaded:
            # Not a daemon: one killed at exit inside h5py would hang the process (finish joins it).
            self.thread = threading.Thread(target=self._work, name="vista-write", daemon=False)
            self.thread.start()

    def _work(self) -> None:
        while True:
            item = self.q.get()
            if item is _END:
                return
            if self.error is None:
                try:
                    self.consume(item)
                except BaseException as e:
                    self.error = e  # later items are drained unwritten

    def put(self, item: Any) -> None:
        if self.thread is None:
            self.consume(item)
            return
        if self.error is not None:
            self.finish()
        self.q.put(item)

    def finish(self) -> None:
        """Wait until every item is consumed; raise the first error of the consuming thread."""
        if self.thread is not None and self.thread.is_alive():
            self.q.put(_END)
            self.thread.join()
        if self.error is not None:
            error, self.error = self.error, None
            raise error


_END = object()


def run_batches(
    images: BatchImages,
    forward: Callable[[Tensor], Tensor],
    consume: Callable[[int, np.ndarray], None],
    *,
    device: torch.device,
    workers: int,
    write_behind: bool | None = None,
) -> None:
    """Every batch of ``images`` through ``forward`` on ``device``, its output (float32, on the
    CPU) given to ``consume(i, acts)`` in batch order. With ``workers``, loading runs ahead of
    the forward pass; with ``write_behind`` (default: off the CPU), ``consume`` runs behind it in
    a thread; so a device waits for neither."""
    pin = device.type == "cuda"
    inputs = _loaded(images, workers, pin)
    if write_behind is None:
        write_behind = writes_behind(device)
    behind = _Behind(lambda item: consume(item[0], item[1].cpu().numpy()), write_behind)
    try:
        for i, x in enumerate(inputs):
            if isinstance(x, _Failure):
                raise VistaError(x.message)
            behind.put((i, forward(x.to(device, non_blocking=pin))))
    except BaseException:
        # The batches consumed so far stay written (a rerun resumes after them); the error in
        # flight is the one to report.
        with contextlib.suppress(BaseException):
            behind.finish()
        raise
    finally:
        inputs.close()  # the worker processes shut down
    behind.finish()
