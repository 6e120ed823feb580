"""Export a run as a TensorFlow SavedModel that takes raw strings: tokenization happens in the graph."""
from __future__ import annotations

import tensorflow as tf

from core.errors import UserError
from core.paths import check_new_dir, written_atomically
from dataset.wordpiece import HFTokenizerEncoder
from trainer.restore import Run


class ServingModule(tf.Module):
    """serving_default: texts (B,) string [, texts_b (B,) string for pair tasks] ->
    {'probabilities': (B, C) float32, 'labels': (B,) string, 'label_ids': (B,) int32}."""

    def __init__(self, run: Run):
        super().__init__()
        self.encoder, self.classifier = run.text_encoder, run.model.classifier
        # a variable, so that a loaded SavedModel still names its classes (scripts/attack.py reads them)
        self.label_names = tf.Variable(run.label_names, trainable=False, name="label_names")
        text = tf.TensorSpec([None], tf.string, name="texts")
        self.num_classes = len(run.label_names)
        if run.cfg.data.text_b_column:  # only the signature the run needs gets traced and saved
            self.serve = tf.function(lambda texts, texts_b: self._answer(texts, texts_b),
                                     input_signature=[text, tf.TensorSpec([None], tf.string, name="texts_b")])
        else:
            self.serve = tf.function(lambda texts: self._answer(texts), input_signature=[text])

    def _answer(self, *texts):
        """An empty batch gets empty outputs ((0, C) probabilities) without running the encoder, whose
        WordPiece graph cannot pad an empty batch. A batch of another shape than (B,) is an error (a signature
        does not check the shape it is called with: a (B, 1) batch would give one row)."""
        texts = tuple(tf.ensure_shape(t, [None]) for t in texts)
        empty = {"probabilities": tf.zeros([0, self.num_classes]), "labels": tf.zeros([0], tf.string),
                 "label_ids": tf.zeros([0], tf.int32)}
        return tf.cond(tf.size(texts[0]) > 0, lambda: self._outputs(self.encoder(*texts)), lambda: empty)

    def _outputs(self, inputs):
        probs = tf.nn.softmax(self.classifier(inputs, training=False))
        ids = tf.argmax(probs, axis=-1, output_type=tf.int32)
        return {"probabilities": probs, "labels": tf.gather(self.label_names, ids), "label_ids": ids}


def export_run(run: Run, out_dir: str) -> None:
    check_new_dir(out_dir)
    if isinstance(run.text_encoder, HFTokenizerEncoder):
        raise UserError("this run tokenizes with a Hugging Face tokenizer outside the TensorFlow graph (its "
                        "checkpoint has no WordPiece vocab.txt), so it cannot be exported as a SavedModel that "
                        "takes raw strings; use scripts/predict.py")
    module = ServingModule(run)
    with written_atomically(out_dir, "--out", faults=(tf.errors.OpError,)) as path:
        tf.saved_model.save(module, path, signatures={"serving_default": module.serve})
