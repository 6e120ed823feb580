"""Hugging Face encoders: loading, in-graph WordPiece parity, one train step with each regularizer."""
import copy
import os

import numpy as np
import pytest
import tensorflow as tf
import yaml
from conftest import BERT_VOCAB as VOCAB
from conftest import tiny_config_dict

from core.errors import UserError
from core.loader import load_config
from dataset.streams import training_stream
from dataset.wordpiece import WordPieceEncoder
from trainer.run import build_model, prepare


def test_wordpiece_encoder_matches_the_hugging_face_tokenizer(tiny_bert_dir):
    from transformers import BertTokenizerFast

    hf = BertTokenizerFast(os.path.join(tiny_bert_dir, "vocab.txt"), do_lower_case=True)
    texts = ["The movie was unbelievable!", "Café is GOOD,  no?", "好，不错。\u3000好", "tab\there\x00and\u200bzero",
             "x" * 30, "", "Ünbelievable's plots"]
    ours = WordPieceEncoder(VOCAB, lower_case=True, max_length=512)(tf.constant(texts))
    for i, text in enumerate(texts):
        want = hf(text)["input_ids"]
        mask = ours["attention_mask"].numpy()[i] == 1
        assert ours["input_ids"].numpy()[i][mask].tolist() == want, text


@pytest.mark.parametrize("max_length", [5, 6, 7, 9, 12, 40])
def test_pair_truncation_matches_the_hugging_face_tokenizer(tiny_bert_dir, max_length):
    from transformers import BertTokenizerFast

    hf = BertTokenizerFast(os.path.join(tiny_bert_dir, "vocab.txt"), do_lower_case=True)
    a = ["good", "the movie was bad", "a b c d e f g", "the plot", "nice nice nice nice nice", "a b c d e f",
         "a b c d e f g h i"]
    b = ["the plot was a very bad plot", "fine", "a b c d e f g", "love it", "bad", "a b c d e f g h i",
         "a b c d e f"]
    out = WordPieceEncoder(VOCAB, lower_case=True, max_length=max_length)(tf.constant(a), tf.constant(b))
    for i in range(len(a)):
        want = hf(a[i], b[i], truncation="longest_first", max_length=max_length)
        mask = out["attention_mask"].numpy()[i] == 1
        assert out["input_ids"].numpy()[i][mask].tolist() == want["input_ids"], (a[i], b[i])
        assert out["token_type_ids"].numpy()[i][mask].tolist() == want["token_type_ids"]


def test_wordpiece_pairs_truncation_and_batch_padding():
    enc = WordPieceEncoder(VOCAB, lower_case=True, max_length=8)
    out = enc(tf.constant(["good movie", "the plot was a very bad plot and"]),
              tf.constant(["bad", "fine fine fine"]))
    ids = VOCAB.index
    first = [ids("[CLS]"), ids("good"), ids("movie"), ids("[SEP]"), ids("bad"), ids("[SEP]"), 0, 0]
    assert out["input_ids"].numpy()[0].tolist() == first
    assert out["token_type_ids"].numpy()[0].tolist() == [0, 0, 0, 0, 1, 1, 0, 0]
    assert out["attention_mask"].numpy()[1].tolist() == [1] * 8  # longest-first trimming to max_length
    single = enc(tf.constant(["good", "bad"]))
    assert single["input_ids"].shape == (2, 3)  # padded to the batch's longest, not max_length


def tiny_bert_config(tmp_path, tiny_files, tiny_bert_dir, regularizer):
    cfg = tiny_config_dict(tiny_files, regularizer)
    cfg["model"] = {"name": "bert", "pretrained": tiny_bert_dir, "head_dropout": 0.0}
    cfg["train"].update({"optimizer": "adamw", "learning_rate": 1e-3, "lr_schedule": "linear",
                         "warmup_ratio": 0.1})
    path = tmp_path / "bert.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return load_config(str(path))


