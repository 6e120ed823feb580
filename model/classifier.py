"""What every classifier is to the rest of the framework: a Keras model split at the embeddings, so that the train
step (trainer/adversarial_model.py) and the methods can perturb the looked-up embeddings and run the rest on
them. A new backbone's classifier subclasses Classifier and defines each method below."""
from __future__ import annotations

import tf_keras


class Classifier(tf_keras.Model):
    """Model inputs (a dict of (B, T) tensors) -> class logits (B, C), as embed() followed by
    logits_from_embeddings(); call() is that composition."""

    def embed(self, inputs, training=False):
        """The looked-up embeddings (B, T, D), float32: what the methods perturb."""
        raise NotImplementedError

    def logits_from_embeddings(self, embeddings, inputs, training=False):
        """Logits (B, C), float32, from (perturbed) embeddings and the rest of the inputs (the mask)."""
        raise NotImplementedError

    def padding_mask(self, inputs):
        """(B, T) bool, true at real tokens: perturbations are zero elsewhere and norms count only these."""
        raise NotImplementedError

    def example_inputs(self):
        """A small batch, to build every variable before an optimizer or a checkpoint sees them."""
        raise NotImplementedError

    def twin(self):
        """A classifier of the same architecture with its own, fresh weights (an EMA copy: smart)."""
        raise NotImplementedError

    @property
    def num_layers(self) -> int:
        """Its stacked layers (LSTM or Transformer), for layer-wise learning rates and gradual unfreezing."""
        raise NotImplementedError

    def layer_depths(self) -> dict[str, int]:
        """{variable name: depth}: 0 the embeddings, 1..num_layers the layers, num_layers + 1 the head."""
        raise NotImplementedError

    def call(self, inputs, training=False):
        return self.logits_from_embeddings(self.embed(inputs, training=training), inputs, training=training)
