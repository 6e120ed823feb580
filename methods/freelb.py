"""FreeLB (Zhu et al. 2020, arXiv 1909.11764): `adv_steps` = K ascent steps on the embeddings, the loss at the
steps' perturbations averaged, so the parameter gradients are accumulated over the steps ("free": each step's
backward pass gives the parameter gradients and the next ascent direction).

    d_k = project_max_norm(d_{k-1} + adv_lr * g_{k-1} / ||g_{k-1}||),  g_{k-1} = grad of CE at e + d_{k-1}

With a random start (init_mag > 0), as the paper's Algorithm 1: d_0 is uniform noise of magnitude init_mag
(L2: U(-1, 1) * init_mag / sqrt(real tokens * dim); L-inf: U(-init_mag, init_mag); 0 at padding), and

    loss = (1 / K) * sum_{k=0..K-1} CE(y, f(e + d_k)),  every d_k held constant: K forward and backward passes.

From d_0 = 0 (init_mag 0) the clean pass already is the step at d_0 (its gradient the first direction), so the
steps after it are averaged, loss = (1 / K) * sum_{k=1..K} CE(y, f(e + d_k)), again K passes besides the clean
one; train.clean_weight: 0 leaves the adversarial objective alone. With K = 1, no random start and
adv_lr >= max_norm it is FGM.
"""
from __future__ import annotations

import tensorflow as tf

from methods import perturbations
from methods.base import Method, Term, add_gradients, scale_gradient, sqrt_real_coordinates


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
        random_start = p.init_mag > 0
        r = tf.stop_gradient(self._start(step, scale)) if random_start else tf.zeros_like(step.embeddings)
        grad = None if random_start else step.emb_grad  # from 0: the clean pass was the step at d_0
        total, grads, lookup = 0.0, [None] * len(step.variables), 0.0
        for _ in range(p.adv_steps):
            if grad is not None:
                r = tf.stop_gradient(self._ascend(r, grad, step, radius, lr))
            at = self.cross_entropy_at(step, r)  # trained on: d_0..d_{K-1} from a random start, else d_1..d_K
            total += at.loss / p.adv_steps
            grads = [add_gradients(a, scale_gradient(g, 1.0 / p.adv_steps)) for a, g in zip(grads, at.grads)]
            lookup += at.lookup_grad / p.adv_steps
            grad = at.lookup_grad  # the gradient at e + d_k: the next ascent direction
        return Term(total, grads, r, lookup_grad=lookup)
