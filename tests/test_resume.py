"""Resuming: a run killed at any step and continued with --resume ends exactly like one never stopped.

The tiny run has dropout, a random perturbation and semi-supervised VAT, so the weights, the optimizer, the
data position of both streams, the metrics of the epoch in progress and every random generator must all
come back. SIGKILL needs a real process (a subprocess of train.py, killed from inside at a chosen step); the rest
runs in this process.
Tolerance: 1e-6 on every metric (CPU kernels are deterministic; in practice the numbers are identical).
"""
import csv
import json
import os
import shutil
import signal
import subprocess
import sys

import pytest
import yaml
from conftest import ROOT, tiny_config_dict

import train

STEPS_PER_EPOCH, EPOCHS = 4, 3  # 32 labelled examples, batch 8
KILLER = """
import os, signal, sys
sys.path.insert(0, {root!r})
import trainer
from trainer import checkpointing
original = checkpointing.TrainingCheckpoints.on_train_batch_end
def on_train_batch_end(self, batch, logs=None):
    if self.current_epoch * self.steps_per_epoch + batch + 1 == {step}:
        os.kill(os.getpid(), signal.{signal})
    original(self, batch, logs)
checkpointing.TrainingCheckpoints.on_train_batch_end = on_train_batch_end
import train
sys.exit(train.main(sys.argv[1:]))
"""


