"""The report of an experiment grid (docs/RESULTS.md): per experiment a table over seeds (accuracy, error,
macro-F1, ECE, NLL, accuracy under an attack, wall time), the paired differences to `none`, the settings chosen
on dev, the text attacks, a bar chart, and the runs it was made from. scripts/run_experiments.py runs the grid
and calls report()."""
from __future__ import annotations

import json
import os
import re
import statistics

from core.errors import UserError
from core.paths import write_text_atomically

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


CLASSIFIER_RESULTS = ("dev.accuracy", "test.accuracy", "test.macro_f1", "test.ece", "test.nll")
LANGUAGE_MODEL_RESULTS = ("best_epoch", "train_seconds", "tokens_per_second", "parameters", "heldout.perplexity")


def read_json(path: str, required: tuple[str, ...] = ()) -> dict:
    """A run's metrics.json (or wall_seconds.json), with the keys the report reads (dotted: test.ece): a damaged
    or incomplete file is one line naming it and the key, not a traceback."""
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except (ValueError, UnicodeDecodeError):
        raise UserError(f"{path}: not valid JSON: the run's record is damaged; train the run again or move it "
                        "away") from None
    for key in required:
        node = data
        for part in key.split("."):
            if not isinstance(node, dict) or part not in node:
                raise UserError(f"{path}: has no {key}: the run's record is damaged or from another kind of run; "
                                "train the run again or move it away")
            node = node[part]
    return data


def attack_accuracy(test: dict, attack: dict) -> float | None:
    curve = test.get("robustness", {}).get(attack["name"])
    if not curve:
        return None
    for eps, acc in zip(curve["epsilons"], curve["accuracy"]):
        if abs(eps - attack["epsilon"]) < 1e-9:
            return acc
    return None


def summarize(experiment: dict, runs: list[dict]) -> list[dict]:
    rows = []
    for variant in experiment["variants"]:
        finished = [r for r in runs if r["variant"] == variant and not r.get("tuning")
                    and os.path.exists(os.path.join(r["run_dir"], "metrics.json"))]
        metrics = [read_json(os.path.join(r["run_dir"], "metrics.json"), CLASSIFIER_RESULTS) for r in finished]
        walls = []
        for r in finished:
            path = os.path.join(r["run_dir"], "wall_seconds.json")
            if os.path.exists(path):
                walls.append(read_json(path, ("seconds",))["seconds"])
        row = {"variant": variant, "seed_ids": [r["seed"] for r in finished], "wall_s": walls}
        for key in ("accuracy", "macro_f1", "ece", "nll"):
            row[key] = [m["test"][key] for m in metrics]
        row["dev_accuracy"] = [m["dev"]["accuracy"] for m in metrics]
        row["epochs"] = [f"{m['best_epoch']}/{m['epochs_run']}" for m in metrics if "epochs_run" in m]
        if experiment.get("attack"):
            row["attack"] = [a for a in (attack_accuracy(m["test"], experiment["attack"]) for m in metrics)
                             if a is not None]
        row["text_attacks"] = [m["test"]["text_attacks"] for m in metrics if m["test"].get("text_attacks")]
        rows.append(row)
    return rows


def text_attack_table(rows: list[dict]) -> list[str]:
    """Accuracy under the text attacks (eval.text_attacks) per method, mean ± sd over seeds: the columns
    of the first run that has them; runs with other settings are left out of a column."""
    first = next((r["text_attacks"][0] for r in rows if r["text_attacks"]), None)
    if first is None:
        return []
    noise, greedy = first.get("noise"), first.get("deepwordbug")
    head, rule = ["method", "seeds"], ["---", "---"]
    if noise:
        head += [f"noise {100 * x:g}% (%)" if x else "clean (%)" for x in noise["rates"]]
    if greedy:
        head += [f"deepwordbug ≤{b} (%)" for b in greedy["budgets"] if b] + ["attack success (%)", "queries per text"]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join(rule + ["---"] * (len(head) - 2)) + "|"]
    for r in rows:
        runs = [t for t in r["text_attacks"] if (not noise or t.get("noise", {}).get("rates") == noise["rates"])
                and (not greedy or t.get("deepwordbug", {}).get("budgets") == greedy["budgets"])]
        if not runs:
            continue
        cells = [r["variant"], str(len(runs))]
        if noise:
            cells += [mean_std([t["noise"]["accuracy"][i] for t in runs], True) for i in range(len(noise["rates"]))]
        if greedy:
            cells += [mean_std([t["deepwordbug"]["accuracy"][i] for t in runs], True)
                      for i, b in enumerate(greedy["budgets"]) if b]
            cells += [mean_std([t["deepwordbug"]["success_rate"] for t in runs], True),
                      mean_std([t["deepwordbug"]["queries_per_example"] for t in runs], digits=0)]
        lines.append("| " + " | ".join(cells) + " |")
    examples = first.get("noise", first.get("deepwordbug", {})).get("examples")
    return ["", f"Text attacks on the raw test texts (a fixed stratified sample of {examples}, the same noise for "
            "every run): accuracy under random character noise at each rate, and under the DeepWordBug-style "
            "greedy attack with at most k edited tokens; its success rate among the texts first classified "
            "right, and its model queries per attacked text. Mean ± sd over seeds.", "", *lines]


