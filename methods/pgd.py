"""PGD (Madry et al. 2018) in the L2 ball: `steps` normalized ascent steps of `step_size`, each projected."""
from __future__ import annotations

import tensorflow as tf

from methods import perturbations
from methods.base import PerturbationMethod, cross_entropy


class PGD(PerturbationMethod):

    def perturbation(self, step):
        p, scale = self.params, self.radius_scale(step)  # the step size scales with the radius
        epsilon = p.epsilon * scale
        start = None
        if p.random_start:
            shape = tf.shape(step.embeddings)
            radius = epsilon * step.uniform(tf.stack([shape[0], 1, 1]), step.draw + 1)
            start = radius * perturbations.l2_normalize(step.normal(shape, step.draw), step.mask)
        return perturbations.pgd_perturbation(lambda e: cross_entropy(step.labels, step.logits_fn(e)), step.embeddings,
                                  step.mask, epsilon, p.step_size * scale, p.steps, first_grad=step.emb_grad,
                                  start=start, loss_scale=step.loss_scale)
