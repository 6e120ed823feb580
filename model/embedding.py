"""Token embeddings with optional frequency-weighted normalization (Miyato et al. 2017, sec. 2)."""
from __future__ import annotations

import numpy as np
import tensorflow as tf
import tf_keras


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
