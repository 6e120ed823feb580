"""tf.data pipelines: seeded shuffling, in-graph encoding, padding per batch, prefetch."""
from __future__ import annotations

import numpy as np
import tensorflow as tf

AUTOTUNE = tf.data.AUTOTUNE


def _encoded(texts: tf.data.Dataset, encoder, batch_size: int) -> tf.data.Dataset:
    return texts.batch(batch_size).map(encoder, num_parallel_calls=AUTOTUNE)


def labelled_dataset(texts, labels, encoder, batch_size: int, shuffle: bool = False,
                     seed: int = 0, shuffle_buffer: int = 20000, texts_b=None) -> tf.data.Dataset:
    """Batches of (features, labels (B,) int32); `encoder` maps raw strings (B,) to the features, a dict
    of (B, T) tensors padded to the batch's longest text (TextEncoder, WordPieceEncoder). With `texts_b`,
    the encoder gets sentence pairs."""
    columns = (list(texts),) + ((list(texts_b),) if texts_b is not None else ())
    ds = tf.data.Dataset.from_tensor_slices((columns, np.asarray(labels, np.int32)))
    if shuffle:
        ds = ds.shuffle(min(shuffle_buffer, len(texts)), seed=seed, reshuffle_each_iteration=True)
    ds = ds.batch(batch_size).map(lambda t, y: (encoder(*t), y), num_parallel_calls=AUTOTUNE)
    return ds.prefetch(AUTOTUNE)


def with_unlabeled(labelled: tf.data.Dataset, texts, encoder, batch_size: int, seed: int,
                   shuffle_buffer: int = 20000) -> tf.data.Dataset:
    """Attach an unlabeled batch to every labelled one, under features['unlabeled'].

    The unlabeled stream repeats and reshuffles on its own, independent of the labelled epochs; the
    labelled stream alone decides where an epoch ends.
    """
    unlabeled = tf.data.Dataset.from_tensor_slices(list(texts)).repeat()
    unlabeled = unlabeled.shuffle(min(shuffle_buffer, len(texts)), seed=seed + 1)
    unlabeled = _encoded(unlabeled, encoder, batch_size)
    zipped = tf.data.Dataset.zip((labelled, unlabeled))
    return zipped.map(lambda xy, u: ({**xy[0], "unlabeled": u}, xy[1])).prefetch(AUTOTUNE)
