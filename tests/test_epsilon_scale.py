"""regularizer.epsilon_scale: relative, against the absolute formulas of test_train_step_gradients with
each example's radii scaled by its own embedding norm, computed here."""
import numpy as np
import pytest
import tensorflow as tf
from test_train_step_gradients import (
    IDS,
    LABELS,
    VAT_IDS,
    Plain,
    adversarial_term,
    applied_gradients,
    assert_same_gradients,
    build,
    expected_gradients,
    free_replays,
    freelb_perturbations,
    freelb_start,
    freelb_term,
    smart_perturbation,
    smoothness_term,
    vat_term,
)


def embedding_scale(model, ids, linf=False):
    """Each example's embedding norm over its real tokens (B, 1, 1); for L-inf radii divided by
    sqrt(real tokens * dim), the root-mean-square coordinate."""
    e = Plain(model).embed(ids).numpy().astype(np.float64)
    real = (ids != 0)[:, :, None]
    norm = np.sqrt((e ** 2 * real).sum(axis=(1, 2), keepdims=True))
    return norm / np.sqrt(real.sum(axis=(1, 2), keepdims=True) * e.shape[-1]) if linf else norm


RELATIVE = {
    "fgm": {"name": "fgm", "epsilon": 0.3},
    "fgsm": {"name": "fgsm", "epsilon": 0.2},
    "random": {"name": "random", "epsilon": 0.4},
    "pgd": {"name": "pgd", "epsilon": 0.3, "steps": 2, "step_size": 0.2},
}


@pytest.mark.parametrize("case", sorted(RELATIVE))
def test_relative_epsilon_is_a_multiple_of_each_examples_embedding_norm(case):
    reg = RELATIVE[case]
    model = build([{**reg, "weight": 0.7, "epsilon_scale": "relative"}])
    applied, logs = applied_gradients(model)
    scale = embedding_scale(model, IDS, linf=case == "fgsm")
    # the absolute formula with the radii scaled per example
    absolute = {**reg, "epsilon": reg["epsilon"] * scale,
                "step_size": reg.get("step_size", 0.0) * embedding_scale(model, IDS)}
    r = Plain(model).perturbation(absolute, model.noise.draws[0] if model.noise.draws else None)
    assert_same_gradients(applied, expected_gradients(model, [adversarial_term(0.7, r)]), model.trainable_variables)
    l2 = np.sqrt((r ** 2).sum(axis=(1, 2)))
    assert logs[f"{case}_perturbation_l2"] == pytest.approx(float(l2.mean()), rel=1e-5)
    if case in ("fgm", "random"):  # exactly epsilon times the example's own norm
        np.testing.assert_allclose(l2, reg["epsilon"] * scale.ravel(), rtol=1e-6)
    if case == "fgsm":  # every real coordinate epsilon times the example's root-mean-square coordinate
        np.testing.assert_allclose(np.abs(r)[IDS != 0], np.broadcast_to(reg["epsilon"] * scale, r.shape)[IDS != 0],
                                   rtol=1e-6)


def test_relative_epsilon_for_semi_supervised_vat_scales_xi_and_epsilon_per_text():
    reg = {"name": "vat", "epsilon": 0.5, "xi": 0.01}
    model = build([{**reg, "weight": 0.6, "epsilon_scale": "relative"}])
    applied, logs = applied_gradients(model, unlabeled=True)
    plain = Plain(model)
    scale = embedding_scale(model, VAT_IDS)  # labelled and unlabeled texts, each its own
    r = plain.vat_perturbation({**reg, "epsilon": 0.5 * scale, "xi": 0.01 * scale}, VAT_IDS,
                               np.concatenate(model.noise.draws))
    np.testing.assert_allclose(np.sqrt((r ** 2).sum(axis=(1, 2))), 0.5 * scale.ravel(), rtol=1e-6)
    p = plain.logits(plain.embed(VAT_IDS), VAT_IDS).numpy()
    expected = expected_gradients(model, [vat_term(0.6, r, VAT_IDS, p_logits=p)])
    assert_same_gradients(applied, expected, model.trainable_variables)


