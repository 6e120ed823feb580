"""An LSTM for the CPU, one or two directions, with a hand-written backward pass.

tf-keras's generic LSTM multiplies each step's input by the kernel inside its loop and lets TensorFlow
differentiate the loop, which keeps every step's intermediate tensors through the while loop's own
accumulators. Here (as in cuDNN and PyTorch's fused kernels):
- the input projection of every time step is one matrix product per direction before the loops;
- each direction's recurrence is its own while loop, so a Bi-LSTM's two run side by side (one loop over both
  directions with a batched matrix product measured slower: docs/PERFORMANCE.md);
- the backward pass is written out (tf.custom_gradient): the loop carries only the recurrence
  (dh_{t-1} = dz_t U^T); the gradients of the kernel, the recurrent kernel, the bias and the inputs are each one
  matrix product or sum over all steps after it.

The weights are tf-keras's LSTMCell's, in the same objects (a one-way layer's `cell`, a Bi-LSTM's
`forward_layer.cell` and `backward_layer.cell`, each with kernel, recurrent_kernel and bias, gates i, f, c, o):
checkpoints of either load into the other. Masked steps keep the state, as tf-keras's; outputs at masked steps
are zero in a Bi-LSTM (as tf-keras's Bidirectional) and the carried state in a one-way layer (as its RNN).
"""
from __future__ import annotations

import tensorflow as tf
import tf_keras


class LSTMWeights(tf_keras.layers.Layer):
    """An LSTMCell's three weights (kernel (D, 4H), recurrent_kernel (H, 4H), bias (4H)) and initializers."""

    def __init__(self, units: int, **kwargs):
        super().__init__(**kwargs)
        self.units = units

    def build(self, input_dim: int):
        self.kernel = self.add_weight("kernel", shape=(input_dim, 4 * self.units),
                                      initializer=tf_keras.initializers.GlorotUniform())
        self.recurrent_kernel = self.add_weight("recurrent_kernel", shape=(self.units, 4 * self.units),
                                                initializer=tf_keras.initializers.Orthogonal())
        units = self.units

        def unit_forget_bias(shape, dtype=None, **_):
            return tf.concat([tf.zeros((units,), dtype), tf.ones((units,), dtype), tf.zeros((2 * units,), dtype)], 0)

        self.bias = self.add_weight("bias", shape=(4 * self.units,), initializer=unit_forget_bias)
        self.built = True


class _Direction(tf_keras.layers.Layer):
    """One direction of a Bi-LSTM: holds its `cell`, where tf-keras's Bidirectional keeps its LSTM's."""

    def __init__(self, units: int, **kwargs):
        super().__init__(**kwargs)
        self.cell = LSTMWeights(units, name="lstm_cell")


class FusedLSTM(tf_keras.layers.Layer):
    """(B, T, D) and a mask (B, T) -> (B, T, H * directions) or, without return_sequences, each direction's final
    state (B, H * directions). A Bi-LSTM's backward outputs are aligned with its inputs (as tf-keras's)."""

    def __init__(self, units: int, return_sequences: bool = True, bidirectional: bool = False, **kwargs):
        super().__init__(**kwargs)
        self.units, self.return_sequences, self.bidirectional = units, return_sequences, bidirectional
        self.supports_masking = True
        if bidirectional:
            self.forward_layer = _Direction(units, name="forward_lstm")
            self.backward_layer = _Direction(units, name="backward_lstm")
        else:
            self.cell = LSTMWeights(units, name="lstm_cell")

    @property
    def cells(self):
        return [self.forward_layer.cell, self.backward_layer.cell] if self.bidirectional else [self.cell]

    def build(self, input_shape):
        for cell in self.cells:
            cell.build(int(input_shape[-1]))
        if self.bidirectional:
            self.forward_layer.built = self.backward_layer.built = True
        self.built = True

    def call(self, inputs, mask=None, training=False):
        dtype = self.compute_dtype
        x = tf.cast(inputs, dtype)
        if mask is None:
            mask = tf.ones(tf.shape(x)[:2], tf.bool)
        weights = [[tf.cast(w, dtype) for w in (c.kernel, c.recurrent_kernel, c.bias)] for c in self.cells]
        outputs, final = lstm_scan(x, tf.cast(mask, tf.bool), weights, zero_masked_outputs=self.bidirectional)
        return outputs if self.return_sequences else final

    def compute_mask(self, inputs, mask=None):
        return mask if self.return_sequences else None

    def get_config(self):
        return {**super().get_config(), "units": self.units, "return_sequences": self.return_sequences,
                "bidirectional": self.bidirectional}


