"""The classifier's task (task: classify) in the run story (trainer/story.py): prepare (data, vocabulary,
pretrained weights), the adversarial model, its training and dev streams, and the final evaluation of the best
checkpoint on dev and test. The data streams are dataset/streams.py's; the run directory's helpers
trainer/run_dir.py's.
"""
from __future__ import annotations

import logging
import os

from core.schema import Config
from dataset.corpus import Corpus
from dataset.data import load_data
from dataset.streams import evaluation_streams, training_stream
from dataset.tokenizer import vocabulary_digest
from trainer.adversarial_model import AdversarialModel
from trainer.callbacks import log_hparams
from trainer.checkpointing import data_fingerprint, read_weights
from trainer.distribute import per_worker
from trainer.evaluate import evaluate_split
from trainer.families import Prepared, family, make_model
from trainer.init_from import check_language_model_run
from trainer.metrics import format_report
from trainer.optimizers import GradualUnfreezing, layerwise_multipliers, make_optimizer
from trainer.restore import read_run_files
from trainer.run_dir import write_run_files
from trainer.story import Task, mixed_precision

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


class ClassifierTask(Task):
    """A classifier (task: classify): an LSTM or a Hugging Face encoder with the configured regularizers."""

    def __init__(self, cfg: Config):
        super().__init__(cfg)
        self.monitor = cfg.train.monitor
        self.mode = "min" if cfg.train.monitor == "val_loss" else "max"

    def check_resumed(self, run_dir: str) -> None:
        read_run_files(self.cfg, run_dir)  # what predict.py and export.py will need is there before training on

    def prepare(self, resuming: str | None) -> None:
        self.prepared = prepare(self.cfg, resuming)
        data = self.prepared.data
        self.steps_per_epoch = steps_per_epoch(self.cfg, len(data.train.texts))
        self.fingerprint = data_fingerprint(data)
        self.vocab_digest = vocabulary_digest(self.prepared.vocab)

    def write_run_files(self, run_dir: str) -> None:
        write_run_files(self.cfg, self.prepared, run_dir)

    def build(self):
        model = build_model(self.cfg, self.prepared, len(self.prepared.data.label_names))
        model.optimizer.build(model.trainable_variables)  # slots exist before a checkpoint is restored
        return model

    def streams(self, strategy, start_step: int):
        cfg, data, encoder = self.cfg, self.prepared.data, self.prepared.text_encoder
        return (per_worker(strategy, lambda shard: training_stream(cfg, data, encoder, start_step, shard)),
                evaluation_streams(cfg, data, encoder)[0])

    def callbacks(self, model) -> list:
        if not self.cfg.train.gradual_unfreezing:
            return []
        return [GradualUnfreezing(model.optimizer, model.classifier.num_layers + 1)]

    def finish(self, model, run_dir: str, metrics: dict) -> dict:
        """The chief evaluates the best checkpoint on dev and test, on its own (evaluate_split calls the model
        directly, without the strategy's collectives)."""
        cfg, data = self.cfg, self.prepared.data
        read_weights(model.classifier, os.path.join(run_dir, "checkpoints"))
        dev_ds, test_ds = evaluation_streams(cfg, data, self.prepared.text_encoder)
        best_epoch = metrics["best_epoch"]
        print(f"best epoch {best_epoch} by {cfg.train.monitor}; trained in {metrics['train_seconds']:.0f} s")
        summaries = {}
        for split, ds in (("dev", dev_ds), ("test", test_ds)):
            if ds is None:
                continue  # no test split: tuning on dev
            part = getattr(data, split)
            texts = part.texts if part.texts_b is None else None  # pairs: no text attacks
            report = evaluate_split(model, ds, part.labels, data.label_names, cfg, run_dir, split,
                                    robustness=split == "test" and cfg.eval.robustness_after_training,
                                    texts=texts, encoder=self.prepared.text_encoder)
            print(format_report(report, split))
            summaries[split] = {k: v for k, v in report.items() if k not in ("calibration_bins", "thresholds")}
        log_hparams(cfg, os.path.join(run_dir, "tensorboard"), summaries, best_epoch)
        return {**metrics, **summaries}
