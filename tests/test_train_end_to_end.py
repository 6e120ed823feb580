"""train.py on a tiny fixture data set: files written, config reproducible, user errors exit 2."""
import json
import os
import subprocess
import sys

import pytest
import yaml
from conftest import ROOT, tiny_config_dict

import train
from core.loader import load_config


def write_config(tmp_path, cfg, name="tiny.yaml"):
    path = tmp_path / name
    path.write_text(yaml.safe_dump(cfg))
    return str(path)


@pytest.fixture(scope="module")
def fgm_vat_run(tmp_path_factory):
    from conftest import make_texts, write_tsv

    tmp = tmp_path_factory.mktemp("e2e")
    files = {name: write_tsv(tmp / f"{name}.tsv", make_texts(n, seed=s))
             for name, n, s in (("train", 48, 1), ("dev", 12, 2), ("test", 12, 3))}
    cfg_path = write_config(tmp, tiny_config_dict(files, [{"name": "fgm"}, {"name": "vat", "weight": 0.5}],
                                                  data={"num_labeled": 24}))
    run_dir = str(tmp / "run")
    assert train.main(["--config", cfg_path, "--run-dir", run_dir, "--set", "train.epochs=2"]) == 0
    return tmp, cfg_path, run_dir


def test_train_writes_tensorboard_config_vocab_and_metrics(fgm_vat_run):
    _, cfg_path, run_dir = fgm_vat_run
    files = set(os.listdir(run_dir))
    assert {"config.yaml", "metrics.json", "vocab.tsv", "labels.json", "history.csv", "tensorboard",
            "checkpoints"} <= files
    metrics = json.load(open(os.path.join(run_dir, "metrics.json")))
    assert 0.0 <= metrics["test"]["accuracy"] <= 1.0 and set(metrics["test"]["per_class"]) == {"neg", "pos"}
    assert metrics["epochs_run"] == 2

    import tensorflow as tf
    tags = set()
    for sub in ("train", "validation"):
        folder = os.path.join(run_dir, "tensorboard", sub)
        for event_file in os.listdir(folder):
            for event in tf.compat.v1.train.summary_iterator(os.path.join(folder, event_file)):
                tags |= {v.tag for v in event.summary.value}
    for tag in ("epoch_loss", "epoch_clean_loss", "epoch_fgm_loss", "epoch_vat_loss", "epoch_accuracy",
                "epoch_fgm_perturbation_l2", "epoch_embedding_grad_norm", "epoch_learning_rate"):
        assert tag in tags, tags

    saved = load_config(os.path.join(run_dir, "config.yaml"))
    assert saved == load_config(cfg_path, ["train.epochs=2"])


def test_reloaded_config_reproduces_the_run(fgm_vat_run):
    tmp, _, first = fgm_vat_run
    second = str(tmp / "second")
    assert train.main(["--config", os.path.join(first, "config.yaml"), "--run-dir", second]) == 0
    a = json.load(open(os.path.join(first, "metrics.json")))
    b = json.load(open(os.path.join(second, "metrics.json")))
    assert a["test"] == b["test"] and a["dev"] == b["dev"]
    assert open(os.path.join(first, "vocab.tsv")).read() == open(os.path.join(second, "vocab.tsv")).read()
    assert open(os.path.join(first, "history.csv")).read() == open(os.path.join(second, "history.csv")).read()


def test_existing_run_directory_is_never_overwritten(tmp_path, tiny_files, capsys):
    cfg_path = write_config(tmp_path, tiny_config_dict(tiny_files, "none"))
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "metrics.json").write_text("{}")
    assert train.main(["--config", cfg_path, "--run-dir", str(run_dir)]) == 2
    err = capsys.readouterr().err.strip().splitlines()  # before the data are read: the only line
    assert err == [f"error: {run_dir}: exists and is not empty; choose another --run-dir (nothing is overwritten)"]
    assert (run_dir / "metrics.json").read_text() == "{}"
    assert train.main(["--config", cfg_path, "--run-dir", cfg_path]) == 2
    assert capsys.readouterr().err.strip() == (f"error: {cfg_path}: is a file, not a folder; choose another "
                                               "--run-dir (nothing is overwritten)")


