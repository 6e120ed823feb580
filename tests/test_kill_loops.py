"""A kill at every step boundary of a short run, each resumed, ends as the run never stopped: for free (which
replays each batch) and for a language model, besides the classifier's loop in test_resume.py; and a SIGKILL in
the middle of a checkpoint write (its files written, the manager's record not yet) resumes from the checkpoint
before it. Each case is a real process killed with SIGKILL (nothing runs after it)."""
import os
import signal
import subprocess
import sys

import pytest
import yaml
from conftest import ROOT, make_texts, tiny_config_dict, write_tiny_files
from test_resume import history, metrics
from test_resume import run as killed_run

import train

pytestmark = pytest.mark.slow

FREE_EPOCHS = 2  # 48 texts, batch 8, 2 replays: 3 steps an epoch
LM_STEPS, LM_EPOCHS = 4, 3

MID_WRITE_KILLER = """
import os, signal, sys
sys.path.insert(0, {root!r})
import trainer
from tensorflow.python.checkpoint import checkpoint_management
original = checkpoint_management.update_checkpoint_state_internal
def update(save_dir, model_checkpoint_path, *args, **kwargs):
    if model_checkpoint_path.endswith("ckpt-{step}"):  # the files of ckpt-{step} are written; the record is not
        os.kill(os.getpid(), signal.SIGKILL)
    return original(save_dir, model_checkpoint_path, *args, **kwargs)
checkpoint_management.update_checkpoint_state_internal = update
import train
sys.exit(train.main(sys.argv[1:]))
"""


def assert_same(run_dir, reference, keys, results):
    rows, expected = history(run_dir), history(reference)
    assert len(rows) == len(expected)
    for row, want in zip(rows, expected):
        for key in keys:
            assert float(row[key]) == pytest.approx(float(want[key]), abs=1e-6), (row["epoch"], key)
    a, b = metrics(run_dir), metrics(reference)
    assert a["best_epoch"] == b["best_epoch"] and a["epochs_run"] == b["epochs_run"]
    for split, key in results:
        assert a[split][key] == pytest.approx(b[split][key], abs=1e-6), (split, key)


def kill_then_resume(config, run_dir, step: int) -> None:
    """The run SIGKILLed after step `step`, then --resume, each in a process of its own."""
    killed = killed_run(["--config", str(config), "--run-dir", str(run_dir)], kill_step=step)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    resumed = killed_run(["--resume", str(run_dir)])
    assert resumed.returncode == 0, resumed.stderr[-2000:]


def reference_run(tmp, name: str, cfg: dict):
    """The config written to `tmp` and its uninterrupted run, in this process."""
    config = tmp / f"{name}.yaml"
    config.write_text(yaml.safe_dump(cfg))
    reference = tmp / "reference"
    assert train.main(["--config", str(config), "--run-dir", str(reference)]) == 0
    return tmp, config, reference


@pytest.fixture(scope="module")
def free_setup(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("free")
    files = write_tiny_files(tmp)
    cfg = tiny_config_dict(files, {"name": "free", "replays": 2, "epsilon": 0.5}, model={"dropout": 0.3},
                           train={"epochs": FREE_EPOCHS, "checkpoint_every": 1})
    return reference_run(tmp, "free", cfg)


@pytest.mark.parametrize("step", range(2, 3 * FREE_EPOCHS + 1))
def test_free_killed_at_any_step_resumes_to_the_uninterrupted_run(free_setup, step):
    tmp, config, reference = free_setup
    run_dir = tmp / f"killed_at_{step}"
    kill_then_resume(config, run_dir, step)
    assert_same(run_dir, reference, ("loss", "clean_loss", "free_loss", "free_perturbation_l2", "val_loss"),
                [(s, k) for s in ("dev", "test") for k in ("accuracy", "nll", "ece")])


@pytest.fixture(scope="module")
def lm_setup(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("lm")
    (tmp / "corpus.txt").write_text("\n".join(t for t, _ in make_texts(160, seed=4)) + "\n")
    cfg = {"task": "lm",
           "data": {"unlabeled": str(tmp / "corpus.txt"), "tokenizer": "word", "max_length": 12, "batch_size": 8},
           "model": {"name": "bilstm", "embedding_dim": 8, "hidden_size": 8, "dropout": 0.2},
           "lm": {"softmax_samples": 16, "heldout_texts": 16},
           "train": {"epochs": LM_EPOCHS, "steps_per_epoch": LM_STEPS, "checkpoint_every": 1, "learning_rate": 0.01}}
    return reference_run(tmp, "lm", cfg)


@pytest.mark.parametrize("step", range(2, LM_STEPS * LM_EPOCHS + 1))
def test_a_language_model_killed_at_any_step_resumes_to_the_uninterrupted_run(lm_setup, step):
    tmp, config, reference = lm_setup
    run_dir = tmp / f"killed_at_{step}"
    kill_then_resume(config, run_dir, step)
    assert_same(run_dir, reference, ("loss", "val_perplexity"), [])
    assert metrics(run_dir)["heldout"] == metrics(reference)["heldout"]


@pytest.mark.parametrize("step", [3, 4])  # inside the first epoch; its last step (the epoch end's save)
def test_a_sigkill_in_the_middle_of_a_checkpoint_write_resumes_from_the_one_before(free_setup, step):
    tmp, config, reference = free_setup
    run_dir = tmp / f"killed_writing_{step}"
    code = MID_WRITE_KILLER.format(root=ROOT, step=step)
    killed = subprocess.run([sys.executable, "-c", code, "--config", str(config), "--run-dir", str(run_dir)],
                            cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    train_dir = run_dir / "checkpoints" / "train"
    assert any(name.startswith(f"ckpt-{step}.") for name in os.listdir(train_dir))  # its files are there
    assert f"ckpt-{step}" not in (train_dir / "checkpoint").read_text()  # but not recorded
    resumed = killed_run(["--resume", str(run_dir)])
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert_same(run_dir, reference, ("loss", "clean_loss", "free_loss", "val_loss"),
                [(s, k) for s in ("dev", "test") for k in ("accuracy", "nll", "ece")])
