"""A language-model run (task: lm): an LSTM language model (model/lstm_lm.py) trained on data.unlabeled, to start
classifiers from (model.init_from). It is a run like a classifier's: a run directory with config.yaml and
vocab.tsv, TensorBoard (loss, held-out perplexity, tokens per second), atomic checkpoints, --resume exact
(the corpus stream and the sampled classes follow the step), one line for a user's mistake, metrics.json last.

A fixed random sample of lm.heldout_texts of the corpus's texts (drawn with data.seed) is held out: the perplexity
on it (exact softmax) picks the best epoch, whose weights are checkpoints/best.
"""
from __future__ import annotations

import contextlib
import csv
import hashlib
import json
import logging
import os
import time

import numpy as np
import tensorflow as tf
import tf_keras

from core.errors import UserError
from core.loader import save_config
from core.schema import Config
from dataset.corpus import Corpus, where
from dataset.tokenizer import Vocabulary
from model.lstm_lm import LSTMLanguageModel, draw_log_uniform
from trainer.checkpointing import ResumesMidEpoch, finishing_on_signals, remove_unfinished_writes, run_dir_lock
from trainer.distribute import is_chief, make_strategy, output_dir, per_worker
from trainer.families import family, text_tokenizer
from trainer.init_from import read_language_model
from trainer.optimizers import make_optimizer
from trainer.run import fit, mixed_precision
from trainer.run_dir import check_resumable, make_run_dir, starting_run_dir

log = logging.getLogger(__name__)

MONITOR = "val_perplexity"


def token_chunks(encoder, length: int):
    """texts -> every text's tokens, however many, cut into consecutive chunks of `length` (the last one padded
    with 0), the chunks with fewer than two tokens (nothing to predict) left out: a dataset of (length,) id rows.
    The texts stay ragged until cut: memory follows the tokens, not the longest text times the batch."""
    def cut(texts):
        ids = encoder.ragged_ids(texts)
        lengths = ids.row_lengths()
        per_text = (lengths + length - 1) // length
        position = tf.range(tf.size(ids.flat_values, out_type=tf.int64)) - tf.repeat(ids.row_starts(), lengths)
        chunk = tf.repeat(tf.cumsum(per_text, exclusive=True), lengths) + position // length
        rows = tf.RaggedTensor.from_value_rowids(ids.flat_values, chunk, nrows=tf.reduce_sum(per_text))
        rows = rows.to_tensor(default_value=0, shape=[None, length])
        return tf.boolean_mask(rows, tf.reduce_sum(tf.cast(rows != 0, tf.int32), axis=1) >= 2)

    return lambda texts: texts.batch(64).map(cut, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True).unbatch()


def replica_sum(value):
    """`value` summed over the replicas (itself on one device)."""
    ctx = tf.distribute.get_replica_context()
    if ctx is None or ctx.num_replicas_in_sync == 1:
        return value
    return ctx.all_reduce(tf.distribute.ReduceOp.SUM, value)


def global_mean(per_token):
    """This replica's part of the mean over the global batch's tokens: its sum over the global count, so that the
    replicas' gradients, summed, are the one-device gradient of the mean (replicas hold different token counts)."""
    count = replica_sum(tf.cast(tf.size(per_token), tf.float32))
    return tf.reduce_sum(per_token) / tf.maximum(count, 1.0)


