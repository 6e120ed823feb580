"""TensorFlow's start-up lines (oneDNN notices, CUDA driver probes, the absl preamble) kept off the terminal.

TensorFlow's C++ runtime writes them straight to file descriptor 2 while it loads and looks for devices,
before Python's logging can filter anything. `load_tensorflow()` loads it with descriptor 2 pointed at a
temporary file, then passes on every line that is not known start-up noise. `--verbose` on train.py, or
ADVTEXT_VERBOSE=1 in the environment, shows everything.
"""
from __future__ import annotations

import logging
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


# Lines tf-keras logs through TensorFlow's Python logger that say nothing to a user of this framework:
# - at an export, Keras's own reload metadata for layers that hold no weights (an unused dropout) and for models
#   built from arguments it cannot serialize: the SavedModel is served through its signature, never reloaded
#   as a Keras model;
# - "on_train_batch_end is slow": the step of a training-state checkpoint (train.checkpoint_every), by design.
KERAS_NOISE = re.compile(r"Skipping full serialization of TF-Keras layer .* because it is not built|"
                         r"Model's `__init__\(\)` arguments contain non-serializable objects|"
                         r"Callback method `on_train_batch_(begin|end)` is slow compared to the batch time")


def keras_noise_filter(record) -> bool:
    return not KERAS_NOISE.search(record.getMessage())


def verbose() -> bool:
    return os.environ.get(VERBOSE_ENV, "0") not in ("", "0", "false", "False")


def load_tensorflow() -> None:
    """Imports TensorFlow (and tensorflow-text) and probes the devices, keeping the start-up noise off
    standard error unless ADVTEXT_VERBOSE is set. Lines that are not known noise still come through."""
    if verbose():
        return
    logging.getLogger("tensorflow").addFilter(keras_noise_filter)  # once: a filter is added only once
    if "tensorflow" in sys.modules:
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
