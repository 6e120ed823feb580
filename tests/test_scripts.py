"""evaluate / predict / export / compare on tiny trained runs, as a user would call them."""
import json
import logging
import os
import re
import subprocess
import sys

import numpy as np
import pytest
import yaml
from conftest import ROOT, make_texts, swap_two_tokens, tiny_config_dict, write_tsv

import train
from scripts import compare, evaluate, export, predict

FAST_EVAL = {"attacks": ["fgm"], "epsilons": [0.0, 1.0], "robustness_examples": 100}


@pytest.fixture(scope="module")
def data_files(tmp_path_factory):
    path = tmp_path_factory.mktemp("data")
    return {name: write_tsv(path / f"{name}.tsv", make_texts(n, seed=s))
            for name, n, s in (("train", 48, 1), ("dev", 12, 2), ("test", 12, 3))}


def _train(path, cfg):
    (path / "c.yaml").write_text(yaml.safe_dump(cfg))
    assert train.main(["--config", str(path / "c.yaml"), "--run-dir", str(path / "run")]) == 0
    return str(path / "run")


@pytest.fixture(scope="module")
def lstm_run(tmp_path_factory, data_files):
    cfg = tiny_config_dict(data_files, "fgm")
    cfg["eval"] = FAST_EVAL
    return _train(tmp_path_factory.mktemp("lstm"), cfg)


@pytest.fixture(scope="module")
def bert_run(tmp_path_factory, data_files, tiny_bert_hub):
    """The design card's config (configs/bert_fgm.yaml) with its checkpoint given by hub name, offline: the
    name resolves through the Hugging Face cache, as it does for a user after the first download."""
    path = tmp_path_factory.mktemp("bert")
    cfg = {"base": os.path.join(ROOT, "configs", "bert_fgm.yaml"),
           "data": {"dataset": None, **data_files, "batch_size": 8, "max_length": 12},
           "model": {"pretrained": tiny_bert_hub},
           "train": {"epochs": 1, "learning_rate": 1e-3}, "eval": FAST_EVAL}
    run_dir = _train(path, cfg)
    saved = yaml.safe_load(open(os.path.join(run_dir, "config.yaml")))
    assert saved["model"]["pretrained"] == tiny_bert_hub  # the run records the name, not the cache path
    return run_dir


def test_training_writes_evaluation_reports_plots_and_hparams(lstm_run):
    metrics = json.load(open(os.path.join(lstm_run, "metrics.json")))
    for key in ("accuracy", "macro_f1", "nll", "brier", "ece", "mce", "roc_auc", "average_precision"):
        assert np.isfinite(metrics["test"][key]), key
    curve = metrics["test"]["robustness"]["fgm"]
    assert curve["epsilons"] == [0.0, 1.0] and curve["n"] == 12
    assert curve["accuracy"][0] == pytest.approx(metrics["test"]["accuracy"])
    assert "robustness" not in metrics["dev"] and "text_attacks" not in metrics["dev"]
    # the default text attacks, on every test text (12 < eval.text_attack_examples): unattacked, the accuracy
    noise, greedy = metrics["test"]["text_attacks"]["noise"], metrics["test"]["text_attacks"]["deepwordbug"]
    assert noise["rates"] == [0.0, 0.05, 0.1, 0.2] and noise["examples"] == 12
    assert greedy["budgets"] == [0, 1, 2, 4] and greedy["attacked"] == round(12 * metrics["test"]["accuracy"])
    assert noise["accuracy"][0] == greedy["accuracy"][0] == pytest.approx(metrics["test"]["accuracy"])
    assert all(a >= b for a, b in zip(greedy["accuracy"], greedy["accuracy"][1:]))  # more edits, no better
    assert greedy["queries_per_example"] > 1
    assert json.load(open(os.path.join(lstm_run, "eval_test.json")))["text_attacks"] == metrics["test"]["text_attacks"]
    for name in ("eval_dev.json", "eval_test.txt", "test_reliability.png", "test_confidence.png",
                 "test_robustness.png", "test_text_attacks.png", "dev_confusion.png"):
        assert os.path.getsize(os.path.join(lstm_run, name)) > 0, name
    import tensorflow as tf
    tags = set()
    for sub in ("eval", ""):
        folder = os.path.join(lstm_run, "tensorboard", sub)
        for f in os.listdir(folder):
            if f.startswith("events"):
                for event in tf.compat.v1.train.summary_iterator(os.path.join(folder, f)):
                    tags |= {v.tag for v in event.summary.value}
    assert {"test/reliability", "test/robustness", "test/text_attacks", "_hparams_/session_start_info",
            "final/test_ece", "final/test_noise_0.1_accuracy", "final/test_deepwordbug_2_accuracy"} <= tags


