# The two LSTM kernels trained from the same weights on one padded batch: python docs/benchmarks/2026-12-07-fused-lstm/probe_same_training.py STEPS (from the repository root, PYTHONPATH=.)
import os; os.environ["TF_USE_LEGACY_KERAS"]="1"
import numpy as np, tensorflow as tf, tf_keras
import trainer
from scripts import benchmark
from model import lstm
class A: pass
args = A(); args.vocab=2000; args.embedding_dim=64; args.hidden=64; args.batch=32; args.length=40; args.pgd_steps=3
models = {}
orig = lstm.lstm_layer
for kind in ("fused", "generic"):
    if kind == "generic":
        lstm.lstm_layer = lambda u, s, b=False: tf_keras.layers.Bidirectional(lstm.generic_lstm(u, s)) if b else lstm.generic_lstm(u, s)
    model, data, _ = benchmark.build("bilstm", "fgm", args)
    rng = np.random.default_rng(5)
    ids = rng.integers(2, args.vocab, size=(args.batch, args.length)).astype(np.int32)
    lengths = rng.integers(3, args.length + 1, size=args.batch)
    ids[np.arange(args.length)[None, :] >= lengths[:, None]] = 0
    labels = np.arange(args.batch, dtype=np.int32) % 2
    data = tf.data.Dataset.from_tensors(({"token_ids": tf.constant(ids)}, tf.constant(labels))).repeat()
    lstm.lstm_layer = orig
    models[kind] = (model, data)
    print(kind, type(model.classifier.backbone.layers_[0]).__name__, [type(l).__name__ for l in getattr(model.classifier.backbone.layers_[0], "forward_layer", model).__dict__.get("_self_tracked_trackables", [])][:3])
w0 = [v.numpy() for v in models["fused"][0].trainable_variables]
print("initial weights equal:", all(np.array_equal(a, v.numpy()) for a, v in zip(w0, models["generic"][0].trainable_variables)))
import sys
N = int(sys.argv[1])
for k, (model, data) in models.items():
    step = model.make_train_function(); it = iter(data)
    for _ in range(N): step(it)
a = [v.numpy() for v in models["fused"][0].trainable_variables]; b = [v.numpy() for v in models["generic"][0].trainable_variables]
d = np.concatenate([(x - y).ravel() for x, y in zip(a, b)])
moved = np.concatenate([(x - w).ravel() for x, w in zip(a, w0)])
print(f"after {N} Adam steps (lr 1e-3): weights moved up to {np.abs(moved).max():.2e}; fused - generic: max {np.abs(d).max():.2e}, "
      f"entries differing by more than 1e-4: {(np.abs(d) > 1e-4).sum()} of {d.size}")
