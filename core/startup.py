"""TensorFlow's start-up lines (oneDNN notices, CUDA driver probes, the absl preamble) kept off the terminal.

TensorFlow's C++ runtime writes them straight to file descriptor 2 while it loads and looks for devices,
before Python's logging can filter anything. `load_tensorflow()` loads it with descriptor 2 pointed at a
temporary file, then passes on every line that is not known start-up noise. `--verbose` on train.py, or
ADVTEXT_VERBOSE=1 in the environment, shows everything.
"""
from __future__ import annotations

import os
import re
import sys
import tempfile

VERBOSE_ENV = "ADVTEXT_VERBOSE"
NOISE = re.compile(
    r"All log messages before absl::InitializeLog|oneDNN custom operations are on|cudart_stub|"
    r"Could not find cuda drivers|failed call to cuInit|cuda_(platform|executor|diagnostics|dnn|fft|blas)\.cc|"
    r"Unable to register cu(DNN|FFT|BLAS) factory|computation_placer|TF-TRT Warning|"
    r"This TensorFlow binary is optimized to use available CPU instructions|"
    r"To enable the following instructions|rebuild TensorFlow with the appropriate compiler flags|"
    r"Unable to register .*factory: Attempting to register factory|kernel driver does not appear to be running|"
    r"retrieving CUDA diagnostic information|hostname: ")


def verbose() -> bool:
    return os.environ.get(VERBOSE_ENV, "0") not in ("", "0", "false", "False")


def load_tensorflow() -> None:
    """Imports TensorFlow (and tensorflow-text) and probes the devices, keeping the start-up noise off
    standard error unless ADVTEXT_VERBOSE is set. Lines that are not known noise still come through."""
    if "tensorflow" in sys.modules or verbose():
        return
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # runtime notices too (errors still raise in Python)
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 2)
        try:
            import tensorflow as tf
            import tensorflow_text  # noqa: F401  (loads more native code, which logs the preamble again)

            tf.config.list_physical_devices("GPU")  # the CUDA probe happens here
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            captured.seek(0)
            kept = [line for line in captured.read().decode("utf-8", "replace").splitlines()
                    if line.strip() and not NOISE.search(line)]
    if kept:
        print("\n".join(kept), file=sys.stderr)
