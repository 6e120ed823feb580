"""The story of one training run: prepare (data, vocabulary, pretrained weights), fit with callbacks and
checkpoints, finish (the best checkpoint evaluated on dev and test, metrics.json).

Everything that can fail because of the user's input (config, data, labels) is checked before the run
directory is created, so a mistake never leaves a directory that looks like a result. The run directory's
helpers are in trainer/run_dir.py, the callbacks in trainer/callbacks.py, the data streams in dataset/streams.py.
"""
from __future__ import annotations

import contextlib
import json
import logging
import os
import time

import tf_keras

from core.errors import Interrupted, TrainingDiverged
from core.loader import config_to_dict, flatten
from core.paths import check_new_dir
from core.schema import PATH_KEYS, PATH_OR_NAME_KEYS, Config
from dataset.corpus import Corpus
from dataset.data import load_data
from dataset.streams import evaluation_streams, training_stream
from dataset.tokenizer import vocabulary_digest
from trainer.adversarial_model import AdversarialModel
from trainer.callbacks import ProgressLog, StopOnNonFiniteLoss, close_tensorboard, fit_verbosity, log_hparams
from trainer.checkpointing import (
    TrainingCheckpoints,
    data_fingerprint,
    finishing_on_signals,
    read_weights,
    remove_unfinished_writes,
    run_dir_lock,
    steps_taken,
    stop_on_signals,
)
from trainer.distribute import is_chief, make_strategy, output_dir, per_worker
from trainer.evaluate import evaluate_split
from trainer.families import Prepared, family, make_model
from trainer.init_from import check_language_model_run
from trainer.metrics import format_report
from trainer.optimizers import GradualUnfreezing, layerwise_multipliers, make_optimizer
from trainer.restore import read_run_files
from trainer.run_dir import check_resumable, make_run_dir, rewrite_history_csv, starting_run_dir, write_run_files

log = logging.getLogger(__name__)


def prepare(cfg: Config, resuming: str | None = None) -> Prepared:
    """Loads and checks the data, the vocabulary and any pretrained weights (through the backbone family);
    raises UserError on bad input. Runs before the run directory exists. `resuming`: the run directory of a
    resumed run, whose own files stand in for the pretrained start (its checkpoint holds the weights)."""
    if cfg.model.init_from and not resuming:
        check_language_model_run(cfg)  # before the data are read
    data = load_data(cfg.data)
    return family(cfg.model.name).prepare(cfg, data, data.unlabeled if cfg.reads_unlabeled else Corpus(),
                                          resuming=resuming)


