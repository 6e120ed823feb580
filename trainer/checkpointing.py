"""Checkpoints a run can continue from, the best weights, and stopping cleanly on SIGINT / SIGTERM.

checkpoints/train/ holds everything a run needs to go on exactly where it stopped: the weights, the
optimizer (its step counter included), the epoch, the metrics of the epoch in progress, the history of
finished epochs, and the state of every random generator (dropout masks, random perturbations). The data
position follows from the step (dataset.pipeline). checkpoints/best/ holds the classifier's weights at
the best epoch by train.monitor. Both are tf.train.CheckpointManager directories: a checkpoint becomes
the latest only once it is completely written (its `checkpoint` file is replaced atomically), so a killed
write never leaves a broken latest checkpoint; `keep_last` bounds the disk used.
"""
from __future__ import annotations

import contextlib
import glob
import hashlib
import json
import logging
import os
import shutil
import signal
import threading

import numpy as np
import tensorflow as tf
import tf_keras

from core.errors import Interrupted, UserError
from core.paths import LOCK_FILE, in_use, lock_owner

log = logging.getLogger(__name__)

TRAIN_DIR = "train"
BEST_DIR = "best"


@contextlib.contextmanager
def run_dir_lock(run_dir: str):
    """Holds run_dir/.lock (this process's id) while a process trains or finishes the run, so that a second
    process on the same run (two `train.resume: auto` commands, a --resume beside a running job) stops at
    once with one line. A lock whose process is gone (killed) is stale and taken over."""
    path = os.path.join(run_dir, LOCK_FILE)
    for _ in range(3):
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            break
        except FileExistsError:
            owner = lock_owner(run_dir)
            if owner:
                raise in_use(run_dir, owner) from None
            with contextlib.suppress(FileNotFoundError):
                os.remove(path)  # stale: its process is gone
        except OSError as e:  # permission denied, a read-only file system, a lost mount
            raise UserError(f"{run_dir}: cannot write into the run directory ({e.strerror or e}); a run "
                            "continues only where it can save") from None
    else:
        raise UserError(f"{run_dir}: could not lock the run directory ({path})")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(str(os.getpid()))
    except OSError:  # a full disk: no lock file left behind that names no process
        with contextlib.suppress(OSError):
            os.remove(path)
        raise
    try:
        yield
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.remove(path)


def remove_unfinished_writes(checkpoint_dir: str) -> None:
    """Removes the ckpt-N_temp/ folders that a write stopped part-way leaves behind (never the latest
    checkpoint: CheckpointManager switches to a checkpoint only once it is complete)."""
    for which in (TRAIN_DIR, BEST_DIR):
        for path in glob.glob(os.path.join(checkpoint_dir, which, "*_temp*")):
            if os.path.isdir(path):
                shutil.rmtree(path, ignore_errors=True)


