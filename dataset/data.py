"""Load the splits a config asks for: files or a built-in data set, labels checked and mapped to ids."""
from __future__ import annotations

import logging
import math
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from core.errors import UserError
from core.schema import DataConfig
from dataset.builtin import BUILTIN
from dataset.corpus import Corpus
from dataset.readers import Rows, read_rows

log = logging.getLogger(__name__)


@dataclass
class Split:
    texts: list[str]
    labels: np.ndarray  # int32 class ids
    texts_b: list[str] | None = None  # second segments of sentence pairs

    def take(self, idx) -> Split:
        """The examples at idx, in that order."""
        return Split([self.texts[i] for i in idx], self.labels[idx],
                     [self.texts_b[i] for i in idx] if self.texts_b is not None else None)


@dataclass
class DataBundle:
    label_names: list[str]
    train: Split
    dev: Split
    test: Split | None  # None: no test split (data.split with a test fraction of 0, for tuning on dev)
    unlabeled: Corpus = field(default_factory=Corpus)


def _where(path: str) -> str:
    return os.path.abspath(path) if os.path.exists(path) else path


def stratified_split(labels: Sequence, fractions: Sequence[float], seed: int) -> list[np.ndarray]:
    """Split indices into len(fractions) parts, each class divided by the same fractions.

    Parts after the first get round(n_class * fraction) examples of each class; the first part gets the
    rest. Returns sorted index arrays.
    """
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    parts: list[list[int]] = [[] for _ in fractions]
    for cls in sorted(set(labels.tolist())):
        idx = rng.permutation(np.flatnonzero(labels == cls))
        start = 0
        for k in range(len(fractions) - 1, 0, -1):
            n = int(round(len(idx) * fractions[k]))
            parts[k] += idx[start:start + n].tolist()
            start += n
        parts[0] += idx[start:].tolist()
    return [np.array(sorted(p), dtype=np.int64) for p in parts]


def stratified_sample(labels, n: int | None, seed: int = 0) -> np.ndarray:
    """Sorted indices of a fixed sample of n examples, each class in proportion to its share (largest
    remainders); every index if n is None or not smaller than the number of examples."""
    labels = np.asarray(labels)
    if n is None or n >= len(labels):
        return np.arange(len(labels))
    rng = np.random.default_rng(seed)
    classes, counts = np.unique(labels, return_counts=True)
    exact = n * counts / len(labels)
    quota = np.floor(exact).astype(int)
    quota[np.argsort(-(exact - quota), kind="stable")[:n - quota.sum()]] += 1
    picked = [rng.permutation(np.flatnonzero(labels == c))[:q] for c, q in zip(classes, quota)]
    return np.sort(np.concatenate(picked))


INTEGER = re.compile(r"-?[0-9]+")


def _number(label: str) -> float | None:
    try:
        value = float(label)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def _sort_labels(labels: set[str], path: str = "") -> list[str]:
    """The label list: integers (ASCII digits only) numerically, anything else as text. Two labels that
    spell one number differently ('1' and '1.0') are an error, not two classes."""
    spelled = {}
    for label in sorted(labels):
        number = _number(label)
        if number is not None and number in spelled:
            raise UserError(f"{path}: labels '{spelled[number]}' and '{label}' are the same number written two "
                            "ways; write each class one way")
        if number is not None:
            spelled[number] = label
    if all(INTEGER.fullmatch(label) for label in labels):
        return sorted(labels, key=int)
    return sorted(labels)


def label_ids(rows: Rows, names: list[str], unknown: str = "is not in the label list") -> np.ndarray:
    """The class index of every row's label in `names`. A label not there is one line: the file, the line,
    the label, `unknown` (what is wrong with it) and the known labels."""
    index = {name: i for i, name in enumerate(names)}
    ids = []
    for label, line in zip(rows.labels, rows.lines):
        if label not in index:
            raise UserError(f"{rows.path}: line {line}: label '{label}' {unknown} ({', '.join(names)})")
        ids.append(index[label])
    return np.array(ids, dtype=np.int32)


def _subset(rows: Rows, idx: np.ndarray) -> Rows:
    return Rows(rows.path, [rows.texts[i] for i in idx], [rows.labels[i] for i in idx],
                [rows.lines[i] for i in idx], texts_b=[rows.texts_b[i] for i in idx] if rows.texts_b else None)