def run(args, kill_step=None, sig="SIGKILL"):
    code = KILLER.format(root=ROOT, step=kill_step or -1, signal=sig)
    return subprocess.run([sys.executable, "-c", code, *args], cwd=ROOT, capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """The tiny run's data and config, and the same run uninterrupted (in this process) to compare with."""
    from conftest import write_tiny_files

    tmp = tmp_path_factory.mktemp("resume")
    files = write_tiny_files(tmp)
    cfg = tiny_config_dict(files, [{"name": "random", "epsilon": 0.5}, {"name": "vat", "weight": 0.5}],
                           data={"num_labeled": 32},
                           model={"dropout": 0.3, "head_dropout": 0.3},  # an LSTM (conftest): dropout in two places
                           train={"epochs": EPOCHS, "checkpoint_every": 3, "keep_last": 2},
                           eval={"robustness_after_training": False})
    config = tmp / "tiny.yaml"
    config.write_text(yaml.safe_dump(cfg))
    reference = tmp / "reference"
    assert train.main(["--config", str(config), "--run-dir", str(reference)]) == 0
    return tmp, config, reference


def in_process(args, monkeypatch, signal_at=None, capsys=None):
    """train.main in this process; with signal_at, SIGTERM to this process after that step (the handler
    train.py installs asks for a save and a stop, as when a scheduler pre-empts the job)."""
    from trainer import checkpointing

    if signal_at is not None:
        original = checkpointing.TrainingCheckpoints.on_train_batch_end

        def on_train_batch_end(self, batch, logs=None):
            if self.current_epoch * self.steps_per_epoch + batch + 1 == signal_at:
                os.kill(os.getpid(), signal.SIGTERM)
            original(self, batch, logs)

        monkeypatch.setattr(checkpointing.TrainingCheckpoints, "on_train_batch_end", on_train_batch_end)
    try:
        return train.main(args)
    finally:
        monkeypatch.undo()


def metrics(run_dir):
    return json.load(open(os.path.join(run_dir, "metrics.json")))


def history(run_dir):
    with open(os.path.join(run_dir, "history.csv")) as f:
        return list(csv.DictReader(f))


def assert_same_run(run_dir, reference):
    a, b = metrics(run_dir), metrics(reference)
    assert a["best_epoch"] == b["best_epoch"] and a["epochs_run"] == b["epochs_run"] == EPOCHS
    for split in ("dev", "test"):
        for key in ("accuracy", "macro_f1", "nll", "brier", "ece"):
            assert a[split][key] == pytest.approx(b[split][key], abs=1e-6), (split, key)
    rows, expected = history(run_dir), history(reference)
    assert [r["epoch"] for r in rows] == [str(e) for e in range(EPOCHS)]
    for row, want in zip(rows, expected):
        for key in ("loss", "clean_loss", "random_loss", "vat_loss", "accuracy", "val_loss", "val_accuracy"):
            assert float(row[key]) == pytest.approx(float(want[key]), abs=1e-6), (row["epoch"], key)


def assert_checkpoints_readable(run_dir, keep_last=2):
    import tensorflow as tf

    for which in ("train", "best"):
        state = tf.train.get_checkpoint_state(os.path.join(run_dir, "checkpoints", which))
        assert state is not None, which
        paths = list(state.all_model_checkpoint_paths)
        assert 1 <= len(paths) <= (keep_last if which == "train" else 1)
        for path in paths:
            assert tf.train.load_checkpoint(path).get_variable_to_shape_map()
    leftovers = [f for _, _, names in os.walk(run_dir) for f in names if f.endswith(".tmp")]
    assert not leftovers


def test_sigterm_then_sigkill_then_resume_ends_like_an_uninterrupted_run(setup, monkeypatch, capsys, caplog):
    """One run stopped twice: SIGTERM after step 5 (saves, says how to resume), a resume refused while the
    data differ, a resume killed with SIGKILL after step 7 (a real process: nothing runs after SIGKILL; the
    last checkpoint is at step 6, mid epoch 2), and a resume to the end, which equals the uninterrupted run."""
    import tensorflow as tf

    tmp, config, reference = setup
    run_dir = tmp / "stopped"
    capsys.readouterr()
    assert in_process(["--config", str(config), "--run-dir", str(run_dir)], monkeypatch, signal_at=5) == 128 + signal.SIGTERM
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert last.startswith("stopped by SIGTERM at step 5 (epoch 2)") and f"--resume {run_dir}" in last
    assert tf.train.latest_checkpoint(str(run_dir / "checkpoints" / "train")).endswith("ckpt-5")

    train_file = tmp / "train.tsv"
    original = train_file.read_text()
    train_file.write_text(original.replace("good", "nice"))  # the data changes under the stopped run
    try:
        assert in_process(["--resume", str(run_dir)], monkeypatch) == 2
    finally:
        train_file.write_text(original)
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        f"error: {run_dir}: the data changed since this run started (texts or labels differ); resume with the "
        "data it was started on, or start a new run")

    killed = run(["--resume", str(run_dir)], kill_step=STEPS_PER_EPOCH + 3)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    assert "resuming" in killed.stderr and "epoch 2, step 5 (1 into the epoch)" in killed.stderr
    assert not (run_dir / "metrics.json").exists()
    assert_checkpoints_readable(run_dir)
    assert len(history(run_dir)) == 1  # epoch 1 was finished; the last checkpoint is at step 6, mid epoch 2

    caplog.set_level("INFO")
    assert in_process(["--resume", str(run_dir)], monkeypatch) == 0
    assert "epoch 2, step 6 (2 into the epoch)" in caplog.text
    assert_same_run(run_dir, reference)
    assert_checkpoints_readable(run_dir)
    steps = {}
    folder = run_dir / "tensorboard" / "train"
    for name in os.listdir(folder):  # one TensorBoard run, continued: epochs 0..2 once each
        for event in tf.compat.v1.train.summary_iterator(str(folder / name)):
            for value in event.summary.value:
                steps.setdefault(value.tag, set()).add(event.step)
    assert steps["epoch_loss"] == {0, 1, 2}

    assert in_process(["--resume", str(run_dir)], monkeypatch) == 2
    assert "has finished" in capsys.readouterr().err.strip().splitlines()[-1]