@pytest.mark.parametrize("regularizer", ["none", "random", "fgsm", "fgm", "pgd", "vat"])
def test_one_step_with_each_regularizer_changes_every_variable(tmp_path, tiny_files, tiny_bert_dir, regularizer):
    cfg = tiny_bert_config(tmp_path, tiny_files, tiny_bert_dir, regularizer)
    assert cfg.model.pooling == "cls" and cfg.model.normalize_embeddings is False
    assert regularizer == "none" or cfg.regularizer[0].epsilon == (0.01 if regularizer == "fgsm" else 1.0)
    prepared = prepare(cfg)
    train_ds = training_stream(cfg, prepared.data, prepared.text_encoder)
    model = build_model(cfg, prepared, 2)
    model.compile(optimizer=model.optimizer, run_eagerly=True)
    batch = next(iter(train_ds))
    inputs = dict(batch[0])
    assert set(inputs) == {"input_ids", "attention_mask", "token_type_ids"}
    clean_logits = model(inputs).numpy()
    if regularizer != "none":  # the perturbation reaches the encoder through inputs_embeds
        clf = model.classifier
        e = clf.embed(inputs)
        # Random, not constant: the embedding LayerNorm would erase a shift that is the same in every dim.
        noise = tf.random.stateless_normal(tf.shape(e), seed=[0, 1])
        shifted = clf.logits_from_embeddings(e + noise * tf.cast(clf.padding_mask(inputs), tf.float32)[:, :, None],
                                             inputs).numpy()
        assert np.abs(shifted - clean_logits).max() > 1e-4
    before = {v.name: v.numpy().copy() for v in model.trainable_variables}
    logs = model.make_train_function()(iter(tf.data.Dataset.from_tensors(batch)))
    assert all(np.isfinite(float(v)) for v in logs.values())
    unchanged = [v.name for v in model.trainable_variables if np.array_equal(before[v.name], v.numpy())]
    assert not unchanged
    if regularizer in ("fgm", "pgd", "vat", "random"):
        assert float(logs[f"{regularizer}_perturbation_l2"]) == pytest.approx(1.0, rel=1e-4)


def test_perturbing_padding_changes_nothing(tmp_path, tiny_files, tiny_bert_dir):
    cfg = tiny_bert_config(tmp_path, tiny_files, tiny_bert_dir, "none")
    loaded = copy.deepcopy(cfg)
    prepared = prepare(cfg)
    assert cfg == loaded and cfg.model.lower_case is True  # final once loaded: preparing changes nothing
    model = build_model(cfg, prepared, 2)
    inputs = prepared.text_encoder(tf.constant(["good", "the movie was very bad"]))
    clf = model.classifier
    e = clf.embed(inputs)
    real = tf.cast(clf.padding_mask(inputs), tf.float32)[:, :, None]
    noise = 3.0 * tf.random.stateless_normal(tf.shape(e), seed=[2, 3])
    clean = clf.logits_from_embeddings(e, inputs).numpy()
    np.testing.assert_allclose(clf.logits_from_embeddings(e + noise * (1.0 - real), inputs).numpy(), clean,
                               atol=1e-5)
    assert np.abs(clf.logits_from_embeddings(e + noise * real, inputs).numpy() - clean).max() > 1e-4


def test_random_encoder_from_config_overrides(tmp_path, tiny_files, tiny_bert_dir):
    cfg = tiny_config_dict(tiny_files, "fgm")
    cfg["model"] = {"name": "bert", "vocab_file": os.path.join(tiny_bert_dir, "vocab.txt"),
                    "config_overrides": {"model_type": "bert", "vocab_size": len(VOCAB), "hidden_size": 8,
                                         "num_hidden_layers": 1, "num_attention_heads": 2,
                                         "intermediate_size": 16}}
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(cfg))
    prepared = prepare(load_config(str(path)))
    assert prepared.hf_model.config.hidden_size == 8


def test_hub_name_offline_is_one_clear_error(tmp_path, tiny_files, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    cfg = tiny_config_dict(tiny_files, "fgm")
    cfg["model"] = {"name": "bert", "pretrained": "bert-base-chinese"}
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(cfg))
    with pytest.raises(UserError, match="not a local directory.*--local-dir DIR.*model.pretrained: DIR"):
        prepare(load_config(str(path)))


def test_vocabulary_that_does_not_match_the_checkpoint(tmp_path, tiny_files, tiny_bert_dir):
    short = tmp_path / "vocab.txt"
    short.write_text("\n".join(VOCAB[:-3]) + "\n")
    cfg = tiny_bert_config(tmp_path, tiny_files, tiny_bert_dir, "none")
    cfg.model.vocab_file = str(short)
    with pytest.raises(UserError, match="does not match the checkpoint"):
        prepare(cfg)


