"""scripts/run_experiments.py: a grid runs once, finished runs are skipped, seeds are aggregated."""
import glob
import json
import os
import statistics

import pytest
import yaml
from conftest import ROOT, tiny_config_dict

from core.loader import config_from_dict
from scripts import experiment_report, run_experiments


def test_grid_runs_skips_finished_runs_and_writes_results(tmp_path, tiny_files, capsys):
    data_root = os.path.dirname(tiny_files["train"])
    base = tiny_config_dict({k: "{data_root}/" + os.path.basename(v) for k, v in tiny_files.items()}, "none",
                            eval={"attacks": ["fgm"], "epsilons": [0.0, 1.0], "robustness_examples": 8})
    spec = tmp_path / "spec.yaml"
    spec.write_text(yaml.safe_dump({"experiments": [{
        "name": "tiny", "title": "Tiny", "base": base, "seeds": [1, 2],
        "variants": {"fgm": {"regularizer": {"name": "fgm"}}},
        "attack": {"name": "fgm", "epsilon": 1.0}}]}))
    args = [str(spec), "--data-root", data_root, "--runs-dir", str(tmp_path / "runs"),
            "--results", str(tmp_path / "docs" / "RESULTS.md")]
    assert run_experiments.main(args + ["--seeds", "2"]) == 0  # one seed only (a grid shared between processes)
    printed = capsys.readouterr().out
    assert printed.count(" s\n") == 1 and "seed 2: " in printed and "skipped" not in printed
    assert not (tmp_path / "runs" / "tiny" / "fgm-seed1").exists()
    assert run_experiments.main(args) == 0
    printed = capsys.readouterr().out
    assert printed.count(" s\n") == 1 and "seed 1: " in printed and printed.count("skipped (finished)") == 1
    assert run_experiments.main(args) == 0
    assert capsys.readouterr().out.count("skipped (finished)") == 2
    results = (tmp_path / "docs" / "RESULTS.md").read_text()
    rows = [line for line in results.splitlines() if line.startswith("| fgm |")]
    assert len(rows) == 1 and rows[0].count(" ± ") >= 7 and "| 2 |" in rows[0]
    metrics = [json.loads((tmp_path / "runs" / "tiny" / f"fgm-seed{k}" / "metrics.json").read_text()) for k in (1, 2)]
    cells = [c.strip() for c in rows[0].strip("|").split("|")]
    for cell, values in ((cells[2], [m["dev"]["accuracy"] for m in metrics]),
                         (cells[3], [m["test"]["accuracy"] for m in metrics]),
                         (cells[4], [1 - m["test"]["accuracy"] for m in metrics])):
        assert cell == f"{100 * statistics.mean(values):.2f} ± {100 * statistics.stdev(values):.2f}"
    assert cells[-2] == ", ".join(f"{m['best_epoch']}/{m['epochs_run']}" for m in metrics)  # best / epochs run
    assert (tmp_path / "docs" / "results_tiny.png").exists()
    assert "python train.py --config" in results and "--data-root" in results
    saved = yaml.safe_load((tmp_path / "runs" / "tiny" / "fgm-seed2.yaml").read_text())
    assert saved["train"]["seed"] == 2 and saved["data"]["train"] == tiny_files["train"]
    # A report is never rewritten from fewer runs than it was made from, unless asked.
    before = results
    other = args[:args.index("--runs-dir") + 1] + [str(tmp_path / "elsewhere")] + args[args.index("--runs-dir") + 2:]
    (tmp_path / "elsewhere").mkdir()
    assert run_experiments.main(other + ["--report-only"]) == 2
    assert "made from 2 finished runs, but only 0" in capsys.readouterr().err
    assert (tmp_path / "docs" / "RESULTS.md").read_text() == before
    # --only rewrites only its experiments' sections: another experiment's section is kept as it stands
    other = "## Other data\n\nmeasured elsewhere: 99.9%\n\n- `python train.py --config x.yaml --run-dir y` (finished)\n"
    (tmp_path / "docs" / "RESULTS.md").write_text(before + "\n" + other)
    spec2 = tmp_path / "spec2.yaml"
    raw = yaml.safe_load(spec.read_text())
    raw["experiments"].append({**raw["experiments"][0], "name": "other", "title": "Other data"})
    spec2.write_text(yaml.safe_dump(raw))
    args2 = [str(spec2)] + args[1:]
    assert run_experiments.main(args2 + ["--report-only", "--only", "tiny"]) == 0
    rewritten = (tmp_path / "docs" / "RESULTS.md").read_text()
    assert other.strip() in rewritten and rewritten.count("| fgm |") == 1
    assert run_experiments.main(args2 + ["--report-only"]) == 2  # all: 'other' has no runs here, 1 fewer
    assert "made from 3 finished runs, but only 2" in capsys.readouterr().err
    assert (tmp_path / "docs" / "RESULTS.md").read_text() == rewritten
    before = rewritten
    # An unknown experiment name is an error, before anything runs.
    assert run_experiments.main(args + ["--only", "typo"]) == 2
    assert "--only typo: no such experiment" in capsys.readouterr().err
    assert (tmp_path / "docs" / "RESULTS.md").read_text() == before
    # A finished run that the spec now describes otherwise is an error: not skipped, not reported as the spec's.
    raw = yaml.safe_load(spec.read_text())
    raw["experiments"][0]["variants"]["fgm"]["regularizer"]["epsilon"] = 2.5
    spec.write_text(yaml.safe_dump(raw))
    for extra in ([], ["--report-only"]):
        assert run_experiments.main(args + extra) == 2
        assert ("fgm-seed1: was started with regularizer.epsilon: 5.0, but the spec now gives 2.5; move or delete "
                "that run directory") in capsys.readouterr().err
    assert (tmp_path / "docs" / "RESULTS.md").read_text() == before


