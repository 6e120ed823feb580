"""The gradients a full train_step applies, against the plain formulas written out in this file.

Each expected gradient is computed here under its own GradientTape: the perturbation first, from the
formula, then held constant (a numpy array) while the weighted sum of the losses is differentiated with
respect to every trainable variable, the embedding table included. The model trains with plain SGD at
learning rate 1 and no clipping, so the change of each variable is minus the gradient it applied.

The random noise the model draws (random, vat) is recorded as it is drawn and reused here, so that the
expected perturbation starts from the same numbers.
"""
import numpy as np
import pytest
import tensorflow as tf
import tf_keras

from core.loader import regularizer
from core.schema import ModelConfig
from model.lstm_classifier import LSTMClassifier
from trainer.adversarial_model import AdversarialModel

VOCAB = 20
IDS = np.array([[2, 3, 4, 0, 0], [5, 6, 7, 8, 9], [3, 3, 0, 0, 0], [10, 11, 12, 13, 0]], np.int32)
LABELS = np.array([0, 1, 0, 1], np.int32)
# 3 unlabeled texts padded to 6, longer than the labelled batch (5): not square either
UNLABELED = np.array([[14, 15, 0, 0, 0, 0], [16, 17, 18, 19, 4, 5], [19, 2, 0, 0, 0, 0]], np.int32)
# The batch VAT sees in semi-supervised training: labelled then unlabeled rows, padded to the longer length.
VAT_IDS = np.concatenate([np.pad(IDS, [[0, 0], [0, UNLABELED.shape[1] - IDS.shape[1]]]), UNLABELED])


class RecordedNoise:
    """Stands in for the model's normal noise: seeded numbers, kept in the order they were drawn."""

    def __init__(self):
        self.draws = []
        self.others = []

    def __call__(self, shape, draw):
        noise = tf.random.stateless_normal(shape, seed=[len(self.draws) + 1, 11])
        self.draws.append(noise.numpy())
        return noise

    def other(self, sample, shape, draw):
        """The model's other draws (pgd's random radius): `sample`'s own distribution, seeded here."""
        values = sample(shape, seed=[len(self.others) + 1, 12])
        self.others.append(values.numpy())
        return values


def build(regs, clean_weight=1.0, name="bilstm", normalize=True):
    tf_keras.utils.set_random_seed(0)
    cfg = ModelConfig(name=name, embedding_dim=6, hidden_size=4, dropout=0.0, head_dropout=0.0,
                      pooling="max", normalize_embeddings=normalize)
    clf = LSTMClassifier(cfg, VOCAB, 2, counts=np.arange(VOCAB) + 1)
    # method names built at run time, as YAML gives them: not the interned literals the code compares with
    regs = [{**r, "name": "".join(list(r["name"]))} for r in regs]
    model = AdversarialModel(clf, [regularizer(**r) for r in regs], clean_weight=clean_weight, seed=0)
    model({"token_ids": tf.constant(IDS)})
    model.build_methods()
    model.compile(optimizer=tf_keras.optimizers.SGD(learning_rate=1.0), run_eagerly=True)
    model.noise = RecordedNoise()
    model._normal = model.noise
    model._noise = model.noise.other
    return model


def applied_gradients(model, unlabeled=False):
    """One train_step; returns (minus each variable's change, the logs) and puts the weights back."""
    variables = model.trainable_variables
    before = [v.numpy().copy() for v in variables]
    x = {"token_ids": tf.constant(IDS)}
    if unlabeled:
        x["unlabeled"] = {"token_ids": tf.constant(UNLABELED)}
    logs = model.train_step((x, tf.constant(LABELS)))
    applied = [b - v.numpy() for b, v in zip(before, variables)]
    for v, b in zip(variables, before):
        v.assign(b)
    return applied, {k: float(v) for k, v in logs.items()}


# ---------------------------------------------------------------------------------------- the formulas
def ce(labels, logits):
    return tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels, logits))


def kl(p_logits, q_logits):
    """KL(p || q) = sum_y p(y) (log p(y) - log q(y)), averaged over the batch."""
    p = tf.nn.softmax(p_logits)
    return tf.reduce_mean(tf.reduce_sum(p * (tf.nn.log_softmax(p_logits) - tf.nn.log_softmax(q_logits)), -1))


def mean_entropy(logits):
    p = tf.nn.softmax(logits)
    return -tf.reduce_mean(tf.reduce_sum(p * tf.nn.log_softmax(logits), -1))


def unit(x, ids):
    """x / ||x||_2 per example over (time, dim), padding positions zeroed first (float64)."""
    x = np.asarray(x, np.float64) * (ids != 0)[:, :, None]
    return x / np.sqrt((x ** 2).sum(axis=(1, 2), keepdims=True))


