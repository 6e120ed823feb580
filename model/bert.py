"""Hugging Face encoders (BERT, RoBERTa, ALBERT, ELECTRA, DistilBERT, ...) as backbones.

Weights load from a local directory: TensorFlow weights (tf_model.h5) through `from_pretrained`, or
PyTorch safetensors weights (model.safetensors) converted in memory without torch. A hub name resolves to
its snapshot in the Hugging Face cache (HF_HOME), downloaded first when the hub can be reached; offline and
not cached, loading fails at once with a message that says how to use a local directory instead.

Perturbations go through `inputs_embeds`: only the word embeddings are perturbed; the model adds position
and segment embeddings (and its embedding LayerNorm and dropout) itself. Padding is masked by the
attention mask.
"""
from __future__ import annotations

import inspect
import logging
import os
import re
import socket
import urllib.parse

import tensorflow as tf
import tf_keras

from core.errors import UserError
from model.classifier import Classifier
from model.pooling import masked_pool

log = logging.getLogger(__name__)


def _hub_reachable(timeout=3.0) -> bool:
    if os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", "", "false", "False"):
        return False
    host = urllib.parse.urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co")).hostname
    try:
        socket.create_connection((host, 443), timeout=timeout).close()
        return True
    except OSError:
        return False


def _offline_error(name: str) -> UserError:
    return UserError(
        f"model.pretrained: '{name}' is not a local directory and the Hugging Face hub cannot be reached "
        f"(nor is it in the Hugging Face cache under HF_HOME). On a machine with network, save it (e.g. "
        f"`huggingface-cli download {name} --local-dir DIR`, or from_pretrained(...).save_pretrained(DIR)) "
        f"and set model.pretrained: DIR")


def load_safetensors_into(model, path: str) -> dict:
    """Loads PyTorch-layout safetensors weights into a built TF model, without torch.

    Returns transformers' loading info: missing_keys, unexpected_keys, mismatched_keys.
    """
    import safetensors.numpy
    from transformers.modeling_tf_pytorch_utils import load_pytorch_state_dict_in_tf2_model

    state = safetensors.numpy.load_file(path)
    _, info = load_pytorch_state_dict_in_tf2_model(model, state, tf_inputs=False, allow_missing_keys=True,
                                                   output_loading_info=True)
    return info


# What a checkpoint directory needs: configs and vocabularies, and one set of weights.
HUB_FILES = ["*.json", "*.txt", "*.model", "spiece.model", "merges.txt"]


def resolve_pretrained(pretrained: str) -> str:
    """The local checkpoint directory of model.pretrained: the directory itself or, for a hub name, its
    snapshot in the Hugging Face cache. A name that is not cached is downloaded when the hub can be
    reached (TensorFlow weights if the repository has them, else model.safetensors)."""
    if os.path.isdir(pretrained):
        return pretrained
    if os.path.sep in pretrained and os.path.exists(os.path.dirname(pretrained)) or pretrained.startswith("."):
        raise UserError(f"model.pretrained: {pretrained}: directory not found")
    from huggingface_hub import HfApi, snapshot_download
    from huggingface_hub.errors import HfHubHTTPError, HFValidationError, LocalEntryNotFoundError

    try:
        return snapshot_download(pretrained, local_files_only=True)
    except HFValidationError:
        raise UserError(f"model.pretrained: '{pretrained}' is neither a directory nor a hub name") from None
    except LocalEntryNotFoundError:
        pass
    if not _hub_reachable():
        raise _offline_error(pretrained)
    try:
        files = HfApi().list_repo_files(pretrained)
        weights = "tf_model.h5" if "tf_model.h5" in files else "model.safetensors"
        return snapshot_download(pretrained, allow_patterns=HUB_FILES + [weights])
    except (OSError, HfHubHTTPError) as e:
        raise UserError(f"model.pretrained: cannot load '{pretrained}' from the hub: "
                        f"{str(e).splitlines()[0]}") from None


