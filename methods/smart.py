"""SMART (Jiang et al. 2020, arXiv 1911.03437): smoothness-inducing adversarial regularization and Bregman
proximal point optimization. Two parts, each switchable:

- smoothness (`smoothness: true`): R_s = symKL(f(e), f(e + d)), symKL(p, q) = KL(p || q) + KL(q || p), with d
  found by projected ascent from noise: d_0 = sigma * N(0, I), then `steps` times
  d <- clip(d + step_size * g / ||g||_inf, -epsilon, epsilon),  g = grad_d symKL(f(e), f(e + d)), f(e) constant;
  the loss's gradient then flows through both f(e) and f(e + d). Needs no labels: it also reads the
  unlabeled batch.
- proximal (`proximal_weight > 0`): D = symKL(f(e), f_ema(e)), f_ema a copy of the classifier whose weights
  follow the model's as an exponential moving average, ema <- momentum * ema + (1 - momentum) * theta after
  every step (the paper's momentum Bregman proximal point), run in inference mode and held constant.

The regularizer's loss is R_s + proximal_weight * D, so that with the entry's `weight` (the paper's lambda_s):
total = clean + weight * (R_s + proximal_weight * D). The paper's values: epsilon = sigma = 1e-5,
step_size = 1e-3, one step, lambda_s in {1, 3, 5}, weight * proximal_weight = mu = 1, momentum 0.99.
"""
from __future__ import annotations

import tensorflow as tf

from methods import perturbations
from methods.base import Method, Term
from methods.joint import JointBatch, joint_noise


def symmetric_kl(p_logits, q_logits):
    """Mean over the batch of KL(p || q) + KL(q || p)."""
    return perturbations.kl_divergence(p_logits, q_logits) + perturbations.kl_divergence(q_logits, p_logits)


def _frozen(next_creator, **kwargs):
    """Variables of the EMA copy: not trained, and updated from the first replica's values under a
    distribution strategy (every replica holds the same model weights)."""
    return next_creator(**{**kwargs, "trainable": False, "aggregation": tf.VariableAggregation.ONLY_FIRST_REPLICA})


class SMART(Method):

    def log_names(self):
        return (("smoothness",) if self.params.smoothness else ()) + (
            ("proximal",) if self.params.proximal_weight > 0 else ())

    def uses_logits_grad(self):
        return True  # both parts differentiate the clean predictions f(e)

    def build(self, classifier):
        if self.params.proximal_weight == 0:
            return
        with tf.variable_creator_scope(_frozen):
            self.ema = classifier.twin()
            self.ema(classifier.example_inputs())
        pairs = list(zip(self.ema.weights, classifier.weights))
        if len(self.ema.weights) != len(classifier.weights) or any(a.shape != b.shape for a, b in pairs):
            raise ValueError("smart: the classifier's twin() does not have the classifier's weights")
        for copy, weight in pairs:
            copy.assign(weight)

    def after_update(self, classifier):
        if self.params.proximal_weight == 0:
            return
        m = self.params.momentum
        for copy, weight in zip(self.ema.weights, classifier.weights):
            copy.assign(m * copy + (1.0 - m) * tf.cast(weight, copy.dtype))

    def _perturbation(self, step, e, inputs, mask, p_logits, n_labelled):
        """d by projected L-inf ascent from sigma-scaled normal noise, f(e) held constant."""
        p = self.params
        scale = self.radius_scale(step, e, mask)
        e, held = tf.stop_gradient(e), tf.stop_gradient(p_logits)
        d = p.sigma * scale * joint_noise(step, tf.shape(e), n_labelled) * tf.cast(mask, e.dtype)[:, :, None]
        for _ in range(p.steps):
            with tf.GradientTape() as tape:
                tape.watch(d)
                loss = symmetric_kl(held, step.logits_fn(e + d, inputs)) * step.loss_scale
            d = perturbations.linf_step(d, tape.gradient(loss, d), mask, p.epsilon * scale, p.step_size * scale)
        return tf.stop_gradient(d)

    def term(self, step):
        p, clean, joint = self.params, step.clean_logits, JointBatch.of(step)
        inputs = joint.inputs
        with tf.GradientTape() as tape:
            tape.watch(clean)
            e, p_logits, _ = joint.forward(step)
            loss, logs, d = 0.0, {}, tf.zeros_like(e)
            if p.smoothness:
                with tape.stop_recording():
                    d = self._perturbation(step, e, inputs, joint.mask, p_logits, joint.n_labelled)
                logs["smoothness"] = symmetric_kl(p_logits, step.logits_fn(e + d, inputs))
                loss += logs["smoothness"]
            if p.proximal_weight > 0:
                logs["proximal"] = symmetric_kl(p_logits, tf.stop_gradient(self.ema(inputs, training=False)))
                loss += p.proximal_weight * logs["proximal"]
        *grads, logits_grad = step.gradients(tape, loss, step.variables + [clean])
        return Term(loss, grads, d, logits_grad=logits_grad, logs=logs)
