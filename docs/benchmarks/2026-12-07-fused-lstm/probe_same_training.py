"""The two LSTM kernels trained from the same weights on one padded batch (FGM, dropout 0.2): how far apart their
weights are after STEPS Adam steps. From the repository's root:

    PYTHONPATH=. python docs/benchmarks/2026-12-07-fused-lstm/probe_same_training.py STEPS
"""
import sys
from types import SimpleNamespace

import numpy as np

import trainer  # noqa: F401  (selects tf-keras before TensorFlow loads)
from model import lstm
from scripts import benchmark


def generic(units, return_sequences, bidirectional=False):
    import tf_keras

    layer = lstm.generic_lstm(units, return_sequences)
    return tf_keras.layers.Bidirectional(layer) if bidirectional else layer


def main(steps: int) -> None:
    import tensorflow as tf

    args = SimpleNamespace(vocab=2000, embedding_dim=64, hidden=64, batch=32, length=40, pgd_steps=3)
    rng = np.random.default_rng(5)
    ids = rng.integers(2, args.vocab, size=(args.batch, args.length)).astype(np.int32)
    ids[np.arange(args.length)[None, :] >= rng.integers(3, args.length + 1, size=args.batch)[:, None]] = 0
    batch = ({"token_ids": tf.constant(ids)}, tf.constant(np.arange(args.batch, dtype=np.int32) % 2))
    models, fused = {}, lstm.lstm_layer
    for kind in ("fused", "generic"):
        lstm.lstm_layer = fused if kind == "fused" else generic
        models[kind] = benchmark.build("bilstm", "fgm", args)[0]
    lstm.lstm_layer = fused
    start = [v.numpy() for v in models["fused"].trainable_variables]
    same = all(np.array_equal(a, v.numpy()) for a, v in zip(start, models["generic"].trainable_variables))
    for model in models.values():
        step, data = model.make_train_function(), iter(tf.data.Dataset.from_tensors(batch).repeat())
        for _ in range(steps):
            step(data)
    a, b = ([v.numpy() for v in models[k].trainable_variables] for k in ("fused", "generic"))
    apart = max(float(np.abs(x - y).max()) for x, y in zip(a, b))
    moved = max(float(np.abs(x - w).max()) for x, w in zip(a, start))
    print(f"initial weights equal: {same}; after {steps} steps the weights moved up to {moved:.2e} and the two "
          f"kernels' weights are {apart:.2e} apart at most")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 100)
