"""Progress a person can follow: a bar on a terminal, plain lines otherwise.

When standard output is not a terminal (``make run > log``, a batch job), long loops print one
line at least every ``INTERVAL`` seconds to standard output (and the first and last step), so a
log file shows where a run is without carriage returns. Extraction and encoding use ``Progress``;
Lightning training (SAEs, encoders, probes) uses ``lightning_progress``, which swaps Lightning's
bar for ``ProgressLines``.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from types import TracebackType
from typing import Any

from tqdm import tqdm

INTERVAL = 30.0
"""Seconds between progress lines when standard output is not a terminal."""


def interactive() -> bool:
    """Whether a progress bar can be drawn (standard output and error are terminals)."""
    return sys.stdout.isatty() and sys.stderr.isatty()


def say(line: str) -> None:
    print(line, flush=True)


_last_beat = [time.perf_counter()]


def heartbeat(what: str, done: int, total: int, interval: float = INTERVAL) -> None:
    """For loops with no bar of their own (bootstrap replicates, permutations): a line
    ``what: done/total`` when ``interval`` seconds have passed since the last such line, so a long
    count setting shows where it is."""
    now = time.perf_counter()
    if now - _last_beat[0] >= interval:
        _last_beat[0] = now
        say(f"{what}: {done:,}/{total:,}")


def _duration(seconds: float) -> str:
    s = int(max(0.0, seconds))
    return f"{s // 3600}h{s % 3600 // 60:02d}m" if s >= 3600 else f"{s // 60}m{s % 60:02d}s"


class Progress:
    """Count images through a loop; a tqdm bar on a terminal, else a line every ``interval`` s."""

    def __init__(
        self,
        what: str,
        total: int,
        done: int = 0,
        log: logging.Logger | None = None,
        interval: float = INTERVAL,
    ) -> None:
        self.what, self.total, self.done = what, total, done
        self.log = log or logging.getLogger("vista")
        self.interval = interval
        self._t0, self._start, self._last = time.perf_counter(), done, float("-inf")
        self._bar = (
            tqdm(total=total, initial=done, desc=what, unit="img", dynamic_ncols=True)
            if interactive()
            else None
        )
        self._lock, self._stop = threading.Lock(), threading.Event()
        self._updated: float | None = None
        self._ticker: threading.Thread | None = None
        if self._bar is None and 0 < interval < float("inf"):
            # One batch can take longer than the interval (a ViT on CPU): a line still comes.
            self._ticker = threading.Thread(target=self._tick, name="vista-progress", daemon=True)
            self._ticker.start()

    def _tick(self) -> None:
        while not self._stop.wait(self.interval):
            with self._lock:
                now = time.perf_counter()
                if now - self._last < self.interval:
                    continue
                self._last = now
                since = _duration(now - self._t0 if self._updated is None else now - self._updated)
                say(
                    f"{self.what}: {self.done}/{self.total} images (working; {since} since "
                    + ("the start)" if self._updated is None else "the last batch)")
                )

    def update(self, n: int) -> None:
        self.done += n
        if self._bar is not None:
            self._bar.update(n)
            return
        with self._lock:
            self._line()

    def _line(self) -> None:
        now = time.perf_counter()
        self._updated = now
        if now - self._last >= self.interval or self.done >= self.total:
            self._last = now
            rate = (self.done - self._start) / max(now - self._t0, 1e-9)
            eta = (self.total - self.done) / rate if rate > 0 else float("nan")
            say(
                f"{self.what}: {self.done}/{self.total} images ({rate:.0f} img/s"
                + (f", ETA {_duration(eta)})" if eta == eta and self.done < self.total else ")")
            )

    def __enter__(self) -> Progress:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._bar is not None:
            self._bar.close()
        self._stop.set()
        if self._ticker is not None:
            self._ticker.join()


SHOWN = ("tokens", "tokens_per_s", "fvu", "l0", "dead", "loss", "train_loss", "acc", "train_acc")
"""Logged metrics a progress line shows, when the module logs them (unprefixed, or the first SAE's
of a sweep)."""


def _metrics(callback_metrics: dict[str, Any]) -> str:
    vals: dict[str, float] = {}
    for key, v in callback_metrics.items():
        name = key.rsplit("/", 1)[-1]
        if name in SHOWN and name not in vals:
            try:
                vals[name] = float(v)
            except (TypeError, ValueError):
                continue
    parts = []
    for name in SHOWN:
        if name in vals:
            v = vals[name]
            parts.append(
                f"{name} {v:,.0f}" if name in ("tokens", "tokens_per_s") else f"{name} {v:.4g}"
            )
    return ", ".join(parts)


def progress_lines(what: str, interval: float = INTERVAL) -> Any:
    """A Lightning callback printing ``what: step s/N (p%), <metrics>, ETA`` every ``interval``
    seconds (and at the first and last step)."""
    import lightning.pytorch as pl

    class ProgressLines(pl.Callback):
        def __init__(self) -> None:
            self.t0 = self.last = 0.0
            self.first = -1

        def on_train_start(self, trainer: Any, module: Any) -> None:
            self.t0, self.last, self.first = time.perf_counter(), float("-inf"), trainer.global_step

        def on_train_batch_end(self, trainer: Any, *args: Any) -> None:
            if not trainer.is_global_zero:
                return
            now, step = time.perf_counter(), int(trainer.global_step)
            try:
                est = float(trainer.estimated_stepping_batches)
            except Exception:  # an unsized loader: no total to show
                est = float("inf")
            total = int(est) if est != float("inf") and est > 0 else 0
            end = bool(total) and step >= total
            if now - self.last < interval and not end:
                return
            self.last = now
            done = step - self.first
            eta = (total - step) * (now - self.t0) / done if total and done > 0 else None
            of = (
                f"/{total} ({100 * step / total:.0f}%)"
                if total
                else f" (epoch {trainer.current_epoch})"
            )
            metrics = _metrics(dict(trainer.callback_metrics))
            tail = f", ETA {_duration(eta)}" if eta is not None and not end else ""
            say(f"{what}: step {step}{of}" + (f", {metrics}" if metrics else "") + tail)

    return ProgressLines()


def lightning_progress(what: str, wanted: bool) -> tuple[bool, list[Any]]:
    """``(enable_progress_bar, callbacks)`` for a Lightning trainer: the bar on a terminal, the
    line printer otherwise (when progress is ``wanted`` at all)."""
    if not wanted:
        return False, []
    if interactive():
        return True, []
    return False, [progress_lines(what)]