# The BERT export (WordPiece in the graph) runs with the slow tests: about 15 s of export and a fresh process.
@pytest.mark.parametrize("which", ["lstm_run", pytest.param("bert_run", marks=pytest.mark.slow)])
def test_export_round_trip_in_a_fresh_process(which, request, tmp_path):
    run_dir = request.getfixturevalue(which)
    out = str(tmp_path / "exported")
    records = []  # what TensorFlow's logger lets through (its filters run first): none of Keras's reload noise
    catch = logging.Handler(logging.WARNING)
    catch.emit = records.append
    logging.getLogger("tensorflow").addHandler(catch)
    try:
        assert export.main(["--run-dir", run_dir, "--out", out]) == 0
    finally:
        logging.getLogger("tensorflow").removeHandler(catch)
    assert not records, [r.getMessage() for r in records]
    texts = ["the movie was good", "awful plot and bad", "好"]

    import tensorflow as tf

    from trainer.restore import load_run
    run = load_run(run_dir)
    want = tf.nn.softmax(run.model(run.text_encoder(tf.constant(texts)))).numpy()

    code = ("import json, sys, tensorflow as tf, tensorflow_text\n"
            f"m = tf.saved_model.load({out!r})\n"
            f"out = m.signatures['serving_default'](texts=tf.constant({texts!r}))\n"
            "none = m.signatures['serving_default'](texts=tf.constant([], tf.string))\n"
            "assert none['probabilities'].shape == (0, 2) and none['labels'].shape == (0,), none\n"
            "try:\n"
            f"    m.signatures['serving_default'](texts=tf.constant([[t] for t in {texts!r}]))\n"
            "    raise SystemExit('a (B, 1) batch was answered')\n"
            "except tf.errors.InvalidArgumentError as e:\n"
            "    assert 'not compatible with expected shape' in str(e)\n"
            "print(json.dumps({'p': out['probabilities'].numpy().tolist(), "
            "'labels': [l.decode() for l in out['labels'].numpy()]}))\n"
            "assert not [k for k in sys.modules if k.split('.')[0] in ('trainer', 'model', 'dataset')]\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=str(tmp_path),
                          env={**os.environ, "PYTHONPATH": ""})
    assert proc.returncode == 0, proc.stderr[-3000:]
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    np.testing.assert_allclose(got["p"], want, atol=1e-5)
    assert got["labels"] == [run.label_names[i] for i in want.argmax(1)]
    assert export.main(["--run-dir", run_dir, "--out", out]) == 2  # never overwrites
    # the README's serving line, as written
    readme = open(os.path.join(ROOT, "README.md"), encoding="utf-8").read()
    line = re.search(r"`(import tensorflow as tf, tensorflow_text;[^`]*)`", readme).group(1).replace("\n  ", " ")
    code = line.replace("DIR", repr(out)).replace("; ", "\n").replace("m.signatures", "print(m.signatures", 1) + ")"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=str(tmp_path),
                          env={**os.environ, "PYTHONPATH": ""})
    assert proc.returncode == 0 and "probabilities" in proc.stdout, proc.stderr[-3000:]


