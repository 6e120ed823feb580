"""tf.distribute on one machine: a MirroredStrategy step over two logical CPU devices updates the weights
exactly like one device, on a global batch that does not split evenly (7 texts: 4 and 3), with random noise
(random, vat), an unlabeled stream (vat) and sparse table gradients (no normalization).
(Several processes: tests/test_distribute_workers.py.)

It runs in a subprocess: logical devices must be set up before TensorFlow starts. Tolerance: 1e-5 on every
weight, with plain SGD (Adam's first step is sign(g) * lr, which turns float rounding of a near-zero
gradient into a full step).
"""
import json
import subprocess
import sys

import pytest
from conftest import ROOT, make_texts, tiny_config_dict, write_tiny_files

TWO_DEVICES = """
import json, sys
sys.path.insert(0, {root!r})
import trainer
import tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
import numpy as np

strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])  # one per process: collectives share keys


# One training step on `batch` of a model `build()` makes, on one device and under the strategy, from the same
# weights: how far the two ended apart, how far each variable moved, and both steps' logs.
def step_on_one_and_two_devices(build, batch):
    one = build()
    with strategy.scope():
        two = build()
    for a, b in zip(one.trainable_variables, two.trainable_variables):
        b.assign(a)
    before = [v.numpy() for v in one.trainable_variables]
    for model in (one, two):
        model.run_eagerly = True  # tracing a mirrored step costs ~50 s; the traced path: test_distribute_workers.py
        model.fit(tf.data.Dataset.from_tensors(batch), epochs=1, steps_per_epoch=1, verbose=0)
    after_one, after_two = ([v.numpy() for v in m.trainable_variables] for m in (one, two))
    return {{
        "replicas": strategy.num_replicas_in_sync,
        "max_diff": max(float(np.abs(a - b).max()) for a, b in zip(after_one, after_two)),
        "smallest_change": min(float(np.abs(a - b).max()) for a, b in zip(after_one, before)),
        "logs": [{{k: float(v[0]) for k, v in m.history.history.items()}} for m in (one, two)],
    }}
"""


def on_two_devices(script: str, payload) -> dict:
    """Runs TWO_DEVICES + `script` in a subprocess with `payload` (JSON) as its argument; returns what it printed
    after "RESULTS "."""
    done = subprocess.run([sys.executable, "-c", (TWO_DEVICES + script).format(root=ROOT), json.dumps(payload)],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULTS ")]
    assert done.returncode == 0 and lines, done.stderr[-3000:]
    return json.loads(lines[0][len("RESULTS "):])


MIRRORED = """
from core.loader import config_from_dict
from dataset.streams import training_stream
from trainer.run import build_model, prepare

results = {{}}
for name, raw in json.loads(sys.argv[1]).items():
    cfg = config_from_dict(raw)
    prepared = prepare(cfg)
    batch = next(iter(training_stream(cfg, prepared.data, prepared.text_encoder)))
    results[name] = {{"rows": int(batch[1].shape[0]),
                     **step_on_one_and_two_devices(lambda: build_model(cfg, prepared, 2), batch)}}
print("RESULTS " + json.dumps(results))
"""


def test_mirrored_step_on_two_devices_equals_one_device_on_an_uneven_batch(tmp_path):
    files = write_tiny_files(tmp_path)
    # random and vat draw noise (the uneven split's defect); fgm's deterministic path runs across processes
    # in test_distribute_workers.py
    regs = [{"name": "random", "epsilon": 1.0, "weight": 0.5}, {"name": "vat", "epsilon": 2.0, "weight": 0.6}]
    # a one-directional LSTM: half the layers to trace in a step of two regularizers, on three devices;
    # without normalization the table's gradients are sparse (IndexedSlices), scaled per replica
    configs = {"random+vat": tiny_config_dict(files, regs, data={"num_labeled": 32, "batch_size": 7},
                                                  model={"name": "lstm", "normalize_embeddings": False},
                                                  train={"optimizer": "sgd", "learning_rate": 0.5})}
    results = on_two_devices(MIRRORED, configs)
    for name, r in results.items():
        assert r["replicas"] == 2 and r["rows"] == 7
        assert r["smallest_change"] > 1e-4, (name, r)  # every variable moved ...
        assert r["max_diff"] < 1e-5, (name, r)  # ... and the same way on one device and on two
        one, two = r["logs"]
        assert one.keys() == two.keys() and {"loss", "random_loss", "vat_loss"} <= one.keys()
        for key in one:  # the metrics are aggregated across replicas: the same numbers
            # float rounding differs with the split (each replica averages its own rows): 1e-4 relative, 1e-5
            # absolute (the small VAT loss); unweighted replica means would differ by about 1e-3
            # VAT's L-inf is a max over coordinates of a direction found from a finite-difference gradient
            # (xi 0.1) in float32: its fourth digit follows the reduction order (seen: 1.0e-4 relative)
            rel = 1e-3 if key == "vat_perturbation_linf" else 1e-4
            assert one[key] == pytest.approx(two[key], rel=rel, abs=1e-5), (name, key, r)


LM_MIRRORED = """
from core.loader import config_from_dict
from trainer.families import family
from dataset.lm_chunks import token_chunks
from trainer.lm_run import build_language_model, prepare_language_model

cfg = config_from_dict(json.loads(sys.argv[1]))
corpus, vocab, _ = prepare_language_model(cfg)
chunks = token_chunks(family(cfg.model.name).text_encoder(cfg, vocab), cfg.data.max_length)
batch = next(iter(chunks(corpus.lines()).batch(7)))
print("RESULTS " + json.dumps({{
    "tokens": [int(np.count_nonzero(batch.numpy()[:4])), int(np.count_nonzero(batch.numpy()[4:]))],
    **step_on_one_and_two_devices(lambda: build_language_model(cfg, vocab, 10), batch),
}}))
"""


def test_a_language_model_step_on_two_devices_equals_one_device(tmp_path):
    """7 chunks with different numbers of real tokens split 4 and 3: each replica's loss is its share of the mean
    over the global batch's tokens, so the summed gradients are one device's; the logged loss and token count
    are the global ones."""
    texts = [" ".join(t.split()[:2 + i % 6]) for i, (t, _) in enumerate(make_texts(40, seed=5))]
    (tmp_path / "corpus.txt").write_text("\n".join(texts) + "\n")
    cfg = {"task": "lm",
           "data": {"unlabeled": str(tmp_path / "corpus.txt"), "tokenizer": "word", "max_length": 6, "batch_size": 7},
           "model": {"name": "bilstm", "embedding_dim": 8, "hidden_size": 8, "dropout": 0.0},
           "lm": {"softmax_samples": 8, "heldout_texts": 4},
           "train": {"optimizer": "sgd", "learning_rate": 0.5}}
    r = on_two_devices(LM_MIRRORED, cfg)
    # the replicas' shares of the tokens (4 rows, 3 rows) are not their shares of the rows; clipping (train.clip_norm
    # 1) is active on the sparse table gradient, whose slices come from both replicas
    assert r["replicas"] == 2 and r["tokens"][0] * 3 != r["tokens"][1] * 4
    assert r["smallest_change"] > 1e-4, r
    assert r["max_diff"] < 1e-5, r
    one, two = r["logs"]
    assert one.keys() == two.keys() and {"loss", "tokens"} <= one.keys()
    for key in one:
        assert one[key] == pytest.approx(two[key], rel=1e-4, abs=1e-6), (key, r)
