"""(Bi-)LSTM backbone over embedded tokens, with masked pooling."""
from __future__ import annotations

import tensorflow as tf
import tf_keras

from model.fused_lstm import FusedLSTM
from model.pooling import masked_pool


def lstm_layer(units: int, return_sequences: bool, bidirectional: bool = False):
    """An LSTM layer (both directions of a Bi-LSTM in one layer). With a GPU, tf-keras's LSTM (its cuDNN kernel);
    without one, model.fused_lstm.FusedLSTM: the same weights in the same objects (checkpoints load across) and
    the same outputs, with the input projection out of the loop and a hand-written backward pass
    (docs/PERFORMANCE.md)."""
    if tf.config.list_logical_devices("GPU"):
        layer = tf_keras.layers.LSTM(units, return_sequences=return_sequences)
        return tf_keras.layers.Bidirectional(layer) if bidirectional else layer
    return FusedLSTM(units, return_sequences=return_sequences, bidirectional=bidirectional)


def generic_lstm(units: int, return_sequences: bool):
    """tf-keras's generic LSTM kernel alone, RNN(LSTMCell): what the CPU ran before FusedLSTM (benchmarks)."""
    return tf_keras.layers.RNN(tf_keras.layers.LSTMCell(units), return_sequences=return_sequences)


class LSTMBackbone(tf_keras.layers.Layer):
    """Stacked (Bi-)LSTM: embeddings (B, T, D) and mask (B, T) -> features (B, H) or (B, 2H).

    Args:
        hidden_size: units per direction.
        num_layers: stacked layers, dropout between them.
        bidirectional: run a backward LSTM too and concatenate.
        pooling: 'last' (the final valid step of each direction), 'max' or 'mean' over valid steps, or 'concat',
            [last, max, mean] (ULMFiT's concat pooling, Howard and Ruder 2018).
        dropout: dropout between stacked layers.
    """

    def __init__(self, hidden_size, num_layers=1, bidirectional=True, pooling="max", dropout=0.0, **kwargs):
        super().__init__(**kwargs)
        self.pooling, self.bidirectional = pooling, bidirectional
        self.layers_ = []
        for i in range(num_layers):
            return_sequences = pooling != "last" or i < num_layers - 1
            self.layers_.append(lstm_layer(hidden_size, return_sequences, bidirectional))
        self.dropout = tf_keras.layers.Dropout(dropout)

    def set_lstm_weights(self, weights: dict) -> None:
        """Each LSTM layer's weights from {direction: [layer's [kernel, recurrent_kernel, bias]]}: 'forward' for
        a one-way stack and a Bi-LSTM's forward layers, 'backward' for its backward layers (built first)."""
        for i, layer in enumerate(self.layers_):
            if self.bidirectional:
                layer.forward_layer.set_weights(weights["forward"][i])
                layer.backward_layer.set_weights(weights["backward"][i])
            else:
                layer.set_weights(weights["forward"][i])

    def call(self, embeddings, mask, training=False):
        x = embeddings
        for i, layer in enumerate(self.layers_):
            if i:
                x = self.dropout(x, training=training)
            x = layer(x, mask=mask, training=training)
        if self.pooling == "last":
            return x
        if self.pooling == "concat":
            return tf.concat([last_valid(x, mask, self.bidirectional), masked_pool(x, mask, "max"),
                              masked_pool(x, mask, "mean")], axis=-1)
        return masked_pool(x, mask, self.pooling)


def last_valid(hidden, mask, bidirectional: bool):
    """Each direction's final state from its output sequence (B, T, H or 2H), padding at the end: the forward
    direction's at the last real token; a Bi-LSTM's backward direction (its outputs aligned with the forward's)
    at the first."""
    lengths = tf.reduce_sum(tf.cast(mask, tf.int32), axis=1)
    forward = tf.gather(hidden, tf.maximum(lengths - 1, 0), batch_dims=1)
    if not bidirectional:
        return forward
    half = hidden.shape[-1] // 2
    return tf.concat([forward[:, :half], hidden[:, 0, half:]], axis=-1)
