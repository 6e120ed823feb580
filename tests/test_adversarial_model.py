"""One train_step of the real model with every regularizer: everything trains, perturbations take effect."""
import numpy as np
import pytest
import tensorflow as tf
import tf_keras

from core.loader import regularizer
from core.schema import ModelConfig, TrainConfig
from methods.base import cross_entropy
from model.lstm_classifier import LSTMClassifier
from trainer.adversarial_model import AdversarialModel, metric_names
from trainer.optimizers import make_optimizer

VOCAB = 20
IDS = np.array([[2, 3, 4, 0, 0], [5, 6, 7, 8, 9], [3, 3, 0, 0, 0], [10, 11, 12, 13, 0]], np.int32)
LABELS = np.array([0, 1, 0, 1], np.int32)
UNLABELED = np.array([[14, 15, 0], [16, 17, 18], [19, 2, 0]], np.int32)


def build(regs, name="bilstm", normalize=True, pooling="max", clean_weight=1.0, seed=0, eager=True):
    tf_keras.utils.set_random_seed(seed)
    cfg = ModelConfig(name=name, embedding_dim=8, hidden_size=6, dropout=0.0, head_dropout=0.0,
                      pooling=pooling, normalize_embeddings=normalize)
    clf = LSTMClassifier(cfg, VOCAB, 2, counts=np.arange(VOCAB) + 1)
    defaults = {"none": {}, "pgd": {"epsilon": 1.0, "step_size": 0.5}}
    regs = [regularizer(**{**defaults.get(r["name"], {"epsilon": 1.0}), **r}) for r in regs]
    model = AdversarialModel(clf, regs, clean_weight=clean_weight, seed=seed)
    model({"token_ids": tf.constant(IDS)})
    # Eager steps keep these tiny tests fast; the end-to-end tests run the traced graph.
    model.compile(optimizer=make_optimizer(TrainConfig(learning_rate=0.01)), run_eagerly=eager)
    return model


def snapshot(model):
    return {v.name: v.numpy().copy() for v in model.trainable_variables}


def step(model, unlabeled=False):
    x = {"token_ids": tf.constant(IDS)}
    if unlabeled:
        x["unlabeled"] = {"token_ids": tf.constant(UNLABELED)}
    logs = model.make_train_function()(iter(tf.data.Dataset.from_tensors((x, tf.constant(LABELS)))))
    return {k: float(v) for k, v in logs.items()}


CASES = {
    "none": [{"name": "none"}],
    "random": [{"name": "random"}],
    "fgsm": [{"name": "fgsm", "epsilon": 0.1}],
    "fgm": [{"name": "fgm"}],
    "pgd": [{"name": "pgd", "steps": 3}],
    "pgd_random_start": [{"name": "pgd", "steps": 2, "random_start": True}],
    "vat": [{"name": "vat", "entropy_weight": 0.5}],
    "fgm+vat": [{"name": "fgm", "weight": 0.5}, {"name": "vat", "weight": 0.5}],
    "pgd_random_start+vat": [{"name": "pgd", "steps": 2, "random_start": True}, {"name": "vat"}],
}


# Every case eagerly on both backbones; the traced graph once, for the case with the most code paths, on the
# one-directional LSTM (half the layers to trace). The end-to-end tests run traced LSTM steps too; a traced
# Bi-LSTM step (15 s to trace) runs in the slow script tests.
STEP_CASES = ([(case, "bilstm", "max", True) for case in CASES] + [(case, "lstm", "last", True) for case in CASES]
              + [("pgd_random_start+vat", "lstm", "mean", False)])


@pytest.mark.parametrize("case,name,pooling,eager", STEP_CASES)
def test_one_step_changes_every_trainable_variable_with_finite_losses(case, name, pooling, eager):
    model = build(CASES[case], name=name, pooling=pooling, eager=eager)
    before = snapshot(model)
    logs = step(model, unlabeled="vat" in case)
    after = snapshot(model)
    assert before.keys() == after.keys() and len(before) >= 5
    unchanged = [k for k in before if np.array_equal(before[k], after[k])]
    assert not unchanged, unchanged
    assert all(np.isfinite(v) for v in logs.values()), logs
    for reg in CASES[case]:  # no case repeats a regularizer: the logs are named after it
        if reg["name"] != "none":
            assert logs[f"{reg['name']}_perturbation_l2"] > 0


def test_fgm_perturbation_reaches_the_model():
    """The adversarial loss is computed on perturbed embeddings and is larger than the clean loss
    (SimpleClassification's adversarial logits equalled its clean ones)."""
    model = build([{"name": "fgm", "epsilon": 2.0}])
    clean = cross_entropy(LABELS, model({"token_ids": tf.constant(IDS)})).numpy()
    e = model.classifier.embed({"token_ids": tf.constant(IDS)}).numpy() * (IDS != 0)[:, :, None]
    embedding_norm = np.sqrt((e ** 2).sum(axis=(1, 2))).mean()  # padding positions do not count
    logs = step(model)
    assert logs["embedding_norm"] == pytest.approx(embedding_norm, rel=1e-5)
    assert logs["clean_loss"] == pytest.approx(clean, rel=1e-5)
    assert logs["fgm_loss"] > clean + 1e-3
    assert logs["fgm_perturbation_l2"] == pytest.approx(2.0, rel=1e-4)
    assert logs["loss"] == pytest.approx(logs["clean_loss"] + logs["fgm_loss"], rel=1e-5)


