"""train.mixed_precision: bfloat16 on the CPU: one train_step of every method, on the LSTM and on a tiny
BERT, applies gradients within a stated tolerance of the same step in float32.

bfloat16 keeps 8 bits of mantissa (about 3 significant digits), so the step cannot be equal: the test asks
for a cosine similarity of at least 0.99 between all the applied gradients of the two steps and a relative
L2 difference of at most 0.15. The embeddings, the perturbations and the logits stay float32 (checked), and
there is no loss scaling (not needed: bfloat16 has float32's exponent range).
"""
import numpy as np
import pytest
import tensorflow as tf
import tf_keras

from core.loader import regularizer
from core.schema import ModelConfig
from model.lstm_classifier import LSTMClassifier
from trainer.adversarial_model import AdversarialModel

IDS = np.array([[2, 3, 4, 0, 0], [5, 6, 7, 8, 9], [3, 3, 0, 0, 0], [10, 11, 12, 13, 0]], np.int32)
LABELS = np.array([0, 1, 0, 1], np.int32)
UNLABELED = np.array([[14, 15, 0], [16, 17, 18], [19, 2, 0]], np.int32)
METHODS = {"none": [], "random": [{"name": "random"}], "fgsm": [{"name": "fgsm", "epsilon": 0.05}],
           "fgm": [{"name": "fgm"}], "pgd": [{"name": "pgd", "steps": 2, "step_size": 0.6}],
           "vat": [{"name": "vat"}], "fgm+vat": [{"name": "fgm"}, {"name": "vat"}]}


def lstm_classifier():
    cfg = ModelConfig(name="bilstm", embedding_dim=16, hidden_size=16, dropout=0.0, head_dropout=0.0,
                      pooling="max", normalize_embeddings=True)
    return LSTMClassifier(cfg, 20, 2, counts=np.arange(20) + 1), {"token_ids": IDS}, {"token_ids": UNLABELED}


def bert_classifier():
    from transformers import BertConfig, TFBertModel

    from model.bert import TransformerClassifier

    encoder = TFBertModel(BertConfig(vocab_size=20, hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                                     intermediate_size=32, max_position_embeddings=16, hidden_dropout_prob=0.0,
                                     attention_probs_dropout_prob=0.0))
    encoder.build_in_name_scope()

    def feed(ids):
        return {"input_ids": ids, "attention_mask": (ids != 0).astype(np.int32), "token_type_ids": np.zeros_like(ids)}

    return TransformerClassifier(encoder, 2, head_dropout=0.0), feed(IDS), feed(UNLABELED)


_BUILT = {}


def classifier(backbone, precision):
    """One classifier per (backbone, precision), built under that policy with seeded weights; every method
    wraps it anew and one_step puts its weights back."""
    if (backbone, precision) not in _BUILT:
        tf_keras.utils.set_random_seed(0)
        if precision != "float32":
            tf_keras.mixed_precision.set_global_policy(f"mixed_{precision}")
        try:
            _BUILT[backbone, precision] = backbone()
        finally:
            tf_keras.mixed_precision.set_global_policy("float32")
    return _BUILT[backbone, precision]


def one_step(backbone, regs, precision):
    """The gradients one train_step applies (plain SGD, learning rate 1) and its logs; float16 with a fixed
    loss scale (2^8), as tf-keras's LossScaleOptimizer applies it."""
    clf, inputs, unlabeled = classifier(backbone, precision)
    model = AdversarialModel(clf, [regularizer(**{"epsilon": 1.0, **r}) for r in regs], seed=0)
    x = {k: tf.constant(v) for k, v in inputs.items()}
    model(x)
    optimizer = tf_keras.optimizers.SGD(1.0)
    if precision == "float16":
        optimizer = tf_keras.mixed_precision.LossScaleOptimizer(optimizer, dynamic=False, initial_scale=256.0)
    model.compile(optimizer=optimizer, run_eagerly=True)  # tiny: tracing costs more
    before = [v.numpy().copy() for v in model.trainable_variables]
    x["unlabeled"] = {k: tf.constant(v) for k, v in unlabeled.items()}
    logs = model.make_train_function()(iter(tf.data.Dataset.from_tensors((x, tf.constant(LABELS)))))
    applied = [b - v.numpy() for b, v in zip(before, model.trainable_variables)]
    for v, b in zip(model.trainable_variables, before):
        v.assign(b)
    return model, applied, logs


@pytest.mark.parametrize("backbone", [lstm_classifier, bert_classifier], ids=["bilstm", "bert"])
def test_bfloat16_step_applies_the_float32_gradients_within_tolerance(backbone):
    for method, regs in METHODS.items():
        _, want, _ = one_step(backbone, regs, "float32")
        model, got, logs = one_step(backbone, regs, "bfloat16")
        assert not isinstance(model.optimizer, tf_keras.mixed_precision.LossScaleOptimizer)  # no loss scaling
        clf = model.classifier
        a, b = np.concatenate([g.ravel() for g in got]), np.concatenate([g.ravel() for g in want])
        cosine = a @ b / (np.linalg.norm(a) * np.linalg.norm(b))
        relative = np.linalg.norm(a - b) / np.linalg.norm(b)
        assert cosine >= 0.99 and relative <= 0.15, (method, cosine, relative)
        assert all(np.isfinite(float(v)) for v in logs.values()), (method, logs)
        for reg in regs:  # the perturbation's norm is exact: it is computed in float32
            if reg["name"] in ("fgm", "random", "vat"):
                assert float(logs[f"{reg['name']}_perturbation_l2"]) == pytest.approx(1.0, rel=1e-5), method
        assert clf.head.compute_dtype == "float32"


def test_bfloat16_computes_in_bfloat16_and_keeps_embeddings_and_logits_float32():
    model, _, _ = one_step(lstm_classifier, [{"name": "fgm"}], "bfloat16")
    clf = model.classifier
    x = {"token_ids": tf.constant(IDS)}
    assert clf.backbone.compute_dtype == "bfloat16" and clf.backbone.variable_dtype == "float32"
    assert clf.embed(x).dtype == tf.float32 and model(x).dtype == tf.float32


def test_float16_with_loss_scaling_applies_the_float32_gradients_within_tolerance():
    """The loss-scaled backward passes (the clean pass, the lookup's, every perturbed one) are scaled up and
    back down exactly once: the applied step matches float32's within float16's precision."""
    for method, regs in METHODS.items():
        _, want, _ = one_step(lstm_classifier, regs, "float32")
        model, got, logs = one_step(lstm_classifier, regs, "float16")
        assert isinstance(model.optimizer, tf_keras.mixed_precision.LossScaleOptimizer)
        a, b = np.concatenate([g.ravel() for g in got]), np.concatenate([g.ravel() for g in want])
        cosine = a @ b / (np.linalg.norm(a) * np.linalg.norm(b))
        relative = np.linalg.norm(a - b) / np.linalg.norm(b)
        assert cosine >= 0.99 and relative <= 0.15, (method, cosine, relative)
        assert all(np.isfinite(float(v)) for v in logs.values()), (method, logs)
