"""Rebuild a trained model from its run directory (config.yaml, vocabulary, labels, best checkpoint)."""
from __future__ import annotations

import json
import os
from dataclasses import dataclass

from core.config import Config, DataConfig, load_config
from core.errors import UserError
from dataset.tokenizer import TextEncoder, TextTokenizer, Vocabulary
from dataset.wordpiece import HFTokenizerEncoder, WordPieceEncoder, read_vocab
from model.bert import TransformerClassifier
from model.classifier import TextClassifier
from trainer.adversarial_model import AdversarialModel
from trainer.checkpointing import BEST_DIR, read_classifier

ENCODER_CONFIG_DIR = "encoder"  # the Hugging Face config of a bert run, to rebuild it without weights
HF_TOKENIZER_DIR = "tokenizer"  # the Hugging Face tokenizer of a run without a WordPiece vocabulary


@dataclass
class Run:
    cfg: Config
    label_names: list[str]
    encoder: TextEncoder | WordPieceEncoder  # raw strings -> model inputs
    model: AdversarialModel


def text_tokenizer(d: DataConfig) -> TextTokenizer:
    return TextTokenizer(d.tokenizer, lowercase=d.lowercase, split_punctuation=d.split_punctuation,
                         strip_html=d.strip_html)


def text_encoder(cfg: Config, vocab) -> TextEncoder | WordPieceEncoder | HFTokenizerEncoder:
    """The raw-string encoder of a run: `vocab` is a Vocabulary (LSTMs), WordPiece tokens (bert) or a
    Hugging Face tokenizer (bert checkpoints without WordPiece)."""
    if cfg.model.name == "bert" and not isinstance(vocab, list):
        return HFTokenizerEncoder(vocab, cfg.data.max_length)
    if cfg.model.name == "bert":
        return WordPieceEncoder(vocab, bool(cfg.model.lower_case), cfg.data.max_length)
    return TextEncoder(text_tokenizer(cfg.data), vocab.tokens, cfg.data.max_length)


def make_model(cfg: Config, num_classes: int, vocab=None, hf_encoder=None, initial_vectors=None) -> AdversarialModel:
    """The run's classifier (an LSTM over `vocab`, or `hf_encoder` for bert) inside the AdversarialModel
    that trains it, with every variable built."""
    if cfg.model.name == "bert":
        classifier = TransformerClassifier(hf_encoder, num_classes, cfg.model.pooling, cfg.model.head_dropout,
                                           name="classifier")
    else:
        classifier = TextClassifier(cfg.model, len(vocab), num_classes, counts=vocab.counts,
                                    initial_vectors=initial_vectors, name="classifier")
    model = AdversarialModel(classifier, cfg.regularizer, clean_weight=cfg.train.clean_weight, seed=cfg.train.seed)
    model(classifier.example_inputs())  # build every variable before an optimizer or checkpoint sees them
    model.build_metrics(num_classes)
    model.build_methods()
    return model


def load_run(run_dir: str, checkpoint: str = BEST_DIR) -> Run:
    """The run's model with the weights of checkpoints/best, or of the latest training state with
    checkpoint='train'."""
    config_path = os.path.join(run_dir, "config.yaml")
    if not os.path.exists(config_path):
        raise UserError(f"{run_dir}: not a run directory (no config.yaml)")
    cfg = load_config(config_path)
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
    hf_encoder = None
    if cfg.model.name == "bert":
        from transformers import AutoConfig, TFAutoModel

        hf_encoder = TFAutoModel.from_config(AutoConfig.from_pretrained(os.path.join(run_dir, ENCODER_CONFIG_DIR)))
        hf_encoder.build_in_name_scope()
        if os.path.isdir(os.path.join(run_dir, HF_TOKENIZER_DIR)):
            from transformers import AutoTokenizer
            vocab = AutoTokenizer.from_pretrained(os.path.join(run_dir, HF_TOKENIZER_DIR))
        else:
            vocab = read_vocab(os.path.join(run_dir, "vocab.txt"))
    else:
        vocab = Vocabulary.load(os.path.join(run_dir, "vocab.tsv"))
    model = make_model(cfg, len(label_names), vocab, hf_encoder)
    read_classifier(model, os.path.join(run_dir, "checkpoints"), checkpoint)
    return Run(cfg, label_names, text_encoder(cfg, vocab), model)
