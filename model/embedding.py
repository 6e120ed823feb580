"""Token embeddings with optional frequency-weighted normalization (Miyato et al. 2017, sec. 2)."""
from __future__ import annotations

import gzip
import os

import numpy as np
import tensorflow as tf
import tf_keras

from core.errors import UserError


class TokenEmbedding(tf_keras.layers.Layer):
    """Looks up token ids (B, T) -> embeddings (B, T, D).

    With `normalize=True` the table V is replaced before lookup by
        v_bar_i = (v_i - E[v]) / sqrt(Var[v]),  E[v] = sum_j f_j v_j,  Var[v] = sum_j f_j (v_j - E[v])^2,
    per dimension, with f_j the training-split frequency of token j. Adversarial perturbations of a fixed
    norm then cannot be made irrelevant by growing the embeddings.

    Args:
        vocab_size: rows of the table (id 0 is padding).
        dim: embedding size D.
        counts: token counts (vocab_size,), the weights of the normalization; padding's count is 0.
        normalize: apply the normalization above.
        initial_vectors: optional (vocab_size, D) array to start from (pretrained word vectors).
    """

    def __init__(self, vocab_size, dim, counts=None, normalize=False, initial_vectors=None, **kwargs):
        super().__init__(**kwargs)
        self.vocab_size, self.dim, self.normalize = vocab_size, dim, normalize
        counts = np.ones(vocab_size) if counts is None else np.asarray(counts, np.float64)
        counts = counts.copy()
        counts[0] = 0.0
        if counts.sum() <= 0:
            counts[1:] = 1.0
        self._freqs = tf.constant((counts / counts.sum())[:, None], tf.float32)
        initializer = (tf_keras.initializers.Constant(initial_vectors) if initial_vectors is not None
                       else tf_keras.initializers.RandomUniform(-0.05, 0.05))
        self.table = self.add_weight("table", shape=(vocab_size, dim), initializer=initializer)

    def normalized_table(self):
        if not self.normalize:
            return self.table
        mean = tf.reduce_sum(self._freqs * self.table, axis=0, keepdims=True)
        var = tf.reduce_sum(self._freqs * tf.square(self.table - mean), axis=0, keepdims=True)
        return (self.table - mean) / tf.sqrt(var + 1e-6)

    def call(self, token_ids):
        return tf.gather(self.normalized_table(), token_ids)


def load_word2vec(path: str, tokens: list[str], dim: int, seed: int = 0):
    """Reads word vectors in word2vec text format ('word v1 ... vD' per line, an optional 'count dim'
    header; optionally gzipped) for the given vocabulary.

    Returns (matrix (len(tokens), dim) float32, number of tokens found). Tokens without a vector keep a
    small random initialization; padding's row is zero.
    """
    if not os.path.exists(path):
        raise UserError(f"{path}: pretrained embeddings file not found")
    index = {t: i for i, t in enumerate(tokens)}
    matrix = np.random.default_rng(seed).uniform(-0.05, 0.05, (len(tokens), dim)).astype(np.float32)
    matrix[0] = 0.0
    found = set()
    opener = gzip.open if path.endswith(".gz") else open
    try:
        with opener(path, "rt", encoding="utf-8") as f:
            for line_no, line in enumerate(f, start=1):
                parts = line.rstrip().split(" ")
                if line_no == 1 and len(parts) == 2 and all(p.isdigit() for p in parts):
                    if int(parts[1]) != dim:
                        raise UserError(f"{path}: vectors have {parts[1]} dimensions but model.embedding_dim "
                                        f"is {dim}")
                    continue
                if len(parts) < 2:
                    continue
                if len(parts) - 1 != dim:
                    raise UserError(f"{path}: line {line_no}: {len(parts) - 1} values, expected {dim} "
                                    "(model.embedding_dim)")
                i = index.get(parts[0])
                if i is not None and i > 1:
                    try:
                        matrix[i] = np.asarray(parts[1:], dtype=np.float32)
                    except ValueError:
                        raise UserError(f"{path}: line {line_no}: not a vector of numbers") from None
                    found.add(i)
    except UnicodeDecodeError:
        raise UserError(f"{path}: not UTF-8 text (word2vec binary files are not supported; "
                        "convert to the text format)") from None
    return matrix, len(found)
