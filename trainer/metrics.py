"""Evaluation metrics from class probabilities and integer labels (numpy): classification quality,
calibration (NLL, Brier, ECE, MCE) and, for binary tasks, ROC AUC, average precision and a threshold table.
"""
from __future__ import annotations

import numpy as np


def classification_report(y_true, y_pred, label_names: list[str]) -> dict:
    """Accuracy, macro and micro F1, per-class precision, recall, F1 and support, confusion matrix.

    A class never predicted has precision 0; a class absent from y_true has recall 0 (and support 0).
    confusion[i][j] counts examples of true class i predicted as j.
    """
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    k = len(label_names)
    confusion = np.zeros((k, k), dtype=np.int64)
    np.add.at(confusion, (y_true, y_pred), 1)
    per_class, f1s = {}, []
    for c, name in enumerate(label_names):
        tp, predicted, support = confusion[c, c], confusion[:, c].sum(), confusion[c, :].sum()
        precision = tp / predicted if predicted else 0.0
        recall = tp / support if support else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        per_class[name] = {"precision": float(precision), "recall": float(recall), "f1": float(f1),
                           "support": int(support)}
        f1s.append(f1)
    accuracy = float(np.trace(confusion) / max(1, len(y_true)))
    return {
        "accuracy": accuracy,
        "macro_f1": float(np.mean(f1s)),
        # Single-label classification: micro precision = micro recall = micro F1 = accuracy.
        "micro_f1": accuracy,
        "per_class": per_class,
        "confusion_matrix": confusion.tolist(),
        "n": int(len(y_true)),
    }


def calibration_bins(probs, y_true, bins: int = 15) -> list[dict]:
    """Equal-width bins of the confidence (max probability) over (0, 1]; per bin: count, mean
    confidence, accuracy. A confidence c falls in bin b with b/bins < c <= (b+1)/bins."""
    probs, y_true = np.asarray(probs, np.float64), np.asarray(y_true)
    confidence, correct = probs.max(axis=1), probs.argmax(axis=1) == y_true
    index = np.clip(np.ceil(confidence * bins).astype(int) - 1, 0, bins - 1)
    out = []
    for b in range(bins):
        in_bin = index == b
        n = int(in_bin.sum())
        out.append({"lower": b / bins, "upper": (b + 1) / bins, "count": n,
                    "confidence": float(confidence[in_bin].mean()) if n else None,
                    "accuracy": float(correct[in_bin].mean()) if n else None})
    return out


def calibration_errors(probs, y_true, bins: int = 15) -> tuple[float, float]:
    """(ECE, MCE): the count-weighted mean and the maximum over non-empty bins of
    |accuracy - mean confidence| (Guo et al. 2017)."""
    table = [b for b in calibration_bins(probs, y_true, bins) if b["count"]]
    n = sum(b["count"] for b in table)
    gaps = [abs(b["accuracy"] - b["confidence"]) for b in table]
    ece = sum(b["count"] * g for b, g in zip(table, gaps)) / max(1, n)
    return float(ece), float(max(gaps, default=0.0))


def roc_auc(scores, positive) -> float:
    """Area under the ROC curve = P(score of a positive > score of a negative), ties counting 1/2."""
    scores, positive = np.asarray(scores, np.float64), np.asarray(positive, bool)
    n_pos, n_neg = positive.sum(), (~positive).sum()
    if not n_pos or not n_neg:
        return float("nan")
    order = np.argsort(scores, kind="mergesort")
    ranks = np.empty(len(scores))
    sorted_scores = scores[order]
    # Average ranks over ties.
    start = 0
    for end in range(1, len(scores) + 1):
        if end == len(scores) or sorted_scores[end] != sorted_scores[start]:
            ranks[order[start:end]] = (start + end + 1) / 2.0
            start = end
    return float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def average_precision(scores, positive) -> float:
    """Mean of the precision at the rank of each positive, examples sorted by descending score (ties
    broken by order)."""
    scores, positive = np.asarray(scores, np.float64), np.asarray(positive, bool)
    if not positive.any():
        return float("nan")
    hits = positive[np.argsort(-scores, kind="mergesort")]
    precision_at = np.cumsum(hits) / np.arange(1, len(hits) + 1)
    return float(precision_at[hits].mean())