class Plain:
    """The classifier as a function of its embeddings, with the gradient formulas on top of it."""

    def __init__(self, model):
        self.clf = model.classifier

    def embed(self, ids):
        return self.clf.embed({"token_ids": tf.constant(ids)}, training=True)

    def logits(self, e, ids):
        return self.clf.logits_from_embeddings(e, {"token_ids": tf.constant(ids)}, training=True)

    def input_gradient(self, loss_of, e):
        e = tf.constant(np.asarray(e, np.float32))
        with tf.GradientTape() as tape:
            tape.watch(e)
            loss = loss_of(e)
        return tape.gradient(loss, e).numpy()

    def clean_gradient(self):
        return self.input_gradient(lambda e: ce(LABELS, self.logits(e, IDS)), self.embed(IDS))

    def perturbation(self, reg, noise, radius=None):
        """r for one regularizer on the labelled batch, from its formula; pgd with a random start begins at
        radius * unit(noise), radius (B, 1, 1) drawn uniformly in [0, epsilon)."""
        eps, g = reg["epsilon"], self.clean_gradient()
        if reg["name"] == "fgm":
            return eps * unit(g, IDS)
        if reg["name"] == "fgsm":
            return eps * np.sign(g) * (IDS != 0)[:, :, None]
        if reg["name"] == "random":
            return eps * unit(noise, IDS)
        if reg["name"] == "pgd":
            e0, r = self.embed(IDS).numpy(), np.zeros_like(g, np.float64)
            if reg.get("random_start"):
                r = eps * radius * unit(noise, IDS)
            for k in range(reg["steps"]):
                grad = (g if k == 0 and not reg.get("random_start")
                        else self.input_gradient(lambda e: ce(LABELS, self.logits(e, IDS)), e0 + r))
                r = r + reg["step_size"] * unit(grad, IDS)
                norm = np.sqrt((r ** 2).sum(axis=(1, 2), keepdims=True))
                r = r * np.minimum(1.0, eps / norm)
            return r * (IDS != 0)[:, :, None]
        raise AssertionError(reg["name"])

    def vat_perturbation(self, reg, ids, noise):
        """One power iteration: d = xi * unit(noise); r = epsilon * unit(grad_d KL(p || p(e + d)))."""
        e0 = self.embed(ids).numpy()
        p = self.logits(tf.constant(e0), ids).numpy()
        d = reg.get("xi", 0.1) * unit(noise, ids)
        grad = self.input_gradient(lambda dd: kl(tf.constant(p), self.logits(tf.constant(e0) + dd, ids)), d)
        return reg["epsilon"] * unit(grad, ids)


def expected_gradients(model, terms, clean_weight=1.0):
    """d/dtheta [clean_weight * CE(y, f(e)) + sum of the terms], each term a function (plain, e_labelled)
    -> its weighted loss, built by the helpers below."""
    plain = Plain(model)
    variables = model.trainable_variables
    with tf.GradientTape() as tape:
        e = plain.embed(IDS)
        total = clean_weight * ce(LABELS, plain.logits(e, IDS))
        for term in terms:
            total += term(plain, e)
    return [tf.convert_to_tensor(g).numpy() for g in tape.gradient(total, variables)]


def adversarial_term(weight, r):
    r = tf.constant(np.asarray(r, np.float32))  # held constant
    return lambda plain, e: weight * ce(LABELS, plain.logits(e + r, IDS))


def vat_term(weight, r, ids, hold_p=True, p_logits=None, entropy_weight=0.0):
    """weight * (KL(p || p(e + r)) + entropy_weight * H), on the batch `ids`; p held constant (computed
    before the tape) unless hold_p is false."""
    r = tf.constant(np.asarray(r, np.float32))

    def term(plain, e_labelled):
        e = plain.embed(ids)
        p = tf.constant(p_logits) if hold_p else plain.logits(e, ids)
        loss = kl(p, plain.logits(e + r, ids))
        if entropy_weight:
            loss += entropy_weight * mean_entropy(plain.logits(e, ids))
        return weight * loss

    return term


def assert_same_gradients(applied, expected, variables):
    assert len(applied) == len(expected) >= 5
    for a, b, v in zip(applied, expected, variables):
        np.testing.assert_allclose(a, b, rtol=2e-4, atol=2e-6, err_msg=v.name)


def largest_difference(a, b):
    return max(float(np.abs(x - y).max()) for x, y in zip(a, b))


