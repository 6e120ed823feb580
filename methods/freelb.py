"""FreeLB (Zhu et al. 2020, arXiv 1909.11764): `adv_steps` ascent steps on the embeddings from a small random
start, the loss at every step's perturbation averaged, so the parameter gradients are accumulated over the
steps ("free": each step's backward pass gives the parameter gradients and the next ascent direction).

    d_0 = 0, or uniform noise of magnitude init_mag (L2: U(-1, 1) * init_mag / sqrt(real tokens * dim);
          L-inf: U(-init_mag, init_mag)), padding zeroed
    d_k = project_max_norm(d_{k-1} + adv_lr * g_{k-1} / ||g_{k-1}||),  g_{k-1} = grad of CE at e + d_{k-1}
    loss = (1 / K) * sum_{k=1..K} CE(y, f(e + d_k)),  every d_k held constant

From d_0 = 0 the first direction is the clean loss's gradient (no extra pass), so the clean pass stands for
the paper's first step and the method costs K forward and backward passes; train.clean_weight: 0 leaves the
paper's objective without the clean term. With K = 1, no random start and adv_lr >= max_norm it is FGM.
"""
from __future__ import annotations

import tensorflow as tf

from methods import perturbations
from methods.base import Method, Term, add_gradients, cross_entropy, scale_gradient, sqrt_real_coordinates


class FreeLB(Method):

    def _start(self, step, scale):
        """d_0: uniform noise of magnitude init_mag, 0 at padding."""
        e, real = step.embeddings, tf.cast(step.mask, step.embeddings.dtype)
        noise = (2.0 * step.uniform(tf.shape(e), step.draw) - 1.0) * real[:, :, None] * self.params.init_mag * scale
        if self.linf:
            return noise
        return noise / sqrt_real_coordinates(e, step.mask)

    def _ascend(self, r, grad, step, radius, lr):
        if self.linf:
            return perturbations.linf_step(r, grad, step.mask, radius, lr)
        return perturbations.pgd_step(r, grad, step.mask, radius, lr) * tf.cast(step.mask, r.dtype)[:, :, None]

    def term(self, step):
        p = self.params
        scale = self.radius_scale(step)
        radius, lr = p.max_norm * scale, p.adv_lr * scale
        if p.init_mag > 0:
            r = self._start(step, scale)
            with tf.GradientTape() as tape:
                tape.watch(r)
                loss = cross_entropy(step.labels, step.logits_fn(step.embeddings + r)) * step.loss_scale
            grad = tape.gradient(loss, r)
        else:
            r, grad = tf.zeros_like(step.embeddings), step.emb_grad
        total, grads, lookup = 0.0, [None] * len(step.variables), 0.0
        for _ in range(p.adv_steps):
            r = tf.stop_gradient(self._ascend(r, grad, step, radius, lr))
            at = self.cross_entropy_at(step, r)
            total += at.loss / p.adv_steps
            grads = [add_gradients(a, scale_gradient(g, 1.0 / p.adv_steps)) for a, g in zip(grads, at.grads)]
            lookup += at.lookup_grad / p.adv_steps
            grad = at.lookup_grad  # the gradient at e + d_k: the next ascent direction
        return Term(total, grads, r, lookup_grad=lookup)
