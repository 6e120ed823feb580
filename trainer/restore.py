"""Rebuild a trained model from its run directory (config.yaml, vocabulary, labels, best checkpoint)."""
from __future__ import annotations

import json
import os
from dataclasses import dataclass

from core.errors import UserError
from core.loader import load_config
from core.schema import Config
from dataset.tokenizer import vocabulary_digest
from trainer.adversarial_model import AdversarialModel
from trainer.checkpointing import BEST_DIR, read_weights
from trainer.families import family, make_model


@dataclass
class Run:
    cfg: Config
    label_names: list[str]
    text_encoder: object  # raw strings -> model inputs
    model: AdversarialModel


def load_run(run_dir: str, checkpoint: str = BEST_DIR) -> Run:
    """The run's model with the weights of checkpoints/best, or of the latest training state with
    checkpoint='train'."""
    config_path = os.path.join(run_dir, "config.yaml")
    if not os.path.exists(config_path):
        raise UserError(f"{run_dir}: not a run directory (no config.yaml)")
    cfg = load_config(config_path)
    label_names, prepared = read_run_files(cfg, run_dir)
    model = make_model(cfg, len(label_names), prepared)
    vocab_file = next((os.path.join(run_dir, name) for name in ("vocab.tsv", "vocab.txt")
                       if os.path.exists(os.path.join(run_dir, name))), run_dir)
    read_weights(model.classifier, os.path.join(run_dir, "checkpoints"), checkpoint,
                 vocab=(vocabulary_digest(prepared.vocab), vocab_file))
    return Run(cfg, label_names, prepared.text_encoder, model)


def read_run_files(cfg: Config, run_dir: str):
    """What a run keeps besides config.yaml and its weights: (label names, the prepared vocabulary and text
    encoder). A missing or damaged file is one line naming it (a resume checks them before it trains on)."""
    labels_path = os.path.join(run_dir, "labels.json")
    try:
        with open(labels_path, encoding="utf-8") as f:
            label_names = json.load(f)
    except FileNotFoundError:
        raise UserError(f"{labels_path}: missing; the run directory is incomplete") from None
    except (ValueError, UnicodeDecodeError):
        raise UserError(f"{labels_path}: not valid JSON") from None
    if not (isinstance(label_names, list) and len(label_names) >= 2 and all(isinstance(n, str) for n in label_names)):
        raise UserError(f"{labels_path}: expected a list of at least two label names")
    try:
        return label_names, family(cfg.model.name).restore(cfg, run_dir)
    except OSError as e:  # a Hugging Face encoder's or tokenizer's saved folder
        raise UserError(f"{run_dir}: the run directory is incomplete ({str(e).splitlines()[0][:200]})") from None
