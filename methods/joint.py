"""The labelled and the unlabeled batch as one joint batch, for the methods that also learn from unlabeled
texts (VAT, SMART): stacked inputs, their padding mask, one embedding lookup, and the unlabeled texts' clean
logits appended to the labelled ones."""
from __future__ import annotations

from dataclasses import dataclass

import tensorflow as tf


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


@dataclass
class JointBatch:
    """The labelled batch (rows [0, n_labelled)) followed by the unlabeled one, if the step has it."""
    inputs: dict
    mask: tf.Tensor
    n_labelled: tf.Tensor

    @classmethod
    def of(cls, step) -> JointBatch:
        inputs = step.inputs if step.unlabeled is None else concat_batches(step.inputs, step.unlabeled)
        return cls(inputs, step.classifier.padding_mask(inputs), tf.shape(step.clean_logits)[0])

    def forward(self, step):
        """(e, logits, unlabeled_logits): the joint batch's own embedding lookup (a method's gradients flow
        back through it), and the clean logits of every row: the step's for the labelled rows, a pass of
        the unlabeled rows' embeddings for the rest (unlabeled_logits; None without an unlabeled batch).
        Call it under the method's tape."""
        e = step.classifier.embed(self.inputs, training=step.training)
        if step.unlabeled is None:
            return e, step.clean_logits, None
        n = self.n_labelled
        unlabeled_logits = step.logits_fn(e[n:], {k: v[n:] for k, v in self.inputs.items()})
        return e, tf.concat([step.clean_logits, unlabeled_logits], axis=0), unlabeled_logits