# ---------------------------------------------------------------------------------------- the tests
SINGLE = {
    "fgm": {"name": "fgm", "epsilon": 1.5},
    "fgsm": {"name": "fgsm", "epsilon": 0.2},
    "random": {"name": "random", "epsilon": 2.0},
    "pgd": {"name": "pgd", "epsilon": 1.0, "steps": 3, "step_size": 0.6},
    "pgd_random_start": {"name": "pgd", "epsilon": 1.0, "steps": 2, "step_size": 0.3, "random_start": True},
}


@pytest.mark.parametrize("case", sorted(SINGLE))
def test_each_adversarial_regularizer_alone_applies_the_plain_gradient(case):
    reg = SINGLE[case]
    model = build([{**reg, "weight": 0.7}])
    applied, logs = applied_gradients(model)
    noise = model.noise.draws[0] if model.noise.draws else None
    radius = model.noise.others[0] if model.noise.others else None
    assert (radius is not None) == (case == "pgd_random_start") and (radius is None or radius.shape == (4, 1, 1))
    r = Plain(model).perturbation(reg, noise, radius)
    expected = expected_gradients(model, [adversarial_term(0.7, r)])
    assert_same_gradients(applied, expected, model.trainable_variables)
    # the perturbation took effect: the adversarial loss is that of the model at e + r, not at e
    name = reg["name"]
    plain = Plain(model)
    e = plain.embed(IDS)
    assert logs[f"{name}_loss"] == pytest.approx(float(ce(LABELS, plain.logits(e + r.astype(np.float32), IDS))),
                                                 rel=1e-5)
    assert logs[f"{name}_loss"] != pytest.approx(logs["clean_loss"], rel=1e-3)
    # the logged norms: of the embeddings over real tokens, and of r, per example, averaged
    real = (IDS != 0)[:, :, None]
    assert logs["embedding_norm"] == pytest.approx(float(np.mean(np.sqrt((e.numpy() ** 2 * real).sum((1, 2))))),
                                                   rel=1e-5)
    assert logs[f"{name}_perturbation_l2"] == pytest.approx(float(np.mean(np.sqrt((r ** 2).sum((1, 2))))), rel=1e-5)
    assert logs[f"{name}_perturbation_linf"] == pytest.approx(float(np.mean(np.abs(r).max((1, 2)))), rel=1e-5)
    g = plain.clean_gradient()
    assert logs["embedding_grad_norm"] == pytest.approx(float(np.mean(np.sqrt((g ** 2).sum((1, 2))))), rel=1e-5)


def test_every_pass_of_a_train_step_runs_in_training_mode(monkeypatch):
    """Dropout acts on the clean, the adversarial, the PGD and the VAT passes alike: every call of the
    classifier inside train_step says training=True (the eager step lets the calls be watched)."""
    model = build([{"name": "fgm", "epsilon": 1.0}, {"name": "pgd", "epsilon": 1.0, "steps": 2, "step_size": 0.5},
                   {"name": "vat", "epsilon": 1.0}])
    clf, seen = model.classifier, []
    for method in ("embed", "logits_from_embeddings"):
        original = getattr(clf, method)

        def watched(*args, _original=original, _method=method, **kwargs):
            seen.append((_method, kwargs.get("training")))
            return _original(*args, **kwargs)

        monkeypatch.setattr(clf, method, watched)
    applied_gradients(model, unlabeled=True)
    assert {m for m, _ in seen} == {"embed", "logits_from_embeddings"} and len(seen) >= 8
    assert all(training is True for _, training in seen), seen


def test_weighted_combination_with_clean_weight_applies_the_plain_gradient():
    regs = [{"name": "fgm", "epsilon": 1.5, "weight": 0.25}, {"name": "fgsm", "epsilon": 0.1, "weight": 2.0},
            {"name": "random", "epsilon": 1.0, "weight": 0.5}]
    model = build(regs, clean_weight=0.3)
    applied, logs = applied_gradients(model)
    plain = Plain(model)
    terms = [adversarial_term(reg["weight"], plain.perturbation(reg, model.noise.draws[0])) for reg in regs]
    expected = expected_gradients(model, terms, clean_weight=0.3)
    assert_same_gradients(applied, expected, model.trainable_variables)
    want = 0.3 * logs["clean_loss"] + 0.25 * logs["fgm_loss"] + 2.0 * logs["fgsm_loss"] + 0.5 * logs["random_loss"]
    assert logs["loss"] == pytest.approx(want, rel=1e-5)


def test_adversarial_loss_alone_with_clean_weight_zero_applies_the_plain_gradient():
    reg = {"name": "fgm", "epsilon": 1.0}
    model = build([{**reg, "weight": 1.0}], clean_weight=0.0)
    applied, logs = applied_gradients(model)
    expected = expected_gradients(model, [adversarial_term(1.0, Plain(model).perturbation(reg, None))], 0.0)
    assert_same_gradients(applied, expected, model.trainable_variables)
    assert logs["loss"] == pytest.approx(logs["fgm_loss"], rel=1e-6)


