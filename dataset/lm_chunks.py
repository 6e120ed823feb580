"""A language model's data: a corpus's texts cut into chunks of token ids, counted, checked, and the held-out
texts' stream (trainer/lm_run.py trains on them)."""
from __future__ import annotations

import logging

import numpy as np
import tensorflow as tf

from core.errors import UserError
from core.schema import Config
from dataset.corpus import Corpus, count_items, where

log = logging.getLogger(__name__)


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


def count_chunks(corpus: Corpus, chunks, exclude: np.ndarray, limit: int | None = None) -> int:
    """The number of chunks of the corpus's texts less those where `exclude` is true (the held-out ones: the
    training chunks, an epoch; ~heldout: the held-out chunks), in one pass (progress lines on a long one), or up
    to `limit`."""
    items = chunks(corpus.shard_lines(None, exclude))
    if limit is not None:
        return count_items(items, "language model: counting chunks", "chunks", limit)
    n = count_items(items, "language model: counting the training chunks", "chunks")
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


def heldout_stream(cfg: Config, corpus: Corpus, heldout: np.ndarray, chunks) -> tf.data.Dataset:
    """The held-out texts' chunks (where the mask `heldout` is true), in batches of a quarter of the training
    batch; under multi_worker the workers split each batch (never the files: the texts are a sample of the
    whole corpus)."""
    heldout = chunks(where(corpus.lines(), heldout, True)).batch(max(1, cfg.data.batch_size // 4))
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return heldout.with_options(options)
