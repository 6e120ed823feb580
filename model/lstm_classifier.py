"""The LSTM classifier (an LSTM or Bi-LSTM backbone and a classification head), split at the embeddings so
regularizers can perturb them."""
from __future__ import annotations

import tensorflow as tf
import tf_keras

from core.registry import BACKBONES
from core.schema import ModelConfig
from model.classifier import Classifier
from model.embedding import TokenEmbedding
from model.lstm import LSTMBackbone


class LSTMClassifier(Classifier):
    """Token ids -> class logits, as embed() followed by logits_from_embeddings().

    Inputs are a dict with 'token_ids' (B, T) int32, 0 = padding.

    Dropout (`model.dropout`) is part of embed(): perturbations are added to the dropped-out embeddings and
    are never dropped themselves, as in Miyato et al.'s reference implementation (tensorflow/models
    research/adversarial_text, whose Embedding layer applies the dropout). The clean and the perturbed
    passes of a step share that dropout mask; the LSTM and head dropout draw fresh masks in each pass.
    """

    def __init__(self, cfg: ModelConfig, vocab_size: int, num_classes: int, counts=None,
                 initial_vectors=None, **kwargs):
        super().__init__(**kwargs)
        self.cfg = cfg
        self._shape = (vocab_size, num_classes, counts)
        self.embedding = TokenEmbedding(vocab_size, cfg.embedding_dim, counts=counts,
                                        normalize=cfg.normalize_embeddings, initial_vectors=initial_vectors,
                                        name="token_embedding", dtype="float32")
        # variational: one mask per text, shared by its positions (batch, 1, dim); else one per coordinate
        noise_shape = (None, 1, None) if cfg.variational_dropout else None
        self.embedding_dropout = tf_keras.layers.Dropout(cfg.dropout, noise_shape=noise_shape,
                                                         dtype="float32")  # perturbed: float32
        self.backbone = LSTMBackbone(cfg.hidden_size, cfg.num_layers, bidirectional=BACKBONES[cfg.name].bidirectional,
                                     pooling=cfg.pooling, dropout=cfg.dropout, name=cfg.name)
        self.head_dropout = tf_keras.layers.Dropout(cfg.head_dropout)
        # float32 at both ends under mixed precision: the perturbed embeddings and the logits
        self.head = tf_keras.layers.Dense(num_classes, name="head", dtype="float32")

    def twin(self):
        """A classifier of the same architecture with its own, fresh weights (e.g. an EMA copy)."""
        vocab_size, num_classes, counts = self._shape
        return LSTMClassifier(self.cfg, vocab_size, num_classes, counts=counts, name=f"{self.name}_twin")

    @property
    def num_layers(self) -> int:
        return self.cfg.num_layers

    def layer_depths(self) -> dict[str, int]:
        """{variable name: depth}, for layer-wise learning rates and gradual unfreezing: 0 the embeddings, i + 1
        LSTM layer i, num_layers + 1 the head."""
        depths = {v.name: 0 for v in self.embedding.trainable_variables}
        for i, layer in enumerate(self.backbone.layers_):
            depths.update({v.name: i + 1 for v in layer.trainable_variables})
        depths.update({v.name: self.num_layers + 1 for v in self.head.trainable_variables})
        return depths

    def padding_mask(self, inputs):
        """(B, T) bool, true at real tokens."""
        return tf.not_equal(inputs["token_ids"], 0)

    def example_inputs(self):
        """A one-token batch, to build every variable before training."""
        return {"token_ids": tf.ones([1, 1], tf.int32)}

    def embed(self, inputs, training=False):
        """Looked-up (and, if configured, normalized) embeddings (B, T, D) after the embedding dropout: what
        regularizers perturb."""
        return self.embedding_dropout(self.embedding(inputs["token_ids"]), training=training)

    def logits_from_embeddings(self, embeddings, inputs, training=False):
        h = self.backbone(embeddings, self.padding_mask(inputs), training=training)
        return self.head(self.head_dropout(h, training=training))
