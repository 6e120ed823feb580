"""Pooling over time with padding masked: shared by the LSTM backbone and the Hugging Face encoders."""
from __future__ import annotations

import tensorflow as tf


def masked_pool(hidden, mask, pooling):
    """Pools (B, T, H) over time where mask (B, T) is true; rows with no valid step give zeros."""
    m = tf.cast(mask, hidden.dtype)[:, :, None]
    if pooling == "mean":
        return tf.reduce_sum(hidden * m, axis=1) / tf.maximum(tf.reduce_sum(m, axis=1), 1.0)
    if pooling == "max":
        pooled = tf.reduce_max(tf.where(m > 0, hidden, tf.cast(-1e9, hidden.dtype)), axis=1)
        return tf.where(tf.reduce_any(mask, axis=1)[:, None], pooled, tf.zeros_like(pooled))
    raise ValueError(f"unknown pooling '{pooling}'")
