"""The perturbation math on toy models whose gradients and Hessians are known by hand."""
import numpy as np
import pytest
import tensorflow as tf

from methods import perturbations

# A linear toy: logits = sum over valid tokens of e_t @ W, W of shape (D=2, C=2).
W = tf.constant([[1.0, -1.0], [2.0, 0.0]])
MASK = tf.constant([[True, True, False]])  # one example, two tokens and one padding position


def linear_logits(e, mask=MASK):
    return tf.einsum("btd,dc->bc", e * tf.cast(mask, tf.float32)[:, :, None], W)


def clean_grad(e, labels):
    with tf.GradientTape() as tape:
        tape.watch(e)
        loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels, linear_logits(e)))
    return tape.gradient(loss, e)


def test_clean_gradient_is_hand_computed():
    """Checks the toy itself, which the tests below build on."""
    # e = 0: logits 0, p = (0.5, 0.5), y = 0: dL/dz = p - y = (-0.5, 0.5); dL/de_t = W (p - y) = (-1, -1)
    # at each real token, and 0 at padding.
    g = clean_grad(tf.zeros([1, 3, 2]), tf.constant([0]))
    np.testing.assert_allclose(g.numpy(), [[[-1, -1], [-1, -1], [0, 0]]], atol=1e-6)


def test_fgm_is_hand_computed_with_exact_norm_and_masked_padding():
    g = clean_grad(tf.zeros([1, 3, 2]), tf.constant([0]))
    r = perturbations.fgm_perturbation(g, MASK, epsilon=3.0)
    # ||g|| over the two real tokens = sqrt(4) = 2, so r = 3 * g / 2 = -1.5 at real tokens.
    np.testing.assert_allclose(r.numpy(), [[[-1.5, -1.5], [-1.5, -1.5], [0, 0]]], atol=1e-6)


def test_fgm_ignores_gradient_at_padding_when_normalizing():
    g = tf.constant([[[3.0, 0.0], [4.0, 0.0], [100.0, 100.0]]])
    r = perturbations.fgm_perturbation(g, MASK, epsilon=2.0)
    np.testing.assert_allclose(r.numpy(), [[[1.2, 0.0], [1.6, 0.0], [0.0, 0.0]]], atol=1e-6)


def test_fgm_norm_is_epsilon_per_example_even_for_tiny_gradients():
    g = tf.random.stateless_normal([4, 5, 3], seed=[1, 2]) * tf.constant([1.0, 1e-20, 1e3, 1e-30])[:, None, None]
    mask = tf.constant(np.array([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1], [1, 0, 0, 0, 0], [1, 1, 0, 0, 0]], bool))
    r = perturbations.fgm_perturbation(g, mask, epsilon=0.7)
    l2, _ = perturbations.per_example_norms(r)
    np.testing.assert_allclose(l2.numpy(), [0.7] * 4, rtol=1e-5)
    assert np.all(r.numpy()[~mask.numpy()] == 0)


def test_zero_gradient_gives_zero_perturbation():
    r = perturbations.fgm_perturbation(tf.zeros([2, 3, 2]), tf.ones([2, 3], tf.bool), epsilon=1.0)
    assert np.all(r.numpy() == 0)


def test_fgsm_is_sign_of_gradient_and_zero_at_padding():
    g = tf.constant([[[0.3, -2.0], [-1e-9, 5.0], [7.0, 7.0]]])
    r = perturbations.fgsm_perturbation(g, MASK, epsilon=0.5)
    np.testing.assert_allclose(r.numpy(), [[[0.5, -0.5], [-0.5, 0.5], [0, 0]]])
    _, linf = perturbations.per_example_norms(r)
    assert linf.numpy()[0] == pytest.approx(0.5)


def test_random_perturbation_has_norm_epsilon_along_the_noise():
    noise = tf.constant([[[1.0, 2.0], [2.0, 0.0], [9.0, 9.0]]])
    r = perturbations.random_perturbation(noise, MASK, epsilon=6.0)
    np.testing.assert_allclose(r.numpy(), [[[2.0, 4.0], [4.0, 0.0], [0.0, 0.0]]], atol=1e-6)


