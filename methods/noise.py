"""The control of Miyato et al. 2017 (name: random): r = epsilon * d / ||d||_2 with d ~ N(0, I)."""
from __future__ import annotations

import tensorflow as tf

from methods import perturbations
from methods.base import PerturbationMethod


class RandomNoise(PerturbationMethod):
    def perturbation(self, step):
        noise = step.normal(tf.shape(step.embeddings), step.draw)
        return perturbations.random_perturbation(noise, step.mask, self.params.epsilon * self.radius_scale(step))