@pytest.mark.slow  # two grids of real runs, a language model first: about 36 s
def test_a_language_model_pretrained_by_one_experiment_starts_the_next(tmp_path, tiny_files, capsys):
    """{runs_dir} names a run of the grid; a task: lm experiment is reported by its size, perplexity and speed."""
    data_root = os.path.dirname(tiny_files["train"])
    lm = {"task": "lm", "data": {"unlabeled": "{data_root}/train.tsv", "tokenizer": "word", "max_length": 12,
                                 "batch_size": 8},
          "model": {"name": "lstm", "embedding_dim": 8, "hidden_size": 8},
          "lm": {"softmax_samples": 8, "heldout_texts": 8}, "train": {"epochs": 1, "steps_per_epoch": 2}}
    classifier = tiny_config_dict({k: "{data_root}/" + os.path.basename(v) for k, v in tiny_files.items()}, "none")
    spec = tmp_path / "spec.yaml"
    spec.write_text(yaml.safe_dump({"experiments": [
        {"name": "pre", "title": "Pretrained", "base": lm, "variants": {"lm": {}}, "seeds": [1]},
        {"name": "cls", "title": "Classified", "base": classifier, "seeds": [1],
         "variants": {"lm-none": {"model": {"init_from": "{runs_dir}/pre/lm-seed1"}}}}]}))
    runs = tmp_path / "runs"
    args = [str(spec), "--data-root", data_root, "--runs-dir", str(runs), "--results", str(tmp_path / "RESULTS.md")]
    assert run_experiments.main(args + ["--variants", "lm-none"]) == 2  # the language model would not be trained
    assert "pre/lm-seed1: no experiment trained before it makes that run" in capsys.readouterr().err
    assert not runs.exists()
    assert run_experiments.main(args) == 0
    saved = yaml.safe_load((runs / "cls" / "lm-none-seed1" / "config.yaml").read_text())
    assert saved["model"]["init_from"] == str(runs / "pre" / "lm-seed1")
    metrics = json.loads((runs / "pre" / "lm-seed1" / "metrics.json").read_text())
    results = (tmp_path / "RESULTS.md").read_text()
    row = next(line for line in results.splitlines() if line.startswith("| lm-seed1 |"))
    assert f"| {metrics['parameters']:,} | {metrics['heldout']['perplexity']:.1f} |" in row
    assert results.count("| lm-none | 1 |") == 1 and results.count("` (finished)") == 2


