"""A language-model run (task: lm): an LSTM language model (model/lstm_lm.py) trained on data.unlabeled, to start
classifiers from (model.init_from). It is a run like a classifier's: a run directory with config.yaml and
vocab.tsv, TensorBoard (loss, held-out perplexity, tokens per second), atomic checkpoints, --resume exact
(the corpus stream and the sampled classes follow the step), one line for a user's mistake, metrics.json last.

A fixed random sample of lm.heldout_texts of the corpus's texts (drawn with data.seed) is held out: the perplexity
on it (exact softmax) picks the best epoch, whose weights are checkpoints/best.
"""
from __future__ import annotations

import csv
import hashlib
import logging
import os

import numpy as np
import tensorflow as tf
import tf_keras

from core.errors import UserError
from core.loader import save_config
from core.schema import Config
from dataset.corpus import Corpus
from dataset.lm_chunks import check_chunks, count_chunks, heldout_stream, token_chunks
from dataset.tokenizer import Vocabulary
from model.lstm_lm import LSTMLanguageModel
from trainer.distribute import per_worker
from trainer.families import family, text_tokenizer
from trainer.init_from import read_language_model
from trainer.lm_trainer import LanguageModelTrainer, TokensPerSecond, add_cross_entropies, perplexities_of
from trainer.optimizers import make_optimizer
from trainer.story import Task, mixed_precision

log = logging.getLogger(__name__)

MONITOR = "val_perplexity"


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


class LanguageModelTask(Task):
    """A language model (task: lm) on data.unlabeled. A resume reads its own vocabulary instead of counting the
    corpus again; the corpus is counted (and a corpus with nothing to train on or to evaluate is one line)
    before the run directory exists. Under multi_worker each worker reads its own share of the corpus."""

    monitor, mode = MONITOR, "min"

    def prepare(self, resuming: str | None) -> None:
        cfg, d = self.cfg, self.cfg.data
        self.corpus, self.vocab, self.heldout = prepare_language_model(
            cfg, os.path.join(resuming, "vocab.tsv") if resuming else None)
        self.chunks = token_chunks(family(cfg.model.name).text_encoder(cfg, self.vocab), d.max_length)
        n_chunks = count_chunks(self.corpus, self.chunks, self.heldout,
                                limit=None if cfg.train.steps_per_epoch is None else 1)
        check_chunks(cfg, n_chunks, count_chunks(self.corpus, self.chunks, ~self.heldout, limit=1))
        self.steps_per_epoch = cfg.train.steps_per_epoch or max(1, n_chunks // d.batch_size)
        self.fingerprint = corpus_fingerprint(self.corpus)
        self.vocab_digest = self.vocab.digest()

    def write_run_files(self, run_dir: str) -> None:
        save_config(self.cfg, os.path.join(run_dir, "config.yaml"))
        self.vocab.save(os.path.join(run_dir, "vocab.tsv"))

    def build(self):
        return build_language_model(self.cfg, self.vocab, self.cfg.train.epochs * self.steps_per_epoch)

    def streams(self, strategy, start_step: int):
        cfg, d = self.cfg, self.cfg.data

        def worker_stream(shard):
            train = self.corpus.stream(d.batch_size, cfg.train.seed, d.shuffle_buffer, start_step,
                                       exclude=self.heldout, items=self.chunks, shard=shard)
            if shard is not None and shard.replicas > 1:
                train = train.flat_map(shard.local().pieces)
            return train.prefetch(tf.data.AUTOTUNE)

        return per_worker(strategy, worker_stream), heldout_stream(cfg, self.corpus, self.heldout, self.chunks)

    def best_weights(self, model):
        return model.network

    def callbacks(self, model) -> list:
        return [TokensPerSecond()]

    def finish(self, model: LanguageModelTrainer, run_dir: str, metrics: dict) -> dict:
        """The best epoch's held-out perplexities (as its validation measured them: the best weights are that
        epoch's, so they are not evaluated again; evaluated on this process alone where history.csv lacks them)."""
        cfg = self.cfg
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
            for batch in heldout_stream(cfg, self.corpus, self.heldout, self.chunks):
                add_cross_entropies(model.network, batch, means)
            perplexities = {k: round(float(v), 3)
                            for k, v in perplexities_of({d: m.result() for d, m in means.items()}).items()}
        speeds = [float(h["tokens_per_second"]) for h in history if h.get("tokens_per_second")]
        metrics = {**metrics, "heldout": {"texts": cfg.lm.heldout_texts, **perplexities},
                   "tokens_per_second": round(float(np.mean(speeds)), 1) if speeds else None,
                   "parameters": int(sum(np.prod(v.shape) for v in model.network.trainable_variables))}
        print(f"best epoch {metrics['best_epoch']} by held-out perplexity; trained in {metrics['train_seconds']:.0f} "
              f"s; held-out perplexity {perplexities['perplexity']:.2f}")
        return metrics