PAIRED = (("accuracy", "Δ test accuracy (points)", True, 2), ("macro_f1", "Δ macro-F1", False, 4),
          ("ece", "Δ ECE", False, 4), ("nll", "Δ NLL", False, 4))  # key, heading, in percent, digits


def paired_table(rows: list[dict], pairs: list[list[str]] | None = None) -> list[str]:
    """Each method minus its baseline on the same seed (`pairs`: [method, baseline] each; by default every method
    minus none): mean ± sd of the per-seed differences, and on how many seeds the method's test accuracy was
    higher / lower. Only seeds both have finished are paired."""
    by_name = {r["variant"]: r for r in rows}
    named = pairs is not None
    pairs = pairs if named else [[r["variant"], "none"] for r in rows if r["variant"] != "none"]
    lines = []
    for method, baseline in pairs:
        r, base = by_name.get(method), by_name.get(baseline)
        if r is None or base is None:
            continue
        seeds = [s for s in r["seed_ids"] if s in base["seed_ids"]]
        if not seeds:
            continue
        diffs = {key: [r[key][r["seed_ids"].index(s)] - base[key][base["seed_ids"].index(s)] for s in seeds]
                 for key, _, _, _ in PAIRED}
        cells = [f"{method} − {baseline}" if named else method, str(len(seeds))]
        cells += [mean_std(diffs[key], percent, digits, signed=True) for key, _, percent, digits in PAIRED]
        cells.append(f"{sum(d > 0 for d in diffs['accuracy'])} / {sum(d < 0 for d in diffs['accuracy'])}")
        lines.append("| " + " | ".join(cells) + " |")
    if not lines:
        return []
    what = "Paired differences (first minus second" if named else "Paired differences to none (method minus none"
    return ["", f"{what} on the same seed; mean ± sd over the seeds both finished). Lower is better for ECE "
            "and NLL.", "", "| method | pairs | " + " | ".join(head for _, head, _, _ in PAIRED)
            + " | accuracy higher / lower |", "|---|---|" + "---|" * len(PAIRED) + "---|", *lines]


def selection_table(selection: dict) -> list[str]:
    """The sweeps: each value's mean dev score over seeds; the selected one in bold."""
    if not selection:
        return []
    lines = ["", "Settings chosen on dev (the runs of each value read no test split; the variant's row above is the "
             "selected value, trained again with the test split):", "",
             "| method | setting | value | seeds | dev score (%) |", "|---|---|---|---|---|"]
    for variant, chosen in selection.items():
        for value, scores in chosen["scores"].items():
            mark = "**" if value == chosen["selected"] else ""
            lines.append(f"| {variant} | {chosen['key']} | {mark}{value}{mark} | {len(scores)} | "
                         f"{chosen['metric']} {mean_std(scores, chosen['metric'] != 'nll')} |")
    return lines


def mean_std(values, percent=False, digits=2, signed=False) -> str:
    """'mean ± sd' (the mean alone for one value, '–' for none); `signed`: the mean with its sign."""
    if not values:
        return "–"
    scale = 100.0 if percent else 1.0
    mean = round(statistics.mean(values) * scale, digits) + 0.0  # + 0.0: no '-0.00'
    mean = f"{mean:{'+' if signed else ''}.{digits}f}"
    if len(values) == 1:
        return mean
    return f"{mean} ± {statistics.stdev(values) * scale:.{digits}f}"


