"""The contract between the train step and a regularization method.

A method is one class with `term(step) -> Term`: its loss on this batch and that loss's gradients. The train
step builds a `Step` once per batch (the clean pass is done by then), asks every configured method for its term,
adds the terms with their weights, and applies the gradients.

Methods that perturb the embeddings and train on cross-entropy at e + r (fgm, fgsm, random, pgd) only define
`perturbation(step)`; `PerturbationMethod.term` does the rest, and the evaluation attacks call the same
`perturbation`.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import tensorflow as tf

from methods import perturbations


def cross_entropy(labels, logits):
    """Mean sparse softmax cross-entropy, logits in float32."""
    return tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits))


def scale_gradient(grad, weight):
    """grad * weight, keeping IndexedSlices sparse; None stays None; a weight of 1 (a number) costs nothing."""
    if grad is None or (isinstance(weight, (int, float)) and weight == 1):
        return grad
    if isinstance(grad, tf.IndexedSlices):
        return tf.IndexedSlices(grad.values * weight, grad.indices, grad.dense_shape)
    return grad * weight


def add_gradients(total, grad):
    """Sums gradients, keeping embedding-table gradients sparse (IndexedSlices) where both are."""
    if grad is None:
        return total
    if total is None:
        return grad
    if isinstance(total, tf.IndexedSlices) and isinstance(grad, tf.IndexedSlices):
        return tf.IndexedSlices(tf.concat([total.values, grad.values], 0),
                                tf.concat([total.indices, grad.indices], 0), total.dense_shape)
    return tf.convert_to_tensor(total) + tf.convert_to_tensor(grad)


def sqrt_real_coordinates(e, mask):
    """sqrt(real tokens * dim) per example, (B, 1, 1), at least 1: turns an L2 size into a per-coordinate one."""
    coords = tf.reduce_sum(tf.cast(mask, e.dtype), axis=1)[:, None, None] * tf.cast(tf.shape(e)[-1], e.dtype)
    return tf.sqrt(tf.maximum(coords, 1.0))


@dataclass
class Step:
    """What the train step (or an evaluation attack) hands a method, for this replica's batch.

    `embeddings` are the looked-up embeddings e after the embedding dropout, a constant; `emb_grad` is the
    clean loss's gradient with respect to them; `clean_logits` are the clean pass's logits (a method that
    returns `Term.logits_grad` watches them). `logits_fn(e, inputs)` runs the rest of the model (in the
    step's mode, or through `forward` where given). `normal(shape, draw)` and `uniform(shape, draw)` draw
    this step's random numbers, stateless and reproducible: `draw` numbers a stream, and the method's own
    streams are `draw` and `draw + 1`. `gradients(tape, target, sources, output_gradients=None)` is
    tape.gradient with the loss scaling of mixed precision; `loss_scale` scales a loss whose gradient only
    gives a direction.
    """
    classifier: Any
    inputs: dict
    labels: tf.Tensor
    mask: tf.Tensor
    embeddings: tf.Tensor
    emb_grad: tf.Tensor
    clean_logits: tf.Tensor | None = None
    unlabeled: dict | None = None
    variables: list = field(default_factory=list)
    training: bool = True
    draw: int = 0
    loss_scale: Any = 1.0
    normal: Callable | None = None
    uniform: Callable | None = None
    gradients: Callable | None = None
    forward: Callable | None = None  # (e, inputs) -> logits, in place of the classifier's (a traced one)

    def logits_fn(self, e, inputs=None):
        inputs = self.inputs if inputs is None else inputs
        if self.forward is not None:
            return self.forward(e, inputs)
        return self.classifier.logits_from_embeddings(e, inputs, training=self.training)


@dataclass
class Term:
    """A method's contribution to one step: `loss` (added to the total with the method's weight), its
    gradients for `step.variables`, the perturbation it trained on (for the norm logs), the gradient to run
    back through the shared embedding lookup (`lookup_grad`, w.r.t. step.embeddings) and through the clean
    pass (`logits_grad`, w.r.t. step.clean_logits), and values to log under the method's name (`logs`, keys
    as declared by Method.log_names; 'loss' defaults to `loss`)."""
    loss: tf.Tensor
    grads: list
    perturbation: tf.Tensor
    lookup_grad: tf.Tensor | None = None
    logits_grad: tf.Tensor | None = None
    logs: dict = field(default_factory=dict)


class Method(tf.Module):
    """One regularization method; subclasses define term() (or perturbation()), and a method that replays the
    batch `replays` and advance(). `params` are its settings (the Params dataclass its entry in
    core.registry.METHODS names: the keys of its `regularizer:` entry besides `name` and `weight`), resolved."""

    def __init__(self, params, weight: float = 1.0, name: str | None = None):
        super().__init__(name=name)
        self.params, self.weight = params, weight

    @property
    def linf(self) -> bool:
        """Its radii are L-inf (per coordinate) rather than L2 (per example): as its settings say."""
        return self.params.linf

    def log_names(self) -> tuple[str, ...]:
        """What it logs besides loss, perturbation_l2 and perturbation_linf."""
        return ()

    def uses_logits_grad(self) -> bool:
        """Whether term() returns a gradient for the clean logits (the clean tape is kept for it)."""
        return False

    def build(self, classifier) -> None:
        """Creates the method's own state once the classifier is built (e.g. an EMA copy of it)."""

    def after_update(self, classifier) -> None:
        """Runs after the optimizer applied this step's gradients."""

    def term(self, step: Step) -> Term | None:
        """What the method adds to the step's loss; None: nothing (a method that replays the batch trains on the
        clean loss at its own perturbation)."""
        raise NotImplementedError

    @property
    def replays(self) -> int:
        """How many weight updates the step makes on each batch: 1, or (a method that replays the batch, free)
        its setting; then advance() gives the perturbation of each next update."""
        return 1

    def advance(self, step: Step, r):
        """A replaying method's perturbation for the next update, from the Step just run at e + r (r None: 0)."""
        raise NotImplementedError(f"{type(self).__name__} does not replay the batch")

    # ------------------------------------------------------------------ shared by the methods
    def radius_scale(self, step: Step, embeddings=None, mask=None):
        """What the method's radii are multiples of: 1 (epsilon_scale: absolute) or, relative, each example's
        own embedding norm over its real tokens (L-inf methods: its root-mean-square coordinate), (B, 1, 1)."""
        if self.params.epsilon_scale == "absolute":
            return 1.0
        e = step.embeddings if embeddings is None else embeddings
        mask = step.mask if mask is None else mask
        real = tf.cast(mask, e.dtype)
        norm = perturbations.per_example_norms(tf.stop_gradient(e) * real[:, :, None])[0][:, None, None]
        if not self.linf:
            return norm
        return norm / sqrt_real_coordinates(e, mask)

    def cross_entropy_at(self, step: Step, r) -> Term:
        """Cross-entropy at e + r: its gradients for the variables and for e + r (run back through the lookup)."""
        perturbed = step.embeddings + r
        with tf.GradientTape() as tape:
            tape.watch(perturbed)
            loss = cross_entropy(step.labels, step.logits_fn(perturbed))
        *grads, input_grad = step.gradients(tape, loss, step.variables + [perturbed])
        return Term(loss, grads, r, lookup_grad=input_grad)


class PerturbationMethod(Method):
    """A method that trains on the cross-entropy at e + r for one perturbation r of the labelled batch."""

    def perturbation(self, step: Step):
        raise NotImplementedError

    def term(self, step: Step) -> Term:
        return self.cross_entropy_at(step, self.perturbation(step))