def test_adversarial_gradient_reaches_the_embedding_table_without_normalization():
    """Without normalization the table's gradient is sparse; the adversarial loss's part must still reach it."""
    reg = {"name": "fgm", "epsilon": 2.0}
    model = build([{**reg, "weight": 3.0}], clean_weight=0.5, normalize=False)
    applied, _ = applied_gradients(model)
    expected = expected_gradients(model, [adversarial_term(3.0, Plain(model).perturbation(reg, None))], 0.5)
    assert_same_gradients(applied, expected, model.trainable_variables)


def test_vat_on_the_labelled_batch_applies_the_plain_gradient():
    reg = {"name": "vat", "epsilon": 2.0, "xi": 0.1}
    model = build([{**reg, "weight": 0.6}])
    applied, logs = applied_gradients(model)
    plain = Plain(model)
    noise = np.concatenate(model.noise.draws)
    r = plain.vat_perturbation(reg, IDS, noise)
    p = plain.logits(plain.embed(IDS), IDS).numpy()
    expected = expected_gradients(model, [vat_term(0.6, r, IDS, p_logits=p)])
    assert_same_gradients(applied, expected, model.trainable_variables)
    assert logs["vat_loss"] == pytest.approx(float(kl(p, plain.logits(plain.embed(IDS) + r.astype(np.float32), IDS))),
                                             rel=1e-5)


def test_semi_supervised_vat_holds_p_constant_on_every_example():
    """KL(p || q) with p held constant, over labelled and unlabeled texts: the gradient equals the one
    computed with p constant and differs from the one that also moves p."""
    reg = {"name": "vat", "epsilon": 2.0, "xi": 0.1}
    model = build([{**reg, "weight": 1.3}], clean_weight=0.8)
    applied, _ = applied_gradients(model, unlabeled=True)
    plain = Plain(model)
    noise = np.concatenate(model.noise.draws)
    assert noise.shape[0] == len(VAT_IDS)
    r = plain.vat_perturbation(reg, VAT_IDS, noise)
    p = plain.logits(plain.embed(VAT_IDS), VAT_IDS).numpy()
    held = expected_gradients(model, [vat_term(1.3, r, VAT_IDS, p_logits=p)], 0.8)
    moving = expected_gradients(model, [vat_term(1.3, r, VAT_IDS, hold_p=False)], 0.8)
    assert largest_difference(held, moving) > 1e-4  # the two hypotheses can be told apart
    assert_same_gradients(applied, held, model.trainable_variables)


def test_semi_supervised_vat_without_normalization_sums_the_sparse_table_gradients():
    """Without normalization the table's gradients are IndexedSlices: the clean lookup's and VAT's own
    lookup's must be summed, not dropped."""
    reg = {"name": "vat", "epsilon": 2.0, "xi": 0.1}
    model = build([{**reg, "weight": 1.3}], clean_weight=0.8, normalize=False)
    applied, logs = applied_gradients(model, unlabeled=True)
    assert "vat_entropy" not in logs  # entropy_weight 0: no entropy term, none logged
    plain = Plain(model)
    r = plain.vat_perturbation(reg, VAT_IDS, np.concatenate(model.noise.draws))
    p = plain.logits(plain.embed(VAT_IDS), VAT_IDS).numpy()
    assert_same_gradients(applied, expected_gradients(model, [vat_term(1.3, r, VAT_IDS, p_logits=p)], 0.8),
                          model.trainable_variables)


def test_vat_direction_is_kl_of_clean_to_perturbed():
    """KL(p || q) and KL(q || p) give different gradients here; the step follows the first."""
    reg = {"name": "vat", "epsilon": 2.0, "xi": 0.1}
    model = build([{**reg, "weight": 1.0}])
    applied, _ = applied_gradients(model, unlabeled=True)
    plain = Plain(model)
    r = tf.constant(plain.vat_perturbation(reg, VAT_IDS, np.concatenate(model.noise.draws)).astype(np.float32))
    p = tf.constant(plain.logits(plain.embed(VAT_IDS), VAT_IDS).numpy())

    def reversed_term(plain, e_labelled):
        return kl(plain.logits(plain.embed(VAT_IDS) + r, VAT_IDS), p)

    forward = expected_gradients(model, [vat_term(1.0, r.numpy(), VAT_IDS, p_logits=p.numpy())])
    backward = expected_gradients(model, [reversed_term])
    assert largest_difference(forward, backward) > 1e-4
    assert_same_gradients(applied, forward, model.trainable_variables)


