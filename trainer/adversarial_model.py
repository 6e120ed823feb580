"""The Keras model whose train_step composes the clean loss with the configured regularizers."""
from __future__ import annotations

import dataclasses

import tensorflow as tf
import tf_keras

from core.registry import METHODS
from core.schema import RegularizerConfig
from methods import method_class, perturbations
from methods.base import Step, cross_entropy
from methods.base import add_gradients as _add
from methods.base import scale_gradient as _scaled
from trainer.checkpointing import ResumesMidEpoch


@dataclasses.dataclass
class _Sum:
    """The step's running sums: weight gradients, the gradient for the lookup's output, the loss, and the
    gradient for the clean logits (None until a method sends one)."""
    grads: list
    lookup_grad: tf.Tensor
    loss: tf.Tensor
    logits_grad: tf.Tensor | None = None

    def add(self, grads, lookup_grad=None) -> None:
        self.grads = [_add(a, g) for a, g in zip(self.grads, grads)]
        if lookup_grad is not None:
            self.lookup_grad += lookup_grad


def metric_names(regs: list[RegularizerConfig]) -> list[str]:
    """A unique name for each active regularizer: 'fgm', or 'fgm_0', 'fgm_1' when one repeats."""
    names = [r.name for r in regs]
    return [f"{n}_{i}" if names.count(n) > 1 else n for i, n in enumerate(names)]


