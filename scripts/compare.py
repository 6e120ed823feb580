"""Compare finished runs side by side as a Markdown table.

    python -m scripts.compare runs/bilstm_none runs/bilstm_fgm [--attack fgm --epsilon 5]
                              [--noise-rate 0.1 --budget 2] [--output FILE]

Each argument is a run directory or a folder searched for run directories (those with metrics.json).
Columns: the config values that differ between the runs, test accuracy, macro-F1, ECE, NLL, accuracy
under the chosen embedding attack at the chosen epsilon, under character noise at the chosen rate and under
the deepwordbug text attack with at most the chosen number of edited tokens, and the training time.
"""
from __future__ import annotations

import json
import os
import sys

import yaml

from core import cli
from core.errors import UserError
from core.loader import flatten
from core.paths import check_new_file, write_text_atomically
from scripts.experiment_report import read_json


def find_runs(paths) -> list[str]:
    runs = []
    for path in paths:
        if not os.path.isdir(path):
            raise UserError(f"{path}: not a directory")
        found = sorted(root for root, _, files in os.walk(path) if "metrics.json" in files)
        if not found:
            raise UserError(f"{path}: no finished run (no metrics.json) in it")
        runs += found
    return runs


def _at(result: dict | None, key: str, x: float) -> str:
    """The accuracy at x of a text attack's result, or a dash where the run has no such point."""
    hits = [i for i, v in enumerate((result or {}).get(key, [])) if abs(v - x) < 1e-9]
    return f"{result['accuracy'][hits[0]]:.4f}" if hits else "–"


def table(runs: list[str], attack: str, epsilon: float, noise_rate: float = 0.1, budget: int = 2) -> str:
    configs, metrics = [], []
    for run in runs:
        with open(os.path.join(run, "config.yaml"), encoding="utf-8") as f:
            cfg = yaml.safe_load(f)
        if isinstance(cfg.get("regularizer"), dict):
            cfg["regularizer"] = [cfg["regularizer"]]
        configs.append(flatten(cfg))
        metrics.append(read_json(os.path.join(run, "metrics.json"), ("train_seconds",)))
    keys = sorted({k for c in configs for k in c})
    differing = [k for k in keys if len({json.dumps(c.get(k), sort_keys=True) for c in configs}) > 1]
    header = ["run", *differing, "test acc", "macro-F1", "ECE", "NLL", f"acc {attack}@{epsilon:g}",
              f"acc noise@{noise_rate:g}", f"acc deepwordbug@{budget}", "train s"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for run, cfg, m in zip(runs, configs, metrics):
        test = m.get("test", {})  # a tuning run (no test split) has dev only: its cells stay empty
        curve = test.get("robustness", {}).get(attack)
        robust = "–"
        if curve and any(abs(e - epsilon) < 1e-9 for e in curve["epsilons"]):
            robust = f"{curve['accuracy'][[abs(e - epsilon) < 1e-9 for e in curve['epsilons']].index(True)]:.4f}"
        texts = test.get("text_attacks", {})
        cells = [os.path.relpath(run), *(str(cfg.get(k, "–")) for k in differing),
                 *(f"{test[k]:.4f}" if k in test else "–" for k in ("accuracy", "macro_f1", "ece", "nll")), robust,
                 _at(texts.get("noise"), "rates", noise_rate), _at(texts.get("deepwordbug"), "budgets", budget),
                 f"{m['train_seconds']:.0f}"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def compare(args) -> None:
    check_new_file(args.output)
    text = table(find_runs(args.runs), args.attack, args.epsilon, args.noise_rate, args.budget)
    if args.output:
        write_text_atomically(args.output, text + "\n")
    print(text)


def main(argv=None) -> int:
    parser = cli.parser(__doc__)
    parser.add_argument("runs", nargs="+")
    parser.add_argument("--attack", default="fgm", choices=["fgsm", "fgm", "pgd"])
    parser.add_argument("--epsilon", type=float, default=5.0)
    parser.add_argument("--noise-rate", type=float, default=0.1, help="character-noise rate of the text column")
    parser.add_argument("--budget", type=int, default=2, help="edited tokens of the deepwordbug column")
    parser.add_argument("--output")
    return cli.main(parser, compare, argv)


if __name__ == "__main__":
    sys.exit(main())