def test_perturbations_are_constants_for_the_training_gradient():
    """The weight gradient of the adversarial loss treats r as a constant (stop_gradient), even though
    r was computed from a gradient that itself depends on the weights."""
    w = tf.Variable([[0.5, -0.3], [0.2, 0.8]])
    e = tf.constant([[[0.1, 0.2], [0.3, -0.4], [0.0, 0.0]]])
    y = tf.constant([1])

    def loss_at(emb):
        logits = tf.einsum("btd,dc->bc", emb * tf.cast(MASK, tf.float32)[:, :, None], w)
        return tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(y, tf.tanh(logits)))

    with tf.GradientTape() as outer:
        with tf.GradientTape() as inner:
            inner.watch(e)
            clean = loss_at(e)
        g = inner.gradient(clean, e)  # depends on w, and the outer tape sees that
        r = perturbations.fgm_perturbation(g, MASK, 1.0)
        adv = loss_at(e + r)
    got = outer.gradient(adv, w)

    r_const = tf.constant(r.numpy())
    with tf.GradientTape() as tape:
        adv_manual = loss_at(e + r_const)
    want = tape.gradient(adv_manual, w)
    np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=1e-6, atol=1e-7)


def _mlp_toy(seed=0, t=4, d=3, c=3):
    rng = np.random.default_rng(seed)
    w1 = tf.constant(rng.normal(size=(t * d, 8)), tf.float32)
    w2 = tf.constant(rng.normal(size=(8, c)), tf.float32)

    def logits_fn(e):
        return tf.tanh(tf.reshape(e, [tf.shape(e)[0], -1]) @ w1) @ w2 * 3.0

    return logits_fn


def test_pgd_stays_in_the_ball_and_beats_one_fgm_step():
    logits_fn = _mlp_toy()
    e = tf.random.stateless_normal([6, 4, 3], seed=[3, 4]) * 0.3
    mask = tf.constant(np.array([[1, 1, 1, 1]] * 3 + [[1, 1, 0, 0]] * 3, bool))
    y = tf.constant([0, 1, 2, 0, 1, 2])

    def per_example_loss(emb):
        return tf.nn.sparse_softmax_cross_entropy_with_logits(y, logits_fn(emb))

    def loss_fn(emb):
        return tf.reduce_mean(per_example_loss(emb))

    with tf.GradientTape() as tape:
        tape.watch(e)
        loss = loss_fn(e)
    g = tape.gradient(loss, e)
    eps = 1.5
    r_fgm = perturbations.fgm_perturbation(g, mask, eps)
    r_pgd = perturbations.pgd_perturbation(loss_fn, e, mask, eps, step_size=0.5, steps=10, first_grad=g)
    l2, _ = perturbations.per_example_norms(r_pgd)
    assert np.all(l2.numpy() <= eps * (1 + 1e-5))
    assert np.all(r_pgd.numpy()[~mask.numpy()] == 0)
    fgm_losses, pgd_losses = per_example_loss(e + r_fgm).numpy(), per_example_loss(e + r_pgd).numpy()
    assert loss_fn(e + r_pgd) > loss_fn(e + r_fgm) + 1e-3
    assert np.sum(pgd_losses >= fgm_losses - 1e-4) >= 5


def test_pgd_with_one_step_from_zero_equals_fgm():
    g = tf.random.stateless_normal([2, 3, 2], seed=[5, 6])
    mask = tf.constant(np.array([[1, 1, 0], [1, 1, 1]], bool))
    r_pgd = perturbations.pgd_perturbation(None, tf.zeros([2, 3, 2]), mask, 2.0, step_size=2.0, steps=1, first_grad=g)
    np.testing.assert_allclose(r_pgd.numpy(), perturbations.fgm_perturbation(g, mask, 2.0).numpy(), atol=1e-6)


