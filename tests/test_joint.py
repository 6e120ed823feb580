"""methods/joint.py: the labelled and unlabeled batches stacked for VAT and SMART."""
from types import SimpleNamespace

import numpy as np
import tensorflow as tf

from methods.joint import concat_batches, joint_noise, labelled_share


def test_concat_batches_pads_both_to_the_longer_length():
    a = {"ids": tf.constant([[1, 2, 3, 4, 5], [6, 7, 0, 0, 0]])}  # 2 texts, length 5
    b = {"ids": tf.constant([[8, 9, 1], [2, 0, 0], [3, 4, 5]])}  # 3 texts, length 3
    joint = concat_batches(a, b)["ids"].numpy()
    assert joint.tolist() == [[1, 2, 3, 4, 5], [6, 7, 0, 0, 0], [8, 9, 1, 0, 0], [2, 0, 0, 0, 0], [3, 4, 5, 0, 0]]
    joint = concat_batches(b, a)["ids"].numpy()  # the first batch shorter
    assert joint.shape == (5, 5) and joint[:3].tolist() == [[8, 9, 1, 0, 0], [2, 0, 0, 0, 0], [3, 4, 5, 0, 0]]


def _step(unlabeled):
    return SimpleNamespace(unlabeled=unlabeled, draw=3,
                           normal=lambda shape, draw: tf.random.stateless_normal(shape, seed=[draw, 11]))


def test_joint_noise_gives_each_half_its_own_stream():
    alone = joint_noise(_step(None), tf.constant([2, 4, 2]), 2).numpy()
    assert np.array_equal(alone, tf.random.stateless_normal([2, 4, 2], seed=[3, 11]).numpy())
    joint = joint_noise(_step({}), tf.constant([5, 4, 2]), 2).numpy()
    fewer = joint_noise(_step({}), tf.constant([4, 4, 2]), 1).numpy()
    # the labelled rows get the noise they get without an unlabeled batch ...
    assert np.array_equal(joint[:2], alone) and np.array_equal(fewer[:1], alone[:1])
    # ... and the unlabeled rows theirs, whatever the number of labelled rows before them, not the labelled stream
    assert np.array_equal(joint[2:], fewer[1:])
    assert not np.allclose(joint[2:4], alone, atol=0.1)


def test_labelled_share():
    assert float(labelled_share(4, None)) == 1.0
    assert float(labelled_share(4, {"ids": tf.zeros([12, 3])})) == 0.25