class AdversarialModel(ResumesMidEpoch, tf_keras.Model):
    """Wraps a classifier (embed / logits_from_embeddings) and trains it with
        loss = clean_weight * CE(y, f(e)) + sum_i weight_i * loss_i(f(e + r_i)),
    where r_i are perturbations of the looked-up embeddings e, each term given by a method of core.registry.METHODS
    (see methods/base.py for the contract).

    The gradient w.r.t. e comes from the same backward pass as the clean weight gradients. e is taken after
    the embedding dropout, so r is added to the dropped-out embeddings and never dropped, as in Miyato et
    al.'s reference implementation; the layers above draw fresh dropout masks in every perturbed pass.
    Validation and prediction run the clean model without dropout.

    Inputs: (features, labels) with features a dict of (B, T) tensors ({'token_ids'} for the LSTMs,
    {'input_ids', 'attention_mask', 'token_type_ids'} for Hugging Face encoders) and, in semi-supervised
    training, features['unlabeled'] with the same keys, handed to the methods whose entry in core.registry.METHODS reads it.
    """

    def __init__(self, classifier, regularizers: list[RegularizerConfig], clean_weight=1.0, seed=0,
                 **kwargs):
        super().__init__(**kwargs)
        self.classifier = classifier
        regs = [r for r in regularizers if r.name != "none"]
        self.methods = [method_class(r.name)(r.params, r.weight, name=n) for r, n in zip(regs, metric_names(regs))]
        self.reads_unlabeled = [METHODS[r.name].reads_unlabeled for r in regs]
        self.reg_names = metric_names(regs)
        self.clean_weight = clean_weight
        # A method that replays each batch (its `replays` above 1: free): every train step is that many updates.
        self.replayer = next((m for m in self.methods if m.replays > 1), None)
        self.updates_per_step = self.replayer.replays if self.replayer is not None else 1
        self.seed = seed
        # Under a distribution strategy fit() sums the replicas' step logs by default; every value this
        # model logs is already global (metrics aggregate across replicas) or equal on all (learning rate).
        self.distribute_reduction_method = "first"
        mean = tf_keras.metrics.Mean
        self.trackers = {"loss": mean("loss"), "clean_loss": mean("clean_loss")}
        for method, name in zip(self.methods, self.reg_names):  # what each method logs, as it declares
            for key in ("loss", "perturbation_l2", "perturbation_linf", *method.log_names()):
                self.trackers[f"{name}_{key}"] = mean(f"{name}_{key}")
        self.trackers["embedding_norm"] = mean("embedding_norm")  # to set epsilon against
        self.trackers["embedding_grad_norm"] = mean("embedding_grad_norm")
        self.accuracy = tf_keras.metrics.SparseCategoricalAccuracy("accuracy")
        self.macro_f1 = tf_keras.metrics.F1Score(average="macro", name="macro_f1")

    @property
    def metrics(self):
        return [*self.trackers.values(), self.accuracy, self.macro_f1]

    def call(self, inputs, training=False):
        inputs = {k: v for k, v in inputs.items() if k != "unlabeled"}
        return self.classifier(inputs, training=training)

    def build_metrics(self, num_classes: int) -> None:
        """Creates the metrics' variables now (macro-F1 makes its own at its first update), so that a
        checkpoint restores them like every other variable."""
        if not self.macro_f1.built:
            self.macro_f1.build(tf.TensorShape([None, num_classes]), tf.TensorShape([None, num_classes]))

    # ------------------------------------------------------------------------------ mixed precision
    def _loss_scale(self):
        """The dynamic loss scale under mixed precision (tf-keras wraps the optimizer), else 1."""
        opt = self.optimizer
        return tf.cast(opt.loss_scale, tf.float32) if isinstance(opt, tf_keras.mixed_precision.LossScaleOptimizer) else 1.0

    def _gradients(self, tape, target, sources, output_gradients=None):
        """tape.gradient, with the loss scaled up before and the gradients scaled down after under mixed
        precision, so that float16 gradients do not underflow."""
        opt = self.optimizer
        if not isinstance(opt, tf_keras.mixed_precision.LossScaleOptimizer):
            return tape.gradient(target, sources, output_gradients=output_gradients)
        seed = tf.ones_like(target) if output_gradients is None else output_gradients  # the tape has ended:
        scaled = seed * tf.cast(opt.loss_scale, seed.dtype)  # scale the gradient it starts from instead
        return opt.get_unscaled_gradients(tape.gradient(target, sources, output_gradients=scaled))

    def _learning_rate(self):
        lr = self.optimizer.learning_rate
        if isinstance(lr, tf_keras.optimizers.schedules.LearningRateSchedule):
            lr = lr(self.optimizer.iterations)
        return tf.convert_to_tensor(lr)

    def _update_classification(self, labels, logits):
        self.accuracy.update_state(labels, logits)
        num_classes = tf.shape(logits)[-1]
        self.macro_f1.update_state(tf.one_hot(labels, num_classes), tf.nn.softmax(logits))

    # ------------------------------------------------------------------------------ noise
    def _noise(self, sample, shape, draw: int):
        """Random numbers for this step, stateless: keyed by (train.seed, draw, optimizer step), so a resumed
        run draws what it would have drawn. Under a distribution strategy the numbers are drawn for the whole
        global batch and each replica takes its own rows, found from every replica's row count: the same
        numbers as on one device, also when the batch does not split evenly (an epoch's last batch)."""
        key = tf.stack([tf.cast(self.seed, tf.int64) * 64 + draw, tf.cast(self.optimizer.iterations, tf.int64)])
        ctx = tf.distribute.get_replica_context()
        if ctx is None or ctx.num_replicas_in_sync == 1:
            return sample(shape, seed=key)
        rows = tf.cast(shape[0], tf.float32)
        replica = tf.cast(ctx.replica_id_in_sync_group, tf.int32)
        counts = ctx.all_reduce(tf.distribute.ReduceOp.SUM,
                                tf.one_hot(replica, ctx.num_replicas_in_sync, dtype=tf.float32) * rows)
        start = tf.cast(tf.reduce_sum(counts[:replica]), tf.int32)
        full = sample(tf.concat([[tf.cast(tf.reduce_sum(counts), tf.int32)], shape[1:]], 0), seed=key)
        return full[start:start + shape[0]]

    def _normal(self, shape, draw):
        return self._noise(tf.random.stateless_normal, shape, draw)

    def _uniform(self, shape, draw):
        return self._noise(tf.random.stateless_uniform, shape, draw)

    @property
    def _through_clean_pass(self) -> bool:
        return any(m.uses_logits_grad() for m in self.methods)

    def build_methods(self) -> None:
        """Lets each method create its own state, once the classifier is built."""
        for method in self.methods:
            method.build(self.classifier)

    # ------------------------------------------------------------------------------ steps
    def train_step(self, data):
        inputs, labels = data
        inputs = dict(inputs)
        unlabeled = inputs.pop("unlabeled", None)
        mask = self.classifier.padding_mask(inputs)
        r = None  # a replaying method's perturbation (free): the loss is taken at e + r
        for replay in range(self.updates_per_step):
            step = self._update(inputs, labels, unlabeled, mask, r)
            if replay + 1 < self.updates_per_step:
                r = self.replayer.advance(step, r)
        return {**{m.name: m.result() for m in self.metrics}, "learning_rate": self._learning_rate()}

    def _update(self, inputs, labels, unlabeled, mask, r=None) -> Step:
        """One forward and backward pass at e (or e + r, a replaying method's perturbation) with every method's
        term, and one weight update; returns the Step the methods were handed (its emb_grad the gradient at
        e + r). The clean update (r None, a batch's first) is the one the clean loss and accuracy count."""
        clf, cw = self.classifier, self.clean_weight
        # The embedding lookup (for the LSTMs with the frequency normalization of the table) is taped on its
        # own and run backward once, for the clean loss and every loss on e + r together.
        with tf.GradientTape() as lookup_tape:
            embeddings = clf.embed(inputs, training=True)
        base = embeddings if r is None else embeddings + tf.cast(r, embeddings.dtype)
        with tf.GradientTape(persistent=self._through_clean_pass) as tape:
            tape.watch(base)
            logits = clf.logits_from_embeddings(base, inputs, training=True)
            clean_loss = cross_entropy(labels, logits)
        variables = self.trainable_variables  # read after the first call has built every layer
        # One backward pass gives the weight gradients and the gradient w.r.t. the embeddings.
        *clean_grads, emb_grad = self._gradients(tape, clean_loss, variables + [base])
        step = Step(clf, inputs, labels, mask, tf.stop_gradient(embeddings), emb_grad, clean_logits=logits,
                    variables=variables, loss_scale=self._loss_scale(), normal=self._normal, uniform=self._uniform,
                    gradients=self._gradients)
        total = _Sum([_scaled(g, cw) for g in clean_grads], cw * emb_grad, cw * clean_loss)
        for i, method in enumerate(self.methods):
            self._add_term(total, method, dataclasses.replace(step, draw=2 * i,
                                                              unlabeled=unlabeled if self.reads_unlabeled[i] else None))
        if total.logits_grad is not None:  # what the methods send back through the clean pass
            *clean_grads, back = self._gradients(tape, logits, variables + [base], output_gradients=total.logits_grad)
            total.add(clean_grads, back)
        del tape
        total.add(self._gradients(lookup_tape, embeddings, variables, output_gradients=total.lookup_grad))
        examples, share = self._apply(total.grads, variables, labels)
        self.trackers["loss"].update_state(total.loss, sample_weight=examples)
        if r is not None:  # a replay at e + r: the replaying method's loss and perturbation
            self._log_term(self.replayer.name, {"loss": clean_loss}, r, examples)
        else:
            self._log_clean(step, clean_loss, examples, share)
        return step

    def _add_term(self, total: _Sum, method, step: Step) -> None:
        """Adds a method's weighted term (loss, weight gradients, gradients for the lookup and for the clean
        logits) to `total`, and logs it."""
        term = method.term(step)
        if term is None:
            return
        w = method.weight
        total.add([_scaled(g, w) for g in term.grads], None if term.lookup_grad is None else w * term.lookup_grad)
        total.loss += w * term.loss
        if term.logits_grad is not None:
            g = w * term.logits_grad
            total.logits_grad = g if total.logits_grad is None else total.logits_grad + g
        # weighted by the texts each value is a mean over, like `loss`: global means under a strategy
        self._log_term(method.name, {"loss": term.loss, **term.logs}, term.perturbation,
                       tf.shape(term.perturbation)[0])

    def _log_term(self, name: str, values: dict, r, texts) -> None:
        for key, value in values.items():
            self.trackers[f"{name}_{key}"].update_state(value, sample_weight=texts)
        l2, linf = perturbations.per_example_norms(r)
        self.trackers[f"{name}_perturbation_l2"].update_state(l2)
        self.trackers[f"{name}_perturbation_linf"].update_state(linf)

    def _log_clean(self, step: Step, clean_loss, examples, share) -> None:
        self.trackers["clean_loss"].update_state(clean_loss, sample_weight=examples)
        real = tf.cast(step.mask, step.embeddings.dtype)[:, :, None]
        emb_grad = step.emb_grad if share is None else step.emb_grad * share  # reported as on one device
        self.trackers["embedding_norm"].update_state(perturbations.per_example_norms(step.embeddings * real)[0])
        self.trackers["embedding_grad_norm"].update_state(perturbations.per_example_norms(emb_grad)[0])
        self._update_classification(step.labels, step.clean_logits)

    def _apply(self, grads, variables, labels):
        """The optimizer's update with this replica's share of the global batch; returns (its examples, the
        share or None on one replica)."""
        examples, share = self._batch_share(labels)
        if share is not None:  # replicas' gradients are summed: each contributes its share of the global batch
            grads = [_scaled(g, share) for g in grads]
        self.optimizer.apply_gradients([(g, v) for g, v in zip(grads, variables) if g is not None])
        for method in self.methods:
            method.after_update(self.classifier)
        return examples, share

    @staticmethod
    def _batch_share(labels):
        """(examples in this replica's batch, its share of the global batch or None on one replica). The
        losses are means over the local batch; weighting them by the share makes the summed gradients
        those of the mean over the global batch, however it was split."""
        examples = tf.cast(tf.shape(labels)[0], tf.float32)
        ctx = tf.distribute.get_replica_context()
        if ctx is None or ctx.num_replicas_in_sync == 1:
            return examples, None
        return examples, examples / ctx.all_reduce(tf.distribute.ReduceOp.SUM, examples)

    def test_step(self, data):
        inputs, labels = data
        logits = self(inputs, training=False)
        loss = cross_entropy(labels, logits)
        examples = tf.cast(tf.shape(labels)[0], tf.float32)
        self.trackers["loss"].update_state(loss, sample_weight=examples)
        self.trackers["clean_loss"].update_state(loss, sample_weight=examples)
        self._update_classification(labels, logits)
        return {m.name: m.result() for m in (self.trackers["loss"], self.trackers["clean_loss"],
                                             self.accuracy, self.macro_f1)}
