"""The Keras model whose train_step composes the clean loss with the configured regularizers."""
from __future__ import annotations

import tensorflow as tf
import tf_keras

from core.config import RegularizerConfig
from trainer import regularizers as R


def cross_entropy(labels, logits):
    return tf.reduce_mean(tf_keras.losses.sparse_categorical_crossentropy(labels, logits, from_logits=True))


def _scaled(grad, weight):
    if grad is None:
        return None
    if isinstance(grad, tf.IndexedSlices):
        return tf.IndexedSlices(grad.values * weight, grad.indices, grad.dense_shape)
    return grad * weight


def _add(total, grad):
    """Sums gradients, keeping embedding-table gradients sparse (IndexedSlices) where both are."""
    if grad is None:
        return total
    if total is None:
        return grad
    if isinstance(total, tf.IndexedSlices) and isinstance(grad, tf.IndexedSlices):
        return tf.IndexedSlices(tf.concat([total.values, grad.values], 0),
                                tf.concat([total.indices, grad.indices], 0), total.dense_shape)
    return tf.convert_to_tensor(total) + tf.convert_to_tensor(grad)


def concat_batches(a: dict, b: dict) -> dict:
    """Stacks two input dicts of (B, T) tensors along the batch, padding both to the longer T."""
    key = next(iter(a))
    length = tf.maximum(tf.shape(a[key])[1], tf.shape(b[key])[1])

    def pad(x):
        return tf.pad(x, [[0, 0], [0, length - tf.shape(x)[1]]])

    return {k: tf.concat([pad(a[k]), pad(b[k])], axis=0) for k in a}


def metric_names(regs: list[RegularizerConfig]) -> list[str]:
    """A unique name for each active regularizer: 'fgm', or 'fgm_0', 'fgm_1' when one repeats."""
    names = [r.name for r in regs]
    return [f"{n}_{i}" if names.count(n) > 1 else n for i, n in enumerate(names)]


