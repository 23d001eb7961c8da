"""Progress for the long loops (extraction, encoding): a bar on a terminal, log lines otherwise."""

from __future__ import annotations

import logging
import sys
import time
from types import TracebackType

from tqdm import tqdm


class Progress:
    """Count images through a loop; show a tqdm bar on a TTY, else log every ``every`` updates."""

    def __init__(
        self,
        what: str,
        total: int,
        done: int = 0,
        log: logging.Logger | None = None,
        every: int = 20,
    ) -> None:
        self.what, self.total, self.done = what, total, done
        self.log = log or logging.getLogger("vista")
        self.every, self._updates = every, 0
        self._t0, self._start = time.perf_counter(), done
        self._bar = (
            tqdm(total=total, initial=done, desc=what, unit="img", dynamic_ncols=True)
            if sys.stderr.isatty()
            else None
        )

    def update(self, n: int) -> None:
        self.done += n
        self._updates += 1
        if self._bar is not None:
            self._bar.update(n)
        elif self._updates % self.every == 1 or self.done >= self.total:
            rate = (self.done - self._start) / max(time.perf_counter() - self._t0, 1e-9)
            self.log.info("%s: %d/%d images (%.0f img/s)", self.what, self.done, self.total, rate)

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