@contextlib.contextmanager
def finishing_on_signals(run_dir: str):
    """During the final evaluation (training has finished): SIGINT or SIGTERM stop it with one line that
    says how to finish the run (--resume evaluates it without training again)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received = []

    def stop(signum, frame):
        received.append(signum)
        raise KeyboardInterrupt

    previous = {s: signal.signal(s, stop) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    except KeyboardInterrupt:
        signum = received[0] if received else signal.SIGINT
        raise Interrupted(f"stopped by {signal.Signals(signum).name} during the final evaluation (training had "
                          f"finished and is saved); finish it with: python train.py --resume {run_dir}",
                          signum) from None
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


def random_generators(model) -> dict:
    """The tf.random.Generator of every layer that draws random numbers (dropout), keyed by its place among
    them and its layer type. tf-keras leaves them out of checkpoints; a resumed run must continue their
    streams. Not by layer name: Keras numbers names per process (dropout_3 after three other dropouts), so a
    run resumed in a process that built other layers first would not find them."""
    found = {}
    for layer in model.submodules:
        rng = getattr(getattr(layer, "_random_generator", None), "_generator", None)
        if isinstance(rng, tf.random.Generator):
            found[f"{len(found)}_{type(layer).__name__}"] = rng
    return found


def data_fingerprint(data) -> str:
    """A digest of the texts and labels of every split, to tell whether a resumed run sees its own data."""
    digest = hashlib.sha256()
    for split in (s for s in (data.train, data.dev, data.test) if s is not None):  # test: None when tuning
        for text in split.texts + (split.texts_b or []):
            digest.update(text.encode("utf-8") + b"\0")
        digest.update(np.asarray(split.labels, np.int64).tobytes())
    data.unlabeled.fingerprint(digest)  # in-memory texts as before; a streamed file by name, size, ends
    digest.update(json.dumps(data.label_names).encode("utf-8"))
    return digest.hexdigest()


def latest(checkpoint_dir: str, which: str) -> str | None:
    """The newest complete checkpoint in checkpoints/<which>, or None."""
    return tf.train.latest_checkpoint(os.path.join(checkpoint_dir, which))


VOCAB_KEY = "vocab/.ATTRIBUTES/VARIABLE_VALUE"
SETTINGS_KEY = "settings/.ATTRIBUTES/VARIABLE_VALUE"
VOCAB_SETTING = "vocabulary sha256"  # beside the config's settings in the training state


def check_vocabulary(path: str, digest: str | None, vocab_file: str) -> None:
    """The vocabulary in use (`digest`, of `vocab_file`) is the one the checkpoint at `path` was trained with
    (recorded there; checkpoints from before the record are taken as they are)."""
    if digest is None:
        return
    try:
        reader = tf.train.load_checkpoint(path)
        if reader.has_tensor(VOCAB_KEY):  # checkpoints/best
            saved = reader.get_tensor(VOCAB_KEY).decode()
        elif reader.has_tensor(SETTINGS_KEY):  # checkpoints/train: with the run's settings
            saved = json.loads(reader.get_tensor(SETTINGS_KEY).decode()).get(VOCAB_SETTING, "")
        else:
            return
    except (tf.errors.OpError, ValueError):
        return  # a damaged checkpoint: reading it says so
    if saved and saved != digest:
        raise UserError(f"{vocab_file}: not the vocabulary the weights of {path} were trained with (it changed after "
                        "training: an embedding row belongs to the token at its id); put the run's own file back")


def read_weights(weights, checkpoint_dir: str, which: str = BEST_DIR,
                 describes: str = "this run's config.yaml and labels.json describe", vocab: tuple | None = None) -> str:
    """Loads `weights` from checkpoints/best (what TrainingCheckpoints kept as best: a classifier, or a language
    model's network) or from a classifier run's checkpoints/train (the last state). `vocab`: (digest, file) of
    the vocabulary in use, checked against the one the weights were trained with."""
    path = latest(checkpoint_dir, which)
    if path is None:
        raise UserError(f"{checkpoint_dir}: no '{which}' checkpoint (training did not finish an epoch?)")
    if vocab is not None:
        check_vocabulary(path, *vocab)
    root = {BEST_DIR: lambda: tf.train.Checkpoint(classifier=weights),
            TRAIN_DIR: lambda: tf.train.Checkpoint(model=tf.train.Checkpoint(classifier=weights))}[which]()
    try:
        status = root.read(path)
        status.assert_existing_objects_matched()  # every weight of the model comes from the checkpoint
        status.expect_partial()  # the training state's optimizer and counters are not needed here
    except (ValueError, AssertionError, IndexError, tf.errors.OpError) as e:
        first = (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
        raise UserError(f"{path}: cannot be read into the model {describes} ({first}); the checkpoint is damaged, "
                        "or those files changed after training") from None
    return path


def steps_taken(model) -> int:
    """Train steps (batches) done: the optimizer's updates, over the updates each step makes (a method that
    replays each batch makes several)."""
    return int(model.optimizer.iterations.numpy()) // getattr(model, "updates_per_step", 1)


class ResumesMidEpoch:
    """A Keras model mixin: fit() starts its first epoch at `initial_step_in_epoch`, set when a run resumes in
    the middle of an epoch (through tf-keras's hook for the counters fit() starts at, which BackupAndRestore
    uses too)."""

    initial_step_in_epoch = 0

    def _maybe_load_initial_counters_from_ckpt(self, steps_per_epoch, initial_epoch):
        epoch, step = super()._maybe_load_initial_counters_from_ckpt(steps_per_epoch, initial_epoch)
        return epoch, step or self.initial_step_in_epoch


class TrainingCheckpoints(tf_keras.callbacks.Callback):
    """Saves the training state into checkpoint_dir every `every` steps and at each epoch end, keeps the
    best weights by `monitor`, and, once a stop was requested (SIGINT / SIGTERM), saves after the current step and raises
    Interrupted.

    Goes after EarlyStopping in the callback list, so that the state it saves at an epoch end knows whether
    training stopped early. `restore()` continues a run: fit then starts at the returned (epoch, step).
    """

    def __init__(self, checkpoint_dir: str, model, steps_per_epoch: int, every: int | None, keep_last: int,
                 monitor: str, mode: str, fingerprint: str, run_dir: str, restore_dir: str | None = None,
                 best=None, settings: dict | None = None, vocab_digest: str | None = None,
                 defaults: dict | None = None):
        super().__init__()
        self.set_model(model)
        self.checkpoint_dir, self.run_dir = checkpoint_dir, run_dir
        self.restore_dir = restore_dir or checkpoint_dir  # a multi-worker run's non-chief writes elsewhere
        self.steps_per_epoch, self.every = steps_per_epoch, every
        self.monitor, self.mode = monitor, mode
        self.fingerprint = fingerprint
        self._epoch = tf.Variable(0, dtype=tf.int64, trainable=False)
        self._stopped = tf.Variable(False, trainable=False)
        self._history = tf.Variable("[]", trainable=False)
        self._data = tf.Variable(fingerprint, trainable=False)
        self.settings = settings or {}  # the run's config, flattened: a resume refuses an edited config.yaml
        self.defaults = defaults or {}  # the settings' defaults: one added since a run started is accepted at it
        self.vocab_digest = vocab_digest  # ties vocab.tsv to these weights: in the settings and beside the best
        recorded = {**self.settings, VOCAB_SETTING: vocab_digest} if vocab_digest else self.settings
        self._settings = tf.Variable(json.dumps(recorded, sort_keys=True, default=str), trainable=False)
        self._vocab = tf.Variable(vocab_digest or "", trainable=False)
        state = tf.train.Checkpoint(model=model, epoch=self._epoch, stopped_early=self._stopped,
                                    history=self._history, data=self._data, settings=self._settings,
                                    rngs=random_generators(model))
        self.manager = tf.train.CheckpointManager(state, os.path.join(checkpoint_dir, TRAIN_DIR), keep_last)
        # checkpoints/best: the weights to keep (the classifier; a language model's network)
        best = model.classifier if best is None else best
        self.best = tf.train.CheckpointManager(tf.train.Checkpoint(classifier=best, vocab=self._vocab),
                                               os.path.join(checkpoint_dir, BEST_DIR), max_to_keep=1)
        self.history: list[dict] = []
        self.replay: list[tf_keras.callbacks.Callback] = []  # callbacks whose state follows the history
        self.stop_signal: int | None = None
        self.current_epoch = 0
        self._saved_step = -1
        self._resume_metrics = None  # metric variable values of the epoch in progress, after restore()

    # ------------------------------------------------------------------------------ state
    @property
    def stopped_early(self) -> bool:
        return bool(self._stopped.numpy())

    def restore(self) -> tuple[int, int]:
        """Restores the latest intact training state (a damaged latest checkpoint, e.g. a truncated file, is
        named in a warning and the one before it used); returns (epoch, step within that epoch) to start at."""
        state = tf.train.get_checkpoint_state(os.path.join(self.restore_dir, TRAIN_DIR))
        paths = list(state.all_model_checkpoint_paths) if state else []
        if not paths:
            raise UserError(f"{self.run_dir}: nothing to resume: no checkpoint in {self.restore_dir}/{TRAIN_DIR}")
        for path in reversed(paths):
            try:
                saved = tf.train.load_checkpoint(path).get_tensor("data/.ATTRIBUTES/VARIABLE_VALUE")
                if saved.decode() == self.fingerprint:
                    self.manager.checkpoint.restore(path).assert_existing_objects_matched()
            except (tf.errors.OpError, ValueError, IndexError, AssertionError) as e:
                first = (str(e).strip().splitlines() or [type(e).__name__])[0][:160]
                log.warning("%s is damaged (%s); trying the checkpoint before it", path, first)
                continue
            if saved.decode() != self.fingerprint:
                raise UserError(f"{self.run_dir}: the data changed since this run started (texts or labels "
                                "differ); resume with the data it was started on, or start a new run")
            check_vocabulary(path, self.vocab_digest, os.path.join(self.run_dir, "vocab.tsv"))
            self._check_settings(json.loads(self._settings.numpy().decode()))
            if steps_taken(self.model) - int(self._epoch.numpy()) * self.steps_per_epoch >= self.steps_per_epoch:
                log.warning("%s was saved after an epoch's last step but before its end; continuing from the "
                            "checkpoint before it", path)
                continue
            break
        else:
            raise UserError(f"{self.run_dir}: every checkpoint in {self.restore_dir}/{TRAIN_DIR} is damaged "
                            f"({', '.join(os.path.basename(p) for p in paths)}); start the run again: python train.py "
                            f"--config {os.path.join(self.run_dir, 'config.yaml')} --run-dir <a new folder>")
        self.history = json.loads(self._history.numpy().decode())
        step = steps_taken(self.model)
        epoch = int(self._epoch.numpy())
        in_epoch = step - epoch * self.steps_per_epoch
        if in_epoch:
            self._resume_metrics = [v.numpy() for m in self.model.metrics for v in m.variables]
        self._saved_step = step
        log.info("resuming %s from %s: epoch %d, step %d (%d into the epoch)", self.run_dir, path, epoch + 1,
                 step, in_epoch)
        return epoch, in_epoch

    def _check_settings(self, started: dict) -> None:
        """The config the run started with (restored from its checkpoint) against config.yaml's now."""
        now = json.loads(json.dumps(self.settings, default=str))
        started = {k: v for k, v in started.items() if k != VOCAB_SETTING}  # checked by check_vocabulary
        for key in sorted(set(started) | set(now)):
            if key not in started and key in self.defaults and now.get(key) == self.defaults[key]:
                continue  # a setting added after the run started, at its default: the behaviour it started with
            if started.get(key) != now.get(key):
                raise UserError(f"{self.run_dir}/config.yaml: {key} is {now.get(key)!r}, but the run started with "
                                f"{started.get(key)!r}; put it back to resume, or start a new run with the new value")

    def save(self) -> str:
        self._history.assign(json.dumps(self.history))
        step = steps_taken(self.model)
        with self.writing(self.manager):
            path = self.manager.save(checkpoint_number=step)  # checkpoints/train/ckpt-<step>
        self._saved_step = step
        return path

    @contextlib.contextmanager
    def writing(self, manager):
        """A checkpoint that cannot be written (a full disk, a lost mount) is one line that says what is
        left to continue from; the previous checkpoint stays the latest."""
        try:
            yield
        except (tf.errors.ResourceExhaustedError, tf.errors.UnavailableError, tf.errors.PermissionDeniedError,
                tf.errors.DataLossError, OSError) as e:
            first = (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
            last = self.manager.latest_checkpoint
            then = (f"then continue with: python train.py --resume {self.run_dir} (from {last})" if last else
                    "then start the run again (no checkpoint was written yet)")
            raise UserError(f"{manager.directory}: cannot write a checkpoint ({first}); free disk space, "
                            f"{then}") from None

    # ------------------------------------------------------------------------------ callback
    def on_train_begin(self, logs=None):
        # TensorBoard writes batch summaries at model._train_counter, which fit() resets to 0.
        self.model._train_counter.assign(steps_taken(self.model))
        for callback in self.replay:
            for epoch, epoch_logs in enumerate(self.history):
                callback.on_epoch_end(epoch, dict(epoch_logs))
        self.model.stop_training = False

    def on_epoch_begin(self, epoch, logs=None):
        self.current_epoch = epoch
        if self._resume_metrics is not None:  # fit() has just reset the metrics of the resumed epoch
            variables = [v for m in self.model.metrics for v in m.variables]
            for variable, value in zip(variables, self._resume_metrics):
                variable.assign(value)
            self._resume_metrics = None

    def on_train_batch_end(self, batch, logs=None):
        step = self.current_epoch * self.steps_per_epoch + batch + 1
        if batch + 1 >= self.steps_per_epoch:
            return  # an epoch's last step: its end (validation, then a save) follows; a state saved between the two
            # would resume into an epoch with no step left, which fit() cannot run
        if self.stop_signal is not None:
            path = self.save() if step != self._saved_step else self.manager.latest_checkpoint
            raise self.interrupted(step, path)
        if self.every and step // self.every > self._saved_step // self.every:
            self.save()

    def on_epoch_end(self, epoch, logs=None):
        logs = {k: float(v) for k, v in (logs or {}).items()}
        values = [h[self.monitor] for h in self.history if self.monitor in h]
        if self.monitor not in logs:
            log.warning("train.monitor '%s' is not among this epoch's logs; the best checkpoint is not updated",
                        self.monitor)
        elif not values or (logs[self.monitor] < min(values) if self.mode == "min" else logs[self.monitor] > max(values)):
            with self.writing(self.best):
                self.best.save(checkpoint_number=epoch + 1)
        self.history.append(logs)
        self._epoch.assign(epoch + 1)
        self._stopped.assign(bool(self.model.stop_training))
        self.save()
        if self.stop_signal is not None:  # asked during the epoch's last step or its validation: stop here
            self.model.stop_training = True

    def interrupted(self, step: int, path: str | None) -> Interrupted:
        name = signal.Signals(self.stop_signal).name
        where = f"at step {step} (epoch {self.current_epoch + 1})" if step else "before the first step"
        saved = f"saved {path}" if path else "no checkpoint yet"
        return Interrupted(f"stopped by {name} {where}; {saved}; continue with: python train.py --resume "
                           f"{self.run_dir}", self.stop_signal)

    def best_epoch(self) -> int:
        values = [h.get(self.monitor, np.nan) for h in self.history]
        return int(np.nanargmin(values) if self.mode == "min" else np.nanargmax(values)) + 1


@contextlib.contextmanager
def stop_on_signals(checkpoints: TrainingCheckpoints):
    """While training: the first SIGINT or SIGTERM asks `checkpoints` to save after the current step and
    stop; a second SIGINT stops at once (KeyboardInterrupt)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def request_stop(signum, frame):
        if checkpoints.stop_signal is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt
        checkpoints.stop_signal = signum
        log.warning("%s received: finishing the current step, then saving and stopping (Ctrl-C again stops "
                    "at once, without saving)", signal.Signals(signum).name)

    previous = {s: signal.signal(s, request_stop) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
