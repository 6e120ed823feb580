"""Every shipped config trains one step (on a tiny model and data set) with finite losses."""
import glob
import os

import numpy as np
import pytest
import tensorflow as tf
from conftest import ROOT

from core.loader import load_config
from dataset.streams import training_stream
from trainer.run import build_model, prepare

ALL = sorted(glob.glob(os.path.join(ROOT, "configs", "*.yaml")))
LANGUAGE_MODELS = [p for p in ALL if load_config(p).task == "lm"]
CONFIGS = [p for p in ALL if p not in LANGUAGE_MODELS]
TINY = ["model.embedding_dim=8", "model.hidden_size=8", "data.batch_size=8", "data.dataset=null",
        "data.tokenizer=word", "data.unlabeled_batch_size=4", "data.unlabeled=null",  # no shared data needed
        "model.init_from=null"]  # a config that starts from a language model trains here from scratch


@pytest.mark.parametrize("path", CONFIGS, ids=[os.path.basename(p) for p in CONFIGS])
def test_config_trains_one_step(path, tiny_files, tiny_bert_dir):
    files = [f"data.{k}={v}" for k, v in tiny_files.items()]
    bert = ["model.pretrained=" + tiny_bert_dir] if os.path.basename(path).startswith("bert") else []
    cfg = load_config(path, TINY + files + bert)
    if cfg.data.num_labeled:
        cfg.data.num_labeled = 16
    prepared = prepare(cfg)
    train_ds = training_stream(cfg, prepared.data, prepared.text_encoder)
    model = build_model(cfg, prepared, len(prepared.data.label_names))
    model.compile(optimizer=model.optimizer, run_eagerly=True)
    batch = next(iter(train_ds))
    assert ("unlabeled" in batch[0]) == (cfg.reads_unlabeled and bool(cfg.data.num_labeled))
    before = [v.numpy().copy() for v in model.trainable_variables]
    logs = model.make_train_function()(iter(tf.data.Dataset.from_tensors(batch)))
    assert all(np.isfinite(float(v)) for v in logs.values()), logs
    for reg in cfg.active_regularizers:
        assert float(logs[f"{reg.name}_loss"]) >= 0.0
    changed = [not np.array_equal(b, v.numpy()) for b, v in zip(before, model.trainable_variables)]
    assert all(changed)


def test_pretrained_word_vectors_initialize_the_table_and_coverage_is_counted(tmp_path, tiny_files, caplog):
    vectors = tmp_path / "vec.txt"
    vectors.write_text("3 8\ngood " + " ".join(["0.5"] * 8) + "\nbad " + " ".join(["-0.25"] * 8)
                       + "\nunseenword " + " ".join(["9"] * 8) + "\n")
    cfg = load_config(os.path.join(ROOT, "configs", "bilstm_none.yaml"),
                      TINY + [f"data.{k}={v}" for k, v in tiny_files.items()]
                      + [f"model.pretrained_embeddings={vectors}"])
    with caplog.at_level("INFO"):
        prepared = prepare(cfg)
    assert "2 of" in caplog.text and "pretrained embeddings" in caplog.text
    model = build_model(cfg, prepared, 2)
    table = model.classifier.embedding.table.numpy()
    np.testing.assert_allclose(table[prepared.vocab.tokens.index("good")], [0.5] * 8)
    np.testing.assert_allclose(table[prepared.vocab.tokens.index("bad")], [-0.25] * 8)
    np.testing.assert_allclose(table[0], 0.0)


def test_pretrained_vectors_of_the_wrong_size_are_a_user_error(tmp_path, tiny_files):
    from core.errors import UserError

    vectors = tmp_path / "vec.txt"
    vectors.write_text("good 0.1 0.2 0.3\n")
    cfg = load_config(os.path.join(ROOT, "configs", "bilstm_none.yaml"),
                      TINY + [f"data.{k}={v}" for k, v in tiny_files.items()]
                      + [f"model.pretrained_embeddings={vectors}"])
    with pytest.raises(UserError, match=r"vec\.txt: line 1: 3 values, expected 8"):
        prepare(cfg)


@pytest.mark.parametrize("path", LANGUAGE_MODELS, ids=[os.path.basename(p) for p in LANGUAGE_MODELS])
def test_language_model_config_trains_one_step(path, tmp_path):
    from trainer.lm_run import build_language_model, prepare_language_model

    corpus = tmp_path / "corpus.txt"
    corpus.write_text("".join(f"text number {i} is a short one\n" for i in range(40)))
    cfg = load_config(path, ["model.embedding_dim=8", "model.hidden_size=8", "data.batch_size=4",
                             f"data.unlabeled={corpus}", "lm.heldout_texts=4", "lm.softmax_samples=8"])
    corpus_, vocab, heldout = prepare_language_model(cfg)
    assert len(heldout) == 40 and heldout.sum() == 4
    model = build_language_model(cfg, vocab, 10)
    before = [v.numpy().copy() for v in model.trainable_variables]
    logs = model.train_step(tf.constant([[2, 3, 4, 5, 0], [3, 2, 0, 0, 0]]))
    assert np.isfinite(float(logs["loss"]))
    changed = [not np.array_equal(b, v.numpy()) for b, v in zip(before, model.trainable_variables)]
    assert all(changed)
