"""The LSTM recurrence's product (64 x 256) x (256 x 1024) in PyTorch (two threads), median of 7 rounds of 200.

Run with torch in a throwaway virtual environment (never a project dependency)."""
import statistics
import time

import torch

torch.set_num_threads(2)
for dtype in (torch.float32, torch.bfloat16):
    h, u = torch.randn(64, 256, dtype=dtype), torch.randn(256, 1024, dtype=dtype)
    for _ in range(50):
        z = h @ u
    rounds = []
    for _ in range(7):
        start = time.perf_counter()
        for _ in range(200):
            z = h @ u
        rounds.append((time.perf_counter() - start) / 200 * 1e3)
    ms = statistics.median(rounds)
    print(f"torch {dtype}: {ms:.3f} ms per product, {2 * 64 * 256 * 1024 / ms / 1e6:.0f} GFLOP/s "
          f"(rounds {min(rounds):.3f}-{max(rounds):.3f})")