def test_text_attacks_on_a_run_and_on_its_saved_model_agree_with_the_training_report(lstm_run, data_files,
                                                                                      tmp_path, capsys):
    from scripts import attack

    out = str(tmp_path / "exported")
    assert export.main(["--run-dir", lstm_run, "--out", out]) == 0
    assert attack.main(["--run-dir", lstm_run, "--output", str(tmp_path / "run.json")]) == 0
    assert attack.main(["--saved-model", out, "--data", data_files["test"], "--output", str(tmp_path / "sm.json")]) == 0
    printed = capsys.readouterr().out
    assert "accuracy under character noise (12 texts)" in printed and "success rate" in printed
    from_run, from_saved = (json.load(open(tmp_path / f"{n}.json")) for n in ("run", "sm"))
    recorded = json.load(open(os.path.join(lstm_run, "metrics.json")))["test"]["text_attacks"]
    for key in ("noise", "deepwordbug"):  # the same texts, noise and model: the same results
        assert from_run[key] == from_saved[key] == recorded[key], key
    # an empty, a one-character and a 100,000-character text through the real model: a defined result
    from trainer import text_attacks
    from trainer.restore import load_run

    run = load_run(lstm_run)
    predict = text_attacks.model_predictor(run.model, run.text_encoder)
    odd = ["", "a", "good " * 20000]
    labels = list(predict(odd).argmax(-1))  # each right at first: attacked
    greedy = text_attacks.greedy_attack(predict, odd, labels, [1, 2])
    assert greedy["attacked"] == 3 and greedy["accuracy"][0] == 1.0
    assert greedy["queries_per_example"] <= 1 + (0 + 1 + text_attacks.MAX_TOKENS) / 3 + 2 * 4
    assert len(text_attacks.noise_accuracy(predict, odd, labels, [0.0, 0.2])["accuracy"]) == 2
    # user mistakes: one line, exit 2, nothing written
    assert attack.main(["--saved-model", out]) == 2
    assert attack.main(["--run-dir", lstm_run, "--saved-model", out]) == 2
    assert attack.main(["--run-dir", lstm_run, "--output", str(tmp_path / "run.json")]) == 2  # exists
    assert attack.main(["--saved-model", str(tmp_path)]) == 2
    with pytest.raises(SystemExit) as stopped:  # argparse's own exit: no traceback
        attack.main(["--run-dir", lstm_run, "--seed", "-1"])
    assert stopped.value.code == 2
    err = capsys.readouterr().err
    assert "--seed: must be at least 0, got -1" in err
    assert "--saved-model needs --data" in err and "give one of --run-dir and --saved-model" in err
    assert "run.json: exists" in err