def plot(experiment: dict, rows: list[dict], path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in rows if r["accuracy"]]
    fig, ax = plt.subplots(figsize=(1.2 + 1.1 * len(rows), 3.2))
    means = [100 * statistics.mean(r["accuracy"]) for r in rows]
    errs = [100 * statistics.stdev(r["accuracy"]) if len(r["accuracy"]) > 1 else 0 for r in rows]
    ax.bar([r["variant"] for r in rows], means, yerr=errs, capsize=4, color="#4c72b0")
    low = min(m - e for m, e in zip(means, errs))
    ax.set_ylim(max(0, low - 3), min(100, max(m + e for m, e in zip(means, errs)) + 2))
    ax.set_ylabel("test accuracy (%)")
    ax.set_title(experiment.get("title", experiment["name"]), fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


FINISHED_MARK = "` (finished)"


WRITTEN_BY = "Written by `scripts/run_experiments.py`"


def check_results_path(path: str) -> None:
    """The report may replace only a report this script wrote: never a directory or a file of another kind."""
    if os.path.isdir(path):
        raise UserError(f"--results {path}: is a directory; name the report's file, e.g. {path}/RESULTS.md")
    if os.path.exists(path):
        with open(path, encoding="utf-8", errors="replace") as f:
            head = f.read(2000)
        if WRITTEN_BY not in head:
            raise UserError(f"--results {path}: exists and is not a report scripts/run_experiments.py wrote; not "
                            "replaced (choose another file, or move that one)")


def finished_in_report(path: str) -> int:
    """How many finished runs an existing report was made from (0 if there is none)."""
    if not os.path.exists(path):
        return 0
    with open(path, encoding="utf-8") as f:
        return sum(line.rstrip().endswith(FINISHED_MARK) for line in f)


def report_sections(path: str) -> dict[str, str]:
    """An existing report's sections, by heading line ('## title'), each up to the next heading."""
    if not os.path.exists(path):
        return {}
    with open(path, encoding="utf-8") as f:
        parts = re.split(r"(?m)^(?=## )", f.read())
    return {part.splitlines()[0]: part for part in parts if part.startswith("## ")}


def language_model_table(runs: list[dict]) -> list[str]:
    """The language models of a `task: lm` experiment: size, held-out perplexity, speed and time, a row a run."""
    lines = ["| run | parameters | held-out perplexity | forward / backward | best epoch | tokens per second | "
             "training time (h) | wall time (h) |", "|---|---|---|---|---|---|---|---|"]
    for run in runs:
        path = os.path.join(run["run_dir"], "metrics.json")
        if not os.path.exists(path):
            continue
        m = read_json(path, LANGUAGE_MODEL_RESULTS)
        heldout, wall = m["heldout"], os.path.join(run["run_dir"], "wall_seconds.json")
        directions = " / ".join(f"{heldout[k]:.1f}" for k in ("forward_perplexity", "backward_perplexity")
                                if k in heldout)
        cells = [f"{run['variant']}-seed{run['seed']}", f"{m['parameters']:,}", f"{heldout['perplexity']:.1f}",
                 directions or "–", str(m["best_epoch"]), f"{m['tokens_per_second']:,.0f}",
                 f"{m['train_seconds'] / 3600:.2f}",
                 f"{read_json(wall, ('seconds',))['seconds'] / 3600:.2f}" if os.path.exists(wall) else "–"]
        lines.append("| " + " | ".join(cells) + " |")
    return lines + ["", "Held-out perplexity: exact softmax over the whole vocabulary, on the held-out texts "
                    "(lm.heldout_texts); tokens per second count both directions' predicted tokens; wall time "
                    "includes reading the corpus (vocabulary, counting) and the final evaluation."]


def experiment_section(experiment: dict, runs: list[dict], selection: dict, docs: str) -> tuple[list[str], list]:
    """An experiment's section below its heading, and the plots it links to (experiment, rows, path): drawn once
    the report is known to be written."""
    if experiment["base"].get("task") == "lm":
        lines = [experiment["description"].strip(), ""] if experiment.get("description") else []
        lines += language_model_table(runs)
        return lines + run_list(experiment, runs), []
    rows = summarize(experiment, runs)
    for r in rows:
        if r["variant"] in selection:
            chosen = selection[r["variant"]]
            r["variant"] += f" ({chosen['key'].split('.')[-1]}={chosen['selected']}, chosen on dev)"
    lines, plots = [], []
    if experiment.get("description"):
        lines += [experiment["description"].strip(), ""]
    attack = experiment.get("attack")
    head = "| method | seeds | dev accuracy (%) | test accuracy (%) | test error (%) | macro-F1 | ECE | NLL |"
    rule = "|---|---|---|---|---|---|---|---|"
    if attack:
        head += f" accuracy under {attack['name']} ε={attack['epsilon']} (%) |"
        rule += "---|"
    lines += [head + " best / epochs run | wall time per run (s) |", rule + "---|---|"]
    for r in rows:
        error = [1 - a for a in r["accuracy"]]
        cells = [r["variant"], str(len(r["seed_ids"])), mean_std(r["dev_accuracy"], True), mean_std(r["accuracy"], True),
                 mean_std(error, True),
                 mean_std(r["macro_f1"], digits=4), mean_std(r["ece"], digits=4), mean_std(r["nll"], digits=4)]
        if attack:
            cells.append(mean_std(r.get("attack", []), True))
        cells += [", ".join(r["epochs"]) or "–", mean_std(r["wall_s"], digits=0)]
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", "Mean ± sample standard deviation over seeds; wall time includes start-up and the final "
              "evaluation."]
    lines += paired_table(rows, experiment.get("pairs"))
    lines += selection_table(selection)
    lines += text_attack_table(rows)
    if any(r["accuracy"] for r in rows):
        png = f"results_{experiment['name']}.png"
        plots.append((experiment, rows, os.path.join(docs, png)))
        lines += ["", f"![{experiment['name']}]({png})"]
    return lines + run_list(experiment, runs), plots


