"""Backbone families: each prepares its vocabulary, encodes raw strings in the graph, builds its classifier and
saves and restores what a run directory needs besides the weights. A backbone's entry in core.registry.BACKBONES
names its family (with the defaults the config loader needs before a family is built); family(name) returns it,
and make_model wraps the family's classifier in the AdversarialModel that trains it.

Adding a family: a subclass of Family here (or in a module of its own), with a classifier that subclasses
model.classifier.Classifier, and the entries of core.registry.BACKBONES that use it.
"""
from __future__ import annotations

import dataclasses
import importlib
import logging
import os
from dataclasses import dataclass

import numpy as np
import tensorflow as tf

from core.errors import UserError
from core.paths import write_text_atomically
from core.registry import BACKBONES
from core.rules import checkpoint_lowercases
from core.schema import Config, DataConfig
from dataset.corpus import Corpus
from dataset.data import DataBundle
from dataset.tokenizer import SEP, TextEncoder, TextTokenizer, Vocabulary
from dataset.wordpiece import HFTokenizerEncoder, WordPieceEncoder, read_vocab
from model.bert import TransformerClassifier, load_encoder, resolve_pretrained
from model.embedding import load_word2vec
from model.lstm_classifier import LSTMClassifier
from trainer.adversarial_model import AdversarialModel
from trainer.init_from import read_language_model_run

log = logging.getLogger(__name__)

ENCODER_CONFIG_DIR = "encoder"  # the Hugging Face config of a run, to rebuild its encoder without weights
HF_TOKENIZER_DIR = "tokenizer"  # the Hugging Face tokenizer of a run without a WordPiece vocabulary


@dataclass
class Prepared:
    """What a run needs before its model is built. `text_encoder` maps raw strings to model inputs; `vocab`
    is the family's vocabulary (an LSTM Vocabulary, WordPiece tokens, or a Hugging Face tokenizer);
    `initial_vectors` are pretrained word vectors (LSTMs); `hf_model` is a Hugging Face encoder model with
    its weights; `lower_case`, the checkpoint's casing where the config could not say it when it was loaded (a
    hub name downloaded while preparing), recorded in the run's config.yaml."""
    data: DataBundle | None
    vocab: object
    text_encoder: object
    initial_vectors: np.ndarray | None = None
    hf_model: object = None
    lower_case: bool | None = None
    initial_lstm: dict | None = None  # model.init_from: the language model's LSTM weights, per direction

    def config_to_save(self, cfg: Config) -> Config:
        """cfg with what preparing settled (a copy; the loaded config is not changed)."""
        if self.lower_case is None or cfg.model.lower_case is not None:
            return cfg
        return dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, lower_case=self.lower_case))


def text_tokenizer(d: DataConfig) -> TextTokenizer:
    return TextTokenizer(d.tokenizer, lowercase=d.lowercase, split_punctuation=d.split_punctuation,
                         strip_html=d.strip_html)


class Family:
    """What a backbone family does for a run; a new family subclasses this and defines each method."""

    def prepare(self, cfg: Config, data: DataBundle, unlabeled: Corpus, resuming: str | None = None) -> Prepared:
        """The vocabulary (from the texts, a file, a checkpoint or a language model), the text encoder and any
        pretrained weights; UserError on bad input. `resuming`: the run directory that stands in for them."""
        raise NotImplementedError

    def text_encoder(self, cfg: Config, vocab, *args):
        """raw strings (B,) -> the classifier's inputs, in the graph where it can (an exported model takes raw
        strings)."""
        raise NotImplementedError

    def classifier(self, cfg: Config, prepared: Prepared, num_classes: int):
        """The classifier (a model.classifier.Classifier), unbuilt."""
        raise NotImplementedError

    def save(self, prepared: Prepared, run_dir: str) -> None:
        """What a run directory needs besides the weights and config.yaml (the vocabulary, an encoder's config)."""
        raise NotImplementedError

    def restore(self, cfg: Config, run_dir: str) -> Prepared:
        """What save() wrote, without data or pretrained weights (evaluate, predict, export)."""
        raise NotImplementedError

    def describe(self, cfg: Config) -> str:
        """A few words for the log: the backbone and where its weights come from."""
        raise NotImplementedError


