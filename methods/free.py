"""Free adversarial training (Shafahi et al. 2019, arXiv 1904.12843) on the embeddings: each batch is trained on
`replays` = m times in a row, every replay one forward and one backward pass at e + r and one weight update, and
the gradient that backward pass gives with respect to e + r also moves r for the next replay:

    r_0 = 0;  for k = 0..m-1:  g_k = grad CE(y, f(e + r_k))  (weights and e + r_k, one backward pass)
                               weights <- update(weights, g_k)
                               r_{k+1} = project_eps(r_k + step_size * g_k^e / ||g_k^e||_2)

project_eps scales each example back onto the L2 ball of radius epsilon (relative: epsilon times the text's own
embedding norm); the norm is over (time, dim) of the real tokens, r is 0 at padding and held constant. The first
replay is the clean step; with step_size = epsilon (the default) the second trains at FGM's perturbation, from the
gradient of the weights one update before. The paper carries r on to the next batch as well; texts of another
batch have other lengths and other words, so here r starts at 0 on every batch.

Every replay costs what a clean step costs, so a run counts its epochs in updates (core.schema.Config.replays):
one epoch is as many weight updates as a clean epoch's, over 1/m of the batches, and `epochs` of a free run
cost about what they cost a clean run (the paper trains epochs / m passes over the data).
"""
from __future__ import annotations

import tensorflow as tf

from methods import perturbations
from methods.base import Method


class Free(Method):

    @property
    def replays(self) -> int:
        return self.params.replays

    def advance(self, step, r):
        """r_{k+1} from r_k (None: 0) and step.emb_grad, the gradient at e + r_k of the replay just run."""
        scale = self.radius_scale(step)
        r = tf.zeros_like(step.emb_grad) if r is None else r
        # 0 at padding: r starts at 0 and every step along the gradient is masked (perturbations.l2_normalize)
        return tf.stop_gradient(perturbations.pgd_step(r, step.emb_grad, step.mask, self.params.epsilon * scale,
                                                       self.params.step_size * scale))

    def term(self, step):
        return None  # the step's loss is the clean loss at e + r: nothing to add
