"""The data streams of a run, chosen from its config: the training stream (bucketed by length or not, with the
unlabeled texts for the methods that learn from them, every batch padded as data.padding says) and one ordered
pass over dev and over test. The pipelines themselves are in dataset/pipeline.py."""
from __future__ import annotations

import logging

from core.registry import METHODS
from core.schema import Config
from dataset.corpus import Corpus
from dataset.data import DataBundle
from dataset.pipeline import (
    Shard,
    fixed_length,
    labelled_dataset,
    padding_share,
    token_lengths,
    training_dataset,
    unlabeled_batches,
    with_unlabeled,
)

log = logging.getLogger(__name__)

AUTO_BUCKETING_PADDING = 0.2  # data.length_bucketing: auto turns bucketing on from this share of padding


def batch_encoder(cfg: Config, encoder):
    """The text encoder the streams use: per-batch padding, or every batch to max_length."""
    return fixed_length(encoder, cfg.data.max_length) if cfg.data.padding == "max_length" else encoder


def bucketing_lengths(cfg: Config, data: DataBundle, encoder):
    """The training texts' token counts if the training batches are bucketed by length, else None."""
    d = cfg.data
    if d.length_bucketing == "off" or cfg.train.steps_per_epoch or (
            d.length_bucketing == "auto" and d.padding == "max_length"):
        return None
    lengths = token_lengths(data.train.texts, encoder, data.train.texts_b)
    if d.length_bucketing == "auto":
        share = padding_share(lengths, d.batch_size, cfg.train.seed)
        on = share >= AUTO_BUCKETING_PADDING
        log.info("data.length_bucketing: auto: %s (random batches of %d would be %.0f%% padding)",
                 "on" if on else "off", d.batch_size, 100 * share)
        if not on:
            return None
    return lengths


def training_stream(cfg: Config, data: DataBundle, encoder, start_step: int = 0, shard: Shard | None = None):
    """The training batches from step `start_step` on (endless: fit counts the steps); `encoder` maps raw
    strings to model inputs. With `shard` (multi-worker training), one worker's pieces of them: of every global
    batch of labelled (and in-memory unlabeled) texts, encoded whole, so that each piece has the shape and rows
    it has on one device; of a corpus streamed from disk, this worker's own files."""
    d, enc = cfg.data, batch_encoder(cfg, encoder)
    train = training_dataset(data.train.texts, data.train.labels, enc, d.batch_size, cfg.train.seed, start_step,
                             full_batches=cfg.train.steps_per_epoch is not None, texts_b=data.train.texts_b,
                             lengths=bucketing_lengths(cfg, data, encoder), bucket_window=d.bucket_window)
    if shard is not None:
        train = train.flat_map(shard.pieces)
    if data.unlabeled and cfg.reads_unlabeled:
        texts, split = unlabeled_stream(cfg, data.unlabeled, start_step, shard)
        train = with_unlabeled(train, texts, enc, split)
    elif data.unlabeled:
        log.info("the unlabeled texts (%s) are not used: only these methods learn from them: %s",
                 data.unlabeled.describe(), ", ".join(name for name, m in METHODS.items() if m.reads_unlabeled))
    return train


def unlabeled_stream(cfg: Config, corpus: Corpus, start_step: int = 0, shard: Shard | None = None):
    """Batches of unlabeled raw strings from step `start_step` on, and the Shard that cuts them into the
    replicas' pieces (None on one machine): a corpus with files streamed from disk through a shuffle buffer
    (with `shard`, the worker's own files, in its share of each batch), texts held in memory (data.num_labeled's)
    through exact permutations (global batches)."""
    d = cfg.data
    if corpus.files:
        return (corpus.stream(d.unlabeled_batch_size, cfg.train.seed, d.shuffle_buffer, start_step, shard=shard),
                shard.local() if shard else None)
    return unlabeled_batches(corpus.texts, d.unlabeled_batch_size, cfg.train.seed, start_step), shard


def evaluation_streams(cfg: Config, data: DataBundle, encoder):
    """dev and test, one ordered pass each (test None where the run has no test split)."""
    enc = batch_encoder(cfg, encoder)
    return tuple(None if split is None else labelled_dataset(split.texts, split.labels, enc, cfg.data.batch_size,
                                                             texts_b=split.texts_b)
                 for split in (data.dev, data.test))