class LSTMFamily(Family):
    """(Bi-)LSTMs over a vocabulary built from the training texts, optionally with word2vec vectors."""

    def prepare(self, cfg: Config, data: DataBundle, unlabeled: Corpus, resuming: str | None = None) -> Prepared:
        """`unlabeled`: the unlabeled texts the model trains on (Miyato et al. 2017 build the vocabulary from
        them too), counted in one pass as they stream from disk; model.vocab_file gives a vocabulary instead.
        `resuming`: a resumed run started from a language model takes its own vocab.tsv (its checkpoint holds
        the weights), so that the language model's run need not exist any more."""
        d = cfg.data
        pairs = data.train.texts_b is not None
        if cfg.model.init_from and resuming:
            vocab = Vocabulary.load(os.path.join(resuming, "vocab.tsv"))
            return Prepared(data, vocab, self.text_encoder(cfg, vocab))
        if cfg.model.init_from:
            start = read_language_model_run(cfg)
            if pairs:
                raise UserError("model.init_from: sentence pairs need [SEP], which a language model's vocabulary "
                                "does not have")
            log.info("starting from the language model %s: its vocabulary (%d tokens), embeddings and LSTM weights",
                     cfg.model.init_from, len(start.vocab))
            return Prepared(data, start.vocab, self.text_encoder(cfg, start.vocab), start.table,
                            initial_lstm=start.lstm)
        unlabeled.check()  # a bad line of a streamed file is named now, not in the middle of training
        if cfg.model.vocab_file:
            vocab = Vocabulary.load(cfg.model.vocab_file)
            if pairs and SEP not in vocab.tokens:
                raise UserError(f"model.vocab_file: {cfg.model.vocab_file}: sentence pairs need the token {SEP}")
        else:
            labelled = data.train.texts + (data.train.texts_b or [])
            texts = tf.data.Dataset.from_tensor_slices(tf.constant(labelled, tf.string, shape=[len(labelled)]))
            vocab = Vocabulary.build(texts.concatenate(unlabeled.lines()), text_tokenizer(d), min_freq=d.min_freq,
                                     max_size=d.max_vocab_size, pairs=pairs)
        known = sum(vocab.counts[2:])
        log.info("vocabulary: %d tokens (min_freq %d); %.2f%% of training tokens out of vocabulary",
                 len(vocab), d.min_freq, 100.0 * vocab.counts[1] / max(1, known + vocab.counts[1]))
        vectors = None
        if cfg.model.pretrained_embeddings:
            vectors, found = load_word2vec(cfg.model.pretrained_embeddings, vocab.tokens, cfg.model.embedding_dim,
                                           seed=cfg.train.seed)
            log.info("pretrained embeddings: %d of %d vocabulary tokens found (%.1f%%) in %s", found,
                     len(vocab) - 2, 100.0 * found / max(1, len(vocab) - 2), cfg.model.pretrained_embeddings)
        return Prepared(data, vocab, self.text_encoder(cfg, vocab), vectors)

    def text_encoder(self, cfg: Config, vocab, max_length: int | None = None) -> TextEncoder:
        return TextEncoder(text_tokenizer(cfg.data), vocab.tokens, max_length or cfg.data.max_length)

    def classifier(self, cfg: Config, prepared: Prepared, num_classes: int):
        clf = LSTMClassifier(cfg.model, len(prepared.vocab), num_classes, counts=prepared.vocab.counts,
                             initial_vectors=prepared.initial_vectors, name="classifier")
        if prepared.initial_lstm is not None:
            clf(clf.example_inputs())
            clf.backbone.set_lstm_weights(prepared.initial_lstm)
        return clf

    def save(self, prepared: Prepared, run_dir: str) -> None:
        prepared.vocab.save(os.path.join(run_dir, "vocab.tsv"))

    def restore(self, cfg: Config, run_dir: str) -> Prepared:
        vocab = Vocabulary.load(os.path.join(run_dir, "vocab.tsv"))
        return Prepared(None, vocab, self.text_encoder(cfg, vocab))

    def describe(self, cfg: Config) -> str:
        return cfg.model.name