def test_vat_entropy_term_is_applied_and_logged():
    """VAT + EntMin: entropy_weight * the mean entropy of the predictions on every text VAT sees
    (labelled and unlabeled), inside the regularizer's weight; logged as vat_entropy."""
    reg = {"name": "vat", "epsilon": 2.0, "xi": 0.1, "entropy_weight": 0.4}
    model = build([{**reg, "weight": 0.5}])
    applied, logs = applied_gradients(model, unlabeled=True)
    plain = Plain(model)
    r = plain.vat_perturbation(reg, VAT_IDS, np.concatenate(model.noise.draws))
    p = plain.logits(plain.embed(VAT_IDS), VAT_IDS).numpy()
    expected = expected_gradients(model, [vat_term(0.5, r, VAT_IDS, p_logits=p, entropy_weight=0.4)])
    assert_same_gradients(applied, expected, model.trainable_variables)
    entropy = float(mean_entropy(p))
    assert logs["vat_entropy"] == pytest.approx(entropy, rel=1e-5)
    assert logs["loss"] == pytest.approx(logs["clean_loss"] + 0.5 * (logs["vat_loss"] + 0.4 * entropy), rel=1e-5)


def test_vat_entropy_term_without_an_unlabeled_batch():
    """VAT + EntMin on the labelled batch alone: the whole entropy term goes through the clean pass."""
    reg = {"name": "vat", "epsilon": 2.0, "xi": 0.1, "entropy_weight": 0.4}
    model = build([{**reg, "weight": 0.5}])
    applied, logs = applied_gradients(model)
    plain = Plain(model)
    r = plain.vat_perturbation(reg, IDS, np.concatenate(model.noise.draws))
    p = plain.logits(plain.embed(IDS), IDS).numpy()
    expected = expected_gradients(model, [vat_term(0.5, r, IDS, p_logits=p, entropy_weight=0.4)])
    assert_same_gradients(applied, expected, model.trainable_variables)
    assert logs["vat_entropy"] == pytest.approx(float(mean_entropy(p)), rel=1e-5)


def test_combination_with_vat_and_clean_weight_applies_the_plain_gradient():
    fgm = {"name": "fgm", "epsilon": 1.0, "weight": 0.4}
    vat = {"name": "vat", "epsilon": 1.5, "xi": 0.1, "weight": 0.7}
    model = build([fgm, vat], clean_weight=0.6)
    applied, _ = applied_gradients(model, unlabeled=True)
    plain = Plain(model)
    r_vat = plain.vat_perturbation(vat, VAT_IDS, np.concatenate(model.noise.draws))
    p = plain.logits(plain.embed(VAT_IDS), VAT_IDS).numpy()
    terms = [adversarial_term(0.4, plain.perturbation(fgm, None)), vat_term(0.7, r_vat, VAT_IDS, p_logits=p)]
    assert_same_gradients(applied, expected_gradients(model, terms, 0.6), model.trainable_variables)


# ---------------------------------------------------------------------------------------- FreeLB
def freelb_perturbations(plain, reg, start=None):
    """d_1..d_K from the formula: d_k = project(d_{k-1} + adv_lr * g / ||g||), g the gradient of CE at
    e + d_{k-1} (at d_0 = 0 the clean gradient); L2: scaled back onto the max_norm ball; L-inf: clipped."""
    e0 = plain.embed(IDS).numpy()
    real = (IDS != 0)[:, :, None]
    d = np.zeros_like(e0, np.float64) if start is None else start
    out = []
    for _ in range(reg["adv_steps"]):
        g = plain.input_gradient(lambda e: ce(LABELS, plain.logits(e, IDS)), e0 + d) * real
        if reg.get("norm", "l2") == "linf":
            d = np.clip(d + reg["adv_lr"] * g / np.abs(g).max(axis=(1, 2), keepdims=True), -reg["max_norm"],
                        reg["max_norm"]) * real
        else:
            d = d + reg["adv_lr"] * unit(g, IDS)
            d = d * np.minimum(1.0, reg["max_norm"] / np.sqrt((d ** 2).sum(axis=(1, 2), keepdims=True)))
        out.append(d)
    return out


def freelb_term(weight, perturbations):
    """weight * the mean over k of CE(y, f(e + d_k)), every d_k constant."""
    k = len(perturbations)
    return lambda plain, e: sum(adversarial_term(weight / k, d)(plain, e) for d in perturbations)


