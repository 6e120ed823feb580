"""Language-model pretraining (task: lm) and classifiers started from it (model.init_from): the sampled and the
exact softmax against the formulas written out here, the backward direction's reversal, a run that resumes
exactly after SIGTERM, and the weights a classifier takes (and the mismatches it refuses)."""
import csv
import json
import math
import os
import shutil
import signal

import numpy as np
import pytest
import tensorflow as tf
import yaml
from conftest import make_texts, swap_two_tokens, write_tsv

import train
from core.loader import config_from_dict
from dataset.tokenizer import TextEncoder, TextTokenizer
from model.lstm_lm import draw_log_uniform, reverse_real_tokens, sampled_softmax_loss


def test_sampled_softmax_is_the_corrected_softmax_over_the_true_and_the_sampled_classes():
    rng = np.random.default_rng(0)
    V, H = 7, 3
    h, w, b = rng.normal(size=(2, H)), rng.normal(size=(V, H)), rng.normal(size=V)
    targets, sampled = np.array([4, 1]), np.array([1, 4, 6])
    got = sampled_softmax_loss(*(tf.constant(x, tf.float32) for x in (h, w, b)), tf.constant(targets, tf.int64),
                               tf.constant(sampled, tf.int64)).numpy()

    def log_q(c):  # expected count of class c (rank c - 1 of the V - 1 classes but padding) among 3 draws
        return math.log(3 * (math.log(c + 1) - math.log(c)) / math.log(V - 1 + 1))

    for n, y in enumerate(targets):
        true = h[n] @ w[y] + b[y] - log_q(y)
        others = [h[n] @ w[c] + b[c] - log_q(c) for c in sampled if c != y]  # an accidental hit is left out
        want = math.log(math.exp(true) + sum(math.exp(o) for o in others)) - true
        assert got[n] == pytest.approx(want, rel=1e-5)


def test_log_uniform_draws_are_stateless_never_padding_and_favour_frequent_ids():
    a = draw_log_uniform(1001, 20000, tf.constant([3, 5], tf.int64)).numpy()
    assert (a == draw_log_uniform(1001, 20000, tf.constant([3, 5], tf.int64)).numpy()).all()
    # never padding (0); out-of-vocabulary (1), a target, is drawn as a negative too
    assert a.min() == 1 and a.max() < 1001 and (a == 1).any()
    # over the K = 1000 classes, P(rank < k) = log(k + 1) / log(K + 1); rank = id - 1
    assert (a < 1 + 10).mean() == pytest.approx(math.log(11) / math.log(1001), abs=0.02)
    # every class a target can be is drawn: one never drawn has nothing to hold its logit down in training, and
    # takes all the mass under the exact softmax
    assert set(draw_log_uniform(7, 2000, tf.constant([1, 2], tf.int64)).numpy()) == {1, 2, 3, 4, 5, 6}


def test_the_backward_direction_reads_the_real_tokens_in_reverse():
    ids = tf.constant([[5, 6, 7, 0], [8, 9, 0, 0]])
    assert reverse_real_tokens(ids).numpy().tolist() == [[7, 6, 5, 0], [9, 8, 0, 0]]