def test_a_stop_at_an_epochs_last_step_resumes_and_finishes(setup, monkeypatch, capsys):
    """SIGTERM during the last step of epoch 1, with a checkpoint every step: the run stops after that epoch's
    end (validation, history, then the save), not between its last step and its end (a state that resumed into
    an epoch with no step left, which Keras cannot run), and the resume ends like the uninterrupted run."""
    tmp, config, reference = setup
    run_dir = tmp / "stopped_at_epoch_end"
    every_step = ["--set", "train.checkpoint_every=1"]
    assert in_process(["--config", str(config), "--run-dir", str(run_dir), *every_step], monkeypatch,
                      signal_at=STEPS_PER_EPOCH) == 128 + signal.SIGTERM
    assert capsys.readouterr().err.strip().splitlines()[-1].startswith(f"stopped by SIGTERM at step {STEPS_PER_EPOCH}")
    assert len(history(run_dir)) == 1  # epoch 1 ended before the stop
    assert in_process(["--resume", str(run_dir)], monkeypatch) == 0
    assert_same_run(run_dir, reference)


@pytest.mark.slow
@pytest.mark.parametrize("step", range(2, STEPS_PER_EPOCH * EPOCHS + 1))
def test_a_kill_at_any_step_resumes_to_the_uninterrupted_run(setup, step):
    """SIGKILL (nothing runs after it) at every step of the run after the first, epoch ends included, with a
    checkpoint every step; the resume ends like the uninterrupted run. (Killed at step 1 there is no checkpoint
    yet: test_a_run_stopped_before_its_first_checkpoint_says_how_to_start_it_again.)"""
    tmp, config, reference = setup
    run_dir = tmp / f"killed_at_{step}"
    killed = run(["--config", str(config), "--run-dir", str(run_dir), "--set", "train.checkpoint_every=1"],
                 kill_step=step)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    resumed = run(["--resume", str(run_dir)])
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert_same_run(run_dir, reference)


@pytest.mark.slow
def test_resume_auto_continues_the_unfinished_run_of_the_same_config(setup):
    tmp, config, reference = setup
    auto = tmp / "auto.yaml"
    cfg = yaml.safe_load(config.read_text())
    cfg["train"]["resume"] = "auto"
    auto.write_text(yaml.safe_dump(cfg))
    run_dir = tmp / "auto-run"
    killed = run(["--config", str(auto), "--run-dir", str(run_dir)], kill_step=2)
    assert killed.returncode == -signal.SIGKILL
    again = run(["--config", str(auto), "--run-dir", str(run_dir)])  # the same command, run again
    assert again.returncode == 0, again.stderr[-2000:]
    assert "resuming" in again.stderr
    assert_same_run(run_dir, reference)


def test_a_run_directory_is_used_by_one_process_at_a_time(setup, capsys):
    _, _, reference = setup
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    finished = reference / "metrics.json"
    finished.rename(reference / "metrics.json.aside")  # unfinished: a finished run says so before any lock
    try:
        (reference / ".lock").write_text(str(holder.pid))
        assert train.main(["--resume", str(reference)]) == 2
        last = capsys.readouterr().err.strip().splitlines()[-1]
        assert last == (f"error: {reference}: in use by another process (pid {holder.pid}); wait for it to end or "
                        "stop it (a run directory is used by one process at a time)")
    finally:
        holder.kill()
        holder.wait()
        (reference / "metrics.json.aside").rename(finished)
    # its process is gone: the lock is stale and does not block (this run has finished: that is the answer)
    assert train.main(["--resume", str(reference)]) == 2
    assert "has finished" in capsys.readouterr().err.strip().splitlines()[-1]
    (reference / ".lock").unlink()  # a finished run is answered without locking it: the stale lock stays