class AdversarialModel(tf_keras.Model):
    """Wraps a classifier (embed / logits_from_embeddings) and trains it with
        loss = clean_weight * CE(y, f(e)) + sum_i weight_i * loss_i(f(e + r_i)),
    where r_i are perturbations of the looked-up embeddings e (see trainer.regularizers).

    The gradient w.r.t. e comes from the same backward pass as the clean weight gradients. e is taken after
    the embedding dropout, so r is added to the dropped-out embeddings and never dropped, as in Miyato et
    al.'s reference implementation; the layers above draw fresh dropout masks in every perturbed pass.
    Validation and prediction run the clean model without dropout.

    Inputs: (features, labels) with features a dict of (B, T) tensors ({'token_ids'} for the LSTMs,
    {'input_ids', 'attention_mask', 'token_type_ids'} for Hugging Face encoders) and, in semi-supervised
    training, features['unlabeled'] with the same keys, which only VAT uses (it needs no labels).
    """

    def __init__(self, classifier, regularizers: list[RegularizerConfig], clean_weight=1.0, seed=0,
                 **kwargs):
        super().__init__(**kwargs)
        self.classifier = classifier
        self.regs = [r for r in regularizers if r.name != "none"]
        self.reg_names = metric_names(self.regs)
        self.clean_weight = clean_weight
        self.seed = seed
        # Under a distribution strategy fit() sums the replicas' step logs by default; every value this
        # model logs is already global (metrics aggregate across replicas) or equal on all (learning rate).
        self.distribute_reduction_method = "first"
        mean = tf_keras.metrics.Mean
        self.trackers = {"loss": mean("loss"), "clean_loss": mean("clean_loss")}
        for name in self.reg_names:
            for key in (f"{name}_loss", f"{name}_perturbation_l2", f"{name}_perturbation_linf"):
                self.trackers[key] = mean(key)
        for reg, name in zip(self.regs, self.reg_names):
            if reg.name == "vat" and reg.entropy_weight > 0:  # VAT + EntMin: the entropy term on its own
                self.trackers[f"{name}_entropy"] = mean(f"{name}_entropy")
        self.trackers["embedding_norm"] = mean("embedding_norm")  # to set epsilon against
        self.trackers["embedding_grad_norm"] = mean("embedding_grad_norm")
        self.accuracy = tf_keras.metrics.SparseCategoricalAccuracy("accuracy")
        self.macro_f1 = tf_keras.metrics.F1Score(average="macro", name="macro_f1")

    # Where fit() starts within its initial_epoch: set when a run resumes in the middle of an epoch.
    initial_step_in_epoch = 0

    def _maybe_load_initial_counters_from_ckpt(self, steps_per_epoch, initial_epoch):
        # tf-keras's hook for the (epoch, step) fit() starts at (BackupAndRestore uses it too).
        epoch, step = super()._maybe_load_initial_counters_from_ckpt(steps_per_epoch, initial_epoch)
        return epoch, step or self.initial_step_in_epoch

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

    # ------------------------------------------------------------------------------ perturbations
    @staticmethod
    def _scale(reg, embeddings, mask):
        """What reg's L2 radii are multiples of: 1 (epsilon_scale: absolute) or, relative, each example's own
        embedding norm over its real tokens, (B, 1, 1), a constant."""
        if reg.epsilon_scale == "absolute":
            return 1.0
        real = tf.cast(mask, embeddings.dtype)[:, :, None]
        return R.per_example_norms(tf.stop_gradient(embeddings) * real)[0][:, None, None]

    @staticmethod
    def _rms_coordinate(norm, embeddings, mask):
        """An L2 scale (B, 1, 1) turned into an L-inf one: divided by sqrt(real tokens * dim), the root-mean-
        square coordinate when `norm` is the embeddings' norm."""
        coords = tf.reduce_sum(tf.cast(mask, norm.dtype), axis=1)[:, None, None] * tf.cast(tf.shape(embeddings)[-1], norm.dtype)
        return norm / tf.sqrt(tf.maximum(coords, 1.0))

    def _perturbation(self, reg, inputs, labels, embeddings, mask, emb_grad, draw):
        clf = self.classifier

        def logits_fn(e):
            return clf.logits_from_embeddings(e, inputs, training=True)

        scale = self._scale(reg, embeddings, mask)  # once: pgd's step size scales with it too
        if reg.name == "fgsm" and reg.epsilon_scale == "relative":
            scale = self._rms_coordinate(scale, embeddings, mask)
        epsilon = reg.epsilon * scale
        if reg.name == "fgm":
            return R.fgm_perturbation(emb_grad, mask, epsilon)
        if reg.name == "fgsm":
            return R.fgsm_perturbation(emb_grad, mask, epsilon)
        if reg.name == "random":
            return R.random_perturbation(self._normal(tf.shape(embeddings), draw), mask, epsilon)
        if reg.name == "pgd":
            start = None
            if reg.random_start:
                radius = epsilon * self._noise(tf.random.stateless_uniform, tf.stack([tf.shape(embeddings)[0], 1, 1]),
                                               draw + 1)
                start = radius * R.l2_normalize(self._normal(tf.shape(embeddings), draw), mask)
            step_size = reg.step_size * scale
            return R.pgd_perturbation(lambda e: cross_entropy(labels, logits_fn(e)), embeddings, mask,
                                      epsilon, step_size, reg.steps, first_grad=emb_grad, start=start,
                                      loss_scale=self._loss_scale())
        raise ValueError(f"unknown regularizer '{reg.name}'")

    def _adversarial_loss(self, reg, inputs, labels, mask, emb_grad, embeddings, variables, draw):
        """The loss on e + r, its gradients for the variables after the embedding lookup, and its gradient
        with respect to e + r (which train_step runs back through the lookup, together with the clean
        loss's)."""
        r = self._perturbation(reg, inputs, labels, embeddings, mask, emb_grad, draw)
        perturbed = embeddings + r
        with tf.GradientTape() as tape:
            tape.watch(perturbed)
            logits = self.classifier.logits_from_embeddings(perturbed, inputs, training=True)
            loss = cross_entropy(labels, logits)
        *grads, input_grad = self._gradients(tape, loss, variables + [perturbed])
        return loss, grads, input_grad, r

    def _vat_loss(self, reg, inputs, clean_logits, clean_entropy, unlabeled, variables, draw):
        """KL(p || p(e + r)) over the labelled batch and, if given, the unlabeled batch, p held constant.

        Returns (kl, entropy, gradients, r). With reg.entropy_weight > 0 (VAT + EntMin, Miyato et al. 2018)
        `entropy` is the mean entropy of the predictions over every text VAT sees, labelled and unlabeled;
        the gradients here carry the unlabeled texts' part, train_step the labelled part (it needs the clean
        pass). Otherwise `entropy` is None."""
        clf = self.classifier
        n_labelled = tf.shape(clean_logits)[0]
        vat_inputs = inputs if unlabeled is None else concat_batches(inputs, unlabeled)
        mask = clf.padding_mask(vat_inputs)
        labelled_share = self._labelled_share(clean_logits, unlabeled)
        entropy = clean_entropy if reg.entropy_weight > 0 else None

        def logits_fn(e):
            return clf.logits_from_embeddings(e, vat_inputs, training=True)

        with tf.GradientTape() as tape:
            e = clf.embed(vat_inputs, training=True)
            p_logits = tf.stop_gradient(clean_logits)
            if unlabeled is not None:
                u_inputs = {k: v[n_labelled:] for k, v in vat_inputs.items()}
                u_logits = clf.logits_from_embeddings(e[n_labelled:], u_inputs, training=True)
                p_logits = tf.concat([p_logits, tf.stop_gradient(u_logits)], axis=0)
            with tape.stop_recording():
                shape = tf.shape(e)
                if unlabeled is None:
                    noise = self._normal(shape, draw)
                else:  # drawn per part, so that each example gets the noise it would get on one device
                    noise = tf.concat([self._normal(tf.concat([[n_labelled], shape[1:]], 0), draw),
                                       self._normal(tf.concat([[shape[0] - n_labelled], shape[1:]], 0), draw + 1)], 0)
                scale = self._scale(reg, e, mask)
                r = R.vat_perturbation(logits_fn, e, mask, p_logits, noise, reg.xi * scale, reg.epsilon * scale,
                                       reg.power_iterations, loss_scale=self._loss_scale())
            kl = R.kl_divergence(p_logits, logits_fn(e + r))
            loss = kl
            if entropy is not None and unlabeled is not None:
                unlabeled_entropy = (1.0 - labelled_share) * R.entropy(u_logits)
                loss += reg.entropy_weight * unlabeled_entropy
                entropy = labelled_share * clean_entropy + unlabeled_entropy
        return kl, entropy, self._gradients(tape, loss, variables), r

    @staticmethod
    def _labelled_share(labelled, unlabeled):
        """The labelled texts' share of the texts VAT sees (1 without an unlabeled batch)."""
        if unlabeled is None:
            return tf.constant(1.0)
        n_labelled = tf.cast(tf.shape(labelled)[0], tf.float32)
        return n_labelled / (n_labelled + tf.cast(tf.shape(next(iter(unlabeled.values())))[0], tf.float32))

    # ------------------------------------------------------------------------------ steps
    def train_step(self, data):
        inputs, labels = data
        inputs = dict(inputs)
        unlabeled = inputs.pop("unlabeled", None)
        clf = self.classifier
        mask = clf.padding_mask(inputs)
        # VAT + EntMin: the labelled texts' part of the entropy term goes through the clean pass.
        entropy_weight = sum(r.weight * r.entropy_weight for r in self.regs if r.name == "vat")
        labelled_share = self._labelled_share(labels, unlabeled)

        # The embedding lookup (for the LSTMs with the frequency normalization of the table) is taped on its
        # own and run backward once, for the clean loss and every loss on e + r together.
        with tf.GradientTape() as lookup_tape:
            embeddings = clf.embed(inputs, training=True)
        with tf.GradientTape(persistent=entropy_weight > 0) as tape:
            tape.watch(embeddings)
            logits = clf.logits_from_embeddings(embeddings, inputs, training=True)
            clean_loss = cross_entropy(labels, logits)
            ent = R.entropy(logits) if entropy_weight > 0 else 0.0
        variables = self.trainable_variables  # read after the first call has built every layer
        # One backward pass gives the weight gradients and the gradient w.r.t. the embeddings.
        *clean_grads, emb_grad = self._gradients(tape, clean_loss, variables + [embeddings])
        grads = [_scaled(g, self.clean_weight) for g in clean_grads]
        lookup_grad = self.clean_weight * emb_grad  # what flows back into the lookup
        total = self.clean_weight * clean_loss
        if entropy_weight > 0:
            *ent_grads, ent_emb_grad = self._gradients(tape, ent, variables + [embeddings])
            grads = [_add(a, _scaled(g, entropy_weight * labelled_share)) for a, g in zip(grads, ent_grads)]
            lookup_grad += entropy_weight * labelled_share * ent_emb_grad
            del tape
        looked_up, embeddings = embeddings, tf.stop_gradient(embeddings)

        for i, (reg, name) in enumerate(zip(self.regs, self.reg_names)):
            draw = 2 * i  # each regularizer draws its own noise (pgd's random start two kinds)
            entropy = None
            if reg.name == "vat":  # on its own lookup: the batch may include unlabeled texts
                loss, entropy, reg_grads, r = self._vat_loss(reg, inputs, logits, ent, unlabeled, variables, draw)
            else:
                loss, reg_grads, input_grad, r = self._adversarial_loss(reg, inputs, labels, mask, emb_grad,
                                                                        embeddings, variables, draw)
                lookup_grad += reg.weight * input_grad
            grads = [_add(a, _scaled(g, reg.weight)) for a, g in zip(grads, reg_grads)]
            total += reg.weight * loss
            if entropy is not None:
                total += reg.weight * reg.entropy_weight * entropy
                self.trackers[f"{name}_entropy"].update_state(entropy, sample_weight=tf.shape(r)[0])
            l2, linf = R.per_example_norms(r)
            # weighted by the texts each loss is a mean over, like `loss`: global means under a strategy
            self.trackers[f"{name}_loss"].update_state(loss, sample_weight=tf.shape(r)[0])
            self.trackers[f"{name}_perturbation_l2"].update_state(l2)
            self.trackers[f"{name}_perturbation_linf"].update_state(linf)
        lookup_grads = self._gradients(lookup_tape, looked_up, variables, output_gradients=lookup_grad)
        grads = [_add(a, g) for a, g in zip(grads, lookup_grads)]

        examples, share = self._batch_share(labels)
        if share is not None:  # replicas' gradients are summed: each contributes its share of the global batch
            grads = [_scaled(g, share) for g in grads]
            emb_grad = emb_grad * share  # reported as on one device
        self.optimizer.apply_gradients([(g, v) for g, v in zip(grads, variables) if g is not None])
        self.trackers["loss"].update_state(total, sample_weight=examples)
        self.trackers["clean_loss"].update_state(clean_loss, sample_weight=examples)
        real = tf.cast(mask, embeddings.dtype)[:, :, None]
        self.trackers["embedding_norm"].update_state(R.per_example_norms(embeddings * real)[0])
        self.trackers["embedding_grad_norm"].update_state(R.per_example_norms(emb_grad)[0])
        self._update_classification(labels, logits)
        return {**{m.name: m.result() for m in self.metrics}, "learning_rate": self._learning_rate()}

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
