"""model.init_from: a classifier starts from a language-model run (task: lm): its vocabulary (with the counts
that weight the embedding normalization), its embedding table and its LSTM layers; a Bi-LSTM takes its forward
direction from the run's forward language model and its backward direction from the backward one (Miyato et al.
2017). Every mismatch is one line naming the key, before the run directory exists."""
from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

from core.errors import UserError
from core.loader import load_config
from core.schema import Config
from dataset.tokenizer import Vocabulary
from model.lstm_lm import LSTMLanguageModel, directions
from trainer.checkpointing import read_weights

# The settings a classifier must share with the language model it starts from. normalize_embeddings too: the table
# is handed over raw, at the scale the language model trained it (its normalized lookup is the same function only
# under the same normalization with the same counts).
SHARED = {"model": ("embedding_dim", "hidden_size", "num_layers", "normalize_embeddings"),
          "data": ("tokenizer", "lowercase", "split_punctuation", "strip_html")}


@dataclass
class LanguageModelWeights:
    """What a classifier takes from a language-model run: the vocabulary (with the counts that weight the
    normalization), the raw embedding table (the parameter, at the scale the language model trained it: a
    normalized table handed over as the raw one would be normalized again, and Adam, which moves a weight by about
    the learning rate, would move embeddings of spread 1 many times slower than the language model's) and, per
    direction, each LSTM layer's weights."""
    vocab: Vocabulary
    table: np.ndarray
    lstm: dict[str, list[list[np.ndarray]]]


def read_language_model(network: LSTMLanguageModel, run_dir: str, vocab: Vocabulary | None = None) -> str:
    """The best weights of a language-model run into `network` (built); returns the checkpoint's path. `vocab`:
    the run's vocab.tsv as read, checked against the one the weights were trained with."""
    return read_weights(network, os.path.join(run_dir, "checkpoints"), describes="its config.yaml describes",
                        vocab=None if vocab is None else (vocab.digest(), os.path.join(run_dir, "vocab.tsv")))


def check_language_model_run(cfg: Config) -> Config:
    """model.init_from names a finished language-model run that fits this config: its config, checked before the
    data are read (one line naming the mismatch)."""
    run_dir = cfg.model.init_from
    config_path = os.path.join(run_dir, "config.yaml")
    if not os.path.exists(config_path):
        raise UserError(f"model.init_from: {run_dir}: not a run directory (no config.yaml)")
    lm = load_config(config_path)
    if lm.task != "lm":
        raise UserError(f"model.init_from: {run_dir}: a classifier run, not a language model (task: lm)")
    if not os.path.exists(os.path.join(run_dir, "metrics.json")):
        raise UserError(f"model.init_from: {run_dir}: the language model has not finished (no metrics.json); "
                        f"let it finish, or continue it with `python train.py --resume {run_dir}`")
    for section, keys in SHARED.items():
        for key in keys:
            mine, theirs = getattr(getattr(cfg, section), key), getattr(getattr(lm, section), key)
            if mine != theirs:
                raise UserError(f"model.init_from: {section}.{key} is {mine!r} here but {theirs!r} in the language "
                                f"model {run_dir}; set it to {theirs!r}")
    missing = [d for d in directions(cfg.model.name) if d not in directions(lm.model.name)]
    if missing:
        raise UserError(f"model.init_from: model.name {cfg.model.name} needs a {' and '.join(missing)} language model; "
                        f"{run_dir} has only {', '.join(directions(lm.model.name))} (train it with model.name bilstm)")
    return lm


def read_language_model_run(cfg: Config) -> LanguageModelWeights:
    lm, run_dir = check_language_model_run(cfg), cfg.model.init_from
    vocab = Vocabulary.load(os.path.join(run_dir, "vocab.tsv"))
    network = LSTMLanguageModel(lm.model, len(vocab), counts=vocab.counts)
    network(network.example_inputs())
    read_language_model(network, run_dir, vocab)
    return LanguageModelWeights(vocab, network.embedding.table.numpy(),
                                {d: [[w.numpy() for w in layer.weights] for layer in network.stacks[d]]
                                 for d in directions(cfg.model.name)})
