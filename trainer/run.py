"""One training run: data, vocabulary, model, fit with callbacks, final evaluation, files in the run dir.

Everything that can fail because of the user's input (config, data, labels) is checked before the run
directory is created, so a mistake never leaves a directory that looks like a result.
"""
from __future__ import annotations

import contextlib
import datetime
import json
import logging
import os
import shutil
import tempfile
import time

import numpy as np
import tensorflow as tf
import tf_keras

from core.config import Config, load_config, save_config
from core.errors import Interrupted, TrainingDiverged, UserError
from core.paths import check_new_dir
from dataset.data import load_data
from dataset.pipeline import fixed_length, labelled_dataset, padding_share, token_lengths, training_dataset, with_unlabeled
from methods import METHODS
from trainer.adversarial_model import AdversarialModel
from trainer.checkpointing import (
    TRAIN_DIR,
    TrainingCheckpoints,
    data_fingerprint,
    finishing_on_signals,
    latest,
    read_classifier,
    remove_unfinished_writes,
    run_dir_lock,
    stop_on_signals,
)
from trainer.distribute import is_chief, make_strategy
from trainer.evaluate import evaluate_split
from trainer.families import Prepared, family, make_model
from trainer.metrics import format_report
from trainer.optimizers import layerwise_multipliers, make_optimizer

log = logging.getLogger(__name__)


def runs_root(config_path: str, root: str = "runs") -> str:
    """Where the runs of a config go: runs/<config name>."""
    return os.path.join(root, os.path.splitext(os.path.basename(config_path))[0])


def default_run_dir(config_path: str, root: str = "runs") -> str:
    return os.path.join(runs_root(config_path, root), datetime.datetime.now().strftime("%Y%m%d-%H%M%S"))


def make_run_dir(path: str) -> None:
    """A new or empty run directory, with its parents (the lock file, written next, proves it writable)."""
    check_new_dir(path, "--run-dir", create_parents=True)
    try:
        os.makedirs(path, exist_ok=True)
    except OSError as e:
        raise UserError(f"{path}: cannot create the run directory or write into it ({e.strerror})") from None


def prepare(cfg: Config) -> Prepared:
    """Loads and checks the data, the vocabulary and any pretrained weights (through the backbone family);
    raises UserError on bad input. Runs before the run directory exists."""
    data = load_data(cfg.data)
    return family(cfg).prepare(cfg, data, data.unlabeled if uses_unlabeled(cfg) else [])


