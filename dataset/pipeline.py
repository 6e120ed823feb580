"""tf.data pipelines: in-graph encoding, padding per batch, prefetch.

The training streams are a pure function of (seed, position): data epoch e visits the examples in the
order of a stateless permutation seeded by (seed, e) (`tf.random.experimental.index_shuffle`, a true
permutation, not a shuffle buffer), so a run resumed at step s sees exactly the batches an uninterrupted
run would have seen from step s on.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import tensorflow as tf

AUTOTUNE = tf.data.AUTOTUNE
LABELLED, UNLABELED, BATCH_ORDER = 0, 1, 2  # stream ids: each has its own permutations


@dataclass(frozen=True)
class Shard:
    """One worker's part of the streams when every worker builds its own (multi-worker training): input pipeline
    `index` of `count`, feeding `replicas` replicas on its machine. A global batch of b rows is cut into
    count * replicas consecutive pieces in the order of the replicas' global ids, the first b % (count *
    replicas) one row longer (7 rows on two replicas: 4 and 3); this worker yields its `replicas` pieces, one
    element each, which tf.distribute hands to its replicas in turn."""
    index: int = 0
    count: int = 1
    replicas: int = 1

    @property
    def global_replicas(self) -> int:
        return self.count * self.replicas

    def _start(self, b, piece):
        n = self.global_replicas
        return piece * (b // n) + (min(piece, b % n) if isinstance(b, int) else tf.minimum(piece, b % n))

    def rows(self, b: int) -> int:
        """How many rows of a global batch of b this worker takes."""
        return self._start(b, (self.index + 1) * self.replicas) - self._start(b, self.index * self.replicas)

    def pieces(self, *batch) -> tf.data.Dataset:
        """This worker's pieces of one global batch (a structure of tensors with the rows on axis 0), in its
        replicas' order; a batch padded to its longest text stays so (the same shapes as on one device)."""
        batch = tf.nest.map_structure(tf.convert_to_tensor, batch)
        b = tf.shape(tf.nest.flatten(batch)[0], out_type=tf.int64)[0]
        first = self.index * self.replicas

        def piece(k):
            rows = tf.nest.map_structure(lambda t: t[self._start(b, k):self._start(b, k + 1)], batch)
            return rows if len(rows) > 1 else rows[0]

        return tf.data.Dataset.range(first, first + self.replicas).map(piece)

    def local(self) -> Shard:
        """The split of this worker's own rows among its replicas."""
        return Shard(0, 1, self.replicas)