@pytest.fixture(scope="module")
def lm_setup(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("lm")
    texts = [t for t, _ in make_texts(160, seed=4)]
    (tmp / "corpus.txt").write_text("\n".join(texts) + "\n")
    cfg = {"task": "lm",
           "data": {"unlabeled": str(tmp / "corpus.txt"), "tokenizer": "word", "max_length": 12, "batch_size": 8},
           "model": {"name": "bilstm", "embedding_dim": 8, "hidden_size": 8, "dropout": 0.2},
           "lm": {"softmax_samples": 16, "heldout_texts": 16},
           "train": {"epochs": 3, "steps_per_epoch": 4, "checkpoint_every": 3, "learning_rate": 0.01}}
    path = tmp / "lm.yaml"
    path.write_text(yaml.safe_dump(cfg))
    reference = tmp / "reference"
    assert train.main(["--config", str(path), "--run-dir", str(reference)]) == 0
    return tmp, path, reference


def _history(run_dir):
    with open(os.path.join(run_dir, "history.csv")) as f:
        return list(csv.DictReader(f))


def test_a_language_model_run_has_what_a_classifier_run_has(lm_setup):
    tmp, _, reference = lm_setup
    files = set(os.listdir(reference))
    assert {"config.yaml", "vocab.tsv", "metrics.json", "history.csv", "tensorboard", "checkpoints"} <= files
    metrics = json.load(open(reference / "metrics.json"))
    history = _history(reference)
    assert len(history) == 3 and all(float(h["tokens_per_second"]) > 0 for h in history)
    best = min(float(h["val_perplexity"]) for h in history)
    assert metrics["heldout"]["perplexity"] == pytest.approx(best, rel=1e-4)  # the best epoch, evaluated again
    assert {"forward_perplexity", "backward_perplexity"} <= set(metrics["heldout"])
    vocab_size = sum(1 for _ in open(reference / "vocab.tsv"))
    assert 1 < metrics["heldout"]["perplexity"] < 2 * vocab_size


def test_the_held_out_perplexity_is_the_exact_softmax_formula(lm_setup):
    from core.loader import load_config
    from model.lstm_lm import LSTMLanguageModel
    from trainer.init_from import read_language_model
    from trainer.lm_run import prepare_language_model

    _, _, reference = lm_setup
    cfg = load_config(str(reference / "config.yaml"))
    corpus, vocab, heldout = prepare_language_model(cfg)
    network = LSTMLanguageModel(cfg.model, len(vocab), counts=vocab.counts)
    network(network.example_inputs())
    read_language_model(network, str(reference))
    total, count = {}, {}
    encoder = TextEncoder(TextTokenizer("word"), vocab.tokens, 10_000)
    texts_in_order = list(corpus.lines().as_numpy_iterator())
    held = [t for t, out in zip(texts_in_order, heldout) if out]
    assert len(held) == cfg.lm.heldout_texts == heldout.sum()
    for texts in tf.data.Dataset.from_tensor_slices(held).batch(2):
        ids = encoder(texts)["token_ids"].numpy()
        # every text cut into chunks of max_length tokens, written out here
        chunks = [row[i:i + cfg.data.max_length] for row in ids for i in range(0, len(row), cfg.data.max_length)]
        chunks = [np.pad(c, (0, cfg.data.max_length - len(c))) for c in chunks if (c != 0).sum() >= 2]
        for d, (hidden, targets) in network(tf.constant(np.stack(chunks))).items():
            h, y = hidden.numpy(), targets.numpy()
            logits = h @ network.softmax_weights[d].numpy().T + network.softmax_biases[d].numpy()
            logp = logits - np.log(np.exp(logits - logits.max(-1, keepdims=True)).sum(-1, keepdims=True)) \
                - logits.max(-1, keepdims=True)
            real = y != 0
            total[d] = total.get(d, 0.0) - np.take_along_axis(logp, y[..., None], -1)[..., 0][real].sum()
            count[d] = count.get(d, 0) + real.sum()
    heldout = json.load(open(reference / "metrics.json"))["heldout"]
    for d in ("forward", "backward"):
        assert heldout[f"{d}_perplexity"] == pytest.approx(math.exp(total[d] / count[d]), rel=1e-3)


def sigterm_at(monkeypatch, step: int) -> None:
    """SIGTERM to this process after train step `step` (train.py's handler saves and stops)."""
    from trainer import checkpointing

    original = checkpointing.TrainingCheckpoints.on_train_batch_end

    def on_train_batch_end(self, batch, logs=None):
        if self.current_epoch * self.steps_per_epoch + batch + 1 == step:
            os.kill(os.getpid(), signal.SIGTERM)
        original(self, batch, logs)

    monkeypatch.setattr(checkpointing.TrainingCheckpoints, "on_train_batch_end", on_train_batch_end)


def test_a_language_model_stopped_by_sigterm_resumes_exactly(lm_setup, monkeypatch):
    tmp, path, reference = lm_setup
    sigterm_at(monkeypatch, 6)
    run_dir = tmp / "stopped"
    assert train.main(["--config", str(path), "--run-dir", str(run_dir)]) == 128 + signal.SIGTERM
    monkeypatch.undo()
    assert not (run_dir / "metrics.json").exists()
    assert train.main(["--resume", str(run_dir)]) == 0
    for row, want in zip(_history(run_dir), _history(reference)):
        for key in ("loss", "val_perplexity"):
            assert float(row[key]) == pytest.approx(float(want[key]), rel=1e-6), key
    assert json.load(open(run_dir / "metrics.json"))["heldout"] == json.load(open(reference / "metrics.json"))["heldout"]


def _classifier_config(tmp, lm_dir, **model):
    files = {"train": write_tsv(tmp / "train.tsv", make_texts(48, seed=1)),
             "dev": write_tsv(tmp / "dev.tsv", make_texts(12, seed=2))}
    return {"data": {**files, "split": [0.8, 0.2, 0.0], "tokenizer": "word", "max_length": 12, "batch_size": 8},
            "model": {"name": "bilstm", "embedding_dim": 8, "hidden_size": 8, "init_from": str(lm_dir), **model},
            "regularizer": {"name": "fgm"}, "train": {"epochs": 1},
            "eval": {"robustness_after_training": False, "text_attacks": []}}


def test_a_classifier_starts_from_the_language_models_vocabulary_embeddings_and_both_directions(lm_setup):
    from core.loader import load_config
    from model.lstm_lm import LSTMLanguageModel
    from trainer.init_from import read_language_model
    from trainer.run import build_model, prepare

    tmp, _, reference = lm_setup
    cfg = config_from_dict(_classifier_config(tmp, reference))
    prepared = prepare(cfg)
    model = build_model(cfg, prepared, 2)
    lm_cfg = load_config(str(reference / "config.yaml"))
    vocab_lines = [line.rstrip("\n").split("\t") for line in open(reference / "vocab.tsv", encoding="utf-8")]
    assert prepared.vocab.tokens == [t for t, _ in vocab_lines]
    assert prepared.vocab.counts == [int(c) for _, c in vocab_lines]  # the normalization's weights: the LM's
    network = LSTMLanguageModel(lm_cfg.model, len(prepared.vocab), counts=prepared.vocab.counts)
    network(network.example_inputs())
    read_language_model(network, str(reference))
    clf = model.classifier
    # the raw table is handed over at its own scale (not the normalized one, which would be normalized again and
    # leave a parameter of spread 1 that Adam hardly moves), and the lookup is the language model's
    assert clf.embedding.normalize and network.embedding.normalize
    np.testing.assert_array_equal(clf.embedding.table.numpy(), network.embedding.table.numpy())
    ids = tf.constant([[2, 3, 4, len(prepared.vocab) - 1]])
    np.testing.assert_allclose(clf.embedding(ids).numpy(), network.embedding(ids).numpy(), atol=1e-6)
    assert network.embedding.table.numpy()[2:].std() < 0.5  # a raw table: far from the spread 1 of a normalized one
    layer = clf.backbone.layers_[0]
    for mine, lm in ((layer.forward_layer, network.stacks["forward"][0]), (layer.backward_layer, network.stacks["backward"][0])):
        for a, b in zip(mine.weights, lm.weights):
            np.testing.assert_array_equal(a.numpy(), b.numpy())
    assert not np.array_equal(layer.forward_layer.weights[0].numpy(), layer.backward_layer.weights[0].numpy())


@pytest.mark.parametrize("change, message", [
    ({"hidden_size": 16}, "model.hidden_size is 16 here but 8 in the language model"),
    ({"normalize_embeddings": False}, "model.normalize_embeddings is False here but True in the language model"),
    ({"init_from": "nowhere"}, "not a run directory"),
    ({"vocab_file": "v.tsv"}, "does not combine with model.vocab_file (leave it out)"),
    ({"pretrained_embeddings": "v.txt"}, "does not combine with model.pretrained_embeddings (leave it out)"),
])
def test_a_mismatched_language_model_is_one_line(lm_setup, tmp_path, capsys, change, message):
    _, _, reference = lm_setup
    cfg = _classifier_config(tmp_path, reference, **change)
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(cfg))
    assert train.main(["--config", str(path), "--run-dir", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0] and not (tmp_path / "run").exists()  # before the data are read


def test_a_language_model_that_has_not_finished_is_one_line(lm_setup, tmp_path, capsys):
    _, _, reference = lm_setup
    unfinished = tmp_path / "unfinished"
    shutil.copytree(reference, unfinished, ignore=shutil.ignore_patterns("metrics.json"))
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(_classifier_config(tmp_path, unfinished)))
    assert train.main(["--config", str(path), "--run-dir", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert "has not finished (no metrics.json)" in err[-1] and not (tmp_path / "run").exists()


def test_an_epoch_is_one_pass_over_the_training_chunks(lm_setup):
    from core.loader import load_config
    from dataset.lm_chunks import count_chunks, token_chunks
    from trainer.families import family
    from trainer.lm_run import prepare_language_model

    _, _, reference = lm_setup
    cfg = load_config(str(reference / "config.yaml"))
    corpus, vocab, heldout = prepare_language_model(cfg)
    encoder = TextEncoder(TextTokenizer("word"), vocab.tokens, 10_000)
    texts = [t for t, out in zip(corpus.lines().as_numpy_iterator(), heldout) if not out]
    lengths = [int((encoder(tf.constant([t]))["token_ids"].numpy() != 0).sum()) for t in texts]
    L = cfg.data.max_length  # a text of n tokens: ceil(n / L) chunks, less a last one of a single token
    want = sum(-(-n // L) - (1 if n % L == 1 else 0) for n in lengths)
    chunks = token_chunks(family(cfg.model.name).text_encoder(cfg, vocab), L)
    assert count_chunks(corpus, chunks, heldout) == want


def test_a_classifier_from_a_language_model_follows_its_normalization_by_default(lm_setup, tmp_path):
    _, _, reference = lm_setup
    cfg = _classifier_config(tmp_path, reference)
    cfg["regularizer"] = {"name": "none"}  # alone, none would not normalize
    assert config_from_dict(cfg).model.normalize_embeddings is True
    cfg["model"].pop("init_from")
    assert config_from_dict(cfg).model.normalize_embeddings is False


def test_a_language_model_trains_in_bfloat16(lm_setup, tmp_path):
    """mixed_precision bfloat16: the embedding lookup (and its normalization) stays float32, the LSTMs compute in
    bfloat16, and a step gives a finite loss."""
    from core.loader import load_config
    from dataset.tokenizer import Vocabulary
    from trainer.lm_run import build_language_model

    _, _, reference = lm_setup
    cfg = load_config(str(reference / "config.yaml"))
    cfg.train.mixed_precision = "bfloat16"
    vocab = Vocabulary.load(str(reference / "vocab.tsv"))
    model = build_language_model(cfg, vocab, 10)
    assert model.network.stacks["forward"][0].compute_dtype == "bfloat16"
    assert model.network.embedding.compute_dtype == "float32"
    logs = model.train_step(tf.constant([[2, 3, 4, 5, 0], [6, 7, 8, 0, 0]], tf.int32))
    assert np.isfinite(float(logs["loss"]))


@pytest.mark.parametrize("empty", ["training", "held-out"])
def test_a_corpus_whose_training_or_held_out_texts_give_no_chunk_is_one_line(tmp_path, capsys, empty):
    """One-word texts give no chunk (nothing to predict): where they are all the training texts, training would
    wait for a batch forever; where they are all the held-out ones, the perplexity would be undefined."""
    from dataset.corpus import Corpus

    n, k = 60, 20
    (tmp_path / "probe.txt").write_text("".join(f"t{i}\n" for i in range(n)))
    held = Corpus.load(str(tmp_path / "probe.txt"), "text").heldout(k, seed=42)  # data.seed's default
    long_text = "a review of several words about a film"
    lines = [(f"word{i}" if (out == (empty == "held-out")) else f"{long_text} {i}") for i, out in enumerate(held)]
    (tmp_path / "corpus.txt").write_text("\n".join(lines) + "\n")
    cfg = {"task": "lm", "data": {"unlabeled": str(tmp_path / "corpus.txt"), "tokenizer": "word", "max_length": 12,
                                  "batch_size": 8},
           "model": {"name": "lstm", "embedding_dim": 8, "hidden_size": 8}, "lm": {"softmax_samples": 8, "heldout_texts": k}}
    (tmp_path / "lm.yaml").write_text(yaml.safe_dump(cfg))
    assert train.main(["--config", str(tmp_path / "lm.yaml"), "--run-dir", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"the {empty} texts give no chunk" in err[0] and not (tmp_path / "run").exists()


def test_a_bad_corpus_line_is_named_with_a_given_vocabulary_too(lm_setup, tmp_path, capsys):
    _, _, reference = lm_setup
    (tmp_path / "corpus.jsonl").write_text('{"text": "a good film"}\n{"text": "a bad one"}\nnot json\n')
    cfg = {"task": "lm", "data": {"unlabeled": str(tmp_path / "corpus.jsonl"), "tokenizer": "word", "max_length": 12},
           "model": {"name": "lstm", "embedding_dim": 8, "hidden_size": 8, "vocab_file": str(reference / "vocab.tsv")},
           "lm": {"softmax_samples": 8, "heldout_texts": 1}}
    (tmp_path / "lm.yaml").write_text(yaml.safe_dump(cfg))
    assert train.main(["--config", str(tmp_path / "lm.yaml"), "--run-dir", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "corpus.jsonl: line 3: not a JSON object" in err[0] and not (tmp_path / "run").exists()


@pytest.mark.parametrize("change", ["swapped", "truncated"])
def test_a_language_models_vocabulary_changed_after_training_is_refused(lm_setup, tmp_path, capsys, change):
    _, _, reference = lm_setup
    edited = tmp_path / "lm"
    shutil.copytree(reference, edited)
    if change == "swapped":
        swap_two_tokens(edited / "vocab.tsv")
    else:
        lines = (edited / "vocab.tsv").read_text(encoding="utf-8").splitlines(keepends=True)
        (edited / "vocab.tsv").write_text("".join(lines[:-3]), encoding="utf-8")
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(_classifier_config(tmp_path, edited)))
    assert train.main(["--config", str(path), "--run-dir", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "vocab.tsv: not the vocabulary the weights of" in err[0]  # no TensorFlow warnings
    assert not (tmp_path / "run").exists()


@pytest.mark.slow  # three tiny runs
def test_a_classifier_started_from_a_language_model_resumes_without_it(lm_setup, tmp_path, monkeypatch):
    """The resumed run takes its own vocab.tsv (its checkpoint holds the weights): the language model's run may be
    gone, and the run ends as the uninterrupted one."""
    _, _, reference = lm_setup
    lm = tmp_path / "lm"
    shutil.copytree(reference, lm)
    cfg = _classifier_config(tmp_path, lm)
    cfg["train"] = {"epochs": 2, "checkpoint_every": 2}
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(cfg))
    assert train.main(["--config", str(path), "--run-dir", str(tmp_path / "whole")]) == 0
    sigterm_at(monkeypatch, 3)
    stopped = tmp_path / "stopped"
    assert train.main(["--config", str(path), "--run-dir", str(stopped)]) == 128 + signal.SIGTERM
    monkeypatch.undo()
    shutil.rmtree(lm)
    assert train.main(["--resume", str(stopped)]) == 0
    got, want = (json.load(open(d / "metrics.json")) for d in (stopped, tmp_path / "whole"))
    assert got["dev"]["accuracy"] == want["dev"]["accuracy"] and got["dev"]["nll"] == pytest.approx(want["dev"]["nll"], abs=1e-6)
    for row, ref in zip(_history(stopped), _history(tmp_path / "whole")):
        assert float(row["loss"]) == pytest.approx(float(ref["loss"]), abs=1e-6)


def test_a_text_longer_than_any_cap_is_cut_into_chunks_whole(lm_setup):
    """A 250,007-token text (one line) gives every one of its tokens, in order, in chunks of max_length."""
    from dataset.lm_chunks import token_chunks

    n, L = 250_007, 100
    encoder = TextEncoder(TextTokenizer("word"), ["<pad>", "<unk>", "a", "b", "c"], max_length=12)
    words = np.array(["a", "b", "c"])[np.arange(n) % 3]
    texts = tf.data.Dataset.from_tensor_slices([" ".join(words), "b c", "a"])
    rows = np.stack(list(token_chunks(encoder, L)(texts).as_numpy_iterator()))
    assert rows.shape == (-(-n // L) + 1, L)  # the long text's chunks, then "b c"; "a" alone predicts nothing
    np.testing.assert_array_equal(rows[:-1].ravel()[:n], (np.arange(n) % 3) + 2)
    assert not rows[:-1].ravel()[n:].any() and rows[-1].tolist() == [3, 4] + [0] * (L - 2)


@pytest.mark.slow  # a second language-model run and its resume: about 30 s
def test_a_full_disk_in_the_middle_of_a_language_model_is_one_line_and_resumes_exactly(lm_setup, monkeypatch, capsys):
    """No space for the checkpoint of step 6 (checkpoint_every 3, 4 steps an epoch): one line naming what to
    continue from (the end of epoch 1, step 4); with space again, --resume ends as the run never stopped."""
    import tensorflow as tf

    tmp, path, reference = lm_setup
    run_dir = tmp / "full_disk"
    original = tf.train.CheckpointManager.save

    def save(self, checkpoint_number=None, **kwargs):
        if checkpoint_number == 6:
            raise tf.errors.ResourceExhaustedError(None, None, "No space left on device")
        return original(self, checkpoint_number=checkpoint_number, **kwargs)

    monkeypatch.setattr(tf.train.CheckpointManager, "save", save)
    assert train.main(["--config", str(path), "--run-dir", str(run_dir)]) == 2
    monkeypatch.undo()
    err = capsys.readouterr().err.strip().splitlines()
    assert "Traceback" not in "\n".join(err)
    assert err[-1].startswith(f"error: {run_dir / 'checkpoints' / 'train'}: cannot write a checkpoint (No space left "
                              f"on device); free disk space, then continue with: python train.py --resume {run_dir} "
                              f"(from {run_dir / 'checkpoints' / 'train' / 'ckpt-4'})"), err[-1]
    assert not (run_dir / "metrics.json").exists() and not (run_dir / ".lock").exists()
    assert train.main(["--resume", str(run_dir)]) == 0
    for row, want in zip(_history(run_dir), _history(reference), strict=True):
        for key in ("loss", "val_perplexity"):
            assert float(row[key]) == pytest.approx(float(want[key]), rel=1e-6), key
