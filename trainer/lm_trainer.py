"""The language model's Keras model: the sampled-softmax training step over every direction, the exact-softmax
held-out perplexity, and a callback that counts tokens per second."""
from __future__ import annotations

import time

import tensorflow as tf
import tf_keras

from model.lstm_lm import LSTMLanguageModel, draw_log_uniform
from trainer.checkpointing import ResumesMidEpoch


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