# The command itself, in a fresh interpreter: a mistake in the config file and one in the data, found after
# TensorFlow has loaded. test_bad_input checks every kind of mistake through train.main, in this process.
@pytest.mark.parametrize("problem,expected", [
    ("bad_yaml", "malformed YAML"),
    ("unknown_label", "label 'maybe' of the dev split is not in the label list"),
])
def test_user_errors_exit_2_with_one_line_and_no_run_dir(tmp_path, tiny_files, problem, expected):
    cfg = tiny_config_dict(tiny_files, "fgm")
    if problem == "unknown_label":
        with open(tiny_files["dev"], "a") as f:
            f.write("maybe\tsome text\n")
    cfg_path = write_config(tmp_path, cfg)
    if problem == "bad_yaml":
        with open(cfg_path, "a") as f:
            f.write("model: [oops\n")
    run_dir = tmp_path / "run"
    proc = subprocess.run([sys.executable, os.path.join(ROOT, "train.py"), "--config", cfg_path,
                           "--run-dir", str(run_dir)], capture_output=True, text=True, cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr[-2000:]
    error_lines = [line for line in proc.stderr.splitlines() if line.startswith("error: ")]
    assert len(error_lines) == 1 and expected in error_lines[0], proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    assert not run_dir.exists()


@pytest.mark.slow  # XLA compiles a BERT step on the CPU: about half a minute
def test_fixed_shapes_xla_bucketing_and_steps_per_execution_train(tmp_path, tiny_files, tiny_bert_dir):
    cfg = tiny_config_dict(tiny_files, "fgm", data={"padding": "max_length", "length_bucketing": True, "bucket_window": 2},
                           model={"name": "bert", "pretrained": tiny_bert_dir},
                           train={"jit_compile": True, "steps_per_execution": 2, "epochs": 2, "learning_rate": 1e-3},
                           eval={"robustness_after_training": False})
    run_dir = str(tmp_path / "run")
    assert train.main(["--config", write_config(tmp_path, cfg), "--run-dir", run_dir]) == 0
    metrics = json.load(open(os.path.join(run_dir, "metrics.json")))
    assert metrics["epochs_run"] == 2 and metrics["test"]["n"] == 12
    import csv
    rows = list(csv.DictReader(open(os.path.join(run_dir, "history.csv"))))
    assert float(rows[1]["loss"]) < float(rows[0]["loss"])  # it learns


def test_mixed_precision_computes_in_float16_but_perturbs_in_float32_and_every_weight_learns(tiny_files):
    import numpy as np
    import tensorflow as tf
    import tf_keras

    from core.loader import config_from_dict
    from dataset.streams import training_stream
    from trainer.run import build_model, prepare

    cfg = config_from_dict(tiny_config_dict(tiny_files, [{"name": "fgm"}, {"name": "vat", "weight": 0.5}],
                                            data={"num_labeled": 32}, train={"mixed_precision": True}))
    assert cfg.train.mixed_precision == "float16"  # true, as before, means float16
    prepared = prepare(cfg)
    model = build_model(cfg, prepared, 2)
    assert tf_keras.mixed_precision.global_policy().name == "float32"  # only the model's layers are mixed
    assert isinstance(model.optimizer, tf_keras.mixed_precision.LossScaleOptimizer)
    clf = model.classifier
    assert clf.backbone.compute_dtype == "float16" and clf.embedding.compute_dtype == "float32"
    x, y = next(iter(training_stream(cfg, prepared.data, prepared.text_encoder)))
    assert clf.embed(x).dtype == tf.float32 and model(x).dtype == tf.float32
    before = [v.numpy() for v in model.trainable_variables]
    logs = model.train_on_batch(x, y, return_dict=True)
    assert all(np.isfinite(v) for v in logs.values())
    assert logs["fgm_perturbation_l2"] == pytest.approx(cfg.regularizer[0].epsilon, rel=1e-4)
    assert logs["vat_perturbation_l2"] == pytest.approx(cfg.regularizer[1].epsilon, rel=1e-4)
    for v, old in zip(model.trainable_variables, before):
        assert np.any(v.numpy() != old), v.name


@pytest.mark.parametrize("setting,same_length,steps,bucketed", [
    ("auto", False, None, True),  # texts of 3 to 7 words: random batches of 8 are over 20% padding
    ("auto", True, None, False),  # every text 4 words: no padding to save
    ("auto", False, 3, False),  # a fixed steps_per_epoch has no passes over the data to sort
    (True, True, None, True),  # on: bucketed whatever the lengths (true is 'on')
    (False, False, None, False)])
def test_length_bucketing_auto_is_on_where_random_batches_would_be_mostly_padding(
        tmp_path, tiny_files, caplog, setting, same_length, steps, bucketed):
    from conftest import write_tsv

    from core.loader import config_from_dict
    from dataset.streams import bucketing_lengths
    from trainer.run import prepare

    files = dict(tiny_files)
    if same_length:
        files["train"] = write_tsv(tmp_path / "same.tsv", [(f"the movie was {w}", "pos" if w in ("good", "fine")
                                                            else "neg") for w in ["good", "bad", "fine", "poor"] * 8])
    cfg = config_from_dict(tiny_config_dict(files, data={"length_bucketing": setting},
                                            train={"steps_per_epoch": steps}))
    prepared = prepare(cfg)
    with caplog.at_level("INFO"):
        lengths = bucketing_lengths(cfg, prepared.data, prepared.text_encoder)
    assert (lengths is not None) == bucketed
    if bucketed:  # the words of each training text, as the model sees them
        assert list(lengths) == [len(t.split()) for t in prepared.data.train.texts]
    if setting == "auto" and not steps:
        assert f"data.length_bucketing: auto: {'on' if bucketed else 'off'}" in caplog.text
        assert ("(random batches of 8 would be 0% padding)" in caplog.text) == same_length


def test_length_bucketing_on_with_a_fixed_epoch_length_is_a_user_error(tiny_files):
    from core.errors import UserError
    from core.loader import config_from_dict

    with pytest.raises(UserError, match="data.length_bucketing sorts within each pass"):
        config_from_dict(tiny_config_dict(tiny_files, data={"length_bucketing": "on"},
                                          train={"steps_per_epoch": 3}))


def test_a_run_without_a_test_split_is_evaluated_on_dev_only(tmp_path):
    """data.split with a test fraction of 0 and no data.test: a tuning run; test is never read."""
    from conftest import make_texts, write_tsv

    files = {"train": write_tsv(tmp_path / "train.tsv", make_texts(48, seed=1))}
    cfg = tiny_config_dict(files, "fgm", data={"split": [0.75, 0.25, 0.0]},
                           eval={"robustness_after_training": True, "text_attacks": ["noise"]})
    run_dir = str(tmp_path / "run")
    assert train.main(["--config", write_config(tmp_path, cfg), "--run-dir", run_dir]) == 0
    metrics = json.load(open(os.path.join(run_dir, "metrics.json")))
    assert "dev" in metrics and "test" not in metrics and metrics["dev"]["n"] == 12
    assert not [f for f in os.listdir(run_dir) if "test" in f]
