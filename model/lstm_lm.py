"""An LSTM language model whose embedding table and LSTM layers have the shapes of an LSTM classifier's, so that
a classifier can start from them (Dai and Le 2015; Miyato et al. 2017 pretrain so before adversarial training).

Each direction predicts the next token of a text from the ones before it (the backward direction reads the
real tokens of each text in reverse). Training uses a sampled softmax: the true class against `samples` classes
drawn log-uniformly over the frequency-ranked classes a target can be (ids 1.., out-of-vocabulary first, then the
words from most to least frequent; never padding, id 0, which is no target), each logit corrected by the log of
its expected count (Jean et al. 2015), the draws stateless and seeded by the step so that a resumed run draws the
same; evaluation uses the exact softmax. Every class a target can be must be drawn as a negative too: a class
that is only ever a target has nothing to hold its logit down, and under the exact softmax it takes all the mass
(a run that never drew out-of-vocabulary put 99.5% of every prediction on it: held-out perplexity 213,402).
"""
from __future__ import annotations

import math

import tensorflow as tf
import tf_keras

from core.registry import BACKBONES
from core.schema import ModelConfig
from model.embedding import TokenEmbedding
from model.lstm import lstm_layer


def directions(name: str) -> tuple[str, ...]:
    """The language models of the backbone `name`: a forward one, and a backward one for a Bi-LSTM."""
    return ("forward", "backward") if BACKBONES[name].bidirectional else ("forward",)


def reverse_real_tokens(ids):
    """Each row's real (non-zero) tokens in reverse order, the padding left at the end: (B, T) -> (B, T)."""
    lengths = tf.reduce_sum(tf.cast(ids != 0, tf.int64), axis=1)
    return tf.reverse_sequence(ids, lengths, seq_axis=1, batch_axis=0)


FIRST_CLASS = 1  # id 0 is padding, never a target; out-of-vocabulary (1) and the words follow, by frequency


def log_uniform_log_q(classes, num_classes: int, samples: int):
    """log of the expected count of each class among `samples` log-uniform draws with replacement over the
    K = num_classes - 1 classes a target can be (rank r = id - 1): P(r) = (log(r + 2) - log(r + 1)) / log(K + 1)."""
    r = tf.cast(classes, tf.float32) - FIRST_CLASS
    p = (tf.math.log(r + 2.0) - tf.math.log(r + 1.0)) / math.log(max(1, num_classes - FIRST_CLASS) + 1.0)
    return tf.math.log(samples * p)


def draw_log_uniform(num_classes: int, samples: int, seed):
    """`samples` class ids (1 .. num_classes - 1: never padding) drawn log-uniformly by rank, with replacement,
    statelessly from `seed` (shape [2])."""
    classes = max(1, num_classes - FIRST_CLASS)
    u = tf.random.stateless_uniform([samples], seed=seed, dtype=tf.float32)
    ranks = tf.cast(tf.floor(tf.exp(u * math.log(classes + 1.0))), tf.int64) - 1
    return tf.clip_by_value(ranks, 0, classes - 1) + FIRST_CLASS


def sampled_softmax_loss(hidden, weights, biases, targets, sampled):
    """Per-position sampled softmax cross-entropy: hidden (N, H), weights (V, H), biases (V,), targets (N,) and
    sampled (S,) class ids. A sampled class equal to a position's target is left out of that position's
    normalizer."""
    num_classes, samples = int(weights.shape[0]), int(sampled.shape[0])
    true_logits = (tf.reduce_sum(hidden * tf.gather(weights, targets), -1) + tf.gather(biases, targets)
                   - log_uniform_log_q(targets, num_classes, samples))
    sampled_logits = (tf.matmul(hidden, tf.gather(weights, sampled), transpose_b=True) + tf.gather(biases, sampled)
                      - log_uniform_log_q(sampled, num_classes, samples)[None, :])
    hits = tf.equal(targets[:, None], sampled[None, :])
    sampled_logits = tf.where(hits, tf.fill(tf.shape(sampled_logits), -1e9), sampled_logits)
    logits = tf.concat([true_logits[:, None], sampled_logits], axis=1)
    return tf.reduce_logsumexp(logits, axis=1) - true_logits


class LSTMLanguageModel(tf_keras.Model):
    """Token ids (B, T), 0 = padding -> per direction the hidden states (B, T - 1, H) that predict tokens 1..T-1.

    Args:
        cfg: the model section: embedding_dim, hidden_size, num_layers, dropout, normalize_embeddings; name lstm
            (a forward model) or bilstm (forward and backward models sharing the embedding table).
        vocab_size, counts: the vocabulary's size and token counts (the embedding normalization's weights).
    """

    def __init__(self, cfg: ModelConfig, vocab_size: int, counts=None, **kwargs):
        super().__init__(**kwargs)
        self.directions = directions(cfg.name)
        self.vocab_size = vocab_size
        self.embedding = TokenEmbedding(vocab_size, cfg.embedding_dim, counts=counts,
                                        normalize=cfg.normalize_embeddings, name="token_embedding",
                                        dtype="float32")  # as the classifier's: the normalization in float32
        self.embedding_dropout = tf_keras.layers.Dropout(cfg.dropout)
        self.dropout = tf_keras.layers.Dropout(cfg.dropout)
        self.stacks = {d: [lstm_layer(cfg.hidden_size, return_sequences=True) for _ in range(cfg.num_layers)]
                       for d in self.directions}
        self.softmax_weights = {d: self.add_weight(f"{d}_softmax_weights", shape=(vocab_size, cfg.hidden_size),
                                                   initializer=tf_keras.initializers.GlorotUniform())
                                for d in self.directions}
        self.softmax_biases = {d: self.add_weight(f"{d}_softmax_biases", shape=(vocab_size,), initializer="zeros")
                               for d in self.directions}

    def example_inputs(self):
        return tf.constant([[2, 3, 0]], tf.int32)

    def call(self, ids, training=False):
        """{direction: (hidden (B, T - 1, H), targets (B, T - 1))}; a target of 0 is padding."""
        out = {}
        for d in self.directions:
            seq = ids if d == "forward" else reverse_real_tokens(ids)
            inputs, targets = seq[:, :-1], seq[:, 1:]
            x = self.embedding_dropout(self.embedding(inputs), training=training)
            mask = inputs != 0
            for i, layer in enumerate(self.stacks[d]):
                if i:
                    x = self.dropout(x, training=training)
                x = layer(x, mask=mask, training=training)
            out[d] = (self.dropout(x, training=training), targets)
        return out

    def losses_per_token(self, ids, training=False, sampled=None):
        """{direction: the cross-entropy of each real target (N,)}: the sampled softmax over the class ids
        `sampled[direction]`, or the exact softmax without them."""
        out = {}
        for d, (hidden, targets) in self(ids, training=training).items():
            real = targets != 0
            h = tf.cast(tf.boolean_mask(hidden, real), tf.float32)
            y = tf.cast(tf.boolean_mask(targets, real), tf.int64)
            w, b = self.softmax_weights[d], self.softmax_biases[d]
            if sampled is None:
                logits = tf.matmul(h, w, transpose_b=True) + b
                loss = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=y, logits=logits)
            else:
                loss = sampled_softmax_loss(h, w, b, y, sampled[d])
            out[d] = loss
        return out

