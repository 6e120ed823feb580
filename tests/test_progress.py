"""Progress lines of long work outside fit(): what, how far, the rate and the time left; nothing for short work."""
import logging
import time
import types

import numpy as np
import tensorflow as tf

from dataset import progress as progress_module
from dataset.corpus import count_items
from dataset.progress import Progress


def test_a_line_at_least_every_interval_with_how_far_the_rate_and_the_time_left(caplog, monkeypatch):
    clock = iter([100.0, 130.0, 161.0, 170.0, 200.0])  # the start, then each update and the finish read the time
    monkeypatch.setattr(progress_module, "time", types.SimpleNamespace(time=lambda: next(clock), strftime=time.strftime,
                                                                       gmtime=time.gmtime))
    caplog.set_level(logging.INFO, logger="dataset.progress")
    p = Progress("robustness curves (fgm)", 1200, "texts", every=60.0, tty=False)
    p.update(300)  # t = 130: 30 s since the start, under a minute: no line
    p.update(610)  # t = 161: 61 s, a line: 610/1200, 10 texts/s, 59 s left
    p.update(700)  # t = 170: 9 s after the last line: none
    p.finish()  # t = 200: the end of work that logged
    lines = [r.getMessage() for r in caplog.records]
    assert lines == ["robustness curves (fgm): 610/1,200 texts, 10.0 texts/s, 00:00:59 left",
                     "robustness curves (fgm): done, 700 texts in 100 s"]


def test_short_work_prints_nothing(caplog):
    caplog.set_level(logging.INFO, logger="dataset.progress")
    p = Progress("final evaluation, test", 10, tty=False)
    p.update(10)
    p.finish()
    assert not caplog.records


def test_an_unknown_total_says_the_count_and_the_rate(monkeypatch):
    monkeypatch.setattr(progress_module, "time", types.SimpleNamespace(time=lambda: 0.0))
    p = Progress("vocabulary: counting the tokens", None, tty=False)
    p.done = 500
    assert p.line(50.0) == "vocabulary: counting the tokens: 500 texts, 10.0 texts/s"


def test_count_items_counts_every_element_in_batches_and_stops_at_a_limit():
    items = tf.data.Dataset.from_tensor_slices(np.arange(10_001))
    assert count_items(items, "x", "texts") == 10_001
    assert count_items(items, "x", "texts", limit=7) == 7
    assert count_items(items.take(0), "x", "texts") == 0
