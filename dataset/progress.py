"""How far a long piece of work outside fit() is (a pass over a corpus, the final evaluation, the robustness curves,
the text attacks): Keras's progress bar on a terminal; in a log, a line at least every minute once the work has
taken that long, and one at its end (short work prints nothing)."""
from __future__ import annotations

import logging
import sys
import time

import tf_keras

log = logging.getLogger(__name__)


class Progress:
    """`what`: k/n `unit` (n None: not known ahead), the rate and the time left. update(done) with the count so
    far; finish() at the end."""

    def __init__(self, what: str, total: int | None, unit: str = "texts", every: float = 60.0,
                 tty: bool | None = None):
        self.what, self.total, self.unit, self.every = what, total, unit, every
        self.start = self.last = time.time()
        self.done, self.lines = 0, 0
        tty = sys.stdout.isatty() if tty is None else tty
        self.bar = tf_keras.utils.Progbar(total, unit_name=unit.rstrip("s") or unit) if tty else None

    def update(self, done: int) -> None:
        self.done = done
        if self.bar is not None:
            self.bar.update(done)
            return
        now = time.time()
        if now - self.last >= self.every:
            self.last = now
            self.lines += 1
            log.info("%s", self.line(now))

    def line(self, now: float) -> str:
        elapsed = max(now - self.start, 1e-9)
        rate = self.done / elapsed
        total = "" if self.total is None else f"/{self.total:,}"
        text = f"{self.what}: {self.done:,}{total} {self.unit}, {rate:,.1f} {self.unit}/s"
        if self.total is not None and rate > 0:
            text += f", {time.strftime('%H:%M:%S', time.gmtime(max(0.0, self.total - self.done) / rate))} left"
        return text

    def finish(self) -> None:
        if self.bar is None and self.lines:
            log.info("%s: done, %s %s in %.0f s", self.what, f"{self.done:,}", self.unit, time.time() - self.start)
