"""VAT (Miyato et al. 2018): KL(p || p(. | e + r)) with r the power-iteration estimate of the direction that
most increases it, p held constant. Needs no labels: it also reads the unlabeled batch. With
entropy_weight > 0, VAT + EntMin (the mean entropy of the predictions over every text it sees)."""
from __future__ import annotations

import tensorflow as tf

from methods import perturbations
from methods.base import Method, Term
from methods.joint import JointBatch, joint_noise, labelled_share


class VAT(Method):

    def log_names(self):
        return ("entropy",) if self.params.entropy_weight > 0 else ()

    def uses_logits_grad(self):
        return self.params.entropy_weight > 0  # the labelled texts' entropy goes through the clean pass

    def term(self, step):
        """KL over the labelled batch and, if given, the unlabeled batch, on its own lookup (the batch may
        include unlabeled texts). With entropy_weight > 0 the loss adds entropy_weight * the mean entropy over
        every text; the gradient of the labelled texts' part is `logits_grad`, the rest comes from here."""
        p, clean, joint = self.params, step.clean_logits, JointBatch.of(step)
        inputs, mask = joint.inputs, joint.mask
        share = labelled_share(joint.n_labelled, step.unlabeled)
        with tf.GradientTape() as tape:
            tape.watch(clean)
            e, p_logits, u_logits = joint.forward(step)
            p_logits = tf.stop_gradient(p_logits)
            with tape.stop_recording():
                scale = self.radius_scale(step, e, mask)
                r = perturbations.vat_perturbation(lambda x: step.logits_fn(x, inputs), e, mask, p_logits,
                                       joint_noise(step, tf.shape(e), joint.n_labelled), p.xi * scale,
                                       p.epsilon * scale, p.power_iterations, loss_scale=step.loss_scale)
            kl = perturbations.kl_divergence(p_logits, step.logits_fn(e + r, inputs))
            loss, logs = kl, {"loss": kl}
            if p.entropy_weight > 0:
                entropy = share * perturbations.entropy(clean)
                if step.unlabeled is not None:
                    entropy += (1.0 - share) * perturbations.entropy(u_logits)
                loss += p.entropy_weight * entropy
                logs["entropy"] = entropy
        if p.entropy_weight > 0:
            *grads, logits_grad = step.gradients(tape, loss, step.variables + [clean])
        else:
            grads, logits_grad = step.gradients(tape, loss, step.variables), None
        return Term(loss, grads, r, logits_grad=logits_grad, logs=logs)
