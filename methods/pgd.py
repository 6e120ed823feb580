"""PGD (Madry et al. 2018) in the L2 ball: `steps` normalized ascent steps of `step_size`, each projected."""
from __future__ import annotations

from dataclasses import dataclass

import tensorflow as tf

from core.fields import setting
from methods import perturbations as R
from methods.base import EpsilonParams, PerturbationMethod, cross_entropy


@dataclass
class PGDParams(EpsilonParams):
    steps: int = setting(3, min=1)
    # None: 2.5 * epsilon / steps (Madry et al.'s rule of thumb).
    step_size: float | None = setting(None, min_exclusive=0.0)
    # Start from a point drawn uniformly in radius inside the ball, along a random direction.
    random_start: bool = False

    def resolve(self, radii, linf=False):
        super().resolve(radii, linf)
        if self.step_size is None:
            self.step_size = 2.5 * self.epsilon / self.steps


class PGD(PerturbationMethod):
    Params = PGDParams

    def perturbation(self, step):
        p, scale = self.params, self.radius_scale(step)  # the step size scales with the radius
        epsilon = p.epsilon * scale
        start = None
        if p.random_start:
            shape = tf.shape(step.embeddings)
            radius = epsilon * step.uniform(tf.stack([shape[0], 1, 1]), step.draw + 1)
            start = radius * R.l2_normalize(step.normal(shape, step.draw), step.mask)
        return R.pgd_perturbation(lambda e: cross_entropy(step.labels, step.logits_fn(e)), step.embeddings,
                                  step.mask, epsilon, p.step_size * scale, p.steps, first_grad=step.emb_grad,
                                  start=start, loss_scale=step.loss_scale)