class LanguageModelTrainer(ResumesMidEpoch, tf_keras.Model):
    """Trains an LSTMLanguageModel with the sampled softmax (`samples` classes a step, drawn from (seed, step));
    evaluates it with the exact softmax: `perplexity` = exp(mean cross-entropy per real token), over every
    direction's tokens, and each direction's own."""

    def __init__(self, network: LSTMLanguageModel, samples: int, seed: int, **kwargs):
        super().__init__(**kwargs)
        self.network, self.seed = network, seed
        self.samples = samples  # drawn with replacement: any number, as config.yaml says
        self.loss_tracker = tf_keras.metrics.Mean("loss")
        self.tokens = tf_keras.metrics.Sum("tokens")
        self.cross_entropy = {d: tf_keras.metrics.Mean(f"{d}_cross_entropy") for d in network.directions}

    @property
    def metrics(self):
        return [self.loss_tracker, self.tokens, *self.cross_entropy.values()]

    def call(self, ids, training=False):
        return self.network(ids, training=training)

    def train_step(self, ids):
        step = tf.cast(self.optimizer.iterations, tf.int64)
        with tf.GradientTape() as tape:
            sampled = {d: draw_log_uniform(self.network.vocab_size, self.samples,
                                           tf.stack([tf.constant(self.seed, tf.int64) * 2 + k, step]))
                       for k, d in enumerate(self.network.directions)}
            losses = self.network.losses_per_token(ids, training=True, sampled=sampled)
            loss = tf.add_n([global_mean(per_token) for per_token in losses.values()])
        variables = self.trainable_variables
        self.optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables))  # summed over replicas
        self.loss_tracker.update_state(replica_sum(loss))
        self.tokens.update_state(tf.cast(tf.add_n([tf.size(v) for v in losses.values()]), tf.float32))
        return {"loss": self.loss_tracker.result(), "tokens": self.tokens.result()}

    def test_step(self, ids):
        add_cross_entropies(self.network, ids, self.cross_entropy)
        return self.perplexities()

    def perplexities(self) -> dict:
        return perplexities_of({d: m.result() for d, m in self.cross_entropy.items()})


def add_cross_entropies(network: LSTMLanguageModel, ids, means: dict) -> None:
    """Adds a batch's exact per-token cross-entropies to each direction's Mean in `means`."""
    for d, per_token in network.losses_per_token(ids, training=False).items():
        means[d].update_state(per_token)


def perplexities_of(means: dict) -> dict:
    """{direction: mean cross-entropy} -> perplexity over every direction (the mean of their mean cross-entropies,
    exponentiated) and each direction's."""
    out = {"perplexity": tf.exp(tf.add_n(list(means.values())) / len(means))}
    if len(means) > 1:
        out.update({f"{d}_perplexity": tf.exp(v) for d, v in means.items()})
    return out


class TokensPerSecond(tf_keras.callbacks.Callback):
    """Adds tokens_per_second (real target tokens trained on per second of the epoch) to the epoch's logs."""

    def on_epoch_begin(self, epoch, logs=None):
        self.start = time.time()

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None and "tokens" in logs:
            logs["tokens_per_second"] = float(logs["tokens"]) / max(1e-9, time.time() - self.start)


def count_chunks(corpus: Corpus, chunks, exclude: np.ndarray, limit: int | None = None) -> int:
    """The number of chunks of the corpus's texts less those where `exclude` is true (the held-out ones: the
    training chunks, an epoch; ~heldout: the held-out chunks), in one pass in the graph, or up to `limit`."""
    items = chunks(corpus.shard_lines(None, exclude))
    if limit is not None:
        return int(items.take(limit).reduce(np.int64(0), lambda total, _: total + 1))
    n = int(items.reduce(np.int64(0), lambda total, _: total + 1))
    log.info("language model: %d chunks to train on (an epoch)", n)
    return n


def check_chunks(cfg: Config, train: int, heldout: int) -> None:
    """A language model needs a chunk of at least two tokens (something to predict) to train on and one to
    evaluate: else training would wait for a batch forever, or the held-out perplexity would be undefined."""
    source = f"data.unlabeled ({cfg.lm.heldout_texts} texts held out, lm.heldout_texts)"
    if not train:
        raise UserError(f"{source}: the training texts give no chunk of two tokens or more to predict from; give "
                        "more text, or hold out fewer texts")
    if not heldout:
        raise UserError(f"{source}: the held-out texts give no chunk of two tokens or more to evaluate on; hold "
                        "out more texts (lm.heldout_texts)")


