"""FGSM (Goodfellow et al. 2015): r = epsilon * sign(g), an L-inf step."""
from __future__ import annotations

from methods import perturbations
from methods.base import PerturbationMethod


class FGSM(PerturbationMethod):

    def perturbation(self, step):
        return perturbations.fgsm_perturbation(step.emb_grad, step.mask, self.params.epsilon * self.radius_scale(step))
