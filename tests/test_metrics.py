"""Metrics against values computed by hand on small arrays."""
import numpy as np
import pytest

from trainer.metrics import (
    average_precision,
    calibration_errors,
    classification_report,
    evaluation_metrics,
    roc_auc,
    threshold_table,
)

PROBS = np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4], [0.3, 0.7], [0.45, 0.55]])
Y = np.array([0, 1, 1, 1, 0])


def test_classification_report_by_hand():
    r = classification_report(Y, PROBS.argmax(1), ["neg", "pos"])
    # predictions 0 1 0 1 1: neg tp 1 of 2 predicted, support 2; pos tp 2 of 3 predicted, support 3
    assert r["accuracy"] == pytest.approx(3 / 5)
    assert r["per_class"]["neg"] == {"precision": 0.5, "recall": 0.5, "f1": 0.5, "support": 2}
    assert r["per_class"]["pos"]["precision"] == pytest.approx(2 / 3)
    assert r["per_class"]["pos"]["f1"] == pytest.approx(2 / 3)
    assert r["macro_f1"] == pytest.approx((0.5 + 2 / 3) / 2)
    assert r["confusion_matrix"] == [[1, 1], [1, 2]]


def test_ece_and_mce_by_hand():
    # confidences 0.9 0.8 0.6 0.7 0.55; correct: T T F T F. 15 bins of width 1/15:
    # 0.9 -> (0.8667, 0.9333] alone: |1 - 0.9| = 0.1; 0.8 -> (0.7333, 0.8]: |1 - 0.8| = 0.2
    # 0.6 -> (0.5333, 0.6] with 0.55: accuracy 0, confidence 0.575 -> 0.575; 0.7 -> (0.6667, 0.7333]: 0.3
    ece, mce = calibration_errors(PROBS, Y, bins=15)
    assert ece == pytest.approx((0.1 + 0.2 + 2 * 0.575 + 0.3) / 5)
    assert mce == pytest.approx(0.575)


def test_perfectly_calibrated_gives_zero_ece():
    probs = np.array([[0.25, 0.75]] * 4)
    ece, _ = calibration_errors(probs, np.array([1, 1, 1, 0]), bins=15)
    assert ece == pytest.approx(0.0)


def test_roc_auc_and_average_precision_by_hand():
    scores = PROBS[:, 1]  # 0.1 0.8 0.4 0.7 0.55 ; positives at 0.8 0.4 0.7, negatives at 0.1 0.55
    # pairs (pos > neg): 0.8>0.1,0.8>0.55, 0.4>0.1, 0.7>0.1,0.7>0.55 = 5 of 6
    assert roc_auc(scores, Y == 1) == pytest.approx(5 / 6)
    assert roc_auc([0.5, 0.5], [True, False]) == pytest.approx(0.5)
    # ranking: 0.8(P) 0.7(P) 0.55(N) 0.4(P) 0.1(N): precisions at positives 1, 1, 3/4
    assert average_precision(scores, Y == 1) == pytest.approx((1 + 1 + 0.75) / 3)


def test_threshold_table_and_full_report():
    row = threshold_table(PROBS[:, 1], Y == 1, [0.5])[0]
    assert row == {"threshold": 0.5, "predicted_positive": 3, "precision": pytest.approx(2 / 3),
                   "recall": pytest.approx(2 / 3), "accuracy": pytest.approx(0.6)}
    r = evaluation_metrics(PROBS, Y, ["neg", "pos"])
    nll = -np.mean(np.log([0.9, 0.8, 0.4, 0.7, 0.45]))
    brier = np.mean([2 * 0.1 ** 2, 2 * 0.2 ** 2, 2 * 0.6 ** 2, 2 * 0.3 ** 2, 2 * 0.55 ** 2])
    assert r["nll"] == pytest.approx(nll) and r["brier"] == pytest.approx(brier)
    assert len(r["thresholds"]) == 9 and r["roc_auc"] == pytest.approx(5 / 6)


def test_robustness_at_zero_equals_clean_accuracy_and_pgd_is_monotone_on_a_linear_toy():
    import tensorflow as tf
    import tf_keras

    from trainer.robustness import robustness_curves

    class LinearToy(tf_keras.Model):
        """Token ids -> embedding table -> sum over real tokens -> dense logits."""

        def __init__(self):
            super().__init__()
            rng = np.random.default_rng(0)
            self.table = tf.constant(rng.normal(size=(10, 4)), tf.float32)
            self.w = tf.constant(rng.normal(size=(4, 3)), tf.float32)

        def padding_mask(self, inputs):
            return inputs["token_ids"] != 0

        def embed(self, inputs):
            return tf.gather(self.table, inputs["token_ids"])

        def logits_from_embeddings(self, e, inputs, training=False):
            m = tf.cast(self.padding_mask(inputs), tf.float32)[:, :, None]
            return tf.reduce_sum(e * m, axis=1) @ self.w

    toy = LinearToy()
    ids = np.random.default_rng(1).integers(1, 10, size=(40, 5)).astype(np.int32)
    ids[::3, 3:] = 0
    clean_pred = toy.logits_from_embeddings(toy.embed({"token_ids": ids}), {"token_ids": ids}).numpy().argmax(1)
    labels = np.where(np.arange(40) % 4 == 0, (clean_pred + 1) % 3, clean_pred).astype(np.int32)
    ds = tf.data.Dataset.from_tensor_slices(({"token_ids": ids}, labels)).batch(16)
    eps = [0.0, 0.5, 1.0, 2.0, 4.0, 8.0]
    curves = robustness_curves(toy, ds, {"fgm": eps, "pgd": eps, "fgsm": [0.0, 0.1]}, pgd_steps=4, max_examples=36)
    clean = float(np.mean(clean_pred[:36] == labels[:36]))
    for attack in ("fgm", "pgd", "fgsm"):
        assert curves[attack]["accuracy"][0] == pytest.approx(clean) and curves[attack]["n"] == 36
    assert all(a >= b for a, b in zip(curves["pgd"]["accuracy"], curves["pgd"]["accuracy"][1:]))
    assert curves["pgd"]["accuracy"][-1] < clean
