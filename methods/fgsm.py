"""FGSM (Goodfellow et al. 2015): r = epsilon * sign(g), an L-inf step."""
from __future__ import annotations

from methods import perturbations as R
from methods.base import PerturbationMethod
from methods.settings import LinfEpsilonParams


class FGSM(PerturbationMethod):
    Params = LinfEpsilonParams
    linf = True

    def perturbation(self, step):
        return R.fgsm_perturbation(step.emb_grad, step.mask, self.params.epsilon * self.radius_scale(step))