def test_sentence_pair_task_trains_one_step(tmp_path, tiny_bert_dir):
    import json

    rows = [{"premise": f"the movie was {w}", "hypothesis": "good" if i % 2 else "bad", "label": i % 2}
            for i, w in enumerate(["good", "bad"] * 12)]
    path = tmp_path / "pairs.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    cfg = tiny_config_dict({"train": str(path)}, "fgm", data={"text_column": "premise",
                                                               "text_b_column": "hypothesis"})
    cfg["model"] = {"name": "bert", "pretrained": tiny_bert_dir}
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(cfg))
    config = load_config(str(tmp_path / "c.yaml"))
    prepared = prepare(config)
    train_ds = training_stream(config, prepared.data, prepared.text_encoder)
    x, _ = next(iter(train_ds))
    assert x["token_type_ids"].numpy().max() == 1  # the second segment has token type 1
    model = build_model(config, prepared, 2)
    logs = model.make_train_function()(iter(train_ds.take(1)))
    assert np.isfinite(float(logs["fgm_loss"]))


@pytest.fixture(scope="module")
def tiny_roberta_dir(tmp_path_factory):
    """A random one-layer RoBERTa with a byte-level BPE tokenizer (no WordPiece vocab.txt)."""
    from conftest import make_texts
    from tokenizers import ByteLevelBPETokenizer
    from transformers import RobertaConfig, RobertaTokenizerFast, TFRobertaModel

    path = tmp_path_factory.mktemp("tiny_roberta")
    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator([t for t, _ in make_texts(200)], vocab_size=300,
                            special_tokens=["<s>", "<pad>", "</s>", "<unk>", "<mask>"])
    bpe.save_model(str(path))
    tokenizer = RobertaTokenizerFast(str(path / "vocab.json"), str(path / "merges.txt"))
    tokenizer.save_pretrained(str(path))
    model = TFRobertaModel(RobertaConfig(vocab_size=len(tokenizer), hidden_size=16, num_hidden_layers=1,
                                         num_attention_heads=2, intermediate_size=32, max_position_embeddings=70,
                                         type_vocab_size=1, pad_token_id=1))
    model.build_in_name_scope()
    model.save_pretrained(str(path))
    return str(path)


def test_checkpoint_without_wordpiece_falls_back_to_the_hf_tokenizer(tmp_path, tiny_files, tiny_roberta_dir):
    from transformers import AutoTokenizer

    from dataset.wordpiece import HFTokenizerEncoder
    from scripts import export, predict

    cfg = tiny_config_dict(tiny_files, "fgm")
    cfg["model"] = {"name": "bert", "pretrained": tiny_roberta_dir}
    cfg["eval"] = {"attacks": []}
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(cfg))
    config = load_config(str(tmp_path / "c.yaml"))
    prepared = prepare(config)
    assert isinstance(prepared.text_encoder, HFTokenizerEncoder)
    texts = prepared.data.train.texts[:4]
    x = prepared.text_encoder(tf.constant(texts))
    hf = AutoTokenizer.from_pretrained(tiny_roberta_dir)
    for i, text in enumerate(texts):
        assert x["input_ids"].numpy()[i][x["attention_mask"].numpy()[i] == 1].tolist() == hf(text)["input_ids"]

    import train
    run_dir = str(tmp_path / "run")
    assert train.main(["--config", str(tmp_path / "c.yaml"), "--run-dir", run_dir]) == 0
    texts = tmp_path / "in.txt"
    texts.write_text("good movie\nbad plot\n")
    assert predict.main(["--run-dir", run_dir, "--input", str(texts), "--output", str(tmp_path / "o.jsonl")]) == 0
    assert len((tmp_path / "o.jsonl").read_text().splitlines()) == 2
    assert export.main(["--run-dir", run_dir, "--out", str(tmp_path / "exported")]) == 2


@pytest.mark.parametrize("filtered", [True, False])
def test_transformers_tensorflow_deprecation_notice_stays_off_the_terminal(filtered):
    import subprocess
    import sys

    from conftest import ROOT

    code = ("import logging, core\n"
            + ("" if filtered else "logging.getLogger('transformers.modeling_tf_utils').filters.clear()\n")
            + "from transformers import BertConfig, TFBertModel\n"
              "TFBertModel(BertConfig(hidden_size=8, num_hidden_layers=1, num_attention_heads=1, "
              "intermediate_size=8, vocab_size=16))\n")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert ("TensorFlow and JAX classes are deprecated" in done.stderr) is not filtered
