"""The LSTM layer without a GPU (model.fused_lstm.FusedLSTM) is tf-keras's LSTM: the same outputs, final states and
gradients (to the inputs and every weight), with padding, in one and two directions and stacked; checkpoints load
across."""
import numpy as np
import pytest
import tensorflow as tf
import tf_keras

from model import lstm
from model.fused_lstm import FusedLSTM

MASK = tf.constant(np.array([[1, 1, 1, 0, 0, 0], [1, 1, 1, 1, 1, 1], [1, 0, 0, 0, 0, 0]], bool))
HOLES = tf.constant(np.array([[1, 0, 0, 1, 1, 0], [0, 1, 1, 0, 1, 1], [1, 1, 0, 1, 0, 0]], bool))  # any mask: the
# state carried through masked steps in the middle, both ways


def keras_layer(units, return_sequences, bidirectional):
    layer = tf_keras.layers.LSTM(units, return_sequences=return_sequences)
    return tf_keras.layers.Bidirectional(layer) if bidirectional else layer


def pair(return_sequences, bidirectional=True, width=4):
    """The layer lstm_layer gives on this machine and tf-keras's LSTM, same (random, not initial) weights."""
    ours = lstm.lstm_layer(5, return_sequences, bidirectional)
    keras = keras_layer(5, return_sequences, bidirectional)
    x = tf.random.stateless_normal((3, 6, width), seed=[1, 2])
    ours(x, mask=MASK)
    keras(x, mask=MASK)
    rng = np.random.default_rng(0)
    keras.set_weights([rng.normal(size=w.shape).astype(np.float32) for w in keras.get_weights()])
    ours.set_weights(keras.get_weights())
    return ours, keras, x


def outputs_and_gradients(layers, x, jit=False, mask=MASK):
    """Each layer in turn (a stack) on x; the output and the gradients of a fixed random projection of it to x and
    to every weight, under tf.GradientTape (eagerly, or in a tf.function)."""
    def run(x):
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = x
            for layer in layers:
                y = layer(y, mask=mask)
            loss = tf.reduce_sum(tf.cast(y, tf.float32) * tf.random.stateless_normal(tf.shape(y), seed=[5, 6]))
        weights = [w for layer in layers for w in layer.trainable_weights]
        return [y] + tape.gradient(loss, [x] + weights)
    return [v.numpy() for v in (tf.function(run) if jit else run)(x)]


def test_without_a_gpu_the_layer_is_fused_and_with_one_the_keras_lstm(monkeypatch):
    assert not tf.config.list_logical_devices("GPU")  # these machines; on a GPU machine the test says so
    assert type(lstm.lstm_layer(4, True)) is FusedLSTM
    assert lstm.lstm_layer(4, True, bidirectional=True).bidirectional
    monkeypatch.setattr(tf.config, "list_logical_devices", lambda kind=None: ["GPU:0"] if kind == "GPU" else [])
    assert type(lstm.lstm_layer(4, True)) is tf_keras.layers.LSTM
    assert type(lstm.lstm_layer(4, True, bidirectional=True)) is tf_keras.layers.Bidirectional


@pytest.mark.parametrize("bidirectional", [True, False])
@pytest.mark.parametrize("return_sequences", [True, False])
@pytest.mark.parametrize("jit", [False, True])
def test_same_outputs_and_gradients_as_the_keras_lstm_with_padding(return_sequences, bidirectional, jit):
    ours, keras, x = pair(return_sequences, bidirectional)
    expected = outputs_and_gradients([keras], x)
    got = outputs_and_gradients([ours], x, jit)
    assert len(got) == len(expected) == 2 + 3 * (2 if bidirectional else 1)
    for g, e in zip(got, expected):
        assert g.shape == e.shape
        np.testing.assert_allclose(g, e, atol=1e-5)
    assert all(np.abs(e).max() > 0.01 for e in expected)  # every gradient is there to compare
    if return_sequences and bidirectional:  # masked steps are zero in both directions
        assert not expected[0][~MASK.numpy()].any()


@pytest.mark.parametrize("bidirectional", [True, False])
@pytest.mark.parametrize("return_sequences", [True, False])
def test_masked_steps_in_the_middle_carry_the_state_as_keras(return_sequences, bidirectional):
    ours, keras, x = pair(return_sequences, bidirectional)
    for g, e in zip(outputs_and_gradients([ours], x, mask=HOLES), outputs_and_gradients([keras], x, mask=HOLES)):
        np.testing.assert_allclose(g, e, atol=1e-5)