def _read_labelled(cfg: DataConfig, path: str) -> Rows:
    rows = read_rows(path, cfg.format, cfg.text_column, cfg.label_column, cfg.text_b_column)
    if rows.empty:
        log.info("%s: skipped %d rows with empty text", path, rows.empty)
    return rows


def load_data(cfg: DataConfig) -> DataBundle:
    if cfg.dataset:
        texts, labels = BUILTIN[cfg.dataset]()
        source = Rows(f"built-in data set {cfg.dataset}", texts, labels, list(range(1, len(texts) + 1)))
        splits = {"train": source, "dev": None, "test": None}
    else:
        splits = {name: _read_labelled(cfg, path) if path else None
                  for name, path in (("train", cfg.train), ("dev", cfg.dev), ("test", cfg.test))}
    fractions = dict(zip(("train", "dev", "test"), cfg.split))
    if splits["test"] is None and fractions["test"] == 0:  # tuning: no test split at all
        log.info("no test split: data.split gives it a fraction of 0 and data.test is not set; the run is "
                 "evaluated on dev only")
        del splits["test"]
    missing = [name for name in ("dev", "test") if name in splits and splits[name] is None]
    if missing:
        parts = ["train"] + missing
        if any(fractions[name] <= 0 for name in missing):
            raise UserError(f"data.split: the {' and '.join(missing)} split comes from the training data "
                            f"but its fraction is 0 in {cfg.split}")
        wanted = [fractions[name] for name in parts]
        wanted[0] = 1.0 - sum(wanted[1:])
        idx = stratified_split(splits["train"].labels, wanted, cfg.seed)
        source = splits["train"]
        for name, part in zip(parts, idx):
            splits[name] = _subset(source, part)

    train = splits["train"]
    if len(set(train.labels)) < 2:
        raise UserError(f"{train.path}: the training split has a single class "
                        f"('{train.labels[0]}'); a classifier needs at least two")
    names = list(cfg.labels) if cfg.labels else _sort_labels(set(train.labels), train.path)
    bundle_splits = {name: Split(rows.texts, label_ids(rows, names, f"of the {name} split is not in the label list"),
                                 rows.texts_b) for name, rows in splits.items()}

    moved: list[str] = []
    if cfg.num_labeled is not None or cfg.labeled_fraction is not None:
        full = bundle_splits["train"]
        n = len(full.texts)
        keep = cfg.num_labeled if cfg.num_labeled is not None else int(round(n * cfg.labeled_fraction))
        if keep >= n:
            raise UserError(f"data.num_labeled: {keep} is not below the {n} training examples")
        keep_idx, rest_idx = stratified_split(full.labels, [keep / n, 1 - keep / n], cfg.seed)
        bundle_splits["train"] = full.take(keep_idx)
        moved = [full.texts[i] for i in rest_idx]
        log.info("few labels: kept %d labelled training examples, moved %d to the unlabeled stream",
                 len(keep_idx), len(rest_idx))
    unlabeled = Corpus.load(cfg.unlabeled, cfg.text_column, moved)

    test = bundle_splits.get("test")
    if cfg.test_examples is not None and test is not None and cfg.test_examples > len(test.texts):
        log.warning("data.test_examples is %d, but the test split has %d examples: all of them are evaluated",
                    cfg.test_examples, len(test.texts))
    elif cfg.test_examples is not None and test is not None and cfg.test_examples < len(test.texts):
        pick = stratified_sample(test.labels, cfg.test_examples, cfg.seed)
        log.info("test: a fixed stratified sample of %d of its %d examples (data.test_examples, data.seed %d)",
                 len(pick), len(test.texts), cfg.seed)
        bundle_splits["test"] = test.take(pick)
    for name, split in bundle_splits.items():
        counts = np.bincount(split.labels, minlength=len(names))
        log.info("%s: %d examples (%s) from %s", name, len(split.texts),
                 ", ".join(f"{label}: {c}" for label, c in zip(names, counts)), _where(splits[name].path))
    if unlabeled:
        log.info("unlabeled: %s", unlabeled.describe())
    return DataBundle(names, bundle_splits["train"], bundle_splits["dev"], bundle_splits.get("test"), unlabeled)