def test_freelb_with_one_step_and_no_random_start_is_fgm():
    fgm = build([{"name": "fgm", "epsilon": 1.5, "weight": 0.7}])
    freelb = build([{"name": "freelb", "adv_steps": 1, "init_mag": 0.0, "adv_lr": 1.5, "max_norm": 1.5,
                     "weight": 0.7}])
    applied_fgm, logs_fgm = applied_gradients(fgm)
    applied_freelb, logs_freelb = applied_gradients(freelb)
    assert_same_gradients(applied_freelb, applied_fgm, freelb.trainable_variables)
    assert logs_freelb["freelb_loss"] == pytest.approx(logs_fgm["fgm_loss"], rel=1e-6)
    assert logs_freelb["freelb_perturbation_l2"] == pytest.approx(1.5, rel=1e-5)


@pytest.mark.parametrize("norm", ["l2", "linf"])
def test_freelb_averages_the_loss_over_its_ascent_steps(norm):
    reg = {"name": "freelb", "adv_steps": 3, "init_mag": 0.0, "adv_lr": 0.8 if norm == "l2" else 0.08,
           "max_norm": 1.0 if norm == "l2" else 0.1, "norm": norm}
    model = build([{**reg, "weight": 0.9}], clean_weight=0.4)
    applied, logs = applied_gradients(model)
    plain = Plain(model)
    ds = freelb_perturbations(plain, reg)
    assert all(np.abs(d).max() > 0 for d in ds) and np.abs(ds[2] - ds[1]).max() > 1e-4  # each step moved
    assert_same_gradients(applied, expected_gradients(model, [freelb_term(0.9, ds)], 0.4), model.trainable_variables)
    e = plain.embed(IDS)
    mean_loss = np.mean([float(ce(LABELS, plain.logits(e + d.astype(np.float32), IDS))) for d in ds])
    assert logs["freelb_loss"] == pytest.approx(mean_loss, rel=1e-5)
    # the last step's perturbation is logged: on the ball's surface here
    final_norm = np.sqrt((ds[2] ** 2).sum(axis=(1, 2))) if norm == "l2" else np.abs(ds[2]).max(axis=(1, 2))
    key = "freelb_perturbation_l2" if norm == "l2" else "freelb_perturbation_linf"
    assert logs[key] == pytest.approx(float(np.mean(final_norm)), rel=1e-5)


def freelb_start(model, init_mag, scale=1.0):
    """d_0 = U(-1, 1) * init_mag / sqrt(real tokens * dim) at real tokens, from the recorded uniform draw."""
    (u,) = model.noise.others
    real = (IDS != 0)[:, :, None]
    dims = real.sum(axis=(1, 2), keepdims=True) * u.shape[-1]
    return (2 * u.astype(np.float64) - 1) * real * init_mag * scale / np.sqrt(dims)


def test_freelb_random_start_trains_on_d0_to_dk_minus_1_as_the_papers_algorithm():
    """From a random start (Zhu et al. 2020, Algorithm 1): the parameter gradients at d_0..d_{K-1} averaged,
    each d_k from the gradient at d_{k-1}; d_K is never computed."""
    reg = {"name": "freelb", "adv_steps": 3, "init_mag": 0.6, "adv_lr": 0.5, "max_norm": 1.0}
    model = build([{**reg, "weight": 1.0}], clean_weight=0.3)
    applied, logs = applied_gradients(model)
    start = freelb_start(model, 0.6)
    plain = Plain(model)
    ds = [start] + freelb_perturbations(plain, {**reg, "adv_steps": 2}, start)
    expected = expected_gradients(model, [freelb_term(1.0, ds)], 0.3)
    assert_same_gradients(applied, expected, model.trainable_variables)
    e = plain.embed(IDS)
    mean_loss = np.mean([float(ce(LABELS, plain.logits(e + d.astype(np.float32), IDS))) for d in ds])
    assert logs["freelb_loss"] == pytest.approx(mean_loss, rel=1e-5)
    shifted = freelb_perturbations(plain, reg, start)  # d_1..d_K: the old, shifted reading
    assert largest_difference(expected_gradients(model, [freelb_term(1.0, shifted)], 0.3), expected) > 1e-5


