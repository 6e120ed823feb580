"""What a run adds to fit() besides its checkpoints: a stop at the first non-finite loss, the HParams summary
for TensorBoard, and closing TensorBoard's summary context when fit stops inside a step."""
from __future__ import annotations

import logging
import os
import sys
import time

import numpy as np
import tensorflow as tf
import tf_keras

from core.errors import TrainingDiverged
from core.schema import Config
from trainer.checkpointing import TRAIN_DIR, latest, steps_taken
from trainer.families import family

log = logging.getLogger(__name__)


def fit_verbosity() -> int:
    """Keras's progress bar on a terminal (1); a line per epoch in a log (2), where ProgressLog adds the lines
    inside an epoch."""
    return 1 if sys.stdout.isatty() else 2


class ProgressLog(tf_keras.callbacks.Callback):
    """In a log (where Keras's bar would write a line per step, or none at all): a line at least every `every`
    seconds inside an epoch, with the step, steps per second, the time left in the epoch and the running loss
    (and tokens per second where the logs count tokens)."""

    def __init__(self, steps_per_epoch: int, every: float = 60.0):
        super().__init__()
        self.steps, self.every = steps_per_epoch, every

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch, self.start, self.last, self.first = epoch, time.time(), time.time(), None

    def on_train_batch_end(self, batch, logs=None):
        now = time.time()
        if self.first is None:  # the first step in this process traces the graph: rates count from its end
            self.first, self.start, self.tokens0 = batch, now, float((logs or {}).get("tokens", 0.0))
            return
        if now - self.last < self.every:
            return
        self.last = now
        logs = logs or {}
        rate = (batch - self.first) / max(1e-9, now - self.start)
        left = (self.steps - batch - 1) / max(rate, 1e-9)
        extra = ""
        if "tokens" in logs:
            extra = f", {(float(logs['tokens']) - self.tokens0) / max(1e-9, now - self.start):,.0f} tokens/s"
        loss = f", loss {float(logs['loss']):.4f}" if "loss" in logs else ""
        log.info("epoch %d: step %d/%d, %.2f steps/s%s, %s left in the epoch%s", self.epoch + 1, batch + 1,
                 self.steps, rate, extra, time.strftime("%H:%M:%S", time.gmtime(left)), loss)


class StopOnNonFiniteLoss(tf_keras.callbacks.Callback):
    """Stops at the first step whose loss is NaN or infinite, before any checkpoint of the broken weights
    is written, by raising TrainingDiverged."""

    def __init__(self, checkpoint_dir: str):
        super().__init__()
        self.checkpoint_dir = checkpoint_dir

    def on_train_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is not None and not np.isfinite(loss):
            last = latest(self.checkpoint_dir, TRAIN_DIR)
            kept = f"the last good checkpoint is {last}" if last else "no checkpoint was written yet"
            raise TrainingDiverged(f"the loss became {float(loss)} at step {steps_taken(self.model)} "
                                   f"(epoch {self.epoch + 1}, batch {batch + 1}); training stopped and {kept}; "
                                   "try a lower train.learning_rate or regularizer.epsilon")

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch


def close_tensorboard(callbacks) -> None:
    """fit stopped inside a step: let TensorBoard pop its summary context, or every later summary in this
    process would be dropped."""
    for callback in callbacks:
        if isinstance(callback, tf_keras.callbacks.TensorBoard):
            callback.on_train_end()


def hparams(cfg: Config) -> dict:
    """The hyper-parameters shown in TensorBoard's HParams dashboard."""
    regs = cfg.active_regularizers
    first = regs[0] if regs else None
    return {
        "backbone": family(cfg.model.name).describe(cfg),
        "regularizer": "+".join(r.name for r in regs) or "none",
        "epsilon": getattr(first.params, "epsilon", 0.0) if first else 0.0,
        "adv_weight": first.weight if first else 0.0,
        "clean_weight": cfg.train.clean_weight,
        "learning_rate": cfg.train.learning_rate,
        "epochs": cfg.train.epochs,
        "batch_size": cfg.data.batch_size,
        "max_length": cfg.data.max_length,
        "num_labeled": cfg.data.num_labeled or 0,
        "seed": cfg.train.seed,
    }


def log_hparams(cfg: Config, log_dir: str, summaries: dict, step: int) -> None:
    """The run's hyper-parameters and final figures (per split: accuracy, macro-F1, calibration, the
    attacks' accuracies) as TensorBoard summaries."""
    from tensorboard.plugins.hparams import api as hp

    writer = tf.summary.create_file_writer(log_dir)
    with writer.as_default():
        hp.hparams(hparams(cfg), trial_id=os.path.basename(os.path.dirname(log_dir)))
        for split, report in summaries.items():
            for key in ("accuracy", "macro_f1", "ece", "nll", "brier"):
                tf.summary.scalar(f"final/{split}_{key}", report[key], step=step)
            for attack, curve in report.get("robustness", {}).items():
                tf.summary.scalar(f"final/{split}_{attack}_accuracy_at_max_eps", curve["accuracy"][-1], step=step)
            texts = report.get("text_attacks", {})
            for x, acc in zip(texts.get("noise", {}).get("rates", []), texts.get("noise", {}).get("accuracy", [])):
                tf.summary.scalar(f"final/{split}_noise_{x:g}_accuracy", acc, step=step)
            greedy = texts.get("deepwordbug", {})
            for budget, acc in zip(greedy.get("budgets", []), greedy.get("accuracy", [])):
                tf.summary.scalar(f"final/{split}_deepwordbug_{budget}_accuracy", acc, step=step)
    writer.close()
