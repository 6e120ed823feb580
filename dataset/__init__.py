"""Readers, built-in data sets, tokenizers and tf.data pipelines."""
import os

# transformers' TensorFlow models run on Keras 2 (tf-keras). Selecting it before TensorFlow is
# imported keeps `tf.keras` on tf-keras as well, so Keras 3 can never be mixed in by accident.
os.environ["TF_USE_LEGACY_KERAS"] = "1"
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "1")