def test_predict_reports_bad_rows_and_predicts_the_rest(lstm_run, tmp_path, capsys):
    src = tmp_path / "in.jsonl"
    src.write_bytes(b'{"text": "good movie"}\n{"text": broken\n\n{"text": "bad plot"}\n{"id": 4}\n'
                    + b'{"text": "caf\xe9"}\n')
    out = tmp_path / "out.jsonl"
    assert predict.main(["--run-dir", lstm_run, "--input", str(src), "--output", str(out)]) == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["line"] for r in rows] == [1, 2, 4, 5, 6]
    assert [("error" in r) for r in rows] == [False, True, False, True, True]
    good = [r for r in rows if "error" not in r]
    assert all(abs(sum(r["probabilities"].values()) - 1) < 1e-4 for r in good)
    assert all(r["label"] in ("neg", "pos") for r in good)
    err = capsys.readouterr().err
    assert "line 2: not valid JSON" in err and "line 6: not valid UTF-8" in err and "line 5: no text" in err
    txt = tmp_path / "plain.txt"
    txt.write_text("good\n\n   \nbad movie\n")
    assert predict.main(["--run-dir", lstm_run, "--input", str(txt), "--output", str(tmp_path / "o2.jsonl")]) == 0
    rows = [json.loads(line) for line in (tmp_path / "o2.jsonl").read_text().splitlines()]
    assert [(r["line"], r.get("error")) for r in rows] == [(1, None), (2, "empty text"), (3, "empty text"), (4, None)]
    err = capsys.readouterr().err
    assert "line 2: empty text" in err and "predicted 2 rows, 2 could not be read" in err
    # a quoted CSV text over two lines is one text, read as training reads it
    multi = tmp_path / "multi.csv"
    multi.write_text('text\n"good movie,\nreally good"\nbad plot\n')
    assert predict.main(["--run-dir", lstm_run, "--input", str(multi), "--output", str(tmp_path / "o3.jsonl")]) == 0
    rows = [json.loads(line) for line in (tmp_path / "o3.jsonl").read_text().splitlines()]
    assert [r["line"] for r in rows] == [3, 4] and all("error" not in r for r in rows)
    from dataset.readers import read_rows
    assert read_rows(str(multi), None, "text", None).texts == ["good movie,\nreally good", "bad plot"]
    capsys.readouterr()
    assert predict.main(["--run-dir", lstm_run, "--input", str(tmp_path)]) == 2
    assert capsys.readouterr().err.strip() == (f"error: --input {tmp_path}: is a folder; give a file (a text per "
                                               "line, or TSV/CSV/JSON lines)")
    # an unusable --output or --batch-size is refused before any work, in one line
    assert predict.main(["--run-dir", lstm_run, "--input", str(txt), "--output", str(tmp_path / "no" / "o.jsonl")]) == 2
    assert "does not exist" in capsys.readouterr().err.strip().splitlines()[-1]
    for bad in ("0", "-1", "x"):
        with pytest.raises(SystemExit) as stop:
            predict.main(["--run-dir", lstm_run, "--input", str(txt), "--batch-size", bad])
        assert stop.value.code == 2 and "--batch-size" in capsys.readouterr().err


def test_evaluate_on_a_file_and_compare(lstm_run, bert_run, data_files, capsys):
    recorded = {name: open(os.path.join(lstm_run, name), "rb").read()
                for name in os.listdir(lstm_run) if name.startswith(("eval_", "test_", "dev_"))}
    # other data (here a file named dev.tsv) is written beside the run's own evaluation, never over it
    assert evaluate.main(["--run-dir", lstm_run, "--data", data_files["dev"], "--no-robustness"]) == 0
    report = json.load(open(os.path.join(lstm_run, "eval_data-dev.json")))
    assert report["n"] == 12 and "robustness" not in report
    assert evaluate.main(["--run-dir", lstm_run, "--split", "test", "--no-robustness"]) == 0  # again: a new name
    assert {name: open(os.path.join(lstm_run, name), "rb").read() for name in recorded} == recorded
    assert len([n for n in os.listdir(lstm_run) if n.startswith("eval_test-") and n.endswith(".json")]) == 1
    assert compare.main([lstm_run, bert_run, "--attack", "fgm", "--epsilon", "1"]) == 0
    table = capsys.readouterr().out
    assert "| model.name |" in table and "regularizer.0.epsilon" in table
    assert len([line for line in table.splitlines() if line.startswith("| ")]) == 3
    assert evaluate.main(["--run-dir", os.path.dirname(lstm_run)]) == 2


