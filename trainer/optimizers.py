"""Optimizers and learning-rate schedules: Adam, AdamW (with layer-wise learning-rate decay), SGD."""
from __future__ import annotations

import re

import tensorflow as tf
import tf_keras

from core.errors import UserError
from core.schema import TrainConfig


class WarmupLinearDecay(tf_keras.optimizers.schedules.LearningRateSchedule):
    """Linear warm-up to `peak` over the first `warmup_steps`, then linear decay to 0 at `total_steps`."""

    def __init__(self, peak: float, total_steps: int, warmup_steps: int):
        self.peak, self.total_steps, self.warmup_steps = peak, total_steps, warmup_steps

    def __call__(self, step):
        step = tf.cast(step, tf.float32)
        # Counting the step being taken (step + 1), so that the first update is not a no-op.
        warm = self.peak * (step + 1.0) / max(1, self.warmup_steps)
        decay = self.peak * tf.maximum(0.0, (self.total_steps - step) / max(1, self.total_steps - self.warmup_steps))
        return tf.where(step < self.warmup_steps, warm, decay)

    def get_config(self):
        return {"peak": self.peak, "total_steps": self.total_steps, "warmup_steps": self.warmup_steps}


def summed_rows(gradient: tf.IndexedSlices) -> tf.IndexedSlices:
    """A sparse gradient with each row once: the slices of a row seen several times (a token repeated in the
    batch, or sent by several replicas) summed."""
    rows, position = tf.unique(gradient.indices)
    values = tf.math.unsorted_segment_sum(gradient.values, position, tf.shape(rows)[0])
    return tf.IndexedSlices(values, rows, gradient.dense_shape)


class ExactClipping:
    """train.clip_norm on the norm of the true gradient. tf.clip_by_global_norm takes a sparse gradient's norm
    over its slices, and an embedding table's gradient holds one slice per token of the batch (and, under a
    strategy, per replica): a row split in slices a and b counts sqrt(|a|^2 + |b|^2), not |a + b|, so the clip
    would depend on the batch's repetitions and on the number of replicas. Rows are summed first (after the
    replicas' gradients are, which tf_keras does before clipping)."""

    def _clip_gradients(self, grads):
        if self.global_clipnorm:
            grads = [summed_rows(g) if isinstance(g, tf.IndexedSlices) else g for g in grads]
        return super()._clip_gradients(grads)


class Adam(ExactClipping, tf_keras.optimizers.Adam):
    pass


class SGD(ExactClipping, tf_keras.optimizers.SGD):
    pass


class LayerwiseAdamW(ExactClipping, tf_keras.optimizers.AdamW):
    """AdamW whose update of each variable is scaled by a multiplier (layer-wise learning-rate decay).

    Adam's step does not change when a gradient is scaled, so the multiplier scales the step itself:
    the variable moves `multiplier` times as far as plain AdamW would move it.

    Args:
        multipliers: {variable name: multiplier}; variables not named keep 1.
    """

    def __init__(self, *args, multipliers: dict[str, float] | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self._multipliers = dict(multipliers or {})

    def update_step(self, gradient, variable):
        multiplier = self._multipliers.get(variable.name, 1.0)
        if multiplier == 1.0:
            return super().update_step(gradient, variable)
        before = tf.identity(variable)
        super().update_step(gradient, variable)
        variable.assign(before + multiplier * (variable - before))


def layerwise_multipliers(variables, num_layers: int, decay: float) -> dict[str, float]:
    """decay ** (num_layers + 1 - depth) per variable: depth 0 for the embeddings, i + 1 for encoder layer
    i (names with 'layer_._i', as in transformers' TF models), num_layers + 1 (multiplier 1) for the
    pooler and the head."""
    out = {}
    for v in variables:
        match = re.search(r"layer_\._(\d+)/", v.name)
        depth = int(match.group(1)) + 1 if match else (0 if "/embeddings/" in v.name else num_layers + 1)
        out[v.name] = decay ** (num_layers + 1 - depth)
    return out


def make_optimizer(cfg: TrainConfig, total_steps: int | None = None, multipliers: dict | None = None):
    clip = {"global_clipnorm": cfg.clip_norm} if cfg.clip_norm else {}
    lr = cfg.learning_rate
    if cfg.lr_schedule == "linear" and total_steps:
        lr = WarmupLinearDecay(cfg.learning_rate, total_steps, int(round(cfg.warmup_ratio * total_steps)))
    if multipliers is not None and cfg.optimizer != "adamw":
        raise UserError("train.layerwise_lr_decay: needs train.optimizer adamw")
    if cfg.optimizer == "adamw":
        optimizer = LayerwiseAdamW(lr, weight_decay=cfg.weight_decay, multipliers=multipliers, **clip)
        # As in BERT: no weight decay on biases and LayerNorm parameters.
        optimizer.exclude_from_weight_decay(var_names=["bias", "LayerNorm", "layer_norm"])
        return optimizer
    if cfg.optimizer == "sgd":
        return SGD(lr, momentum=0.9, **clip)
    return Adam(lr, **clip)