def steps_per_epoch(cfg: Config, n_train: int) -> int:
    return cfg.train.steps_per_epoch or -(-n_train // cfg.data.batch_size)


@contextlib.contextmanager
def mixed_precision(precision: str):
    """Layers made inside take the mixed_<precision> policy (float16 or bfloat16 compute, float32 weights);
    compile() adds loss scaling for float16 (bfloat16 has float32's range and needs none)."""
    if precision == "none":
        yield
        return
    tf_keras.mixed_precision.set_global_policy(f"mixed_{precision}")
    try:
        yield
    finally:
        tf_keras.mixed_precision.set_global_policy("float32")


def build_model(cfg: Config, prepared: Prepared, num_classes: int) -> AdversarialModel:
    with mixed_precision(cfg.train.mixed_precision):
        model = make_model(cfg, num_classes, prepared)
    total_steps = cfg.train.epochs * steps_per_epoch(cfg, len(prepared.data.train.texts))
    multipliers = None
    if cfg.train.layerwise_lr_decay is not None:
        multipliers = layerwise_multipliers(model.trainable_variables, model.classifier.num_layers,
                                            cfg.train.layerwise_lr_decay)
    if cfg.train.jit_compile and cfg.data.padding == "batch":
        log.warning("train.jit_compile with data.padding: batch compiles the step again for every new batch "
                    "length; data.padding: max_length compiles it once")
    model.compile(optimizer=make_optimizer(cfg.train, total_steps, multipliers), jit_compile=cfg.train.jit_compile,
                  steps_per_execution=cfg.train.steps_per_execution)
    return model


def uses_unlabeled(cfg: Config) -> bool:
    return any(r.method.reads_unlabeled for r in cfg.active_regularizers)


AUTO_BUCKETING_PADDING = 0.2  # data.length_bucketing: auto turns bucketing on from this share of padding


def bucketing_lengths(cfg: Config, prepared: Prepared):
    """The training texts' token counts if the training batches are bucketed by length, else None."""
    d, data = cfg.data, prepared.data
    if d.length_bucketing == "off" or cfg.train.steps_per_epoch or (
            d.length_bucketing == "auto" and d.padding == "max_length"):
        return None
    lengths = token_lengths(data.train.texts, prepared.text_encoder, data.train.texts_b)
    if d.length_bucketing == "auto":
        share = padding_share(lengths, d.batch_size, cfg.train.seed)
        on = share >= AUTO_BUCKETING_PADDING
        log.info("data.length_bucketing: auto: %s (random batches of %d would be %.0f%% padding)",
                 "on" if on else "off", d.batch_size, 100 * share)
        if not on:
            return None
    return lengths


def batch_encoder(cfg: Config, prepared: Prepared):
    """The text encoder the data pipelines use: per-batch padding, or every batch to max_length."""
    enc = prepared.text_encoder
    return fixed_length(enc, cfg.data.max_length) if cfg.data.padding == "max_length" else enc


def datasets(cfg: Config, prepared: Prepared, start_step: int = 0):
    """The training stream from step `start_step` on (endless: fit counts the steps), dev and test."""
    d, data, enc = cfg.data, prepared.data, batch_encoder(cfg, prepared)
    lengths = bucketing_lengths(cfg, prepared)
    train = training_dataset(data.train.texts, data.train.labels, enc, d.batch_size, cfg.train.seed, start_step,
                             full_batches=cfg.train.steps_per_epoch is not None, texts_b=data.train.texts_b,
                             lengths=lengths, bucket_window=d.bucket_window)
    if data.unlabeled and uses_unlabeled(cfg):
        train = with_unlabeled(train, data.unlabeled, enc, d.unlabeled_batch_size, cfg.train.seed, start_step)
    elif data.unlabeled:
        log.info("the %d unlabeled texts are not used: only these methods learn from them: %s",
                 len(data.unlabeled), ", ".join(name for name, m in METHODS.items() if m.reads_unlabeled))
    return (train, *evaluation_datasets(cfg, prepared))


def evaluation_datasets(cfg: Config, prepared: Prepared):
    """dev and test, one ordered pass each (test None where the run has no test split)."""
    d, data, enc = cfg.data, prepared.data, batch_encoder(cfg, prepared)
    return tuple(None if split is None else labelled_dataset(split.texts, split.labels, enc, d.batch_size,
                                                             texts_b=split.texts_b)
                 for split in (data.dev, data.test))


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
            raise TrainingDiverged(f"the loss became {float(loss)} at step {int(self.model.optimizer.iterations)} "
                                   f"(epoch {self.epoch + 1}, batch {batch + 1}); training stopped and {kept}; "
                                   "try a lower train.learning_rate or regularizer.epsilon")

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch


def hparams(cfg: Config) -> dict:
    """The hyper-parameters shown in TensorBoard's HParams dashboard."""
    regs = cfg.active_regularizers
    first = regs[0] if regs else None
    return {
        "backbone": family(cfg).describe(cfg),
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


def write_run_files(cfg: Config, prepared: Prepared, run_dir: str) -> None:
    """config.yaml, the vocabulary, labels.json and a Hugging Face encoder's config: what load_run needs
    besides the weights."""
    save_config(cfg, os.path.join(run_dir, "config.yaml"))
    family(cfg).save(prepared, run_dir)
    with open(os.path.join(run_dir, "labels.json"), "w", encoding="utf-8") as f:
        json.dump(prepared.data.label_names, f, ensure_ascii=False)


def is_finished(run_dir: str) -> bool:
    return os.path.exists(os.path.join(run_dir, "metrics.json"))


def resumable(run_dir: str) -> bool:
    """Whether run_dir is an unfinished run with a training checkpoint to continue from."""
    return not is_finished(run_dir) and latest(os.path.join(run_dir, "checkpoints"), TRAIN_DIR) is not None


def check_resumable(run_dir: str) -> None:
    if not os.path.exists(os.path.join(run_dir, "config.yaml")):
        raise UserError(f"{run_dir}: not a run directory (no config.yaml)")
    if is_finished(run_dir):
        raise UserError(f"{run_dir}: this run has finished (metrics.json exists); nothing to resume")
    if not resumable(run_dir):
        raise UserError(f"{run_dir}: nothing to resume: it stopped before its first checkpoint; start it again")


def find_resumable(cfg: Config, candidates: list[str]) -> str | None:
    """The first of `candidates` that is an unfinished run of exactly this config (train.resume: auto)."""
    for run_dir in candidates:
        if os.path.isdir(run_dir) and resumable(run_dir):
            try:
                saved = load_config(os.path.join(run_dir, "config.yaml"))
            except UserError as e:
                log.info("not resuming %s: %s", run_dir, e)
                continue
            if saved == cfg:
                return run_dir
            log.info("not resuming %s: its config differs from this one", run_dir)
    return None


def rewrite_history_csv(path: str, history: list[dict]) -> None:
    """history.csv as of the restored checkpoint (epochs logged after it are done again), atomically."""
    if not history:  # CSVLogger writes the header with the first epoch
        if os.path.exists(path):
            os.remove(path)
        return
    keys = sorted({k for h in history for k in h})
    with open(path + ".tmp", "w", encoding="utf-8") as f:
        f.write(",".join(["epoch"] + keys) + "\n")
        for epoch, h in enumerate(history):
            f.write(",".join([str(epoch)] + [repr(h.get(k, "")) for k in keys]) + "\n")
    os.replace(path + ".tmp", path)


def _close_tensorboard(callbacks) -> None:
    # fit stopped inside a step: let TensorBoard pop its summary context, or every later summary in this
    # process would be dropped.
    for callback in callbacks:
        if isinstance(callback, tf_keras.callbacks.TensorBoard):
            callback.on_train_end()


def train(cfg: Config, run_dir: str, resume: bool = False) -> dict:
    """Runs training end to end and returns the final metrics (also written to metrics.json). With
    `resume`, continues the unfinished run in run_dir from its latest checkpoint."""
    strategy = make_strategy(cfg.distribute)  # before any other TensorFlow work
    chief = is_chief(strategy)
    tf_keras.backend.experimental.enable_tf_random_generator()  # dropout streams that checkpoints can hold
    tf_keras.utils.set_random_seed(cfg.train.seed)
    with contextlib.ExitStack() as held:
        if resume and chief:
            held.enter_context(run_dir_lock(run_dir))  # one process at a time on a run
        if resume:
            check_resumable(run_dir)
            remove_unfinished_writes(os.path.join(run_dir, "checkpoints"))
        with strategy.scope(), mixed_precision(cfg.train.mixed_precision):  # a pretrained encoder's too
            prepared = prepare(cfg)
        if chief and not resume:
            make_run_dir(run_dir)
            held.enter_context(run_dir_lock(run_dir))
            write_run_files(cfg, prepared, run_dir)
        # Multi-worker: every worker saves (saving takes part in collectives), only the chief into run_dir.
        out_dir = run_dir if chief else tempfile.mkdtemp(prefix="worker-")
        if chief:
            log.info("run directory: %s", os.path.abspath(run_dir))
        try:
            model, metrics = _train(cfg, prepared, strategy, run_dir, out_dir, resume)
        finally:
            if not chief:
                shutil.rmtree(out_dir, ignore_errors=True)
        if not chief:
            return {}
        with finishing_on_signals(run_dir):
            return _finish(cfg, prepared, model, run_dir, metrics)


def _train(cfg: Config, prepared: Prepared, strategy, run_dir: str, out_dir: str, resume: bool):
    data = prepared.data
    with strategy.scope():
        model = build_model(cfg, prepared, len(data.label_names))
        model.optimizer.build(model.trainable_variables)  # slots exist before a checkpoint is restored
    spe = steps_per_epoch(cfg, len(data.train.texts))
    ckpt_dir = os.path.join(out_dir, "checkpoints")
    mode = "min" if cfg.train.monitor == "val_loss" else "max"
    checkpoints = TrainingCheckpoints(ckpt_dir, model, spe, cfg.train.checkpoint_every, cfg.train.keep_last,
                                      cfg.train.monitor, mode, data_fingerprint(data), run_dir,
                                      restore_dir=os.path.join(run_dir, "checkpoints"))
    epoch, in_epoch = checkpoints.restore() if resume else (0, 0)
    model.initial_step_in_epoch = in_epoch
    train_ds, dev_ds, _ = datasets(cfg, prepared, start_step=epoch * spe + in_epoch)
    history_csv = os.path.join(out_dir, "history.csv")
    if resume:
        rewrite_history_csv(history_csv, checkpoints.history)
    callbacks = [
        StopOnNonFiniteLoss(ckpt_dir),
        tf_keras.callbacks.TensorBoard(os.path.join(out_dir, "tensorboard"),
                                       update_freq=cfg.train.tensorboard_update_freq),
        tf_keras.callbacks.CSVLogger(history_csv, append=resume),
    ]
    if cfg.train.early_stopping_patience:
        early = tf_keras.callbacks.EarlyStopping(cfg.train.monitor, mode=mode,
                                                 patience=cfg.train.early_stopping_patience)
        callbacks.append(early)
        checkpoints.replay.append(early)
    callbacks.append(checkpoints)  # after EarlyStopping: an epoch's checkpoint knows if training stopped
    start = time.time()
    if epoch < cfg.train.epochs and not checkpoints.stopped_early:
        with stop_on_signals(checkpoints):
            try:
                model.fit(train_ds, validation_data=dev_ds, epochs=cfg.train.epochs, initial_epoch=epoch,
                          steps_per_epoch=spe, callbacks=callbacks, verbose=2)
            except (TrainingDiverged, Interrupted):
                _close_tensorboard(callbacks)
                raise
        if checkpoints.stop_signal is not None:  # the signal came during the last validation
            raise checkpoints.interrupted(int(model.optimizer.iterations.numpy()), checkpoints.manager.latest_checkpoint)
    return model, {"best_epoch": checkpoints.best_epoch(), "epochs_run": len(checkpoints.history),
                   "train_seconds": round(time.time() - start, 1)}


def _finish(cfg: Config, prepared: Prepared, model, run_dir: str, metrics: dict) -> dict:
    """The chief evaluates the best checkpoint on dev and test, on its own (evaluate_split calls the model
    directly, without the strategy's collectives), and writes metrics.json."""
    data = prepared.data
    read_classifier(model, os.path.join(run_dir, "checkpoints"))
    dev_ds, test_ds = evaluation_datasets(cfg, prepared)  # not the training stream (bucketing tokenizes it all)
    best_epoch = metrics["best_epoch"]
    print(f"best epoch {best_epoch} by {cfg.train.monitor}; trained in {metrics['train_seconds']:.0f} s")
    summaries = {}
    for split, ds in (("dev", dev_ds), ("test", test_ds)):
        if ds is None:
            continue  # no test split: tuning on dev
        labels = getattr(data, split).labels
        texts = getattr(data, split).texts if getattr(data, split).texts_b is None else None  # pairs: no text attacks
        report = evaluate_split(model, ds, labels, data.label_names, cfg, run_dir, split,
                                robustness=split == "test" and cfg.eval.robustness_after_training,
                                texts=texts, encoder=prepared.text_encoder)
        print(format_report(report, split))
        summaries[split] = {k: v for k, v in report.items() if k not in ("calibration_bins", "thresholds")}
    log_hparams(cfg, os.path.join(run_dir, "tensorboard"), summaries, best_epoch)
    metrics = {**metrics, **summaries}
    # Written last, atomically: a run directory with metrics.json is a finished run.
    path = os.path.join(run_dir, "metrics.json")
    with open(path + ".tmp", "w", encoding="utf-8") as f:
        json.dump(metrics, f, indent=2, ensure_ascii=False)
    os.replace(path + ".tmp", path)
    print(f"run finished: {os.path.abspath(run_dir)}")
    return metrics
