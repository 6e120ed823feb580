"""tf.data pipelines: in-graph encoding, padding per batch, prefetch.

The training streams are a pure function of (seed, position): data epoch e visits the examples in the
order of a stateless permutation seeded by (seed, e) (`tf.random.experimental.index_shuffle`, a true
permutation, not a shuffle buffer), so a run resumed at step s sees exactly the batches an uninterrupted
run would have seen from step s on.
"""
from __future__ import annotations

import numpy as np
import tensorflow as tf

AUTOTUNE = tf.data.AUTOTUNE
LABELLED, UNLABELED = 0, 1  # stream ids: each stream has its own permutations


def _index_shuffle(positions, n, seed: int, epochs, stream: int) -> tf.Tensor:
    """Element i: where position positions[i] (< n) of data epoch epochs[i] takes its example from.
    (The raw op, because tf.random.experimental.index_shuffle mis-pads per-element seeds.)"""
    keys = tf.stack([tf.fill(tf.shape(positions), tf.constant(seed, tf.int64)), epochs * 2 + stream,
                     tf.zeros_like(positions)], axis=1)
    return tf.raw_ops.RandomIndexShuffle(index=positions, seed=keys, max_index=tf.fill(tf.shape(positions), n - 1),
                                         rounds=4)


def permutation(n, seed: int, epoch, stream: int = LABELLED) -> tf.Tensor:
    """The order (n,) int64 in which data epoch `epoch` visits n examples."""
    positions = tf.range(tf.cast(n, tf.int64))
    return _index_shuffle(positions, tf.cast(n, tf.int64), seed, tf.fill([n], tf.cast(epoch, tf.int64)), stream)


def epoch_batches(n: int, batch_size: int, seed: int, start_step: int = 0) -> tf.data.Dataset:
    """Endless index batches (B,) int64, one data epoch after another, the last batch of each epoch
    smaller when n is not a multiple of B; starts at batch `start_step` of the stream."""
    per_epoch = -(-n // batch_size)
    first_epoch, skip = divmod(start_step, per_epoch)
    epochs = tf.data.Dataset.range(first_epoch, np.iinfo(np.int64).max)
    batches = epochs.flat_map(lambda e: tf.data.Dataset.from_tensor_slices(permutation(n, seed, e)).batch(batch_size))
    return batches.skip(skip)


def continuous_batches(n: int, batch_size: int, seed: int, start_step: int = 0,
                       stream: int = LABELLED) -> tf.data.Dataset:
    """Endless full index batches (B,) int64: batch b holds stream positions b*B .. b*B + B - 1, position p
    being example permutation(p // n)[p % n]; starts at batch `start_step`."""
    def batch(b):
        positions = b * batch_size + tf.range(batch_size, dtype=tf.int64)
        return _index_shuffle(positions % n, tf.constant(n, tf.int64), seed, positions // n, stream)

    return tf.data.Dataset.range(start_step, np.iinfo(np.int64).max).map(batch)


def training_dataset(texts, labels, encoder, batch_size: int, seed: int, start_step: int = 0,
                     full_batches: bool = False, texts_b=None) -> tf.data.Dataset:
    """The endless training stream of (features, labels) from step `start_step` on. Epochs follow the data
    (`epoch_batches`) or, with `full_batches` (a fixed train.steps_per_epoch), every batch is full
    (`continuous_batches`)."""
    n = len(texts)
    order = (continuous_batches(n, batch_size, seed, start_step) if full_batches
             else epoch_batches(n, batch_size, seed, start_step))
    columns = [tf.constant(list(texts))] + ([tf.constant(list(texts_b))] if texts_b is not None else [])
    label_table = tf.constant(np.asarray(labels, np.int32))

    def lookup(idx):
        return encoder(*(tf.gather(c, idx) for c in columns)), tf.gather(label_table, idx)

    return order.map(lookup, num_parallel_calls=AUTOTUNE).prefetch(AUTOTUNE)


def labelled_dataset(texts, labels, encoder, batch_size: int, texts_b=None) -> tf.data.Dataset:
    """One pass, in order, of (features, labels (B,) int32): for evaluation and prediction. `encoder` maps
    raw strings (B,) to the features, a dict of (B, T) tensors padded to the batch's longest text
    (TextEncoder, WordPieceEncoder). With `texts_b`, the encoder gets sentence pairs."""
    columns = (list(texts),) + ((list(texts_b),) if texts_b is not None else ())
    ds = tf.data.Dataset.from_tensor_slices((columns, np.asarray(labels, np.int32)))
    ds = ds.batch(batch_size).map(lambda t, y: (encoder(*t), y), num_parallel_calls=AUTOTUNE)
    return ds.prefetch(AUTOTUNE)


def with_unlabeled(labelled: tf.data.Dataset, texts, encoder, batch_size: int, seed: int,
                   start_step: int = 0) -> tf.data.Dataset:
    """Attach an unlabeled batch to every labelled one, under features['unlabeled'].

    The unlabeled stream runs through its own permutations, independent of the labelled epochs; the
    labelled stream alone decides where an epoch ends. Step s gets unlabeled batch s.
    """
    table = tf.constant(list(texts))
    unlabeled = continuous_batches(len(texts), batch_size, seed, start_step, stream=UNLABELED)
    unlabeled = unlabeled.map(lambda idx: encoder(tf.gather(table, idx)), num_parallel_calls=AUTOTUNE)
    zipped = tf.data.Dataset.zip((labelled, unlabeled))
    return zipped.map(lambda xy, u: ({**xy[0], "unlabeled": u}, xy[1])).prefetch(AUTOTUNE)
