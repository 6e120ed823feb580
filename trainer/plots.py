"""Plots of one evaluation (matplotlib, no display): reliability diagram, confidence histogram,
robustness curves, confusion matrix. Each function returns a figure; `save` writes it as PNG."""
from __future__ import annotations

import io

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def reliability_diagram(report: dict, title: str):
    bins = report["calibration_bins"]
    fig, ax = plt.subplots(figsize=(4.5, 4.5))
    width = bins[0]["upper"] - bins[0]["lower"]
    centers = [b["lower"] + width / 2 for b in bins]
    acc = [b["accuracy"] or 0.0 for b in bins]
    ax.bar(centers, acc, width=width * 0.95, edgecolor="black", label="accuracy")
    conf = [(c, b["confidence"]) for c, b in zip(centers, bins) if b["count"]]
    ax.plot([c for c, _ in conf], [v for _, v in conf], "o", color="tab:red", label="mean confidence")
    ax.plot([0, 1], [0, 1], "--", color="gray", label="perfect calibration")
    ax.set(xlim=(0, 1), ylim=(0, 1), xlabel="confidence", ylabel="accuracy",
           title=f"{title}: ECE {report['ece']:.3f}")
    ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    return fig


def confidence_histogram(report: dict, title: str):
    bins = report["calibration_bins"]
    fig, ax = plt.subplots(figsize=(4.5, 3.5))
    width = bins[0]["upper"] - bins[0]["lower"]
    ax.bar([b["lower"] + width / 2 for b in bins], [b["count"] for b in bins], width=width * 0.95,
           edgecolor="black")
    ax.axvline(report["mean_confidence"], color="tab:red", linestyle="--",
               label=f"mean confidence {report['mean_confidence']:.3f}")
    ax.axvline(report["accuracy"], color="tab:green", linestyle=":", label=f"accuracy {report['accuracy']:.3f}")
    ax.set(xlim=(0, 1), xlabel="confidence (max probability)", ylabel="examples", title=title)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def robustness_plot(robustness: dict, title: str):
    fig, axes = plt.subplots(1, len(robustness), figsize=(4 * len(robustness), 3.5), squeeze=False)
    for ax, (attack, curve) in zip(axes[0], robustness.items()):
        ax.plot(curve["epsilons"], curve["accuracy"], "o-")
        ax.set(xlabel="epsilon (L-inf)" if attack == "fgsm" else "epsilon (L2)", ylabel="accuracy",
               ylim=(0, 1), title=f"{title}: {attack}")
        ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def text_attack_plot(attacks: dict, title: str):
    """Accuracy against the character-noise rate and against the greedy attack's budget of edited tokens."""
    panels = [(name, attacks[name]) for name in ("noise", "deepwordbug") if name in attacks]
    fig, axes = plt.subplots(1, len(panels), figsize=(4 * len(panels), 3.5), squeeze=False)
    for ax, (name, r) in zip(axes[0], panels):
        x, label = (r["rates"], "character edit rate") if name == "noise" else (r["budgets"], "tokens edited (at most)")
        ax.plot(x, r["accuracy"], "o-")
        ax.set(xlabel=label, ylabel="accuracy", ylim=(0, 1), title=f"{title}: {name} ({r['examples']} texts)")
        ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def confusion_plot(report: dict, title: str):
    names = list(report["per_class"])
    cm = np.asarray(report["confusion_matrix"])
    fig, ax = plt.subplots(figsize=(1.2 * len(names) + 2.5, 1.2 * len(names) + 2))
    ax.imshow(cm, cmap="Blues")
    for i in range(len(names)):
        for j in range(len(names)):
            ax.text(j, i, str(cm[i, j]), ha="center", va="center",
                    color="white" if cm[i, j] > cm.max() / 2 else "black")
    ax.set(xticks=range(len(names)), yticks=range(len(names)), xticklabels=names, yticklabels=names,
           xlabel="predicted", ylabel="true", title=title)
    fig.tight_layout()
    return fig


def figures(report: dict, split: str) -> dict:
    out = {"reliability": reliability_diagram(report, split), "confidence": confidence_histogram(report, split),
           "confusion": confusion_plot(report, split)}
    if report.get("robustness"):
        out["robustness"] = robustness_plot(report["robustness"], split)
    if report.get("text_attacks"):
        out["text_attacks"] = text_attack_plot(report["text_attacks"], split)
    return out


def png_bytes(fig) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    plt.close(fig)
    return buffer.getvalue()