@pytest.mark.parametrize("norm", ["l2", "linf"])
def test_relative_radii_of_freelb_scale_its_step_and_ball_per_text(norm):
    reg = {"name": "freelb", "adv_steps": 2, "init_mag": 0.0, "adv_lr": 0.05, "max_norm": 0.08, "norm": norm}
    model = build([{**reg, "weight": 0.9, "epsilon_scale": "relative"}])
    applied, _ = applied_gradients(model)
    scale = embedding_scale(model, IDS, linf=norm == "linf")
    ds = freelb_perturbations(Plain(model), {**reg, "adv_lr": 0.05 * scale, "max_norm": 0.08 * scale})
    assert_same_gradients(applied, expected_gradients(model, [freelb_term(0.9, ds)]), model.trainable_variables)
    if norm == "l2":  # on the ball: max_norm times each text's own norm
        np.testing.assert_allclose(np.sqrt((ds[-1] ** 2).sum(axis=(1, 2))), 0.08 * scale.ravel(), rtol=1e-5)


def test_a_relative_random_start_of_freelb_is_init_mag_times_each_texts_norm():
    reg = {"name": "freelb", "adv_steps": 2, "init_mag": 0.03, "adv_lr": 0.05, "max_norm": 0.08}
    model = build([{**reg, "weight": 0.9, "epsilon_scale": "relative"}])
    applied, _ = applied_gradients(model)
    scale = embedding_scale(model, IDS)
    start = freelb_start(model, 0.03, scale)
    ds = [start] + freelb_perturbations(Plain(model), {**reg, "adv_steps": 1, "adv_lr": 0.05 * scale,
                                                       "max_norm": 0.08 * scale}, start)
    assert_same_gradients(applied, expected_gradients(model, [freelb_term(0.9, ds)]), model.trainable_variables)


def test_relative_radii_of_free_scale_its_step_and_ball_per_text_at_each_replay():
    reg = {"name": "free", "replays": 3, "epsilon": 0.05, "step_size": 0.04}
    model = build([{**reg, "epsilon_scale": "relative"}])
    expected, rs, _ = free_replays(model, reg, relative=True)
    absolute, _, _ = free_replays(model, reg)
    assert max(float(np.abs(a - b).max()) for a, b in zip(expected, absolute)) > 1e-5  # they can be told apart
    model.train_step(({"token_ids": tf.constant(IDS)}, tf.constant(LABELS)))
    for v, want in zip(model.trainable_variables, expected):
        np.testing.assert_allclose(v.numpy(), want, rtol=2e-4, atol=2e-6, err_msg=v.name)


def test_relative_radii_of_smart_scale_its_noise_step_and_ball_by_the_rms_coordinate():
    reg = {"name": "smart", "epsilon": 0.2, "sigma": 0.1, "step_size": 0.15, "steps": 1, "proximal_weight": 0.0}
    model = build([{**reg, "weight": 0.8, "epsilon_scale": "relative"}])
    applied, _ = applied_gradients(model)
    scale = embedding_scale(model, IDS, linf=True)
    d = smart_perturbation(Plain(model), {**reg, "epsilon": 0.2 * scale, "sigma": 0.1 * scale,
                                          "step_size": 0.15 * scale}, IDS, np.concatenate(model.noise.draws))
    assert np.abs(d).max() > 0
    assert_same_gradients(applied, expected_gradients(model, [smoothness_term(0.8, d, IDS)]), model.trainable_variables)


@pytest.mark.parametrize("name, key, expected", [
    ("fgm", "epsilon", 0.02), ("fgsm", "epsilon", 0.02), ("random", "epsilon", 0.02), ("pgd", "epsilon", 0.02),
    ("vat", "epsilon", 0.02), ("freelb", "max_norm", 0.02), ("freelb", "init_mag", 0.002),
    ("smart", "epsilon", 0.02), ("fgm+absolute", "epsilon", 5.0),
])
def test_a_relative_radius_left_unset_is_0_02_not_the_absolute_default(name, key, expected):
    """epsilon_scale: relative without a radius: 0.02 of each text's norm (the README's starting point), not the
    absolute 5.0 of an LSTM, which relative would make five times each text's norm."""
    from conftest import tiny_config_dict

    from core.loader import config_from_dict

    method, _, scale = name.partition("+")
    files = {"train": "train.tsv", "dev": "dev.tsv"}
    cfg = config_from_dict(tiny_config_dict(files, {"name": method, "epsilon_scale": scale or "relative"}))
    assert getattr(cfg.active_regularizers[0].params, key) == pytest.approx(expected)
