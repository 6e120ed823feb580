"""Readers, built-in data sets, tokenizers and tf.data pipelines."""
import core  # noqa: F401  (selects tf-keras before TensorFlow is imported)
