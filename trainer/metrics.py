"""Classification metrics computed from integer labels and predictions (numpy)."""
from __future__ import annotations

import numpy as np


def classification_report(y_true, y_pred, label_names: list[str]) -> dict:
    """Accuracy, macro and micro F1, and per-class precision, recall, F1 and support.

    A class never predicted has precision 0; a class absent from y_true has recall 0 (and support 0).
    """
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    per_class = {}
    f1s = []
    for k, name in enumerate(label_names):
        tp = int(np.sum((y_pred == k) & (y_true == k)))
        predicted, support = int(np.sum(y_pred == k)), int(np.sum(y_true == k))
        precision = tp / predicted if predicted else 0.0
        recall = tp / support if support else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        per_class[name] = {"precision": precision, "recall": recall, "f1": f1, "support": support}
        f1s.append(f1)
    accuracy = float(np.mean(y_true == y_pred)) if len(y_true) else 0.0
    return {
        "accuracy": accuracy,
        "macro_f1": float(np.mean(f1s)),
        # Single-label classification: micro precision = micro recall = micro F1 = accuracy.
        "micro_f1": accuracy,
        "per_class": per_class,
        "n": int(len(y_true)),
    }


def format_report(report: dict, title: str) -> str:
    lines = [f"{title}: accuracy {report['accuracy']:.4f}  macro-F1 {report['macro_f1']:.4f}  "
             f"(n={report['n']})",
             f"  {'class':<16}{'precision':>10}{'recall':>10}{'f1':>10}{'support':>10}"]
    for name, m in report["per_class"].items():
        lines.append(f"  {name:<16}{m['precision']:>10.4f}{m['recall']:>10.4f}{m['f1']:>10.4f}"
                     f"{m['support']:>10d}")
    return "\n".join(lines)