@pytest.mark.parametrize("bidirectional", [True, False])
def test_two_stacked_layers_give_keras_outputs_and_gradients(bidirectional):
    first, keras_first, x = pair(True, bidirectional)
    second, keras_second, _ = pair(False, bidirectional, width=10 if bidirectional else 5)
    got = outputs_and_gradients([first, second], x)
    expected = outputs_and_gradients([keras_first, keras_second], x)
    for g, e in zip(got, expected):
        np.testing.assert_allclose(g, e, atol=1e-5)


def test_bfloat16_follows_the_policy_and_stays_near_float32():
    ours, _, x = pair(True)
    exact = outputs_and_gradients([ours], x)
    tf_keras.mixed_precision.set_global_policy("mixed_bfloat16")
    try:
        half = lstm.lstm_layer(5, True, bidirectional=True)
        half(x, mask=MASK)
        half.set_weights(ours.get_weights())
        assert half.compute_dtype == "bfloat16" and half.weights[0].dtype == tf.float32
        got = outputs_and_gradients([half], x)
    finally:
        tf_keras.mixed_precision.set_global_policy("float32")
    assert got[0].dtype == tf.bfloat16.as_numpy_dtype
    for g, e in zip(got, exact):
        g = g.astype(np.float32)
        cosine = (g * e).sum() / np.linalg.norm(g) / np.linalg.norm(e)
        assert cosine > 0.99


@pytest.mark.parametrize("bidirectional", [True, False])
def test_a_checkpoint_of_one_loads_into_the_other(tmp_path, bidirectional):
    ours, keras, x = pair(True, bidirectional)
    path = tf.train.Checkpoint(layer=keras).write(str(tmp_path / "keras"))
    fresh = lstm.lstm_layer(5, True, bidirectional)
    fresh(x, mask=MASK)
    tf.train.Checkpoint(layer=fresh).read(path).assert_consumed()
    np.testing.assert_array_equal(fresh(x, mask=MASK).numpy(), ours(x, mask=MASK).numpy())
    back = keras_layer(5, True, bidirectional)
    back(x, mask=MASK)
    tf.train.Checkpoint(layer=back).read(tf.train.Checkpoint(layer=ours).write(str(tmp_path / "ours"))).assert_consumed()
    np.testing.assert_allclose(back(x, mask=MASK).numpy(), ours(x, mask=MASK).numpy(), atol=1e-6)


def test_fresh_weights_are_keras_initializers():
    """Shapes as LSTMCell's; the forget gate's bias starts at one (unit_forget_bias), the others at zero; the
    recurrent kernel orthogonal."""
    layer = FusedLSTM(5)
    layer(tf.zeros((1, 2, 3)))
    kernel, recurrent, bias = (w.numpy() for w in layer.weights)
    assert kernel.shape == (3, 20) and recurrent.shape == (5, 20) and bias.shape == (20,)
    np.testing.assert_array_equal(bias, np.r_[np.zeros(5), np.ones(5), np.zeros(10)])
    np.testing.assert_allclose(recurrent @ recurrent.T, np.eye(5), atol=1e-5)


@pytest.mark.parametrize("bidirectional", [True, False])
def test_concat_pooling_is_the_final_states_then_max_then_mean_over_real_steps(bidirectional):
    """Against Keras's own final states (return_sequences False) and max and mean written out over the real steps."""
    x = tf.random.stateless_normal((3, 6, 4), seed=[3, 4])
    concat = lstm.LSTMBackbone(5, bidirectional=bidirectional, pooling="concat")
    last = lstm.LSTMBackbone(5, bidirectional=bidirectional, pooling="last")
    concat(x, MASK)
    last(x, MASK)
    last.set_weights(concat.get_weights())
    keras = keras_layer(5, False, bidirectional)
    keras(x, mask=MASK)
    keras.set_weights(concat.get_weights())
    got = concat(x, MASK).numpy()
    width = 10 if bidirectional else 5
    assert got.shape == (3, 3 * width)
    np.testing.assert_allclose(got[:, :width], keras(x, mask=MASK).numpy(), atol=1e-6)
    np.testing.assert_allclose(got[:, :width], last(x, MASK).numpy(), atol=1e-6)
    layer = concat.layers_[0]
    seq = layer(x, mask=MASK).numpy()
    for row, mask in enumerate(MASK.numpy()):
        real = seq[row][mask]
        np.testing.assert_allclose(got[row, width:2 * width], real.max(axis=0), atol=1e-6)
        np.testing.assert_allclose(got[row, 2 * width:], real.mean(axis=0), atol=1e-6)
