"""The LSTM recurrence's product (64 x 256) x (256 x 1024) inside a tf.while_loop of 128 steps (h_t = tanh of a
slice of h_{t-1} U), as the LSTM's loop runs it: ms per step, median of 7 rounds."""
import os
import statistics
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
import tensorflow as tf  # noqa: E402

for dtype in (tf.float32, tf.bfloat16):
    u = tf.cast(tf.random.normal((256, 1024)) * 0.05, dtype)
    h0 = tf.cast(tf.random.normal((64, 256)), dtype)

    @tf.function
    def loop(h, u):
        def body(t, h):
            return t + 1, tf.tanh(tf.matmul(h, u)[:, :256])
        return tf.while_loop(lambda t, h: t < 128, body, (tf.constant(0), h))[1]

    loop(h0, u)
    rounds = []
    for _ in range(7):
        start = time.perf_counter()
        for _ in range(5):
            loop(h0, u).numpy()
        rounds.append((time.perf_counter() - start) / 5 / 128 * 1e3)
    ms = statistics.median(rounds)
    print(f"tf {dtype.name} in a while_loop: {ms:.3f} ms per step, {2 * 64 * 256 * 1024 / ms / 1e6:.0f} GFLOP/s "
          f"(rounds {min(rounds):.3f}-{max(rounds):.3f})")