def _tiny_spec(tmp_path, tiny_files, variants=None):
    data_root = os.path.dirname(tiny_files["train"])
    base = tiny_config_dict({k: "{data_root}/" + os.path.basename(v) for k, v in tiny_files.items()}, "none")
    spec = tmp_path / "spec.yaml"
    spec.write_text(yaml.safe_dump({"experiments": [{"name": "tiny", "base": base, "seeds": [1],
                                                     "variants": variants or {"none": {}}}]}))
    return [str(spec), "--data-root", data_root, "--runs-dir", str(tmp_path / "runs"),
            "--results", str(tmp_path / "RESULTS.md")]


def test_a_run_another_process_holds_is_left_untouched(tmp_path, tiny_files, capsys):
    """Two grid commands on one --runs-dir: the second finds the first's run started (config.yaml and its lock,
    no checkpoint yet) and stops with one line, deleting nothing."""
    import subprocess
    import sys

    args = _tiny_spec(tmp_path, tiny_files)
    live = tmp_path / "runs" / "tiny" / "none-seed1"
    live.mkdir(parents=True)
    (live / "config.yaml").write_text("written by the first process\n")
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (live / ".lock").write_text(str(holder.pid))
        assert run_experiments.main(args) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and f"in use by another process (pid {holder.pid})" in err[0]
        assert sorted(os.listdir(live)) == [".lock", "config.yaml"]
        assert (live / "config.yaml").read_text() == "written by the first process\n"
    finally:
        holder.kill()
        holder.wait()
    assert not (tmp_path / "RESULTS.md").exists()


def test_a_run_another_grid_is_starting_is_left_untouched(tmp_path, tiny_files, capsys):
    """The first grid has launched the run's train.py, which is still reading its data (no run directory, no lock
    yet): the second grid names the first one's process instead of starting the same run beside it."""
    import subprocess
    import sys

    nowhere = {"init_from": "{runs_dir}/nowhere/lm-seed1"}  # a run --variants leaves out is not checked
    args = _tiny_spec(tmp_path, tiny_files, {"none": {}, "other": {"model": nowhere}}) + ["--variants", "none"]
    claim = tmp_path / "runs" / "tiny" / "none-seed1.claim"
    claim.parent.mkdir(parents=True)
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        claim.write_text(str(holder.pid))
        assert run_experiments.main(args) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and f"none-seed1: in use by another process (pid {holder.pid})" in err[0]
        assert not (tmp_path / "runs" / "tiny" / "none-seed1").exists() and claim.read_text() == str(holder.pid)
    finally:
        holder.kill()
        holder.wait()
    assert run_experiments.main(args + ["--seeds", "1"]) == 0  # a stale claim is taken over
    assert not claim.exists()
    assert (tmp_path / "runs" / "tiny" / "none-seed1" / "metrics.json").exists()
    assert not (tmp_path / "runs" / "tiny" / "other-seed1").exists()  # --variants: the other variant is not trained


def test_grid_mistakes_are_one_line_before_anything_trains(tmp_path, tiny_files, capsys):
    args = _tiny_spec(tmp_path, tiny_files, {"none": {}, "fgm": {"regularizer": {"name": "fgm", "epsilonn": 1}}})
    assert run_experiments.main(args) == 2  # the second variant's typo, before the first variant trains
    assert "epsilonn" in capsys.readouterr().err and not (tmp_path / "runs").exists()
    args = _tiny_spec(tmp_path, tiny_files)
    assert run_experiments.main(args + ["--seeds", "7", "8"]) == 2
    assert "--seeds 7: no experiment run here has that seed; their seeds: 1" in capsys.readouterr().err
    assert run_experiments.main(args + ["--variants", "none", "fmg"]) == 2
    assert "--variants fmg: no experiment run here has that variant; their variants: none" in capsys.readouterr().err
    assert run_experiments.main(args + ["--report-only"]) == 2  # no runs folder: nothing to report
    assert "no such directory" in capsys.readouterr().err and not (tmp_path / "RESULTS.md").exists()
    notes = tmp_path / "RESULTS.md"
    notes.write_text("my notes\n")
    (tmp_path / "runs").mkdir()
    assert run_experiments.main(args + ["--report-only"]) == 2
    assert "is not a report" in capsys.readouterr().err and notes.read_text() == "my notes\n"
    folder = args[:-1] + [str(tmp_path / "runs")]
    assert run_experiments.main(folder + ["--report-only"]) == 2
    assert "is a directory" in capsys.readouterr().err
    # a run that starts from a language model no experiment makes: named before the first run trains
    args = _tiny_spec(tmp_path, tiny_files, {"none": {}, "lm": {"model": {"init_from": "{runs_dir}/nowhere/lm-seed1"}}})
    assert run_experiments.main(args) == 2
    err = capsys.readouterr().err
    assert "model.init_from" in err and "nowhere/lm-seed1: no experiment trained before it makes that run" in err
    assert not any((tmp_path / "runs").rglob("metrics.json"))


