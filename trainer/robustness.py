"""Accuracy under embedding-space attacks (FGSM, FGM, PGD) over a grid of epsilons.

The attacked model runs in inference mode (no dropout); the attack maximizes the cross-entropy of the
true label with the perturbation of the training method of the same name (core.registry.METHODS), at each
epsilon of the grid and otherwise the method's defaults (PGD: `pgd_steps` steps of 2.5 * epsilon / steps).
"""
from __future__ import annotations

import numpy as np
import tensorflow as tf

from core.registry import METHODS
from dataset.progress import Progress
from methods import method_class
from methods.base import Step, cross_entropy


class _Attacker:
    """Small traced pieces (a gradient at e + r, a perturbed prediction), each at most one forward and
    backward pass, so that tracing stays cheap whatever the epsilon grid and the number of steps."""

    def __init__(self, classifier):
        self.clf = classifier
        self.gradient = tf.function(self._gradient, reduce_retracing=True)
        self.correct = tf.function(self._correct, reduce_retracing=True)
        self.logits = tf.function(self._logits, reduce_retracing=True)

    def _logits(self, e, inputs):
        return self.clf.logits_from_embeddings(e, inputs, training=False)

    def _loss(self, inputs, labels, e):
        return cross_entropy(labels, self.clf.logits_from_embeddings(e, inputs, training=False))

    def _gradient(self, inputs, labels, r):
        """The embeddings e and d loss(e + r) / dr (r = 0 for the clean gradient: one trace serves both)."""
        e = self.clf.embed(inputs)
        with tf.GradientTape() as tape:
            tape.watch(r)
            loss = self._loss(inputs, labels, e + r)
        return e, tape.gradient(loss, r)

    def _correct(self, inputs, labels, e, r):
        logits = self.clf.logits_from_embeddings(e + r, inputs, training=False)
        return tf.reduce_sum(tf.cast(tf.argmax(logits, -1, output_type=labels.dtype) == labels, tf.int64))

    def batch(self, inputs, labels, attacks: dict[str, list[float]], pgd_steps: int) -> dict[str, list[int]]:
        """Correct predictions on one batch for each attack and epsilon; one clean gradient serves all."""
        mask = self.clf.padding_mask(inputs)
        e, grad = self.gradient(inputs, labels, tf.zeros_like(self.clf.embed(inputs)))
        step = Step(self.clf, inputs, labels, mask, e, grad, training=False, forward=self.logits)
        out = {}
        for attack, epsilons in attacks.items():
            entry, method = METHODS[attack], method_class(attack)
            out[attack] = []
            for eps in epsilons:
                params = entry.params(epsilon=eps, **({"steps": pgd_steps} if entry.has_setting("steps") else {}))
                params.resolve(None)  # no backbone defaults needed: epsilon is given
                r = method(params).perturbation(step)
                out[attack].append(int(self.correct(inputs, labels, e, r)))
        return out


def robustness_curves(classifier, dataset, attacks: dict[str, list[float]], pgd_steps: int = 5,
                      max_examples: int | None = None, total: int | None = None) -> dict:
    """{attack: {'epsilons': [...], 'accuracy': [...], 'n': examples}} over `dataset` batches of
    (inputs, labels), using at most `max_examples` examples (the first ones). PGD takes `pgd_steps`
    steps. `total`: the dataset's examples, for the progress lines."""
    attacker = _Attacker(classifier)
    todo = min([x for x in (max_examples, total) if x is not None], default=None)
    progress = Progress(f"robustness curves ({', '.join(attacks)})", todo)
    totals = {attack: np.zeros(len(eps), np.int64) for attack, eps in attacks.items()}
    seen = 0
    for inputs, labels in dataset:
        if max_examples is not None and seen >= max_examples:
            break
        if max_examples is not None and seen + len(labels) > max_examples:
            keep = max_examples - seen
            inputs, labels = {k: v[:keep] for k, v in inputs.items()}, labels[:keep]
        for attack, correct in attacker.batch(inputs, labels, attacks, pgd_steps).items():
            totals[attack] += correct
        seen += int(len(labels))
        progress.update(seen)
    progress.finish()
    return {attack: {"epsilons": [float(e) for e in eps], "accuracy": (totals[attack] / max(1, seen)).tolist(),
                     "n": seen}
            for attack, eps in attacks.items()}
