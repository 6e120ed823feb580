"""Perturbations of the looked-up embeddings, as small pure functions.

Shapes: embeddings and perturbations are (B, T, D); `mask` is (B, T), true at real tokens. Every
perturbation is zero at padding positions, normalized per example over (time, dim) counting real tokens
only, and returned behind `tf.stop_gradient`: the training loss treats it as a constant (Goodfellow et
al. 2015; Miyato et al. 2017). `logits_fn(embeddings) -> logits` runs the rest of the model.
"""
from __future__ import annotations

import tensorflow as tf


def _mask3(mask, dtype):
    return tf.cast(mask, dtype)[:, :, None]


def l2_normalize(x, mask):
    """x / ||x||_2 per example, the norm over (time, dim) of the unmasked positions; 0 where x is 0.

    Divides by the largest absolute value first so that tiny gradients do not underflow when squared.
    """
    x = x * _mask3(mask, x.dtype)
    largest = tf.reduce_max(tf.abs(x), axis=[1, 2], keepdims=True)
    x = x / tf.where(largest > 0, largest, tf.ones_like(largest))  # now the largest entry is 1 (or x = 0)
    return x * tf.math.rsqrt(tf.maximum(tf.reduce_sum(tf.square(x), axis=[1, 2], keepdims=True), 1.0))


def per_example_norms(r):
    """(L2 over (time, dim), L-inf) per example, each (B,)."""
    return tf.sqrt(tf.reduce_sum(tf.square(r), axis=[1, 2])), tf.reduce_max(tf.abs(r), axis=[1, 2])


def fgm_perturbation(grad, mask, epsilon):
    """FGM (Miyato et al. 2017): r = epsilon * g / ||g||_2, g the loss gradient w.r.t. the embeddings."""
    return tf.stop_gradient(epsilon * l2_normalize(grad, mask))


def fgsm_perturbation(grad, mask, epsilon):
    """FGSM (Goodfellow et al. 2015): r = epsilon * sign(g), an L-inf step; 0 at padding."""
    return tf.stop_gradient(epsilon * tf.sign(grad) * _mask3(mask, grad.dtype))


def random_perturbation(noise, mask, epsilon):
    """The control of Miyato et al. 2017: r = epsilon * d / ||d||_2 with d ~ N(0, I) given as `noise`."""
    return tf.stop_gradient(epsilon * l2_normalize(noise, mask))


def project_l2_ball(r, epsilon):
    """Scales each example's r back onto the L2 ball of radius epsilon if it lies outside."""
    norm = tf.sqrt(tf.reduce_sum(tf.square(r), axis=[1, 2], keepdims=True))
    return r * tf.minimum(1.0, epsilon / tf.maximum(norm, 1e-12))


def pgd_step(r, grad, mask, epsilon, step_size):
    """One PGD ascent step in the L2 ball: project(r + step_size * g / ||g||_2)."""
    return project_l2_ball(r + step_size * l2_normalize(grad, mask), epsilon)


def pgd_perturbation(loss_fn, embeddings, mask, epsilon, step_size, steps, first_grad=None, start=None,
                     loss_scale=1.0):
    """PGD (Madry et al. 2018) in the L2 ball: `steps` ascent steps of size `step_size`, each
    r <- project(r + step_size * g / ||g||_2), g = d loss_fn(embeddings + r) / dr.

    Args:
        loss_fn: perturbed embeddings -> scalar loss to increase.
        first_grad: the gradient at r = 0 if already known (the clean backward pass); used for the first
            step when starting from zero, which saves one forward and backward pass.
        start: a starting point inside the ball (a random start), or None for zero.
        loss_scale: multiplies the loss before differentiating (only the direction is used): keeps float16
            gradients from underflowing under mixed precision.
    """
    embeddings = tf.stop_gradient(embeddings)
    r = tf.zeros_like(embeddings) if start is None else project_l2_ball(start, epsilon)
    for step in range(steps):
        if step == 0 and start is None and first_grad is not None:
            grad = first_grad
        else:
            with tf.GradientTape() as tape:
                tape.watch(r)
                loss = loss_fn(embeddings + r) * loss_scale
            grad = tape.gradient(loss, r)
        r = pgd_step(r, grad, mask, epsilon, step_size)
    return tf.stop_gradient(r * _mask3(mask, r.dtype))


def kl_divergence(p_logits, q_logits):
    """Mean over the batch of KL(p || q), both given as logits."""
    p = tf.nn.softmax(p_logits)
    return tf.reduce_mean(tf.reduce_sum(
        p * (tf.nn.log_softmax(p_logits) - tf.nn.log_softmax(q_logits)), axis=-1))


def entropy(logits):
    """Mean over the batch of the entropy of softmax(logits) (VAT + EntMin, Miyato et al. 2018)."""
    return -tf.reduce_mean(tf.reduce_sum(tf.nn.softmax(logits) * tf.nn.log_softmax(logits), axis=-1))


def vat_perturbation(logits_fn, embeddings, mask, clean_logits, noise, xi, epsilon, power_iterations=1,
                     loss_scale=1.0):
    """VAT (Miyato et al. 2018): the direction that most increases KL(p || p(. | e + r)), by power
    iteration from random `noise`:  d <- normalize(grad_d KL(p || p(e + xi * d))), then r = epsilon * d.

    `clean_logits` give p and are held constant; no labels are needed. `loss_scale` as in pgd_perturbation.
    """
    embeddings = tf.stop_gradient(embeddings)
    p_logits = tf.stop_gradient(clean_logits)
    d = noise
    for _ in range(power_iterations):
        d = xi * l2_normalize(d, mask)
        with tf.GradientTape() as tape:
            tape.watch(d)
            kl = kl_divergence(p_logits, logits_fn(embeddings + d)) * loss_scale
        d = tf.stop_gradient(tape.gradient(kl, d))
    return tf.stop_gradient(epsilon * l2_normalize(d, mask))


def linf_normalize(x, mask):
    """x / ||x||_inf per example over the unmasked positions; 0 where x is 0."""
    x = x * _mask3(mask, x.dtype)
    largest = tf.reduce_max(tf.abs(x), axis=[1, 2], keepdims=True)
    return x / tf.where(largest > 0, largest, tf.ones_like(largest))


def linf_step(r, grad, mask, epsilon, step_size):
    """One ascent step in the L-inf ball: clip(r + step_size * g / ||g||_inf, -epsilon, epsilon), 0 at padding
    (the L-inf ascent of FreeLB and of a smoothness regularizer)."""
    r = r + step_size * linf_normalize(grad, mask)
    return tf.clip_by_value(r, -epsilon, epsilon) * _mask3(mask, r.dtype)