def test_a_finished_run_without_its_config_is_not_reported(tmp_path, tiny_files, capsys):
    args = _tiny_spec(tmp_path, tiny_files)
    assert run_experiments.main(args) == 0
    capsys.readouterr()
    run = tmp_path / "runs" / "tiny" / "none-seed1"
    from scripts import compare

    metrics = (run / "metrics.json").read_text()
    damaged = json.loads(metrics)
    del damaged["test"]["ece"]
    for content, message in (("{not json", "metrics.json: not valid JSON"),
                             (json.dumps(damaged), "metrics.json: has no test.ece")):
        (run / "metrics.json").write_text(content)
        assert run_experiments.main(args + ["--report-only"]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and message in err[0] and str(run) in err[0]
    assert compare.main([str(run)]) == 0  # compare shows what there is: a cell it lacks is a dash
    assert "| – |" in capsys.readouterr().out
    (run / "metrics.json").write_text("{not json")
    assert compare.main([str(run)]) == 2
    assert "metrics.json: not valid JSON" in capsys.readouterr().err
    (run / "metrics.json").write_text(metrics)
    os.remove(run / "config.yaml")
    assert run_experiments.main(args + ["--report-only"]) == 2
    assert f"{run}: has metrics.json and checkpoints/train but no config.yaml" in capsys.readouterr().err


def test_ctrl_c_stops_the_grid_with_130(tmp_path, tiny_files, capsys, monkeypatch):
    import subprocess

    args = _tiny_spec(tmp_path, tiny_files)
    monkeypatch.setattr(run_experiments.subprocess, "run",
                        lambda command, **kw: subprocess.CompletedProcess(command, 130, "", "interrupted\n"))
    assert run_experiments.main(args) == 130
    assert "interrupted" in capsys.readouterr().err

    def pressed(command, stdout=None, **kw):
        stdout.write("epoch 1: step 3/10\n")  # what the run printed before Ctrl-C
        stdout.flush()
        raise KeyboardInterrupt

    monkeypatch.setattr(run_experiments.subprocess, "run", pressed)
    assert run_experiments.main(args) == 130
    logs = list((tmp_path / "runs").rglob("*.log"))  # the interrupted run's log is kept
    assert len(logs) == 1 and logs[0].read_text() == "epoch 1: step 3/10\n"


def test_a_bad_spec_is_one_line(tmp_path, capsys):
    spec = tmp_path / "spec.yaml"
    spec.write_text("experiments: [{name: x}]\n")
    assert run_experiments.main([str(spec)]) == 2
    assert "experiments[0]: missing base, variants, seeds" in capsys.readouterr().err


@pytest.mark.parametrize("experiment, message", [
    ("{name: x, base: foo, variants: {none: {}}, seeds: [1]}", "experiments[0].base: expected a mapping of config sections"),
    ("{name: 5, base: {}, variants: {none: {}}, seeds: [1]}", "experiments[0].name: expected a name (text), got 5"),
    ("{name: x, base: {}, variants: {5: {}}, seeds: [1]}", "a variant's name must be text, got 5"),
    ("{name: x, base: {}, variants: {fgm: {sweep: {epsilon: [1, 2]}}}, seeds: [1]}", "'epsilon' names no section"),
    ("{name: x, base: {}, variants: {fgm: {}}, seeds: [1], pairs: [[fgm, none]]}", "pairs: expected a list of [method"),
    ("{name: x, base: {}, variants: {fgm: {}}, seedz: [1], seeds: [1]}", "experiments[0]: unknown key 'seedz'"),
    ("{name: x, base: {}, variants: {fgm: {}}, seeds: [-1]}", "seeds: expected a list of whole numbers >= 0"),
    ("{name: x, base: {}, variants: {fgm: {}}, seeds: [1], attack: {name: fgm}}", "attack: expected {name: <attack>, "),
    ("{name: x, base: {}, variants: {a: {}}, seeds: [1]}, {name: x, base: {}, variants: {b: {}}, seeds: [1]}",
     "experiments[0].name: 'x' names two experiments"),
])
def test_a_spec_of_the_wrong_shape_is_one_line(tmp_path, capsys, experiment, message):
    spec = tmp_path / "spec.yaml"
    spec.write_text(f"experiments: [{experiment}]\n")
    assert run_experiments.main([str(spec)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0]


def test_variants_given_as_a_list_are_one_line(tmp_path, capsys):
    spec = tmp_path / "spec.yaml"
    spec.write_text("experiments: [{name: x, base: {}, variants: [none, fgm], seeds: [1]}]\n")
    assert run_experiments.main([str(spec)]) == 2
    assert "experiments[0].variants: expected a mapping" in capsys.readouterr().err


def test_text_attack_table_by_hand():
    def seed(clean, noisy, greedy, success, queries):
        return {"noise": {"rates": [0.0, 0.1], "accuracy": [clean, noisy], "examples": 50},
                "deepwordbug": {"budgets": [0, 1], "accuracy": [clean, greedy], "success_rate": success,
                                "queries_per_example": queries}}

    rows = [{"variant": "none", "text_attacks": [seed(0.9, 0.8, 0.5, 0.4, 10), seed(0.9, 0.7, 0.3, 0.6, 12)]},
            {"variant": "fgm", "text_attacks": []}]
    lines = experiment_report.text_attack_table(rows)
    assert "a fixed stratified sample of 50" in lines[1]
    table = [line for line in lines if line.startswith("|")]
    assert table[0] == ("| method | seeds | clean (%) | noise 10% (%) | deepwordbug ≤1 (%) | attack success (%) "
                        "| queries per text |")
    assert table[2] == "| none | 2 | 90.00 ± 0.00 | 75.00 ± 7.07 | 40.00 ± 14.14 | 50.00 ± 14.14 | 11 ± 1 |"
    assert len(table) == 3  # fgm has no text attacks: no row
    assert experiment_report.text_attack_table([{"variant": "none", "text_attacks": []}]) == []


def test_paired_table_by_hand():
    # none finished seeds 1, 2, 3; fgm seeds 2, 3, 4 (listed out of order): only seeds 2 and 3 pair.
    rows = [{"variant": "none", "seed_ids": [1, 2, 3], "accuracy": [0.80, 0.70, 0.90], "macro_f1": [0.8, 0.6, 0.9],
             "ece": [0.10, 0.20, 0.05], "nll": [0.5, 0.6, 0.4]},
            {"variant": "fgm", "seed_ids": [3, 2, 4], "accuracy": [0.95, 0.72, 0.10], "macro_f1": [0.9, 0.7, 0.1],
             "ece": [0.04, 0.10, 0.9], "nll": [0.3, 0.7, 9.0]},
            {"variant": "vat", "seed_ids": [5], "accuracy": [0.5], "macro_f1": [0.5], "ece": [0.5], "nll": [0.5]}]
    table = [line for line in experiment_report.paired_table(rows) if line.startswith("|")]
    assert table[0] == ("| method | pairs | Δ test accuracy (points) | Δ macro-F1 | Δ ECE | Δ NLL "
                        "| accuracy higher / lower |")
    # seed 2: +2 points, +0.1 F1, -0.1 ECE, +0.1 NLL; seed 3: +5 points, 0 F1, -0.01 ECE, -0.1 NLL
    assert table[2] == "| fgm | 2 | +3.50 ± 2.12 | +0.0500 ± 0.0707 | -0.0550 ± 0.0636 | +0.0000 ± 0.1414 | 2 / 0 |"
    assert len(table) == 3  # vat shares no seed with none: no row
    assert experiment_report.paired_table(rows[1:]) == []  # no baseline, no table
    # Named pairs (a spec's `pairs`): none minus fgm is the negation on the same two seeds; vat pairs with nothing.
    named = [line for line in experiment_report.paired_table(rows, [["none", "fgm"], ["vat", "none"]])
             if line.startswith("|")]
    assert named[2] == ("| none − fgm | 2 | -3.50 ± 2.12 | -0.0500 ± 0.0707 | +0.0550 ± 0.0636 | +0.0000 ± 0.1414 "
                        "| 0 / 2 |") and len(named) == 3


@pytest.mark.slow  # every value trained on dev, then the selected ones again: about 40 s
def test_a_sweep_selects_on_dev_without_reading_test_then_reads_test_once(tmp_path, tiny_files, capsys):
    data_root = os.path.dirname(tiny_files["train"])
    base = tiny_config_dict({k: "{data_root}/" + os.path.basename(v) for k, v in tiny_files.items()}, "none",
                            eval={"attacks": [], "text_attacks": []})
    values = [0.5, 4.0]
    spec = tmp_path / "spec.yaml"
    spec.write_text(yaml.safe_dump({"experiments": [{
        "name": "tiny", "base": base, "seeds": [1],
        "variants": {"fgm": {"regularizer": {"name": "fgm"}, "sweep": {"regularizer.epsilon": values}}}}]}))
    runs = tmp_path / "runs" / "tiny"
    args = [str(spec), "--data-root", data_root, "--runs-dir", str(tmp_path / "runs"),
            "--results", str(tmp_path / "RESULTS.md")]
    assert run_experiments.main(args) == 0
    dev = {}
    for v in values:  # the tuning runs: same training and dev data, no test split read
        run = runs / f"fgm-epsilon={v}-dev-seed1"
        metrics = json.loads((run / "metrics.json").read_text())
        config = yaml.safe_load((run / "config.yaml").read_text())
        assert "test" not in metrics and config["data"]["test"] is None and config["data"]["split"][2] == 0
        assert config["regularizer"]["epsilon"] == v and not [f for f in os.listdir(run) if "test" in f]
        dev[v] = metrics["dev"]["accuracy"]
    chosen = values[0]
    for v in values[1:]:  # the first of the best mean dev accuracies
        if dev[v] > dev[chosen]:
            chosen = v
    final = json.loads((runs / f"fgm-epsilon={chosen}-seed1" / "metrics.json").read_text())
    assert "test" in final and not (runs / f"fgm-epsilon={[v for v in values if v != chosen][0]}-seed1").exists()
    results = (tmp_path / "RESULTS.md").read_text()
    assert f"| fgm (epsilon={chosen}, chosen on dev) | 1 |" in results
    assert f"| fgm | regularizer.epsilon | **{chosen}** | 1 | accuracy {100 * dev[chosen]:.2f} |" in results
    # a test split cut from the training file cannot be left out without changing the training data
    del base["data"]["test"]
    spec.write_text(yaml.safe_dump({"experiments": [{
        "name": "cut", "base": base, "seeds": [1],
        "variants": {"fgm": {"regularizer": {"name": "fgm"}, "sweep": {"regularizer.epsilon": values}}}}]}))
    capsys.readouterr()
    assert run_experiments.main(args) == 2
    assert "cut/fgm: a sweep needs data.test to be a file" in capsys.readouterr().err


@pytest.mark.parametrize("spec", sorted(glob.glob(os.path.join(ROOT, "experiments", "*.yaml"))),
                         ids=os.path.basename)
def test_every_run_of_every_shipped_spec_is_a_valid_config(spec, monkeypatch):
    """A spec's typo (a key, a method's setting, a broken YAML anchor) fails here, not hours into a grid."""
    monkeypatch.setattr(run_experiments, "minilm_dir", lambda: "/minilm")
    experiments = run_experiments.load_spec(spec)
    made = set()
    for experiment in experiments:
        runs = run_experiments.plan(experiment, "/data", "/runs")
        for run in runs:  # a language model a run starts from is made by an experiment before it
            start = (run["config"].get("model") or {}).get("init_from")
            assert not start or start in made, (run["run_dir"], start)
        made |= {run["run_dir"] for run in runs}
        assert len(runs) >= len(experiment["variants"]) * len(experiment["seeds"])
        for run in runs:
            cfg = config_from_dict(run["config"], run["config_path"])
            assert cfg.train.seed == run["seed"]
            files = [cfg.data.train, cfg.data.test, *(cfg.data.unlabeled or [])]
            assert any(files) and all(f.startswith("/data/") for f in files if f)
            assert not cfg.model.init_from or cfg.model.init_from.startswith("/runs/")