def _index_shuffle(positions, n, seed: int, epochs, stream: int) -> tf.Tensor:
    """Element i: where position positions[i] (< n) of data epoch epochs[i] takes its example from.
    (The raw op, because tf.random.experimental.index_shuffle mis-pads per-element seeds.)"""
    keys = tf.stack([tf.fill(tf.shape(positions), tf.constant(seed, tf.int64)), epochs * 4 + stream,
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


def bucketed_epoch_batches(lengths, batch_size: int, seed: int, window: int, start_step: int = 0) -> tf.data.Dataset:
    """Like epoch_batches, with batches of similar lengths: each data epoch's permutation is cut into
    windows of `window` batches, sorted by length within each window and cut into batches, whose order is
    then permuted (seeded by (seed, epoch)). Still ceil(n / B) batches per epoch, only one of them smaller."""
    n = len(lengths)
    per_epoch = -(-n // batch_size)
    first_epoch, skip = divmod(start_step, per_epoch)
    lengths = tf.constant(np.asarray(lengths, np.int64))
    longest = int(np.max(lengths)) + 1 if n else 1

    def epoch(e):
        order = permutation(n, seed, e)
        window_of = tf.range(n, dtype=tf.int64) // (batch_size * window)
        ordered = tf.gather(order, tf.argsort(window_of * longest + tf.gather(lengths, order), stable=True))
        filled = tf.concat([ordered, -tf.ones([per_epoch * batch_size - n], tf.int64)], 0)
        rows = tf.gather(tf.reshape(filled, [per_epoch, batch_size]), permutation(per_epoch, seed, e, BATCH_ORDER))
        return tf.data.Dataset.from_tensor_slices(rows).map(lambda row: tf.boolean_mask(row, row >= 0))

    return tf.data.Dataset.range(first_epoch, np.iinfo(np.int64).max).flat_map(epoch).skip(skip)


def training_dataset(texts, labels, encoder, batch_size: int, seed: int, start_step: int = 0,
                     full_batches: bool = False, texts_b=None, lengths=None, bucket_window: int = 100) -> tf.data.Dataset:
    """The endless training stream of (features, labels) from step `start_step` on. Epochs follow the data
    (`epoch_batches`; with `lengths`, the token count of each text, `bucketed_epoch_batches`) or, with
    `full_batches` (a fixed train.steps_per_epoch), every batch is full (`continuous_batches`)."""
    n = len(texts)
    if full_batches:
        order = continuous_batches(n, batch_size, seed, start_step)
    elif lengths is not None:
        order = bucketed_epoch_batches(lengths, batch_size, seed, bucket_window, start_step)
    else:
        order = epoch_batches(n, batch_size, seed, start_step)
    columns = [tf.constant(list(texts))] + ([tf.constant(list(texts_b))] if texts_b is not None else [])
    label_table = tf.constant(np.asarray(labels, np.int32))

    def lookup(idx):
        return encoder(*(tf.gather(c, idx) for c in columns)), tf.gather(label_table, idx)

    return order.map(lookup, num_parallel_calls=AUTOTUNE).prefetch(AUTOTUNE)


def fixed_length(encoder, max_length: int):
    """`encoder` with every batch padded to max_length: static shapes (XLA, TPUs)."""
    def encode(*texts):
        features = {}
        for key, value in encoder(*texts).items():
            value = tf.pad(value, [[0, 0], [0, max_length - tf.shape(value)[1]]])
            value.set_shape([None, max_length])
            features[key] = value
        return features

    return encode


def padding_share(lengths, batch_size: int, seed: int = 0) -> float:
    """The share of padding among the tokens of one epoch of random batches, each padded to its longest
    text: what length bucketing saves."""
    lengths = np.asarray(lengths, np.int64)[np.random.default_rng(seed).permutation(len(lengths))]
    padded = sum(len(chunk) * int(chunk.max()) for chunk in
                 (lengths[i:i + batch_size] for i in range(0, len(lengths), batch_size)))
    return 1.0 - float(lengths.sum()) / padded if padded else 0.0


def token_lengths(texts, encoder, texts_b=None, batch_size: int = 512) -> np.ndarray:
    """The number of tokens the model sees of each text (after truncation)."""
    lengths = []
    for features, _ in labelled_dataset(texts, np.zeros(len(texts), np.int32), encoder, batch_size, texts_b):
        real = features["attention_mask"] if "attention_mask" in features else features["token_ids"]
        lengths.append(np.count_nonzero(real.numpy(), axis=1))
    return np.concatenate(lengths) if lengths else np.zeros(0, np.int64)


def labelled_dataset(texts, labels, encoder, batch_size: int, texts_b=None) -> tf.data.Dataset:
    """One pass, in order, of (features, labels (B,) int32): for evaluation and prediction. `encoder` maps
    raw strings (B,) to the features, a dict of (B, T) tensors padded to the batch's longest text
    (TextEncoder, WordPieceEncoder). With `texts_b`, the encoder gets sentence pairs."""
    columns = (list(texts),) + ((list(texts_b),) if texts_b is not None else ())
    ds = tf.data.Dataset.from_tensor_slices((columns, np.asarray(labels, np.int32)))
    ds = ds.batch(batch_size).map(lambda t, y: (encoder(*t), y), num_parallel_calls=AUTOTUNE)
    return ds.prefetch(AUTOTUNE)


def unlabeled_batches(texts, batch_size: int, seed: int, start_step: int = 0) -> tf.data.Dataset:
    """Endless full batches (B,) of in-memory unlabeled texts from batch `start_step` on, through their own
    permutations (independent of the labelled epochs)."""
    table = tf.constant(list(texts))
    order = continuous_batches(len(texts), batch_size, seed, start_step, stream=UNLABELED)
    return order.map(lambda idx: tf.gather(table, idx), num_parallel_calls=AUTOTUNE)


def with_unlabeled(labelled: tf.data.Dataset, text_batches: tf.data.Dataset, encoder,
                   split: Shard | None = None) -> tf.data.Dataset:
    """Attach an unlabeled batch to every labelled one, under features['unlabeled']: step s gets batch s of
    `text_batches` (raw strings (B,): unlabeled_batches, or a corpus streamed from disk, dataset/corpus.py),
    encoded (and, with `split`, cut into the pieces of the replicas, as the labelled stream already is). The
    labelled stream alone decides where an epoch ends."""
    unlabeled = text_batches.map(encoder, num_parallel_calls=AUTOTUNE)
    if split is not None:
        unlabeled = unlabeled.flat_map(split.pieces)
    zipped = tf.data.Dataset.zip((labelled, unlabeled))
    return zipped.map(lambda xy, u: ({**xy[0], "unlabeled": u}, xy[1])).prefetch(AUTOTUNE)
