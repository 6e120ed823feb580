"""Rebuild a trained model from its run directory (config.yaml, vocabulary, labels, best checkpoint)."""
from __future__ import annotations

import json
import os
from dataclasses import dataclass

from dataset.tokenizer import TextEncoder, TextTokenizer, Vocabulary
from dataset.wordpiece import HFTokenizerEncoder, WordPieceEncoder, read_vocab
from model.classifier import TextClassifier
from trainer.adversarial_model import AdversarialModel
from trainer.config import Config, DataConfig, load_config
from trainer.errors import UserError

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


def load_run(run_dir: str, checkpoint: str = "best") -> Run:
    config_path = os.path.join(run_dir, "config.yaml")
    if not os.path.exists(config_path):
        raise UserError(f"{run_dir}: not a run directory (no config.yaml)")
    cfg = load_config(config_path)
    with open(os.path.join(run_dir, "labels.json"), encoding="utf-8") as f:
        label_names = json.load(f)
    if cfg.model.name == "bert":
        from model.bert import TransformerClassifier
        from transformers import AutoConfig, TFAutoModel

        hf_encoder = TFAutoModel.from_config(AutoConfig.from_pretrained(os.path.join(run_dir, ENCODER_CONFIG_DIR)))
        hf_encoder.build_in_name_scope()
        if os.path.isdir(os.path.join(run_dir, HF_TOKENIZER_DIR)):
            from transformers import AutoTokenizer
            vocab = AutoTokenizer.from_pretrained(os.path.join(run_dir, HF_TOKENIZER_DIR))
        else:
            vocab = read_vocab(os.path.join(run_dir, "vocab.txt"))
        classifier = TransformerClassifier(hf_encoder, len(label_names), cfg.model.pooling, cfg.model.head_dropout,
                                           name="classifier")
    else:
        vocab = Vocabulary.load(os.path.join(run_dir, "vocab.tsv"))
        classifier = TextClassifier(cfg.model, len(vocab), len(label_names), counts=vocab.counts, name="classifier")
    model = AdversarialModel(classifier, cfg.regularizer, clean_weight=cfg.train.clean_weight, seed=cfg.train.seed)
    model(classifier.example_inputs())
    weights = os.path.join(run_dir, "checkpoints", checkpoint)
    if not os.path.exists(weights + ".index"):
        raise UserError(f"{run_dir}: no checkpoint '{checkpoint}' (training did not finish an epoch?)")
    model.load_weights(weights).expect_partial()
    return Run(cfg, label_names, text_encoder(cfg, vocab), model)
