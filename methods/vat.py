"""VAT (Miyato et al. 2018): KL(p || p(. | e + r)) with r the power-iteration estimate of the direction that
most increases it, p held constant. Needs no labels: it also reads the unlabeled batch. With
entropy_weight > 0, VAT + EntMin (the mean entropy of the predictions over every text it sees)."""
from __future__ import annotations

from dataclasses import dataclass

import tensorflow as tf

from core.fields import setting
from methods import perturbations as R
from methods.base import EpsilonParams, Method, Term


@dataclass
class VATParams(EpsilonParams):
    xi: float = setting(0.1, min_exclusive=0.0)  # the finite-difference radius of the power iteration
    power_iterations: int = setting(1, min=1)
    entropy_weight: float = setting(0.0, min=0.0)


def concat_batches(a: dict, b: dict) -> dict:
    """Stacks two input dicts of (B, T) tensors along the batch, padding both to the longer T."""
    key = next(iter(a))
    length = tf.maximum(tf.shape(a[key])[1], tf.shape(b[key])[1])

    def pad(x):
        return tf.pad(x, [[0, 0], [0, length - tf.shape(x)[1]]])

    return {k: tf.concat([pad(a[k]), pad(b[k])], axis=0) for k in a}


def labelled_share(n_labelled, unlabeled):
    """The labelled texts' share of the texts a method sees (1 without an unlabeled batch)."""
    if unlabeled is None:
        return tf.constant(1.0)
    n_labelled = tf.cast(n_labelled, tf.float32)
    return n_labelled / (n_labelled + tf.cast(tf.shape(next(iter(unlabeled.values())))[0], tf.float32))


def joint_noise(step, shape, n_labelled):
    """Noise for the labelled rows and the unlabeled rows drawn as two streams, so that each example gets
    the noise it would get on one device."""
    if step.unlabeled is None:
        return step.normal(shape, step.draw)
    return tf.concat([step.normal(tf.concat([[n_labelled], shape[1:]], 0), step.draw),
                      step.normal(tf.concat([[shape[0] - n_labelled], shape[1:]], 0), step.draw + 1)], 0)


class VAT(Method):
    Params = VATParams
    reads_unlabeled = True

    def log_names(self):
        return ("entropy",) if self.params.entropy_weight > 0 else ()

    def uses_logits_grad(self):
        return self.params.entropy_weight > 0  # the labelled texts' entropy goes through the clean pass

    def term(self, step):
        """KL over the labelled batch and, if given, the unlabeled batch, on its own lookup (the batch may
        include unlabeled texts). With entropy_weight > 0 the loss adds entropy_weight * the mean entropy over
        every text; the gradient of the labelled texts' part is `logits_grad`, the rest comes from here."""
        p, clf, clean = self.params, step.classifier, step.clean_logits
        n_labelled = tf.shape(clean)[0]
        inputs = step.inputs if step.unlabeled is None else concat_batches(step.inputs, step.unlabeled)
        mask = clf.padding_mask(inputs)
        share = labelled_share(n_labelled, step.unlabeled)
        with tf.GradientTape() as tape:
            tape.watch(clean)
            e = clf.embed(inputs, training=step.training)
            p_logits = tf.stop_gradient(clean)
            if step.unlabeled is not None:
                u_inputs = {k: v[n_labelled:] for k, v in inputs.items()}
                u_logits = step.logits_fn(e[n_labelled:], u_inputs)
                p_logits = tf.concat([p_logits, tf.stop_gradient(u_logits)], axis=0)
            with tape.stop_recording():
                scale = self.radius_scale(step, e, mask)
                r = R.vat_perturbation(lambda x: step.logits_fn(x, inputs), e, mask, p_logits,
                                       joint_noise(step, tf.shape(e), n_labelled), p.xi * scale,
                                       p.epsilon * scale, p.power_iterations, loss_scale=step.loss_scale)
            kl = R.kl_divergence(p_logits, step.logits_fn(e + r, inputs))
            loss, logs = kl, {"loss": kl}
            if p.entropy_weight > 0:
                entropy = share * R.entropy(clean)
                if step.unlabeled is not None:
                    entropy += (1.0 - share) * R.entropy(u_logits)
                loss += p.entropy_weight * entropy
                logs["entropy"] = entropy
        if p.entropy_weight > 0:
            *grads, logits_grad = step.gradients(tape, loss, step.variables + [clean])
        else:
            grads, logits_grad = step.gradients(tape, loss, step.variables), None
        return Term(loss, grads, r, logits_grad=logits_grad, logs=logs)