def load_encoder(pretrained: str | None, config_overrides: dict | None):
    """Returns (encoder, loading info or None). `pretrained` is a checkpoint directory or a hub name
    (resolve_pretrained). No `pretrained`: a randomly initialized model built from
    `config_overrides`, which must name `model_type` (e.g. {'model_type': 'bert', 'hidden_size': 32})."""
    from transformers import AutoConfig, TFAutoModel

    overrides = dict(config_overrides or {})
    if pretrained is None:
        model_type = overrides.pop("model_type", None)
        if not model_type:
            raise UserError("model.config_overrides: without model.pretrained it must name model_type "
                            "(e.g. bert) to build a randomly initialized encoder")
        try:
            config = AutoConfig.for_model(model_type, **overrides)
        except ValueError as e:
            raise UserError(f"model.config_overrides: {e}") from None
        encoder = TFAutoModel.from_config(config)
        encoder.build_in_name_scope()
        return encoder, None
    pretrained = resolve_pretrained(pretrained)
    if not os.path.exists(os.path.join(pretrained, "config.json")):
        raise UserError(f"model.pretrained: {pretrained} has no config.json (a Hugging Face checkpoint "
                        "directory holds config.json, the weights and vocab.txt)")
    config = AutoConfig.from_pretrained(pretrained, **overrides)
    if os.path.exists(os.path.join(pretrained, "tf_model.h5")):
        return TFAutoModel.from_pretrained(pretrained, config=config), None
    weights = os.path.join(pretrained, "model.safetensors")
    if not os.path.exists(weights):
        raise UserError(f"model.pretrained: {pretrained} has neither tf_model.h5 nor model.safetensors")
    encoder = TFAutoModel.from_config(config)
    encoder.build_in_name_scope()
    info = load_safetensors_into(encoder, weights)
    log.info("loaded %s: %d missing, %d unexpected, %d mismatched weights%s", weights,
             len(info["missing_keys"]), len(info["unexpected_keys"]), len(info["mismatched_keys"]),
             f" (unexpected: {', '.join(info['unexpected_keys'][:5])})" if info["unexpected_keys"] else "")
    if info["mismatched_keys"]:
        raise UserError(f"model.pretrained: {weights}: weights of the wrong shape for its config.json: "
                        f"{info['mismatched_keys'][:3]}")
    return encoder, info


class TransformerClassifier(Classifier):
    """A Hugging Face TF encoder + dropout + dense head, split at the word embeddings.

    Inputs: {'input_ids', 'attention_mask', 'token_type_ids'}, each (B, T) int32.

    Args:
        encoder: a transformers TF base model (TFBertModel, TFRobertaModel, ...).
        num_classes: size of the head.
        pooling: 'cls' (the pooler output where the model has one, else the first token), 'first_token'
            or 'mean' (over real tokens).
        head_dropout: dropout before the head.
    """

    def __init__(self, encoder, num_classes: int, pooling="cls", head_dropout=0.1, **kwargs):
        super().__init__(**kwargs)
        self.encoder, self.pooling, self._sizes = encoder, pooling, (num_classes, head_dropout)
        self._takes_token_types = "token_type_ids" in inspect.signature(encoder.call).parameters
        self.head_dropout = tf_keras.layers.Dropout(head_dropout)
        self.head = tf_keras.layers.Dense(num_classes, name="head", dtype="float32",
                                          kernel_initializer=tf_keras.initializers.TruncatedNormal(stddev=0.02))

    def twin(self):
        """A classifier of the same architecture with its own, fresh weights (e.g. an EMA copy)."""
        from transformers import TFAutoModel

        num_classes, head_dropout = self._sizes
        encoder = TFAutoModel.from_config(self.encoder.config)
        encoder.build_in_name_scope()
        return TransformerClassifier(encoder, num_classes, self.pooling, head_dropout, name=f"{self.name}_twin")

    @property
    def num_layers(self) -> int:
        config = self.encoder.config
        return getattr(config, "num_hidden_layers", None) or config.n_layers

    def layer_depths(self) -> dict[str, int]:
        """{variable name: depth}, for layer-wise learning rates and gradual unfreezing (encoder_depth)."""
        return {v.name: encoder_depth(v.name, self.num_layers) for v in self.trainable_variables}

    def padding_mask(self, inputs):
        return tf.cast(inputs["attention_mask"], tf.bool)

    def example_inputs(self):
        ones = tf.ones([1, 2], tf.int32)
        return {"input_ids": ones, "attention_mask": ones, "token_type_ids": tf.zeros([1, 2], tf.int32)}

    def embed(self, inputs, training=False):
        """The word embeddings of input_ids (B, T, D), looked up in the encoder's own table. The encoder adds
        position and segment embeddings, normalizes and applies its own dropout after this (`training` is
        not used here)."""
        table = self.encoder.get_input_embeddings().weight
        return tf.gather(tf.cast(table, tf.float32), inputs["input_ids"])

    def logits_from_embeddings(self, embeddings, inputs, training=False):
        feed = {"inputs_embeds": embeddings, "attention_mask": inputs["attention_mask"]}
        if self._takes_token_types and "token_type_ids" in inputs:
            feed["token_type_ids"] = inputs["token_type_ids"]
        out = self.encoder(feed, training=training)
        if self.pooling == "cls" and getattr(out, "pooler_output", None) is not None:
            pooled = out.pooler_output
        elif self.pooling == "mean":
            pooled = masked_pool(out.last_hidden_state, inputs["attention_mask"] > 0, "mean")
        else:
            pooled = out.last_hidden_state[:, 0]
        return self.head(self.head_dropout(pooled, training=training))

    def call(self, inputs, training=False):
        return self.logits_from_embeddings(self.embed(inputs), inputs, training=training)  # embed has no dropout


def encoder_depth(name: str, num_layers: int) -> int:
    """A Hugging Face encoder classifier's variable's depth: 0 for the embeddings, i + 1 for encoder layer i (names
    with 'layer_._i', as in transformers' TF models), num_layers + 1 for the pooler and the head."""
    match = re.search(r"layer_\._(\d+)/", name)
    return int(match.group(1)) + 1 if match else (0 if "/embeddings/" in name else num_layers + 1)