def lstm_scan(x, mask, weights, zero_masked_outputs: bool):
    """The LSTM over x (B, T, D) with mask (B, T), in one or two directions.

    Args:
        weights: per direction (forward, then backward) its [kernel (D, 4H), recurrent_kernel (H, 4H), bias (4H)].
        zero_masked_outputs: outputs at masked steps are zero (else the carried state).
    Returns:
        outputs (B, T, N * H) (a backward direction's aligned with the inputs) and the final states (B, N * H).
    A backward direction reads the padded sequence from its end (as tf-keras's go_backwards): padding at the
    end leaves its state at zero until the last real token.
    """
    n = len(weights)
    flat = [w for direction in weights for w in direction]

    @tf.custom_gradient
    def scan(x, *flat):
        b, t, d = tf.shape(x)[0], tf.shape(x)[1], tf.shape(x)[2]
        rows = tf.reshape(tf.transpose(x, [1, 0, 2]), [t * b, d])  # time-major: (T * B, D)
        keep = tf.cast(tf.transpose(mask), x.dtype)[:, :, None]  # (T, B, 1)
        states = []
        for k in range(n):
            kernel, recurrent, bias = flat[3 * k:3 * k + 3]
            inputs = tf.reshape(tf.matmul(rows, kernel) + bias, [t, b, -1])  # every step's x W + b at once
            states.append(_forward_loop(inputs, keep, recurrent, reverse=k == 1))
        hs = tf.concat([s[0] for s in states], axis=-1)  # (T, B, N * H)
        outputs = tf.transpose(hs * keep if zero_masked_outputs else hs, [1, 0, 2])
        final = tf.concat([s[3] for s in states], axis=-1)

        def grad(d_outputs, d_final):
            d_out = tf.transpose(d_outputs, [1, 0, 2])
            if zero_masked_outputs:
                d_out = d_out * keep
            d_rows, d_weights = 0, []
            for k in range(n):
                kernel, recurrent, bias = flat[3 * k:3 * k + 3]
                h_seq, c_seq, gates, _ = states[k]
                units = recurrent.shape[0]
                zeros = tf.zeros_like(h_seq[:1])
                if k == 0:  # the state before each step: the previous time's
                    h_prev, c_prev = tf.concat([zeros, h_seq[:-1]], 0), tf.concat([zeros, c_seq[:-1]], 0)
                else:  # reading backwards: the next time's
                    h_prev, c_prev = tf.concat([h_seq[1:], zeros], 0), tf.concat([c_seq[1:], zeros], 0)
                dz = _backward_loop(d_out[:, :, k * units:(k + 1) * units], d_final[:, k * units:(k + 1) * units],
                                    keep, gates, c_seq, c_prev, recurrent, reverse=k == 1)
                dz = tf.reshape(dz, [t * b, 4 * units])
                d_weights += [tf.matmul(rows, dz, transpose_a=True),
                              tf.matmul(tf.reshape(h_prev, [t * b, units]), dz, transpose_a=True),
                              tf.reduce_sum(dz, axis=0)]
                d_rows += tf.matmul(dz, kernel, transpose_b=True)
            d_x = tf.transpose(tf.reshape(d_rows, [t, b, d]), [1, 0, 2])
            return (d_x, *d_weights)

        return (outputs, final), grad

    return scan(x, *flat)


def _forward_loop(inputs, keep, recurrent, reverse: bool):
    """The recurrence of one direction: inputs (T, B, 4H) (x W + b), keep (T, B, 1) -> the states h and c after
    each step and the gates' activations [i, f, c, o] (each at its time index, (T, B, H), (T, B, H), (T, B, 4H)),
    and the final h (B, H)."""
    t, b = tf.shape(inputs)[0], tf.shape(inputs)[1]
    units = recurrent.shape[0]
    dtype = inputs.dtype
    zeros = tf.zeros([b, units], dtype)

    def step(i, h, c, hs, cs, gates):
        at = t - 1 - i if reverse else i
        z = inputs[at] + tf.matmul(h, recurrent)
        s = tf.sigmoid(z)
        ig, fg, _, og = tf.split(s, 4, axis=-1)
        cg = tf.tanh(z[:, 2 * units:3 * units])
        m = keep[at]
        c_new = fg * c + ig * cg
        h_new = og * tf.tanh(c_new)
        c = c + m * (c_new - c)
        h = h + m * (h_new - h)
        return (i + 1, h, c, hs.write(at, h), cs.write(at, c),
                gates.write(at, tf.concat([ig, fg, cg, og], axis=-1)))

    arrays = [tf.TensorArray(dtype, size=t, element_shape=[None, units]),
              tf.TensorArray(dtype, size=t, element_shape=[None, units]),
              tf.TensorArray(dtype, size=t, element_shape=[None, 4 * units])]
    _, h, _, hs, cs, gates = tf.while_loop(lambda i, *_: i < t, step, [0, zeros, zeros, *arrays],
                                           parallel_iterations=1)
    return hs.stack(), cs.stack(), gates.stack(), h


def _backward_loop(d_out, d_h, keep, gates, c_seq, c_prev, recurrent, reverse: bool):
    """The recurrence of one direction backward, from its last step to its first: the gradient of each step's
    gate pre-activations dz (T, B, 4H), at its time index. Only dh_{t-1} = dz_t U^T (and the cell's own
    carry) runs in the loop."""
    t = tf.shape(d_out)[0]
    recurrent_t = tf.transpose(recurrent)

    def back(i, dh, dc, dzs):
        at = i if reverse else t - 1 - i
        m = keep[at]
        dh = dh + d_out[at]
        ig, fg, cg, og = tf.split(gates[at], 4, axis=-1)
        tanh_c = tf.tanh(c_seq[at])
        dh_new = m * dh
        dc_new = m * dc + dh_new * og * (1 - tanh_c * tanh_c)
        dz = tf.concat([dc_new * cg * ig * (1 - ig), dc_new * c_prev[at] * fg * (1 - fg),
                        dc_new * ig * (1 - cg * cg), dh_new * tanh_c * og * (1 - og)], axis=-1)
        dh = dh - dh_new + tf.matmul(dz, recurrent_t)
        dc = dc - m * dc + dc_new * fg
        return i + 1, dh, dc, dzs.write(at, dz)

    dzs = tf.TensorArray(d_out.dtype, size=t, element_shape=[None, recurrent.shape[1]])
    _, _, _, dzs = tf.while_loop(lambda i, *_: i < t, back, [0, d_h, tf.zeros_like(d_h), dzs],
                                 parallel_iterations=1)
    return dzs.stack()