def test_main_job_benchmark_times_epochs_of_each_variant(data_files, tmp_path, capsys):
    from scripts import benchmark_main_job

    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump(tiny_config_dict(data_files, "fgm")))
    out = tmp_path / "epochs.json"
    assert benchmark_main_job.main(["--config", str(config), "--epochs", "2", "--variants", "length bucketing",
                                    "defaults", "--output", str(out)]) == 0
    results = json.load(open(out))
    assert [r["variant"] for r in results] == ["length bucketing", "defaults"]
    assert all(len(r["epoch_seconds"]) == 2 and min(r["epoch_seconds"]) > 0 for r in results)
    assert results[0]["ratio"] == 1.0  # no baseline among them: the first variant is the reference
    printed = capsys.readouterr().out
    assert "| length bucketing |" in printed and "| defaults |" in printed
    assert benchmark_main_job.main(["--config", str(config), "--variants", "bigger", "--output",
                                    str(tmp_path / "x.json")]) == 2
    assert benchmark_main_job.main(["--config", str(config), "--output", str(out)]) == 2  # never overwrites
    err = capsys.readouterr().err
    assert "--variants 'bigger': expected some of" in err and "epochs.json: exists" in err
    # options of the other mode are refused, not ignored
    assert benchmark_main_job.main(["--config", str(config), "--full", "--epochs", "3"]) == 2
    assert benchmark_main_job.main(["--config", str(config), "--seeds", "1", "2"]) == 2
    assert benchmark_main_job.main(["--config", str(config), "--runs-dir", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert "--epochs: --full trains each variant for the config's train.epochs" in err
    assert "--seeds: only with --full" in err and "--runs-dir: only with --full" in err
    assert not (tmp_path / "r").exists()


def test_mean_std_prints_the_mean_alone_for_one_value_and_never_minus_zero():
    from scripts.experiment_report import mean_std

    assert mean_std([0.8, 0.9], percent=True) == "85.00 ± 7.07"  # sd sqrt(0.005) = 0.0707
    assert mean_std([0.8512], percent=True) == "85.12"
    assert mean_std([-0.004]) == "0.00" and mean_std([-0.001, 0.0]) == "0.00 ± 0.00"
    assert mean_std([1234.4, 1235.6], digits=0) == "1235 ± 1"
    assert mean_std([]) == "–"


def test_main_job_summary_pairs_variants_by_seed():
    from scripts.benchmark_main_job import summary_table

    def row(variant, seed, seconds, test):
        return {"variant": variant, "seed": seed, "train_seconds": seconds, "epochs_run": 6, "dev_accuracy": 0.85,
                "test_accuracy": test}

    rows = [row("baseline", 1, 400, 0.85), row("defaults", 1, 200, 0.86),
            row("baseline", 2, 300, 0.84), row("defaults", 2, 100, 0.835)]
    lines = summary_table(rows, ["baseline", "defaults"]).splitlines()
    assert lines[2] == "| baseline | 350 | 1.00x | 6 | 85.00 ± 0.00 | 84.50 ± 0.71 | - |"
    # speed-ups 400/200 and 300/100 (not 350/150); differences +1 and -0.5 point
    assert lines[3] == "| defaults | 150 | 2.50x | 6 | 85.00 ± 0.00 | 84.75 ± 1.77 | 0.25 ± 1.06 |"


@pytest.mark.slow
def test_main_job_benchmark_full_runs_train_each_variant_and_seed(data_files, tmp_path, capsys):
    from scripts import benchmark_main_job

    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump(tiny_config_dict(data_files, "fgm")))
    runs, out = tmp_path / "runs", tmp_path / "full.json"
    argv = ["--config", str(config), "--full", "--seeds", "3", "--variants", "length bucketing", "defaults + bfloat16",
            "--runs-dir", str(runs)]
    assert benchmark_main_job.main(argv + ["--output", str(out)]) == 0
    rows = json.load(open(out))
    assert [(r["variant"], r["seed"]) for r in rows] == [("length bucketing", 3), ("defaults + bfloat16", 3)]
    for r, folder in zip(rows, ["length_bucketing", "defaults___bfloat16"]):
        written = json.load(open(runs / "seed3" / folder / "metrics.json"))  # what train.py would have written
        saved = yaml.safe_load(open(runs / "seed3" / folder / "config.yaml"))
        assert saved["train"]["seed"] == 3
        assert (r["test_accuracy"], r["train_seconds"]) == (written["test"]["accuracy"], written["train_seconds"])
    assert saved["train"]["mixed_precision"] == "bfloat16"
    printed = capsys.readouterr().out
    speed_up = rows[0]["train_seconds"] / rows[1]["train_seconds"]
    difference = 100 * (rows[1]["test_accuracy"] - rows[0]["test_accuracy"])
    assert f"| {speed_up:.2f}x |" in printed and f"| {round(difference, 2) + 0.0:.2f} |" in printed  # one seed: no ±
    assert benchmark_main_job.main(argv) == 2  # never trains into an existing run directory
    assert "seed3/length_bucketing: exists and is not empty; choose another --runs-dir" in capsys.readouterr().err


# The default suite times the methods; the data path and the SavedModel inference (each a few model builds
# and an export) and the options run with the slow tests.
@pytest.mark.parametrize("backbones, methods, full", [
    (["lstm"], ["none", "fgm"], False),
    pytest.param(["bilstm", "bert"], ["none", "fgm", "pgd"], True, marks=pytest.mark.slow)])
def test_benchmark_prints_ratios_options_data_path_and_inference(backbones, methods, full, tmp_path, capsys):
    import gzip

    from conftest import make_texts

    from scripts import benchmark

    imdb = tmp_path / "imdb"
    imdb.mkdir()
    with gzip.open(imdb / "train.jsonl.gz", "wt", encoding="utf-8") as f:
        for text, label in make_texts(40, seed=5):
            f.write(json.dumps({"text": text + " <br /> " + text * (len(text) % 3), "label": label}) + "\n")
    out = tmp_path / "bench.json"
    data = ["--data", str(imdb), "--data-examples", "40", "--data-max-length", "24", "--data-steps", "2",
            "--inference-calls", "4"]
    assert benchmark.main(["--backbones", *backbones, "--methods", *methods, "--batch", "4",
                           "--length", "8", "--embedding-dim", "8", "--hidden", "8", "--vocab", "50",
                           "--bert-batch", "2", "--bert-hidden", "24", "--bert-layers", "1", "--pgd-steps", "2",
                           "--warmup", "1", "--steps", "2", "--mixed-precision", "bfloat16", "--output", str(out)]
                          + (data if full else ["--no-options"])) == 0
    report = json.load(open(out))
    results = report["methods"]
    assert [(r["backbone"], r["precision"], r["method"]) for r in results] == [
        (b, p, m) for b in backbones for p in ("float32", "bfloat16") for m in methods]
    assert all((r["ratio_to_float32"] > 0) == (r["precision"] == "bfloat16") for r in results if r["ratio_to_float32"]
               is not None) and all(r["ratio_to_float32"] for r in results if r["precision"] == "bfloat16")
    assert all(r["median_step_s"] > 0 for r in results)
    # a number for every row; TensorFlow's CPU allocator reports 0 for models this tiny (README: real sizes)
    assert all(r["peak_mib"] >= 0 for r in results)
    assert [r["ratio"] for r in results if r["method"] == "none"] == [1.0] * 2 * len(backbones)
    printed = capsys.readouterr().out
    assert f"| {backbones[0]} | bfloat16 | fgm |" in printed and "ratio to float32" in printed
    if not full:
        return
    assert [(r["backbone"], r["variant"]) for r in report["options"]][:3] == [  # XLA only for bert
        ("bert", "fgm"), ("bert", "fgm + jit_compile"), ("bert", "fgm + steps_per_execution=4")]
    shares = {r["mode"]: r["padding_share"] for r in report["data"]}
    assert shares["length bucketing"] <= shares["per-batch padding"] <= shares["pad to max_length"]
    assert all(r["train_examples_per_s"] > 0 and r["pipeline_examples_per_s"] > 0 for r in report["data"])
    assert [r["batch"] for r in report["inference"]] == [1, 64] and report["inference"][0]["sentences_per_s"] > 0
    assert "| length bucketing |" in printed and "| batch 64 |" in printed


@pytest.mark.parametrize("damage, expected", [
    ("truncated_weights", "cannot be read into the model"),
    ("truncated_index", "cannot be read into the model"),
    ("other_model_size", "cannot be read into the model"),
    ("labels_missing", "labels.json: missing"),
    ("three_labels", "cannot be read into the model"),
])
def test_a_damaged_run_directory_is_one_line(damage, expected, lstm_run, tmp_path, capsys):
    import glob
    import shutil

    run = tmp_path / "run"
    shutil.copytree(lstm_run, run)
    best = run / "checkpoints" / "best"
    if damage.startswith("truncated"):
        pattern = "*.data-*" if damage == "truncated_weights" else "*.index"
        target = glob.glob(str(best / pattern))[0]
        with open(target, "r+b") as f:
            f.truncate(os.path.getsize(target) // 2)
    elif damage == "other_model_size":
        cfg = yaml.safe_load((run / "config.yaml").read_text())
        cfg["model"]["hidden_size"] = 12
        (run / "config.yaml").write_text(yaml.safe_dump(cfg))
    elif damage == "labels_missing":
        (run / "labels.json").unlink()
    else:
        (run / "labels.json").write_text('["neg", "pos", "meh"]')
    commands = [(evaluate.main, [])]
    if damage == "truncated_weights":  # predict and export load a run the same way (trainer.restore)
        commands += [(predict.main, ["--input", str(run / "vocab.tsv")]), (export.main, ["--out", str(tmp_path / "out")])]
    for main, args in commands:
        assert main(["--run-dir", str(run), *args]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert "Traceback" not in "\n".join(err) and err[-1].startswith("error: ") and expected in err[-1], err[-3:]


def test_unusable_outputs_are_refused_before_any_work(lstm_run, tmp_path, capsys):
    missing = tmp_path / "no" / "such"
    assert compare.main([lstm_run, "--output", str(missing / "table.md")]) == 2
    assert "does not exist" in capsys.readouterr().err.strip().splitlines()[-1]
    assert export.main(["--run-dir", lstm_run, "--out", str(missing / "model")]) == 2
    assert "does not exist" in capsys.readouterr().err.strip().splitlines()[-1]
    from scripts import benchmark

    with pytest.raises(SystemExit) as stop:
        benchmark.main(["--data", str(missing)])
    assert stop.value.code == 2 and "no train.jsonl.gz there" in capsys.readouterr().err


class _FillsTheDisk:
    """A file whose write stores a few bytes, then fails as a full disk does (ENOSPC)."""

    def __init__(self, path, mode="w", **kwargs):
        import builtins

        self.f = builtins.open(path, mode, **kwargs)

    def write(self, data):
        import errno

        self.f.write(data[:3])
        self.f.flush()
        raise OSError(errno.ENOSPC, "No space left on device")

    def writelines(self, lines):
        for line in lines:
            self.write(line)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.f.close()


def test_a_full_disk_leaves_no_output_behind_and_the_same_command_then_works(lstm_run, tmp_path, monkeypatch,
                                                                               capsys):
    """ENOSPC while predict.py, attack.py, evaluate.py or export.py writes: one line, no partial file or folder
    (nothing for the next try to refuse as existing); with space again, the same command succeeds."""
    import shutil

    import tensorflow as tf

    from core import paths
    from scripts import attack
    from trainer import export as exporting

    lstm_run = str(shutil.copytree(lstm_run, tmp_path / "run"))  # evaluate.py writes into it
    src = tmp_path / "in.txt"
    src.write_text("good movie\nbad plot\n")

    def saves_half(module, path, signatures=None):
        os.makedirs(os.path.join(path, "variables"))
        open(os.path.join(path, "saved_model.pb"), "wb").write(b"half")
        raise tf.errors.ResourceExhaustedError(None, None, "No space left on device")

    commands = [
        (predict, "open", predict.main, ["--run-dir", lstm_run, "--input", str(src), "--output", str(tmp_path / "p.jsonl")],
         tmp_path / "p.jsonl"),
        (attack, "open", attack.main, ["--run-dir", lstm_run, "--examples", "4", "--output", str(tmp_path / "a.json")],
         tmp_path / "a.json"),
        (paths, "open", evaluate.main, ["--run-dir", lstm_run, "--data", str(src.with_suffix(".tsv")),
                                             "--no-robustness"], None),
        (exporting.tf.saved_model, "save", export.main, ["--run-dir", lstm_run, "--out", str(tmp_path / "model")],
         tmp_path / "model"),
    ]
    write_tsv(src.with_suffix(".tsv"), make_texts(8, seed=5))
    for module, name, main, args, output in commands:
        before = sorted(os.listdir(lstm_run))
        fault = saves_half if name == "save" else _FillsTheDisk
        with monkeypatch.context() as patch:
            patch.setattr(module, name, fault, raising=False)
            assert main(args) == 2, main
        err = capsys.readouterr().err.strip().splitlines()
        assert "No space left on device" in err[-1] and "Traceback" not in "\n".join(err), err
        assert not [n for n in os.listdir(tmp_path) if ".partial-" in n]
        if output is not None:
            assert not output.exists()
        assert sorted(os.listdir(lstm_run)) == before  # no empty "recorded evaluation" beside the run's own
        assert main(args) == 0  # space again: the same command, not refused as existing
        if output is not None:
            assert output.exists()
    assert tf.saved_model.load(str(tmp_path / "model")).signatures["serving_default"] is not None


def test_a_junk_saved_model_is_one_line(tmp_path, capsys):
    from scripts import attack

    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "saved_model.pb").write_bytes(b"junk")
    data = write_tsv(tmp_path / "d.tsv", make_texts(4, seed=1))
    assert attack.main(["--saved-model", str(tmp_path / "model"), "--data", data]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"error: --saved-model {tmp_path / 'model'}: cannot be loaded")


def test_a_vocabulary_changed_after_training_is_refused_where_it_is_read(lstm_run, tmp_path, capsys):
    import shutil

    run = tmp_path / "edited"
    shutil.copytree(lstm_run, run)
    swap_two_tokens(run / "vocab.tsv")
    (tmp_path / "in.txt").write_text("a good film\n")
    assert predict.main(["--run-dir", str(run), "--input", str(tmp_path / "in.txt")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith(f"error: {run / 'vocab.tsv'}: not the vocabulary the weights of") and len(
        [line for line in err if line.startswith("error")]) == 1
    assert predict.main(["--run-dir", lstm_run, "--input", str(tmp_path / "in.txt")]) == 0  # the run's own file


def test_the_language_model_probes_by_hand():
    from scripts.probe_language_model import linear_probe, pooled

    a = np.array([[1.0, 10.0], [2.0, 20.0], [3.0, 30.0]])  # one text: 3 real positions, forward | backward
    b = np.array([[-1.0, 5.0]])
    feats = pooled([a, b], bidirectional=True)
    np.testing.assert_array_equal(feats["last"], [[3.0, 10.0], [-1.0, 5.0]])  # forward at its end, backward at 0
    np.testing.assert_array_equal(feats["max"], [[3.0, 30.0], [-1.0, 5.0]])
    np.testing.assert_array_equal(feats["mean"], [[2.0, 20.0], [-1.0, 5.0]])
    assert feats["concat"].shape == (2, 6)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(400, 5))
    y = (x[:, 2] > 0).astype(int)  # separable along one feature
    assert linear_probe(x[:300], y[:300], x[300:], y[300:]) >= 0.97
    noise = rng.integers(0, 2, 400)  # labels that the features do not know
    assert 0.35 <= linear_probe(x[:300], noise[:300], x[300:], noise[300:]) <= 0.65