def run_list(experiment: dict, runs: list[dict]) -> list[str]:
    """An experiment's notes, then the command of each of its runs and whether it finished."""
    lines = ["", experiment["notes"].strip()] if experiment.get("notes") else []
    lines += ["", "Runs (their configs are written next to them by the command above):", ""]
    for run in runs:
        state = FINISHED_MARK if os.path.exists(os.path.join(run["run_dir"], "metrics.json")) else "` (not run)"
        lines.append(f"- `python train.py --config {os.path.relpath(run['config_path'], ROOT)} "
                     f"--run-dir {os.path.relpath(run['run_dir'], ROOT)}{state}")
    return lines + [""]


def report(experiments: list[dict], all_runs: dict, selections: dict, results_path: str, command: str,
           only: list[str] | None = None, allow_fewer_runs: bool = False) -> None:
    """Writes the report of `experiments`: per experiment (by name) its runs (`all_runs`) and the values its sweeps
    selected on dev (`selections`, as run_experiments.select gives them); `command` reproduces it. With `only`,
    the other experiments' sections are kept as the report has them. A report made from more finished runs than
    these is not rewritten unless `allow_fewer_runs`."""
    check_results_path(results_path)
    before = finished_in_report(results_path)
    kept = report_sections(results_path) if only else {}
    plots = []  # drawn once the report is known to be written
    docs = os.path.dirname(results_path) or "."
    os.makedirs(docs, exist_ok=True)
    lines = ["# Results", "",
             f"{WRITTEN_BY}; every number below comes from the runs listed with it.",
             "Model selection (best epoch) uses the dev split only; the test split is evaluated once per run. The dev "
             "accuracy column is the selected epoch's.", "",
             "Reproduce:", "", "```bash", command, "```", ""]
    for experiment in experiments:
        heading = f"## {experiment.get('title', experiment['name'])}"
        if experiment["name"] not in (only or [experiment["name"]]) and heading in kept:
            lines += kept[heading].rstrip("\n").split("\n") + [""]
            continue
        section, plotted = experiment_section(experiment, all_runs[experiment["name"]],
                                              selections.get(experiment["name"], {}), docs)
        lines += [heading, "", *section]
        plots += plotted
    finished = sum(line.rstrip().endswith(FINISHED_MARK) for line in lines)
    if finished < before and not allow_fewer_runs:
        raise UserError(f"{results_path}: made from {before} finished runs, but only {finished} are in its run "
                        "directories; not rewritten (check --runs-dir, or pass --allow-fewer-runs)")
    for experiment, rows, path in plots:
        plot(experiment, rows, path)
    write_text_atomically(results_path, "\n".join(lines), "results")
    print(f"wrote {results_path}")