def prepare_language_model(cfg: Config, vocab_file: str | None = None):
    """The corpus, its vocabulary (counted in one streaming pass, or read from `vocab_file` or model.vocab_file)
    and its held-out texts (a mask over them, Corpus.heldout); user mistakes are one line, before the run
    directory exists."""
    d = cfg.data
    corpus = Corpus.load(d.unlabeled, d.text_column)
    if not vocab_file:  # a resume reads the corpus its start checked
        corpus.check()  # with model.vocab_file too: a bad line is named now, not in the middle of training
    vocab_file = vocab_file or cfg.model.vocab_file
    if vocab_file:
        vocab = Vocabulary.load(vocab_file)
    else:
        vocab = Vocabulary.build(corpus.lines(), text_tokenizer(d), min_freq=d.min_freq, max_size=d.max_vocab_size)
    n = corpus.count()
    if n <= cfg.lm.heldout_texts:
        raise UserError(f"data.unlabeled: {n} texts, but lm.heldout_texts holds out {cfg.lm.heldout_texts}; "
                        "give more text or hold out fewer")
    log.info("language model: %d texts (%s), %d held out; vocabulary %d tokens", n, corpus.describe(),
             cfg.lm.heldout_texts, len(vocab))
    return corpus, vocab, corpus.heldout(cfg.lm.heldout_texts, cfg.data.seed, total=n)


def corpus_fingerprint(corpus: Corpus) -> str:
    digest = hashlib.sha256()
    corpus.fingerprint(digest)
    return digest.hexdigest()


def build_language_model(cfg: Config, vocab: Vocabulary, total_steps: int) -> LanguageModelTrainer:
    with mixed_precision(cfg.train.mixed_precision):
        network = LSTMLanguageModel(cfg.model, len(vocab), counts=vocab.counts, name="language_model")
        model = LanguageModelTrainer(network, cfg.lm.softmax_samples, cfg.train.seed)
    model(network.example_inputs())
    model.compile(optimizer=make_optimizer(cfg.train, total_steps), steps_per_execution=cfg.train.steps_per_execution)
    model.optimizer.build(model.trainable_variables)  # slots exist before a checkpoint is restored
    return model


