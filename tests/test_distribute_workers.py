"""tf.distribute across processes: two local multi-worker processes train like one device, on an epoch whose
last batch (7 texts) splits 4 and 3 across the workers, with random noise (random) and FGM.

The workers run in subprocesses (multi-worker collectives must be set up before TensorFlow starts); the
one-device run in this process. Tolerance: 1e-5 on every weight, with plain SGD.
"""
import json
import os
import socket
import subprocess
import sys

import numpy as np
import pytest
import yaml
from conftest import ROOT, make_texts, tiny_config_dict, write_tsv

WORKER = """
import os, sys
sys.path.insert(0, {root!r})
import numpy as np
import trainer
from trainer import checkpointing
def on_train_end(self, logs=None):  # each worker leaves its final weights for the test to compare
    np.savez({out!r}, *[v.numpy() for v in self.model.trainable_variables])
checkpointing.TrainingCheckpoints.on_train_end = on_train_end
import train
sys.exit(train.main(sys.argv[1:]))
"""


def free_ports(n):
    sockets = [socket.socket() for _ in range(n)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def start_workers(tmp_path, config, run_dir, n=2):
    """n local worker processes running train.py on `config`; each leaves its final weights in weights-<i>.npz."""
    workers = [f"127.0.0.1:{port}" for port in free_ports(n)]
    procs = []
    for index in range(n):
        env = {**os.environ, "TF_CONFIG": json.dumps({"cluster": {"worker": workers},
                                                      "task": {"type": "worker", "index": index}})}
        code = WORKER.format(root=ROOT, out=str(tmp_path / f"weights-{index}.npz"))
        procs.append(subprocess.Popen([sys.executable, "-c", code, "--config", str(config), "--run-dir",
                                       str(run_dir)], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                                      stderr=subprocess.STDOUT, text=True))
    return procs


def finish(procs, timeout=300):
    """The workers' outputs; any still running after `timeout` is killed."""
    try:
        return [p.communicate(timeout=timeout)[0] for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()


@pytest.mark.slow  # two worker processes that each start TensorFlow, and a one-device run; test_distribute
# checks the mirrored step in process
def test_two_local_workers_train_like_one_device(tmp_path, monkeypatch):
    """47 texts in batches of 8: the last batch of each epoch, 7 texts, splits 4 and 3 across the workers."""
    files = {"train": write_tsv(tmp_path / "train.tsv", make_texts(47, seed=1)),
             "dev": write_tsv(tmp_path / "dev.tsv", make_texts(12, seed=2)),
             "test": write_tsv(tmp_path / "test.tsv", make_texts(12, seed=3))}
    cfg = tiny_config_dict(files, [{"name": "random", "epsilon": 1.0}, {"name": "fgm"}],
                           model={"name": "lstm"},
                           train={"epochs": 2, "optimizer": "sgd", "learning_rate": 0.5})
    one_device = tmp_path / "one.yaml"
    one_device.write_text(yaml.safe_dump(cfg))
    config = tmp_path / "mw.yaml"
    config.write_text(yaml.safe_dump({**cfg, "distribute": {"strategy": "multi_worker"}}))
    run_dir = tmp_path / "run"
    procs = start_workers(tmp_path, config, run_dir)
    try:
        # meanwhile, the same run on one device, in this process
        import train
        from trainer import checkpointing

        monkeypatch.setattr(checkpointing.TrainingCheckpoints, "on_train_end", lambda self, logs=None: np.savez(
            tmp_path / "weights-one.npz", *[v.numpy() for v in self.model.trainable_variables]))
        assert train.main(["--config", str(one_device), "--run-dir", str(tmp_path / "one")]) == 0
    finally:
        outputs = finish(procs)
    for p, out in zip(procs, outputs):
        assert p.returncode == 0, out[-3000:]
    assert "distribute: multi_worker, 2 replicas" in outputs[0]
    one, a, b = (np.load(tmp_path / f"weights-{i}.npz") for i in ("one", 0, 1))
    assert len(a.files) == len(b.files) == len(one.files) > 0
    for key in a.files:
        np.testing.assert_array_equal(a[key], b[key])
        np.testing.assert_allclose(a[key], one[key], atol=1e-5, err_msg=key)
    # The chief (worker 0) wrote the run; the other worker's files went to a temporary directory, now gone.
    assert (run_dir / "metrics.json").exists() and (run_dir / "checkpoints" / "best").is_dir()
    assert json.load(open(run_dir / "metrics.json"))["epochs_run"] == 2


@pytest.mark.slow  # two worker processes that each start TensorFlow
def test_each_worker_streams_its_own_files_of_the_unlabeled_corpus(tmp_path):
    """VAT with an unlabeled corpus of two files on disk: worker i reads file i only (its log says so), each
    takes its share of every unlabeled batch, and the two stay in step (identical weights at the end)."""
    files = {"train": write_tsv(tmp_path / "train.tsv", make_texts(40, seed=1)),
             "dev": write_tsv(tmp_path / "dev.tsv", make_texts(12, seed=2)),
             "test": write_tsv(tmp_path / "test.tsv", make_texts(12, seed=3))}
    for i in range(2):
        (tmp_path / f"u{i}.txt").write_text("".join(text + "\n" for text, _ in make_texts(30, seed=10 + i)))
    cfg = tiny_config_dict({**files, "unlabeled": [str(tmp_path / "u0.txt"), str(tmp_path / "u1.txt")],
                            "unlabeled_batch_size": 6}, "vat", distribute={"strategy": "multi_worker"})
    config = tmp_path / "mw.yaml"
    config.write_text(yaml.safe_dump(cfg))
    procs = start_workers(tmp_path, config, tmp_path / "run")
    outputs = finish(procs)
    for index, (p, out) in enumerate(zip(procs, outputs)):
        assert p.returncode == 0, out[-3000:]
        assert f"data.unlabeled: worker {index} of 2 reads 1 file(s) streamed from disk (u{index}.txt)" in out
    a, b = (np.load(tmp_path / f"weights-{i}.npz") for i in range(2))
    for key in a.files:
        np.testing.assert_array_equal(a[key], b[key])
    assert json.load(open(tmp_path / "run" / "metrics.json"))["epochs_run"] == 1


@pytest.mark.slow  # two worker processes that each start TensorFlow
def test_two_workers_pretrain_a_language_model_each_on_its_share_of_the_corpus(tmp_path):
    """task: lm under multi_worker on one corpus file with a held-out slice: each worker keeps every other
    training text (its log says so), the two stay in step, and the chief writes the run with its perplexity."""
    (tmp_path / "corpus.txt").write_text("".join(text + "\n" for text, _ in make_texts(120, seed=4)))
    cfg = {"task": "lm",
           "data": {"unlabeled": str(tmp_path / "corpus.txt"), "tokenizer": "word", "max_length": 12, "batch_size": 8},
           "model": {"name": "bilstm", "embedding_dim": 8, "hidden_size": 8, "dropout": 0.0},
           "lm": {"softmax_samples": 16, "heldout_texts": 16},
           "train": {"epochs": 2, "steps_per_epoch": 3},
           "distribute": {"strategy": "multi_worker"}}
    config = tmp_path / "lm.yaml"
    config.write_text(yaml.safe_dump(cfg))
    procs = start_workers(tmp_path, config, tmp_path / "run")
    outputs = finish(procs)
    for p, out in zip(procs, outputs):
        assert p.returncode == 0, out[-3000:]
        assert "every worker reads all of them and keeps 1 text in 2" in out
    a, b = (np.load(tmp_path / f"weights-{i}.npz") for i in range(2))
    assert len(a.files) > 0
    for key in a.files:
        np.testing.assert_array_equal(a[key], b[key])
    metrics = json.load(open(tmp_path / "run" / "metrics.json"))
    assert metrics["epochs_run"] == 2 and metrics["heldout"]["perplexity"] > 1