class HuggingFaceFamily(Family):
    """Hugging Face TF encoders (BERT, RoBERTa, ALBERT, ELECTRA, DistilBERT, ...) with their WordPiece vocabulary
    tokenized in the graph, or their own tokenizer (outside the graph) where there is no vocab.txt."""

    def prepare(self, cfg: Config, data: DataBundle, unlabeled: Corpus, resuming: str | None = None) -> Prepared:
        m = cfg.model
        local = resolve_pretrained(m.pretrained) if m.pretrained else None  # config.yaml keeps the name
        hf_model, _ = load_encoder(local, m.config_overrides)
        vocab_file = m.vocab_file or (os.path.join(local, "vocab.txt") if local else None)
        size = hf_model.config.vocab_size
        if vocab_file is None or not os.path.exists(vocab_file):
            if m.vocab_file:
                raise UserError(f"model.vocab_file: {m.vocab_file}: file not found")
            if not local:
                raise UserError(f"model.pretrained: {m.pretrained} has no WordPiece vocab.txt; save the checkpoint "
                                "with its tokenizer to a directory and point model.pretrained there")
            from transformers import AutoTokenizer
            try:
                tokenizer = AutoTokenizer.from_pretrained(local)
            except (OSError, ValueError) as e:
                raise UserError(f"model.pretrained: {local}: no vocab.txt and no Hugging Face tokenizer: "
                                f"{str(e).splitlines()[0]}") from None
            if len(tokenizer) > size:
                raise UserError(f"{local}: the tokenizer has {len(tokenizer)} tokens, but the encoder's config has "
                                f"vocab_size {size}: the vocabulary does not match the checkpoint")
            log.warning("%s has no WordPiece vocab.txt: tokenizing with its Hugging Face tokenizer outside the "
                        "TensorFlow graph; training, evaluation and prediction work, export does not", local)
            return Prepared(data, tokenizer, self.text_encoder(cfg, tokenizer), hf_model=hf_model)
        vocab = read_vocab(vocab_file)
        if len(vocab) != size:
            raise UserError(f"{vocab_file}: {len(vocab)} tokens, but the encoder's config has vocab_size {size}: "
                            "the vocabulary does not match the checkpoint")
        # The loader read the casing from the checkpoint, unless it was a hub name not yet downloaded.
        lower_case = m.lower_case if m.lower_case is not None else checkpoint_lowercases(local)
        log.info("WordPiece vocabulary %s: %d tokens, lower_case=%s", vocab_file, len(vocab), lower_case)
        return Prepared(data, vocab, self.text_encoder(cfg, vocab, lower_case), hf_model=hf_model,
                        lower_case=None if m.lower_case is not None else lower_case)

    def text_encoder(self, cfg: Config, vocab, lower_case: bool | None = None) -> WordPieceEncoder | HFTokenizerEncoder:
        """`vocab`: WordPiece tokens, or a Hugging Face tokenizer (checkpoints without WordPiece); `lower_case`:
        the config's model.lower_case unless given."""
        if not isinstance(vocab, list):
            return HFTokenizerEncoder(vocab, cfg.data.max_length)
        return WordPieceEncoder(vocab, bool(cfg.model.lower_case if lower_case is None else lower_case),
                                cfg.data.max_length)

    def classifier(self, cfg: Config, prepared: Prepared, num_classes: int):
        return TransformerClassifier(prepared.hf_model, num_classes, cfg.model.pooling, cfg.model.head_dropout,
                                     name="classifier")

    def save(self, prepared: Prepared, run_dir: str) -> None:
        if isinstance(prepared.vocab, list):
            write_text_atomically(os.path.join(run_dir, "vocab.txt"), "".join(t + "\n" for t in prepared.vocab),
                                  "vocabulary")
        else:
            prepared.vocab.save_pretrained(os.path.join(run_dir, HF_TOKENIZER_DIR))
        prepared.hf_model.config.save_pretrained(os.path.join(run_dir, ENCODER_CONFIG_DIR))

    def restore(self, cfg: Config, run_dir: str) -> Prepared:
        """The run's encoder built from its saved config (the weights come from the checkpoint) and its
        vocabulary."""
        from transformers import AutoConfig, AutoTokenizer, TFAutoModel

        hf_model = TFAutoModel.from_config(AutoConfig.from_pretrained(os.path.join(run_dir, ENCODER_CONFIG_DIR)))
        hf_model.build_in_name_scope()
        if os.path.isdir(os.path.join(run_dir, HF_TOKENIZER_DIR)):
            vocab = AutoTokenizer.from_pretrained(os.path.join(run_dir, HF_TOKENIZER_DIR))
        else:
            vocab = read_vocab(os.path.join(run_dir, "vocab.txt"))
        return Prepared(None, vocab, self.text_encoder(cfg, vocab), hf_model=hf_model)

    def describe(self, cfg: Config) -> str:
        return f"{cfg.model.name}:{os.path.basename(cfg.model.pretrained or '')}"


def family(name: str):
    """The family of the backbone `name`, as its entry in core.registry.BACKBONES names it."""
    module, cls = BACKBONES[name].family.split(":")
    return getattr(importlib.import_module(module), cls)()


def make_model(cfg: Config, num_classes: int, prepared: Prepared) -> AdversarialModel:
    """The run's classifier, built by its backbone family from `prepared`, inside the AdversarialModel that
    trains it, with every variable built (the methods' own state too)."""
    classifier = family(cfg.model.name).classifier(cfg, prepared, num_classes)
    model = AdversarialModel(classifier, cfg.regularizer, clean_weight=cfg.train.clean_weight, seed=cfg.train.seed)
    model(classifier.example_inputs())  # build every variable before an optimizer or checkpoint sees them
    model.build_metrics(num_classes)
    model.build_methods()
    return model