def train_language_model(cfg: Config, run_dir: str, resume: bool = False) -> dict:
    """Trains the language model end to end (or continues it, with `resume`); returns the final metrics, also
    written to metrics.json. Under a distribution strategy as a classifier run does (trainer/run.py): the chief
    writes the run directory; under multi_worker each worker reads its own share of the corpus."""
    strategy = make_strategy(cfg.distribute)  # before any other TensorFlow work
    chief = is_chief(strategy)
    tf_keras.backend.experimental.enable_tf_random_generator()
    tf_keras.utils.set_random_seed(cfg.train.seed)
    with contextlib.ExitStack() as held:
        if resume and chief:
            held.enter_context(run_dir_lock(run_dir))
        if resume:
            check_resumable(run_dir)
            remove_unfinished_writes(os.path.join(run_dir, "checkpoints"))
        # a resumed run reads its own vocabulary instead of counting the corpus again
        corpus, vocab, heldout = prepare_language_model(cfg, os.path.join(run_dir, "vocab.tsv") if resume else None)
        d = cfg.data
        chunks = token_chunks(family(cfg.model.name).text_encoder(cfg, vocab), d.max_length)
        # counted before the run directory exists: a corpus with nothing to train on or to evaluate is one line
        n_chunks = count_chunks(corpus, chunks, heldout, limit=None if cfg.train.steps_per_epoch is None else 1)
        check_chunks(cfg, n_chunks, count_chunks(corpus, chunks, ~heldout, limit=1))
        spe = cfg.train.steps_per_epoch or max(1, n_chunks // d.batch_size)
        if chief and not resume:
            with starting_run_dir(run_dir):
                make_run_dir(run_dir)
                held.enter_context(run_dir_lock(run_dir))
                save_config(cfg, os.path.join(run_dir, "config.yaml"))
                vocab.save(os.path.join(run_dir, "vocab.tsv"))
        if chief:
            log.info("run directory: %s", os.path.abspath(run_dir))
        with strategy.scope():
            model = build_language_model(cfg, vocab, cfg.train.epochs * spe)

        def worker_stream(start_step, shard):
            train = corpus.stream(d.batch_size, cfg.train.seed, d.shuffle_buffer, start_step, exclude=heldout, items=chunks,
                                  shard=shard)
            if shard is not None and shard.replicas > 1:
                train = train.flat_map(shard.local().pieces)
            return train.prefetch(tf.data.AUTOTUNE)

        def streams(start_step):
            return per_worker(strategy, lambda shard: worker_stream(start_step, shard)), heldout_stream(cfg, corpus, heldout,
                                                                                                        chunks)

        with output_dir(run_dir, chief) as out_dir:
            metrics = fit(cfg, model, streams, spe, run_dir, out_dir, resume, MONITOR, "min",
                          corpus_fingerprint(corpus), best=model.network, callbacks_first=[TokensPerSecond()],
                          vocab_digest=vocab.digest())
        if not chief:
            return {}
        with finishing_on_signals(run_dir):
            return _finish(cfg, model, heldout_stream(cfg, corpus, heldout, chunks), run_dir, metrics)


def heldout_stream(cfg: Config, corpus: Corpus, heldout: np.ndarray, chunks) -> tf.data.Dataset:
    """The held-out texts' chunks (where the mask `heldout` is true), in batches of a quarter of the training
    batch; under multi_worker the workers split each batch (never the files: the texts are a sample of the
    whole corpus)."""
    heldout = chunks(where(corpus.lines(), heldout, True)).batch(max(1, cfg.data.batch_size // 4))
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return heldout.with_options(options)


def _finish(cfg: Config, model: LanguageModelTrainer, heldout, run_dir: str, metrics: dict) -> dict:
    """The best epoch's held-out perplexities (as its validation measured them: the best weights are that epoch's,
    so they are not evaluated again; evaluated on this process alone where history.csv lacks them); metrics.json,
    written last."""
    history = []
    history_csv = os.path.join(run_dir, "history.csv")
    if os.path.exists(history_csv):
        with open(history_csv, encoding="utf-8", newline="") as f:
            history = list(csv.DictReader(f))
    keys = ["perplexity"] + ([f"{d}_perplexity" for d in model.network.directions]
                             if len(model.network.directions) > 1 else [])
    best = history[metrics["best_epoch"] - 1] if len(history) >= metrics["best_epoch"] else {}
    if all(best.get(f"val_{k}") for k in keys):
        perplexities = {k: round(float(best[f"val_{k}"]), 3) for k in keys}
    else:
        read_language_model(model.network, run_dir)
        means = {d: tf_keras.metrics.Mean() for d in model.network.directions}
        for batch in heldout:
            add_cross_entropies(model.network, batch, means)
        perplexities = {k: round(float(v), 3)
                        for k, v in perplexities_of({d: m.result() for d, m in means.items()}).items()}
    speeds = [float(h["tokens_per_second"]) for h in history if h.get("tokens_per_second")]
    metrics = {**metrics, "heldout": {"texts": cfg.lm.heldout_texts, **perplexities},
               "tokens_per_second": round(float(np.mean(speeds)), 1) if speeds else None,
               "parameters": int(sum(np.prod(v.shape) for v in model.network.trainable_variables))}
    print(f"best epoch {metrics['best_epoch']} by held-out perplexity; trained in {metrics['train_seconds']:.0f} s; "
          f"held-out perplexity {perplexities['perplexity']:.2f}")
    path = os.path.join(run_dir, "metrics.json")
    with open(path + ".tmp", "w", encoding="utf-8") as f:
        json.dump(metrics, f, indent=2)
    os.replace(path + ".tmp", path)
    print(f"run finished: {os.path.abspath(run_dir)}")
    return metrics