# ---------------------------------------------------------------------------------------- free
def free_replays(model, reg, relative=False):
    """Free adversarial training written out: `replays` SGD(1) updates on one batch, each at e + r_k with e looked
    up by the current weights, r_0 = 0 and r_{k+1} = project(r_k + step_size * unit(g_k), epsilon), g_k the
    gradient of the same loss w.r.t. e + r_k (relative: both radii times each text's norm of that e). Runs on the
    model's own variables and puts them back; returns (the weights after the last update, the perturbations
    r_1..r_{m-1}, the losses at r_0..r_{m-1})."""
    plain, variables = Plain(model), model.trainable_variables
    before = [v.numpy().copy() for v in variables]
    r, rs, losses = np.zeros((*IDS.shape, 6)), [], []
    for k in range(reg["replays"]):
        with tf.GradientTape() as tape:
            e = plain.embed(IDS)
            base = e + tf.constant(r.astype(np.float32))
            tape.watch(base)
            loss = ce(LABELS, plain.logits(base, IDS))
        *grads, g_e = tape.gradient(loss, variables + [base])
        losses.append(float(loss))
        scale = 1.0
        if relative:
            scale = np.sqrt((e.numpy().astype(np.float64) ** 2 * (IDS != 0)[:, :, None]).sum(axis=(1, 2), keepdims=True))
        for v, g in zip(variables, grads):
            v.assign_sub(tf.convert_to_tensor(g))
        if k + 1 < reg["replays"]:
            r = r + reg["step_size"] * scale * unit(g_e.numpy(), IDS)
            norm = np.sqrt((r ** 2).sum(axis=(1, 2), keepdims=True))
            r = r * np.minimum(1.0, reg["epsilon"] * scale / norm)
            rs.append(r)
    after = [v.numpy().copy() for v in variables]
    for v, b in zip(variables, before):
        v.assign(b)
    return after, rs, losses


def test_free_replays_the_batch_updating_the_weights_and_carrying_the_perturbation():
    reg = {"name": "free", "replays": 3, "epsilon": 1.0, "step_size": 0.8}
    model = build([reg])
    expected, rs, losses = free_replays(model, reg)
    norms = [np.sqrt((r ** 2).sum(axis=(1, 2))) for r in rs]
    np.testing.assert_allclose(norms[0], 0.8, rtol=1e-6)  # r_1: one step of 0.8, inside the ball
    np.testing.assert_allclose(norms[1], 1.0, rtol=1e-6)  # r_2: two steps, projected back onto the ball
    assert all(np.abs(r[IDS == 0]).max() == 0 for r in rs)  # padding untouched
    logs = model.train_step(({"token_ids": tf.constant(IDS)}, tf.constant(LABELS)))
    logs = {k: float(v) for k, v in logs.items()}
    assert int(model.optimizer.iterations) == 3  # one update per replay
    assert len(expected) == len(model.trainable_variables) >= 5
    for v, want in zip(model.trainable_variables, expected):
        np.testing.assert_allclose(v.numpy(), want, rtol=2e-4, atol=2e-6, err_msg=v.name)
    assert logs["clean_loss"] == pytest.approx(losses[0], rel=1e-5)  # replay 0 is the clean step
    assert logs["free_loss"] == pytest.approx(np.mean(losses[1:]), rel=1e-5)  # the replays at r_1, r_2
    assert logs["loss"] == pytest.approx(np.mean(losses), rel=1e-5)
    assert logs["free_perturbation_l2"] == pytest.approx(float(np.mean(np.concatenate(norms))), rel=1e-5)


# ---------------------------------------------------------------------------------------- SMART
def sym_kl(p_logits, q_logits):
    return kl(p_logits, q_logits) + kl(q_logits, p_logits)


def smart_perturbation(plain, reg, ids, noise):
    """`steps` projected L-inf ascent steps from d_0 = sigma * noise: d = clip(d + step_size * g / max|g|, +-eps),
    g = grad_d symKL(p, f(e + d)) with p = f(e) constant; 0 at padding."""
    real = (ids != 0)[:, :, None]
    e0 = plain.embed(ids).numpy()
    p = tf.constant(plain.logits(tf.constant(e0), ids).numpy())
    d = reg["sigma"] * np.asarray(noise, np.float64) * real
    for _ in range(reg["steps"]):
        g = plain.input_gradient(lambda x: sym_kl(p, plain.logits(x, ids)), e0 + d) * real
        d = np.clip(d + reg["step_size"] * g / np.abs(g).max(axis=(1, 2), keepdims=True), -reg["epsilon"],
                    reg["epsilon"]) * real
    return d


def smoothness_term(weight, d, ids, hold_p=False):
    """weight * symKL(f(e), f(e + d)) on the batch `ids`, the gradient through both (or p held)."""
    d = tf.constant(np.asarray(d, np.float32))

    def term(plain, e_labelled):
        e = plain.embed(ids)
        p = plain.logits(e, ids)
        return weight * sym_kl(tf.stop_gradient(p) if hold_p else p, plain.logits(e + d, ids))

    return term


SMOOTH = {"name": "smart", "epsilon": 0.3, "sigma": 0.1, "step_size": 0.2, "steps": 1, "proximal_weight": 0.0}


