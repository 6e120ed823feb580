"""The story of every run, whatever its task: strategy and seed, the run directory and its lock, the resume checks
in one order, prepare, fit with checkpoints and signals, finish, and metrics.json written last.

A task (trainer/tasks.py: a classifier, trainer/run.py; a language model, trainer/lm_run.py) says what differs:
what it prepares and writes into a new run directory, the model it builds, the streams it trains and validates on,
and what it evaluates at the end (the `Task` base class below). Everything that can fail because of the user's
input is checked in `prepare`, before the run directory is created, so a mistake never leaves a directory that
looks like a result.
"""
from __future__ import annotations

import contextlib
import logging
import os
import time

import tf_keras

from core.errors import Interrupted, TrainingDiverged
from core.loader import config_to_dict, flatten
from core.paths import check_new_dir, write_json_atomically
from core.schema import PATH_KEYS, PATH_OR_NAME_KEYS, Config
from trainer.callbacks import ProgressLog, StopOnNonFiniteLoss, close_tensorboard, fit_verbosity
from trainer.checkpointing import (
    TrainingCheckpoints,
    finishing_on_signals,
    remove_unfinished_writes,
    run_dir_lock,
    steps_taken,
    stop_on_signals,
)
from trainer.distribute import is_chief, make_strategy, output_dir
from trainer.run_dir import check_resumable, make_run_dir, rewrite_history_csv, starting_run_dir

log = logging.getLogger(__name__)


class Task:
    """What one kind of run prepares, builds, streams and evaluates. The story calls, in order: `check_resumed`
    (a resume only), `prepare`, `write_run_files` (a new run directory only), `build`, then fits with
    `steps_per_epoch`, `streams`, `monitor`/`mode`, `fingerprint`, `vocab_digest`, `best_weights` and `callbacks`,
    and at the end `finish`, whose metrics it writes to metrics.json."""

    monitor: str = "val_loss"
    mode: str = "min"

    def __init__(self, cfg: Config):
        self.cfg = cfg

    def check_resumed(self, run_dir: str) -> None:
        """A resumed run's own files, checked before its data are read."""

    def prepare(self, resuming: str | None) -> None:
        """Reads and checks the data (UserError on bad input), before any run directory is made."""
        raise NotImplementedError

    def write_run_files(self, run_dir: str) -> None:
        """What a new run directory holds besides its weights (config.yaml, the vocabulary, ...)."""
        raise NotImplementedError

    def build(self):
        """The compiled Keras model (called inside the strategy's scope)."""
        raise NotImplementedError

    steps_per_epoch: int
    fingerprint: str  # of the training data: a resume refuses other data
    vocab_digest: str | None = None  # of the vocabulary: a checkpoint refuses another one

    def streams(self, strategy, start_step: int):
        """(training stream from `start_step`, validation stream)."""
        raise NotImplementedError

    def best_weights(self, model):
        """What checkpoints/best holds (None: the model's own choice, TrainingCheckpoints's default)."""
        return None

    def callbacks(self, model) -> list:
        """Callbacks the task adds before TensorBoard and the checkpoints."""
        return []

    def finish(self, model, run_dir: str, metrics: dict) -> dict:
        """The final evaluation: `metrics` (best epoch, epochs run, training time) with the task's results."""
        raise NotImplementedError


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


def run(task: Task, run_dir: str, resume: bool = False) -> dict:
    """Runs `task` end to end in run_dir (or continues its unfinished run there, with `resume`) and returns the
    final metrics, also written to metrics.json. Under a distribution strategy the chief writes the run
    directory; every worker trains."""
    cfg = task.cfg
    strategy = make_strategy(cfg.distribute)  # before any other TensorFlow work
    chief = is_chief(strategy)
    tf_keras.backend.experimental.enable_tf_random_generator()  # dropout streams that checkpoints can hold
    tf_keras.utils.set_random_seed(cfg.train.seed)
    with contextlib.ExitStack() as held:
        if resume:
            check_resumable(run_dir)  # a finished run says so even where it could not be locked
        elif chief:
            check_new_dir(run_dir, "--run-dir", create_parents=True)  # before the data are read; again when made
        if resume and chief:
            held.enter_context(run_dir_lock(run_dir))  # one process at a time on a run
        if resume:
            check_resumable(run_dir)  # again, under the lock
            task.check_resumed(run_dir)
            remove_unfinished_writes(os.path.join(run_dir, "checkpoints"))
        with strategy.scope(), mixed_precision(cfg.train.mixed_precision):  # a pretrained encoder's too
            task.prepare(resuming=run_dir if resume else None)
        if chief and not resume:
            with starting_run_dir(run_dir):
                make_run_dir(run_dir)
                held.enter_context(run_dir_lock(run_dir))
                task.write_run_files(run_dir)
        if chief:
            log.info("run directory: %s", os.path.abspath(run_dir))
        with strategy.scope():
            model = task.build()
        with output_dir(run_dir, chief) as out_dir:
            metrics = fit(cfg, model, lambda step: task.streams(strategy, step), task.steps_per_epoch, run_dir,
                          out_dir, resume, task.monitor, task.mode, task.fingerprint, best=task.best_weights(model),
                          callbacks_first=task.callbacks(model), vocab_digest=task.vocab_digest)
        if not chief:
            return {}
        with finishing_on_signals(run_dir):
            say_if_still_improving(cfg, metrics)
            metrics = task.finish(model, run_dir, metrics)
            # Written last, atomically: a run directory with metrics.json is a finished run.
            write_json_atomically(os.path.join(run_dir, "metrics.json"), metrics, "run")
            print(f"run finished: {os.path.abspath(run_dir)}")
            return metrics


