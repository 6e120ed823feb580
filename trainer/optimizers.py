"""Optimizers and learning-rate schedules: Adam, AdamW (with layer-wise learning-rate decay), SGD."""
from __future__ import annotations

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


class ScaledSteps:
    """Scales each variable's update (Adam's step does not change when a gradient is scaled, so the step itself
    is scaled: the variable moves `scale` times as far as the plain optimizer would move it):
    - by its layer-wise multiplier (layer-wise learning-rate decay), and
    - by 0 while its layer is frozen (gradual unfreezing): with `depths` given, a variable of depth d moves only
      once d >= `unfrozen_from`, a variable that GradualUnfreezing sets at each epoch's start. Its moments still
      follow the gradients while frozen (as a plain optimizer's would).

    Args:
        multipliers: {variable name: multiplier}; variables not named keep 1.
        depths: {variable name: depth} (0 the embeddings, 1.. the layers, the highest the head), for gradual
            unfreezing; None: nothing is frozen.
    """

    def __init__(self, *args, multipliers: dict[str, float] | None = None, depths: dict[str, int] | None = None,
                 **kwargs):
        super().__init__(*args, **kwargs)
        self._multipliers = dict(multipliers or {})
        self._depths = dict(depths) if depths is not None else None
        self.unfrozen_from = None if depths is None else tf.Variable(0, trainable=False, name="unfrozen_from")

    def update_step(self, gradient, variable):
        multiplier = self._multipliers.get(variable.name, 1.0)
        depth = None if self._depths is None else self._depths.get(variable.name)
        if multiplier == 1.0 and depth is None:
            return super().update_step(gradient, variable)
        before = tf.identity(variable)
        super().update_step(gradient, variable)
        scale = tf.constant(multiplier, variable.dtype)
        if depth is not None:
            scale *= tf.cast(depth >= self.unfrozen_from, variable.dtype)
        variable.assign(before + scale * (variable - before))


class Adam(ScaledSteps, ExactClipping, tf_keras.optimizers.Adam):
    pass


class SGD(ExactClipping, tf_keras.optimizers.SGD):
    pass


class LayerwiseAdamW(ScaledSteps, ExactClipping, tf_keras.optimizers.AdamW):
    """AdamW with scaled steps (ScaledSteps): layer-wise learning-rate decay, gradual unfreezing."""


class GradualUnfreezing(tf_keras.callbacks.Callback):
    """ULMFiT's gradual unfreezing (Howard and Ruder 2018): the first epoch trains the head alone, each later
    epoch unfreezes the next layer down (the top LSTM or encoder layer first, the embeddings last); from epoch
    top + 1 on everything trains. Set at each epoch's start, so a resumed run freezes as the uninterrupted one."""

    def __init__(self, optimizer, top: int):
        super().__init__()
        self.optimizer, self.top = optimizer, top

    def on_epoch_begin(self, epoch, logs=None):
        self.optimizer.unfrozen_from.assign(max(0, self.top - epoch))


def layerwise_multipliers(depths: dict[str, int], num_layers: int, decay: float) -> dict[str, float]:
    """decay ** (num_layers + 1 - depth) per variable name, from {name: depth} (a classifier's layer_depths():
    0 the embeddings, i + 1 layer i, num_layers + 1 the head, multiplier 1)."""
    return {name: decay ** (num_layers + 1 - depth) for name, depth in depths.items()}


def make_optimizer(cfg: TrainConfig, total_steps: int | None = None, multipliers: dict | None = None,
                   depths: dict | None = None):
    """The optimizer of train.optimizer with its schedule and clipping; `multipliers` (layer-wise decay) and
    `depths` (gradual unfreezing) scale each variable's steps (adam and adamw)."""
    clip = {"global_clipnorm": cfg.clip_norm} if cfg.clip_norm else {}
    lr = cfg.learning_rate
    if cfg.lr_schedule == "linear" and total_steps:
        lr = WarmupLinearDecay(cfg.learning_rate, total_steps, int(round(cfg.warmup_ratio * total_steps)))
    if (multipliers is not None or depths is not None) and cfg.optimizer == "sgd":
        raise UserError("train.layerwise_lr_decay and train.gradual_unfreezing: need train.optimizer adam or adamw")
    scaled = {"multipliers": multipliers, "depths": depths}
    if cfg.optimizer == "adamw":
        optimizer = LayerwiseAdamW(lr, weight_decay=cfg.weight_decay, **scaled, **clip)
        # As in BERT: no weight decay on biases and LayerNorm parameters.
        optimizer.exclude_from_weight_decay(var_names=["bias", "LayerNorm", "layer_norm"])
        return optimizer
    if cfg.optimizer == "sgd":
        return SGD(lr, momentum=0.9, **clip)
    return Adam(lr, **scaled, **clip)
