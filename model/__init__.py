"""Backbones and the classifier that exposes embed() and logits_from_embeddings()."""
import core  # noqa: F401  (selects tf-keras before TensorFlow is imported)