def say_if_still_improving(cfg: Config, metrics: dict) -> None:
    """A run whose best epoch is its last (and which used every epoch it was given) may have stopped too early:
    it says so, and what to raise."""
    if cfg.train.epochs > 1 and metrics["best_epoch"] == metrics["epochs_run"] == cfg.train.epochs:
        print(f"note: the best epoch ({metrics['best_epoch']}) is the last of train.epochs {cfg.train.epochs}: "
              f"{cfg.train.monitor} was still improving; raise train.epochs (early stopping, "
              "train.early_stopping_patience, ends the run when it stops improving)")


def recorded_settings(cfg: Config) -> dict:
    """The settings a resume must find unchanged in config.yaml: all but where files are (data moved to another
    folder keeps its fingerprint, checked apart) and model.lower_case (recorded once a hub download is read)."""
    places = {f"{section}.{key}" for table in (PATH_KEYS, PATH_OR_NAME_KEYS) for section, keys in table.items()
              for key in keys} | {"model.lower_case"}
    return {key: value for key, value in flatten(config_to_dict(cfg)).items() if key not in places}


def fit(cfg: Config, model, streams, spe: int, run_dir: str, out_dir: str, resume: bool, monitor: str, mode: str,
        fingerprint: str, best=None, callbacks_first=(), vocab_digest: str | None = None) -> dict:
    """fit() with the run's checkpoints (restored first when resuming), TensorBoard, history.csv, early
    stopping, progress lines and signals; `streams(start_step)` gives (training stream from that step, validation
    stream). Returns the best epoch, the epochs run and the training time."""
    ckpt_dir = os.path.join(out_dir, "checkpoints")
    checkpoints = TrainingCheckpoints(ckpt_dir, model, spe, cfg.train.checkpoint_every, cfg.train.keep_last,
                                      monitor, mode, fingerprint, run_dir,
                                      restore_dir=os.path.join(run_dir, "checkpoints"), best=best,
                                      settings=recorded_settings(cfg), vocab_digest=vocab_digest,
                                      defaults=recorded_settings(Config()))
    epoch, in_epoch = checkpoints.restore() if resume else (0, 0)
    model.initial_step_in_epoch = in_epoch
    train_ds, dev_ds = streams(epoch * spe + in_epoch)
    history_csv = os.path.join(out_dir, "history.csv")
    if resume:
        rewrite_history_csv(history_csv, checkpoints.history)
    callbacks = [
        StopOnNonFiniteLoss(ckpt_dir),
        *callbacks_first,
        tf_keras.callbacks.TensorBoard(os.path.join(out_dir, "tensorboard"),
                                       update_freq=cfg.train.tensorboard_update_freq),
        tf_keras.callbacks.CSVLogger(history_csv, append=resume),
    ]
    if fit_verbosity() == 2:
        callbacks.append(ProgressLog(spe))
    if cfg.train.early_stopping_patience:
        early = tf_keras.callbacks.EarlyStopping(monitor, mode=mode, patience=cfg.train.early_stopping_patience)
        callbacks.append(early)
        checkpoints.replay.append(early)
    callbacks.append(checkpoints)  # after EarlyStopping: an epoch's checkpoint knows if training stopped
    start = time.time()
    if epoch < cfg.train.epochs and not checkpoints.stopped_early:
        with stop_on_signals(checkpoints):
            try:
                model.fit(train_ds, validation_data=dev_ds, epochs=cfg.train.epochs, initial_epoch=epoch,
                          steps_per_epoch=spe, callbacks=callbacks, verbose=fit_verbosity())
            except (TrainingDiverged, Interrupted):
                close_tensorboard(callbacks)
                raise
        if checkpoints.stop_signal is not None:  # the signal came during the last validation
            raise checkpoints.interrupted(steps_taken(model), checkpoints.manager.latest_checkpoint)
    return {"best_epoch": checkpoints.best_epoch(), "epochs_run": len(checkpoints.history),
            "train_seconds": round(time.time() - start, 1)}
