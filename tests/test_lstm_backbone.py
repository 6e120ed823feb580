"""The LSTM layer without a GPU (RNN of LSTMCell) is tf-keras's LSTM: same outputs, same checkpoints."""
import numpy as np
import pytest
import tensorflow as tf
import tf_keras

from model import lstm

MASK = tf.constant(np.array([[1, 1, 1, 0, 0, 0], [1, 1, 1, 1, 1, 1], [1, 0, 0, 0, 0, 0]], bool))


def pair(return_sequences):
    """The layer lstm_layer gives on this machine and tf-keras's LSTM, both Bi-directional, same weights."""
    ours = tf_keras.layers.Bidirectional(lstm.lstm_layer(5, return_sequences))
    keras = tf_keras.layers.Bidirectional(tf_keras.layers.LSTM(5, return_sequences=return_sequences))
    x = tf.random.stateless_normal((3, 6, 4), seed=[1, 2])
    ours(x, mask=MASK)
    keras(x, mask=MASK)
    rng = np.random.default_rng(0)
    keras.set_weights([rng.normal(size=w.shape).astype(np.float32) for w in keras.get_weights()])
    ours.set_weights(keras.get_weights())
    return ours, keras, x


def test_without_a_gpu_the_layer_is_the_generic_kernel_and_with_one_the_keras_lstm(monkeypatch):
    assert not tf.config.list_logical_devices("GPU")  # these machines; on a GPU machine the test says so
    layer = lstm.lstm_layer(4, True)
    assert type(layer) is tf_keras.layers.RNN and isinstance(layer.cell, tf_keras.layers.LSTMCell)
    monkeypatch.setattr(tf.config, "list_logical_devices", lambda kind=None: ["GPU:0"] if kind == "GPU" else [])
    assert type(lstm.lstm_layer(4, True)) is tf_keras.layers.LSTM


@pytest.mark.parametrize("return_sequences", [True, False])
def test_same_outputs_as_the_keras_lstm_with_padding(return_sequences):
    ours, keras, x = pair(return_sequences)
    assert type(ours.forward_layer) is not type(keras.forward_layer)
    expected = keras(x, mask=MASK).numpy()
    np.testing.assert_allclose(ours(x, mask=MASK).numpy(), expected, atol=1e-6)
    np.testing.assert_allclose(tf.function(lambda v: ours(v, mask=MASK))(x).numpy(), expected, atol=1e-6)
    if return_sequences:  # masked steps are zero in both directions
        assert not expected[~MASK.numpy()].any()


def test_a_checkpoint_of_one_loads_into_the_other(tmp_path):
    ours, keras, x = pair(True)
    path = tf.train.Checkpoint(layer=keras).write(str(tmp_path / "ckpt"))
    fresh = tf_keras.layers.Bidirectional(lstm.lstm_layer(5, True))
    fresh(x, mask=MASK)
    tf.train.Checkpoint(layer=fresh).read(path).assert_consumed()
    np.testing.assert_array_equal(fresh(x, mask=MASK).numpy(), ours(x, mask=MASK).numpy())


@pytest.mark.parametrize("bidirectional", [True, False])
def test_concat_pooling_is_the_final_states_then_max_then_mean_over_real_steps(bidirectional):
    """Against Keras's own final states (return_sequences False) and max and mean written out over the real steps."""
    x = tf.random.stateless_normal((3, 6, 4), seed=[3, 4])
    concat = lstm.LSTMBackbone(5, bidirectional=bidirectional, pooling="concat")
    last = lstm.LSTMBackbone(5, bidirectional=bidirectional, pooling="last")
    concat(x, MASK)
    last(x, MASK)
    last.set_weights(concat.get_weights())
    got = concat(x, MASK).numpy()
    width = 10 if bidirectional else 5
    assert got.shape == (3, 3 * width)
    np.testing.assert_allclose(got[:, :width], last(x, MASK).numpy(), atol=1e-6)
    layer = concat.layers_[0]
    seq = layer(x, mask=MASK).numpy()
    for row, mask in enumerate(MASK.numpy()):
        real = seq[row][mask]
        np.testing.assert_allclose(got[row, width:2 * width], real.max(axis=0), atol=1e-6)
        np.testing.assert_allclose(got[row, 2 * width:], real.mean(axis=0), atol=1e-6)