def test_vat_power_iteration_finds_the_top_eigenvector_of_the_kl_hessian():
    """For logits z = A vec(e), the Hessian of KL(p || p(e + d)) at d = 0 is A^T (diag p - p p^T) A."""
    rng = np.random.default_rng(7)
    t, d, c = 3, 2, 3
    a = rng.normal(size=(c, t * d)).astype(np.float32)
    mask = tf.constant([[True, True, False]])
    valid = np.repeat(mask.numpy()[0], d)  # which entries of vec(e) are real tokens
    e = tf.constant(rng.normal(size=(1, t, d)) * 0.5, tf.float32)

    def logits_fn(emb):
        return tf.reshape(emb, [1, -1]) @ tf.constant(a.T)

    clean = logits_fn(e)
    p = tf.nn.softmax(clean).numpy()[0].astype(np.float64)
    a_valid = a[:, valid].astype(np.float64)
    hessian = a_valid.T @ (np.diag(p) - np.outer(p, p)) @ a_valid
    eigvals, eigvecs = np.linalg.eigh(hessian)
    assert eigvals[-2] / eigvals[-1] < 0.8  # a gap, so that 10 iterations must converge
    top = eigvecs[:, -1]

    r = perturbations.vat_perturbation(logits_fn, e, mask, clean, tf.random.stateless_normal([1, t, d], seed=[1, 1]),
                           xi=1e-2, epsilon=2.0, power_iterations=10)
    r = r.numpy().reshape(-1)
    assert np.all(r[~valid] == 0)
    assert np.linalg.norm(r) == pytest.approx(2.0, rel=1e-5)
    cosine = abs(r[valid] @ top) / np.linalg.norm(r[valid])
    assert cosine > 0.99


def test_kl_and_entropy_by_hand():
    p = tf.math.log(tf.constant([[0.5, 0.5]]))
    q = tf.math.log(tf.constant([[0.25, 0.75]]))
    want = 0.5 * np.log(0.5 / 0.25) + 0.5 * np.log(0.5 / 0.75)
    assert perturbations.kl_divergence(p, q).numpy() == pytest.approx(want, rel=1e-5)
    assert perturbations.kl_divergence(p, p).numpy() == pytest.approx(0.0, abs=1e-7)
    assert perturbations.entropy(p).numpy() == pytest.approx(np.log(2), rel=1e-6)


def test_projection_onto_the_l2_ball_by_hand():
    r = tf.constant([[[0.3, 0.0], [0.0, 0.4]], [[0.03, 0.0], [0.04, 0.0]], [[0.0, 0.0], [0.0, 0.0]]])
    # norms 0.5, 0.05 and 0: the first scaled to 0.2 (by 0.4), the second inside the ball, the zero kept
    out = perturbations.project_l2_ball(r, 0.2).numpy()
    np.testing.assert_allclose(out[0], [[0.12, 0.0], [0.0, 0.16]], rtol=1e-6)
    np.testing.assert_allclose(out[1], r.numpy()[1], rtol=1e-6)
    assert np.all(out[2] == 0.0) and np.isfinite(out).all()
    # radius 0 (a regularizer with epsilon 0): everything projects to 0, a zero r too (no 0 / 0)
    zero = perturbations.project_l2_ball(r, 0.0).numpy()
    assert np.isfinite(zero).all() and not zero.any()


def test_linf_step_by_hand():
    """r + step * g / max|g| (over real tokens), then clipped to [-eps, eps], 0 at padding."""
    r = tf.constant([[[0.05, -0.05], [0.0, 0.0], [9.0, 9.0]]])
    g = tf.constant([[[2.0, -1.0], [0.5, 4.0], [100.0, 100.0]]])  # the padding's 100 must not count
    mask = tf.constant([[True, True, False]])
    out = perturbations.linf_step(r, g, mask, epsilon=0.1, step_size=0.2).numpy()
    # g / 4 = [[0.5, -0.25], [0.125, 1]] -> r + 0.2 * that = [[0.15, -0.1], [0.025, 0.2]] -> clipped
    np.testing.assert_allclose(out, [[[0.1, -0.1], [0.025, 0.1], [0.0, 0.0]]], atol=1e-7)
    zero = perturbations.linf_step(tf.zeros([1, 2, 2]), tf.zeros([1, 2, 2]), tf.ones([1, 2], tf.bool), 0.1, 0.2)
    np.testing.assert_array_equal(zero.numpy(), np.zeros([1, 2, 2]))


def test_has_setting_names_exactly_the_methods_own_settings():
    from core.registry import METHODS

    assert METHODS["pgd"].has_setting("steps") and METHODS["pgd"].has_setting("step_size")
    assert METHODS["fgm"].has_setting("epsilon") and not METHODS["fgm"].has_setting("steps")
    assert METHODS["vat"].has_setting("xi") and not METHODS["fgm"].has_setting("xi")
    assert not METHODS["fgm"].has_setting("weight")  # the entry's weight is not a method setting
