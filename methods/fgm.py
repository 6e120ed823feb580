"""FGM (Miyato et al. 2017): r = epsilon * g / ||g||_2, g the clean loss's gradient w.r.t. the embeddings."""
from __future__ import annotations

from methods import perturbations
from methods.base import PerturbationMethod


class FGM(PerturbationMethod):
    def perturbation(self, step):
        return perturbations.fgm_perturbation(step.emb_grad, step.mask, self.params.epsilon * self.radius_scale(step))