def test_unlabeled_examples_never_enter_the_supervised_loss_but_feed_vat():
    model_a = build([{"name": "vat"}], seed=3)
    clean = cross_entropy(LABELS, model_a({"token_ids": tf.constant(IDS)})).numpy()
    logs_a = step(model_a, unlabeled=True)
    assert logs_a["clean_loss"] == pytest.approx(clean, rel=1e-5)
    model_b = build([{"name": "vat"}], seed=3)
    logs_b = step(model_b, unlabeled=False)
    assert logs_b["clean_loss"] == pytest.approx(logs_a["clean_loss"], rel=1e-6)
    assert logs_b["vat_loss"] != pytest.approx(logs_a["vat_loss"], rel=1e-3)


def test_embedding_gradient_is_sparse_without_normalization():
    model = build([{"name": "none"}], normalize=False)
    table = model.classifier.embedding.table
    with tf.GradientTape() as tape:
        loss = cross_entropy(LABELS, model({"token_ids": tf.constant(IDS)}, training=True))
    assert isinstance(tape.gradient(loss, table), tf.IndexedSlices)
    before = table.numpy().copy()
    step(model)
    changed_rows = np.flatnonzero(np.any(before != table.numpy(), axis=1))
    assert set(changed_rows) <= set(IDS.flatten()) - {0}


def test_embedding_normalization_uses_frequency_weighted_mean_and_variance():
    model = build([{"name": "fgm"}])
    raw = model.classifier.embedding.table.numpy().astype(np.float64)
    freqs = np.arange(VOCAB) + 1.0
    freqs[0] = 0  # padding does not count
    freqs /= freqs.sum()
    mean = freqs @ raw
    var = freqs @ (raw - mean) ** 2
    want = (raw - mean) / np.sqrt(var + 1e-6)
    np.testing.assert_allclose(model.classifier.embedding.normalized_table().numpy(), want, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(freqs @ want, np.zeros(8), atol=1e-6)
    e = model.classifier.embed({"token_ids": tf.constant(IDS)}).numpy()
    np.testing.assert_allclose(e[1, 2], want[IDS[1, 2]], rtol=1e-4, atol=1e-5)


def test_a_repeated_regularizer_gets_numbered_logs():
    regs = [regularizer(name) for name in ("fgm", "vat", "fgm")]
    assert metric_names(regs) == ["fgm_0", "vat", "fgm_2"]
    assert metric_names(regs[:2]) == ["fgm", "vat"]
    model = build([{"name": "fgm", "epsilon": 1.0}, {"name": "fgm", "epsilon": 2.0}])
    logs = step(model)
    assert logs["fgm_0_perturbation_l2"] == pytest.approx(1.0, rel=1e-4)
    assert logs["fgm_1_perturbation_l2"] == pytest.approx(2.0, rel=1e-4)
    assert {"loss", "clean_loss", "accuracy", "macro_f1", "embedding_norm", "embedding_grad_norm",
            "learning_rate"} <= logs.keys()


def test_calling_the_model_without_training_runs_inference():
    tf_keras.utils.set_random_seed(0)
    cfg = ModelConfig(name="bilstm", embedding_dim=8, hidden_size=6, dropout=0.5, head_dropout=0.5, pooling="max")
    model = AdversarialModel(LSTMClassifier(cfg, VOCAB, 2), [])
    x = {"token_ids": tf.constant(IDS)}
    np.testing.assert_array_equal(model(x).numpy(), model(x).numpy())  # no dropout
    assert not np.array_equal(model(x, training=True).numpy(), model(x, training=True).numpy())


def test_validation_runs_the_clean_model_in_inference_mode():
    """test_step: no dropout and no perturbation: its loss is the cross-entropy of model(x, training=False)."""
    tf_keras.utils.set_random_seed(0)
    cfg = ModelConfig(name="lstm", embedding_dim=8, hidden_size=6, dropout=0.5, head_dropout=0.5, pooling="max")
    model = AdversarialModel(LSTMClassifier(cfg, VOCAB, 2, counts=np.arange(VOCAB) + 1),
                             [regularizer(name="fgm", epsilon=1.0)])
    x = {"token_ids": tf.constant(IDS)}
    model(x)
    model.compile(optimizer=make_optimizer(TrainConfig(learning_rate=0.01)), run_eagerly=True)
    want = float(cross_entropy(LABELS, model(x, training=False)))
    for _ in range(2):  # the same both times: nothing random
        logs = model.evaluate(x, tf.constant(LABELS), verbose=0, return_dict=True)
        assert logs["loss"] == pytest.approx(want, rel=1e-5)


@pytest.mark.parametrize("variational", [True, False])
def test_the_embedding_dropout_mask_is_shared_by_a_texts_positions_only_when_variational(variational):
    """model.variational_dropout: one mask per text over the embedding dimensions (Miyato et al.'s code,
    noise_shape (batch, 1, dim)); otherwise one per coordinate. Read off the looked-up embeddings."""
    tf_keras.utils.set_random_seed(0)
    cfg = ModelConfig(name="lstm", embedding_dim=64, hidden_size=6, dropout=0.5, head_dropout=0.0,
                      pooling="max", variational_dropout=variational)
    clf = LSTMClassifier(cfg, VOCAB, 2)
    x = {"token_ids": tf.constant(IDS)}
    looked_up = clf.embedding(x["token_ids"]).numpy()
    dropped = clf.embed(x, training=True).numpy()
    kept = dropped != 0  # (B, T, D); a kept coordinate is scaled by 1 / (1 - 0.5)
    np.testing.assert_allclose(dropped[kept], 2.0 * looked_up[kept], rtol=1e-6)
    assert 0.3 < kept.mean() < 0.7
    same_at_every_position = all((kept[b][IDS[b] != 0] == kept[b, :1]).all() for b in range(len(IDS)))
    assert same_at_every_position == variational
    assert not (kept[0] == kept[1]).all()  # texts draw their own masks
    np.testing.assert_array_equal(clf.embed(x).numpy(), looked_up)  # inference: no dropout