def threshold_table(scores, positive, thresholds=None) -> list[dict]:
    """Binary decisions 'positive if score >= t' for each threshold t."""
    scores, positive = np.asarray(scores, np.float64), np.asarray(positive, bool)
    rows = []
    for t in (np.round(np.arange(0.1, 0.91, 0.1), 2) if thresholds is None else thresholds):
        predicted = scores >= t
        tp = int((predicted & positive).sum())
        rows.append({"threshold": float(t), "predicted_positive": int(predicted.sum()),
                     "precision": tp / predicted.sum() if predicted.sum() else 0.0,
                     "recall": tp / positive.sum() if positive.sum() else 0.0,
                     "accuracy": float((predicted == positive).mean())})
    return rows


def evaluation_metrics(probs, y_true, label_names: list[str], bins: int = 15) -> dict:
    """Everything `scripts/evaluate.py` reports for one split."""
    probs, y_true = np.asarray(probs, np.float64), np.asarray(y_true)
    report = classification_report(y_true, probs.argmax(axis=1), label_names)
    eps = 1e-12
    report["nll"] = float(-np.mean(np.log(np.clip(probs[np.arange(len(y_true)), y_true], eps, 1.0))))
    report["brier"] = float(np.mean(np.sum((probs - np.eye(len(label_names))[y_true]) ** 2, axis=1)))
    report["ece"], report["mce"] = calibration_errors(probs, y_true, bins)
    report["calibration_bins"] = calibration_bins(probs, y_true, bins)
    report["mean_confidence"] = float(probs.max(axis=1).mean())
    if len(label_names) == 2:
        positive = y_true == 1
        report["positive_label"] = label_names[1]
        report["roc_auc"] = roc_auc(probs[:, 1], positive)
        report["average_precision"] = average_precision(probs[:, 1], positive)
        report["thresholds"] = threshold_table(probs[:, 1], positive)
    return report


def format_report(report: dict, title: str) -> str:
    lines = [f"{title}: accuracy {report['accuracy']:.4f}  macro-F1 {report['macro_f1']:.4f}  (n={report['n']})"]
    if "ece" in report:
        lines.append(f"  NLL {report['nll']:.4f}  Brier {report['brier']:.4f}  ECE {report['ece']:.4f}  "
                     f"MCE {report['mce']:.4f}  mean confidence {report['mean_confidence']:.4f}")
    if "roc_auc" in report:
        lines.append(f"  ROC AUC {report['roc_auc']:.4f}  average precision {report['average_precision']:.4f}"
                     f"  (positive: {report['positive_label']})")
    lines.append(f"  {'class':<16}{'precision':>10}{'recall':>10}{'f1':>10}{'support':>10}")
    for name, m in report["per_class"].items():
        lines.append(f"  {name:<16}{m['precision']:>10.4f}{m['recall']:>10.4f}{m['f1']:>10.4f}"
                     f"{m['support']:>10d}")
    names = list(report["per_class"])
    lines.append("  confusion (rows: true, columns: predicted): " + "  ".join(
        f"{n}: {row}" for n, row in zip(names, report["confusion_matrix"])))
    if "thresholds" in report:
        lines.append(f"  {'threshold':>10}{'n pos':>8}{'precision':>11}{'recall':>9}{'accuracy':>10}")
        for row in report["thresholds"]:
            lines.append(f"  {row['threshold']:>10.2f}{row['predicted_positive']:>8d}{row['precision']:>11.4f}"
                         f"{row['recall']:>9.4f}{row['accuracy']:>10.4f}")
    for attack, curve in report.get("robustness", {}).items():
        lines.append(f"  accuracy under {attack} (first {curve['n']} examples): " + "  ".join(
            f"eps {e:g}: {a:.4f}" for e, a in zip(curve["epsilons"], curve["accuracy"])))
    lines += text_attack_lines(report.get("text_attacks", {}))
    return "\n".join(lines)


def text_attack_lines(attacks: dict) -> list[str]:
    """The text attacks' results (trainer/text_attacks.py), a line each."""
    lines = []
    if "noise" in attacks:
        r = attacks["noise"]
        lines.append(f"  accuracy under character noise ({r['examples']} texts): " + "  ".join(
            f"rate {x:g}: {a:.4f}" for x, a in zip(r["rates"], r["accuracy"])))
    if "deepwordbug" in attacks:
        r = attacks["deepwordbug"]
        lines.append(f"  accuracy under deepwordbug ({r['examples']} texts): " + "  ".join(
            f"{b} tokens: {a:.4f}" for b, a in zip(r["budgets"], r["accuracy"]))
            + f"  (success rate {r['success_rate']:.4f}, {r['queries_per_example']:.1f} queries per text)")
    return lines