def test_sigterm_during_the_final_evaluation_says_how_to_finish(tmp_path, tiny_files, monkeypatch, capsys):
    import trainer.run

    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump(tiny_config_dict(tiny_files, "fgm")))
    run_dir = tmp_path / "run"
    evaluate_split = trainer.run.evaluate_split

    def interrupted(*args, **kwargs):
        os.kill(os.getpid(), signal.SIGTERM)
        return evaluate_split(*args, **kwargs)

    monkeypatch.setattr(trainer.run, "evaluate_split", interrupted)
    assert train.main(["--config", str(config), "--run-dir", str(run_dir)]) == 128 + signal.SIGTERM
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert err.strip().splitlines()[-1] == (f"stopped by SIGTERM during the final evaluation (training had finished "
                                            f"and is saved); finish it with: python train.py --resume {run_dir}")
    assert not (run_dir / "metrics.json").exists() and not (run_dir / ".lock").exists()
    monkeypatch.undo()
    leftover = run_dir / "checkpoints" / "train" / "ckpt-99_temp"  # what a write killed part-way leaves
    leftover.mkdir()
    assert train.main(["--resume", str(run_dir)]) == 0
    assert (run_dir / "metrics.json").exists() and not leftover.exists()


def test_a_full_disk_at_the_first_checkpoint_is_one_line(tmp_path, tiny_files, monkeypatch, capsys):
    import tensorflow as tf

    def full(self, *args, **kwargs):
        raise tf.errors.ResourceExhaustedError(None, None, "No space left on device")

    monkeypatch.setattr(tf.train.CheckpointManager, "save", full)
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump(tiny_config_dict(tiny_files, "fgm")))
    run_dir = tmp_path / "run"
    assert train.main(["--config", str(config), "--run-dir", str(run_dir)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert "Traceback" not in "\n".join(err)
    assert err[-1].startswith(f"error: {run_dir / 'checkpoints' / 'train'}: cannot write a checkpoint (No space left "
                              "on device); free disk space, then start the run again"), err[-1]
    assert not (run_dir / "metrics.json").exists() and not (run_dir / ".lock").exists()


def test_a_damaged_latest_checkpoint_falls_back_to_the_one_before(setup, monkeypatch, capsys, caplog):
    """The latest checkpoint truncated (a disk fault after it was written): --resume names it in a warning,
    continues from the one before and ends like the uninterrupted run; every checkpoint damaged is one line."""
    import tensorflow as tf

    tmp, config, reference = setup
    run_dir = tmp / "damaged"
    assert in_process(["--config", str(config), "--run-dir", str(run_dir)], monkeypatch, signal_at=7) == 143
    state = tf.train.get_checkpoint_state(str(run_dir / "checkpoints" / "train"))
    assert [os.path.basename(p) for p in state.all_model_checkpoint_paths] == ["ckpt-6", "ckpt-7"]
    data = run_dir / "checkpoints" / "train" / "ckpt-7.data-00000-of-00001"
    data.write_bytes(data.read_bytes()[: data.stat().st_size // 2])
    backup = tmp / "damaged-copy"
    shutil.copytree(run_dir, backup)
    caplog.set_level("INFO")
    capsys.readouterr()
    assert in_process(["--resume", str(run_dir)], monkeypatch) == 0
    assert "ckpt-7 is damaged" in caplog.text and "epoch 2, step 6 (2 into the epoch)" in caplog.text
    assert_same_run(run_dir, reference)

    for path in (backup / "checkpoints" / "train").glob("ckpt-6.index"):
        path.write_bytes(b"junk")
    assert in_process(["--resume", str(backup)], monkeypatch) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith(f"error: {backup}: every checkpoint in") and "(ckpt-6, ckpt-7)" in err[-1]
    assert err[-1].endswith(f"start the run again: python train.py --config {backup / 'config.yaml'} --run-dir <a new folder>")
    assert not (backup / "metrics.json").exists()


def test_a_resume_refuses_an_edited_config_and_a_missing_run_file(setup, monkeypatch, capsys):
    """config.yaml edited after the run started: the key and both values, nothing trained; vocab.tsv or
    labels.json gone: named before training on (predict.py would need them); put back, the run resumes. The run
    is started as by a version without model.variational_dropout (its checkpoint does not record it): at its
    default the run resumes and ends like the uninterrupted one, at another value it is refused."""
    from trainer import story

    tmp, config, reference = setup
    run_dir = tmp / "edited"
    recorded = story.recorded_settings
    monkeypatch.setattr(story, "recorded_settings",  # undone by in_process: the older version's checkpoint
                        lambda cfg: {k: v for k, v in recorded(cfg).items() if k != "model.variational_dropout"})
    assert in_process(["--config", str(config), "--run-dir", str(run_dir)], monkeypatch, signal_at=5) == 143
    saved = run_dir / "config.yaml"
    original = saved.read_text()
    assert "variational_dropout: false" in original
    for old, new, message in [
            ("learning_rate: 0.01", "learning_rate: 0.02", "train.learning_rate is 0.02, but the run started with 0.01"),
            ("variational_dropout: false", "variational_dropout: true",
             "model.variational_dropout is True, but the run started with None")]:
        saved.write_text(original.replace(old, new))
        capsys.readouterr()
        assert in_process(["--resume", str(run_dir)], monkeypatch) == 2
        assert capsys.readouterr().err.strip().splitlines()[-1] == (
            f"error: {run_dir}/config.yaml: {message}; put it back to resume, or start a new run with the new value")
    saved.write_text(original)
    for name in ("vocab.tsv", "labels.json"):
        (run_dir / name).rename(tmp / name)
        assert in_process(["--resume", str(run_dir)], monkeypatch) == 2
        err = capsys.readouterr().err.strip().splitlines()[-1]
        assert name in err and ("not found" in err or "missing" in err), err
        (tmp / name).rename(run_dir / name)
    assert tf_latest(run_dir).endswith("ckpt-5")  # nothing trained meanwhile
    assert in_process(["--resume", str(run_dir)], monkeypatch) == 0
    assert_same_run(run_dir, reference)


def tf_latest(run_dir):
    import tensorflow as tf

    return tf.train.latest_checkpoint(str(run_dir / "checkpoints" / "train"))


def test_a_run_stopped_before_its_first_checkpoint_says_how_to_start_it_again(tmp_path, tiny_files, capsys):
    run_dir = tmp_path / "early"
    run_dir.mkdir()
    (run_dir / "config.yaml").write_text(yaml.safe_dump(tiny_config_dict(tiny_files, "none")))
    assert train.main(["--resume", str(run_dir)]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err == (f"error: {run_dir}: nothing to resume: it stopped before its first checkpoint; start it again "
                   f"with --config {run_dir / 'config.yaml'} and another --run-dir, or remove {run_dir} first")
    assert train.main(["--config", str(run_dir / "config.yaml"), "--run-dir", str(tmp_path / "again")]) == 0


def test_a_read_only_run_directory_is_one_line(setup, monkeypatch, capsys):
    """A run directory on a read-only file system (simulated: EROFS where the lock is made; os.access says
    read-only): --resume of an unfinished run and evaluate.py say so in one line; a finished run says it
    finished."""
    import errno

    from scripts import evaluate
    from trainer import checkpointing

    tmp, config, reference = setup
    run_dir = tmp / "read-only"
    assert in_process(["--config", str(config), "--run-dir", str(run_dir)], monkeypatch, signal_at=5) == 143
    capsys.readouterr()
    real_open = os.open

    def read_only(path, *args, **kwargs):
        if str(path).startswith(str(tmp)) and len(args) and args[0] & os.O_CREAT:
            raise OSError(errno.EROFS, "Read-only file system")
        return real_open(path, *args, **kwargs)

    with monkeypatch.context() as patch:
        patch.setattr(checkpointing.os, "open", read_only)
        assert train.main(["--resume", str(run_dir)]) == 2
        assert capsys.readouterr().err.strip().splitlines()[-1] == (
            f"error: {run_dir}: cannot write into the run directory (Read-only file system); a run continues only "
            "where it can save")
        assert train.main(["--resume", str(reference)]) == 2
        assert "has finished" in capsys.readouterr().err.strip().splitlines()[-1]
    real_access = os.access
    with monkeypatch.context() as patch:
        patch.setattr(os, "access", lambda path, mode: False if mode == os.W_OK else real_access(path, mode))
        before = sorted(os.listdir(reference))
        assert evaluate.main(["--run-dir", str(reference), "--no-robustness"]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "cannot write into the run directory (read-only)" in err[0]
        assert sorted(os.listdir(reference)) == before


def test_a_free_run_counts_epochs_in_updates_and_resumes_exactly(tmp_path, tiny_files, monkeypatch, capsys):
    """free with 2 replays: 6 batches a data pass, so an epoch is 3 batches (6 updates, a clean epoch's); stopped
    after step 2 (4 updates) and resumed, it ends as the run never stopped."""
    import tensorflow as tf

    cfg = tiny_config_dict(tiny_files, {"name": "free", "replays": 2, "epsilon": 0.5},
                           model={"dropout": 0.3}, train={"epochs": 2})
    config = tmp_path / "free.yaml"
    config.write_text(yaml.safe_dump(cfg))
    reference, run_dir = tmp_path / "reference", tmp_path / "stopped"
    assert train.main(["--config", str(config), "--run-dir", str(reference)]) == 0
    ckpt = tf.train.latest_checkpoint(str(reference / "checkpoints" / "train"))
    assert ckpt.endswith("ckpt-6")  # 2 epochs of 3 steps
    assert int(tf.train.load_checkpoint(ckpt).get_tensor("model/optimizer/_iterations/.ATTRIBUTES/VARIABLE_VALUE")) == 12
    assert in_process(["--config", str(config), "--run-dir", str(run_dir)], monkeypatch, signal_at=2) == 143
    assert capsys.readouterr().err.strip().splitlines()[-1].startswith("stopped by SIGTERM at step 2 (epoch 1)")
    assert in_process(["--resume", str(run_dir)], monkeypatch) == 0
    a, b = metrics(run_dir), metrics(reference)
    for split in ("dev", "test"):
        for key in ("accuracy", "nll", "ece"):
            assert a[split][key] == pytest.approx(b[split][key], abs=1e-6), (split, key)
    for row, want in zip(history(run_dir), history(reference), strict=True):
        for key in ("loss", "clean_loss", "free_loss", "free_perturbation_l2", "val_loss"):
            assert float(row[key]) == pytest.approx(float(want[key]), abs=1e-6), (row["epoch"], key)


@pytest.mark.parametrize("where", ["lock", pytest.param("config", marks=pytest.mark.slow)])
def test_a_full_disk_at_the_start_is_one_line_and_leaves_nothing(tmp_path, tiny_files, monkeypatch, capsys, where):
    """No space for the lock's process id, or for config.yaml: one line, no half-made run directory (which would
    block the same --run-dir), and the same command works once there is space."""
    import errno

    import trainer.checkpointing
    import trainer.run_dir

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    class FullFile:
        def __init__(self, fd, *args, **kwargs):
            os.close(fd)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

        write = full

    if where == "lock":
        monkeypatch.setattr(trainer.checkpointing.os, "fdopen", FullFile)
    else:
        monkeypatch.setattr(trainer.run_dir, "save_config", full)
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump(tiny_config_dict(tiny_files, "none", train={"steps_per_epoch": 1})))
    run_dir = tmp_path / "runs" / "run"
    assert train.main(["--config", str(config), "--run-dir", str(run_dir)]) == 2
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error")]
    assert len(err) == 1 and "No space left on device" in err[0] and "run the same command again" in err[0]
    assert not run_dir.exists()
    monkeypatch.undo()
    assert train.main(["--config", str(config), "--run-dir", str(run_dir)]) == 0