def steps_per_epoch(cfg: Config, n_train: int) -> int:
    """Train steps (batches) per epoch. A method that replays each batch (free, cfg.replays updates a batch) takes
    1/replays of them: an epoch is as many weight updates as a clean run's, whatever the method."""
    return -(-(cfg.train.steps_per_epoch or -(-n_train // cfg.data.batch_size)) // cfg.replays)


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
    total_steps = cfg.train.epochs * steps_per_epoch(cfg, len(prepared.data.train.texts)) * cfg.replays  # updates
    depths = model.classifier.layer_depths()
    multipliers = None
    if cfg.train.layerwise_lr_decay is not None:
        multipliers = layerwise_multipliers(depths, model.classifier.num_layers, cfg.train.layerwise_lr_decay)
    if cfg.train.jit_compile and cfg.data.padding == "batch":
        log.warning("train.jit_compile with data.padding: batch compiles the step again for every new batch "
                    "length; data.padding: max_length compiles it once")
    optimizer = make_optimizer(cfg.train, total_steps, multipliers, depths if cfg.train.gradual_unfreezing else None)
    model.compile(optimizer=optimizer, jit_compile=cfg.train.jit_compile,
                  steps_per_execution=cfg.train.steps_per_execution)
    return model


def train(cfg: Config, run_dir: str, resume: bool = False) -> dict:
    """Runs training end to end and returns the final metrics (also written to metrics.json). With
    `resume`, continues the unfinished run in run_dir from its latest checkpoint. A language model
    (task: lm) is trainer/lm_run.py's."""
    if cfg.task == "lm":
        from trainer.lm_run import train_language_model

        return train_language_model(cfg, run_dir, resume)
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
            check_resumable(run_dir)
            read_run_files(cfg, run_dir)  # what predict.py and export.py will need is there before training on
            remove_unfinished_writes(os.path.join(run_dir, "checkpoints"))
        with strategy.scope(), mixed_precision(cfg.train.mixed_precision):  # a pretrained encoder's too
            prepared = prepare(cfg, resuming=run_dir if resume else None)
        if chief and not resume:
            with starting_run_dir(run_dir):
                make_run_dir(run_dir)
                held.enter_context(run_dir_lock(run_dir))
                write_run_files(cfg, prepared, run_dir)
        if chief:
            log.info("run directory: %s", os.path.abspath(run_dir))
        with output_dir(run_dir, chief) as out_dir:
            model, metrics = _train(cfg, prepared, strategy, run_dir, out_dir, resume)
        if not chief:
            return {}
        with finishing_on_signals(run_dir):
            return _finish(cfg, prepared, model, run_dir, metrics)


def _train(cfg: Config, prepared: Prepared, strategy, run_dir: str, out_dir: str, resume: bool):
    data = prepared.data
    with strategy.scope():
        model = build_model(cfg, prepared, len(data.label_names))
        model.optimizer.build(model.trainable_variables)  # slots exist before a checkpoint is restored
    mode = "min" if cfg.train.monitor == "val_loss" else "max"

    def streams(start_step):
        return (per_worker(strategy, lambda shard: training_stream(cfg, data, prepared.text_encoder, start_step,
                                                                   shard)),
                evaluation_streams(cfg, data, prepared.text_encoder)[0])

    unfreezing = [GradualUnfreezing(model.optimizer, model.classifier.num_layers + 1)] if cfg.train.gradual_unfreezing else []
    metrics = fit(cfg, model, streams, steps_per_epoch(cfg, len(data.train.texts)), run_dir, out_dir, resume,
                  cfg.train.monitor, mode, data_fingerprint(data), callbacks_first=unfreezing,
                  vocab_digest=vocabulary_digest(prepared.vocab))
    return model, metrics


def recorded_settings(cfg: Config) -> dict:
    """The settings a resume must find unchanged in config.yaml: all but where files are (data moved to another
    folder keeps its fingerprint, checked apart) and model.lower_case (recorded once a hub download is read)."""
    places = {f"{section}.{key}" for table in (PATH_KEYS, PATH_OR_NAME_KEYS) for section, keys in table.items()
              for key in keys} | {"model.lower_case"}
    return {key: value for key, value in flatten(config_to_dict(cfg)).items() if key not in places}


def fit(cfg: Config, model, streams, spe: int, run_dir: str, out_dir: str, resume: bool, monitor: str, mode: str,
        fingerprint: str, best=None, callbacks_first=(), vocab_digest: str | None = None) -> dict:
    """fit() with the run's checkpoints (restored first when resuming), TensorBoard, history.csv, early
    stopping and signals; `streams(start_step)` gives (training stream from that step, validation stream).
    Returns the best epoch, the epochs run and the training time."""
    ckpt_dir = os.path.join(out_dir, "checkpoints")
    checkpoints = TrainingCheckpoints(ckpt_dir, model, spe, cfg.train.checkpoint_every, cfg.train.keep_last,
                                      monitor, mode, fingerprint, run_dir,
                                      restore_dir=os.path.join(run_dir, "checkpoints"), best=best,
                                      settings=recorded_settings(cfg), vocab_digest=vocab_digest)
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


def _finish(cfg: Config, prepared: Prepared, model, run_dir: str, metrics: dict) -> dict:
    """The chief evaluates the best checkpoint on dev and test, on its own (evaluate_split calls the model
    directly, without the strategy's collectives), and writes metrics.json."""
    data = prepared.data
    read_weights(model.classifier, os.path.join(run_dir, "checkpoints"))
    dev_ds, test_ds = evaluation_streams(cfg, data, prepared.text_encoder)
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