@pytest.mark.parametrize("unlabeled", [False, True])
def test_smart_smoothness_applies_the_plain_gradient(unlabeled):
    model = build([{**SMOOTH, "weight": 0.8}], clean_weight=0.5)
    applied, logs = applied_gradients(model, unlabeled=unlabeled)
    assert "smart_proximal" not in logs
    ids = VAT_IDS if unlabeled else IDS
    plain = Plain(model)
    d = smart_perturbation(plain, SMOOTH, ids, np.concatenate(model.noise.draws))
    real = (ids != 0)[:, :, None]
    clipped = np.isclose(np.abs(d), SMOOTH["epsilon"]) & real
    assert 0 < clipped.sum() < real.sum() * d.shape[-1]  # the projection acts on some coordinates, not all
    full = expected_gradients(model, [smoothness_term(0.8, d, ids)], 0.5)
    held = expected_gradients(model, [smoothness_term(0.8, d, ids, hold_p=True)], 0.5)
    assert largest_difference(full, held) > 1e-5  # the two hypotheses can be told apart
    assert_same_gradients(applied, full, model.trainable_variables)
    e = plain.embed(ids)
    want = float(sym_kl(plain.logits(e, ids), plain.logits(e + d.astype(np.float32), ids)))
    assert logs["smart_smoothness"] == pytest.approx(want, rel=1e-5) and logs["smart_loss"] == pytest.approx(want, rel=1e-5)
    assert logs["smart_perturbation_linf"] == pytest.approx(float(np.mean(np.abs(d).max((1, 2)))), rel=1e-5)


def test_smart_takes_as_many_ascent_steps_as_steps_says():
    reg = {**SMOOTH, "steps": 3, "step_size": 0.05}
    model = build([{**reg, "weight": 0.8}])
    applied, _ = applied_gradients(model)
    plain = Plain(model)
    noise = np.concatenate(model.noise.draws)
    d = smart_perturbation(plain, reg, IDS, noise)
    one = smart_perturbation(plain, {**reg, "steps": 1}, IDS, noise)
    expected = expected_gradients(model, [smoothness_term(0.8, d, IDS)])
    assert largest_difference(expected, expected_gradients(model, [smoothness_term(0.8, one, IDS)])) > 1e-5
    assert_same_gradients(applied, expected, model.trainable_variables)


def test_smart_proximal_term_is_zero_when_the_ema_copy_equals_the_model():
    model = build([{"name": "smart", "smoothness": False, "proximal_weight": 1.0, "weight": 2.0}])
    for copy, weight in zip(model.methods[0].ema.weights, model.classifier.weights):
        np.testing.assert_array_equal(copy.numpy(), weight.numpy())
    applied, logs = applied_gradients(model)
    assert logs["smart_proximal"] == pytest.approx(0.0, abs=1e-7)
    assert_same_gradients(applied, expected_gradients(model, []), model.trainable_variables)


def test_smart_proximal_term_pulls_towards_the_ema_copy_and_the_copy_follows():
    model = build([{"name": "smart", "smoothness": False, "proximal_weight": 1.5, "momentum": 0.9, "weight": 2.0}])
    ema = model.methods[0].ema
    rng = np.random.default_rng(0)
    for copy in ema.weights:  # a copy that differs from the model
        copy.assign(copy.numpy() + rng.normal(0, 0.3, copy.shape).astype(np.float32))
    before = [c.numpy().copy() for c in ema.weights]
    teacher = tf.constant(ema({"token_ids": tf.constant(IDS)}, training=False).numpy())

    def proximal(plain, e):
        return 2.0 * 1.5 * sym_kl(plain.logits(e, IDS), teacher)

    expected = expected_gradients(model, [proximal])
    assert largest_difference(expected, expected_gradients(model, [])) > 1e-5
    plain = Plain(model)
    want = float(sym_kl(plain.logits(plain.embed(IDS), IDS), teacher))
    variables = model.trainable_variables
    weights_before = [v.numpy().copy() for v in variables]
    logs = model.train_step(({"token_ids": tf.constant(IDS)}, tf.constant(LABELS)))
    applied = [b - v.numpy() for b, v in zip(weights_before, variables)]
    assert_same_gradients(applied, expected, variables)
    assert float(logs["smart_proximal"]) == pytest.approx(want, rel=1e-5) and want > 1e-3
    # after the step: ema = 0.9 * ema + 0.1 * the updated weights
    for copy, old, weight in zip(ema.weights, before, model.classifier.weights):
        np.testing.assert_allclose(copy.numpy(), 0.9 * old + 0.1 * weight.numpy(), rtol=1e-6, atol=1e-7)
