"""What TensorFlow's Python logger passes on: Keras's lines that say nothing to a user of the framework are kept
back (their exact text, as tf-keras formats it), every other line comes through."""
import logging

import pytest

from core import startup


def record(message: str) -> logging.LogRecord:
    return logging.LogRecord("tensorflow", logging.WARNING, __file__, 1, message, None, None)


@pytest.mark.parametrize("message", [
    # tf_keras/src/callbacks.py, CallbackList's timing check, formatted as it formats it
    "Callback method `{hook}` is slow compared to the batch time (batch time: {batch_time:.4f}s vs `{hook}` time: "
    "{hook_time:.4f}s). Check your callbacks.".format(hook="on_train_batch_end", batch_time=0.0123, hook_time=0.5),
    "Skipping full serialization of TF-Keras layer <tf_keras.src.layers.regularization.dropout.Dropout object at "
    "0x7f>, because it is not built.",
    "Model's `__init__()` arguments contain non-serializable objects. Please implement a `get_config()` method in "
    "the subclassed Model for proper saving and loading. Defaulting to empty config.",
])
def test_keras_noise_is_kept_back(message):
    assert not startup.keras_noise_filter(record(message))


@pytest.mark.parametrize("message", [
    "Callback method `on_epoch_end` is slow compared to the batch time (batch time: 0.0100s vs `on_epoch_end` "
    "time: 0.5000s). Check your callbacks.",
    "5 out of the last 5 calls to <function> triggered tf.function retracing.",
    "Gradients do not exist for variables ['kernel:0'] when minimizing the loss.",
])
def test_other_lines_come_through(message):
    assert startup.keras_noise_filter(record(message))


def test_the_filter_is_on_tensorflows_logger_unless_verbose(monkeypatch):
    logger = logging.getLogger("tensorflow")
    logger.removeFilter(startup.keras_noise_filter)
    monkeypatch.setenv(startup.VERBOSE_ENV, "1")
    startup.load_tensorflow()
    assert startup.keras_noise_filter not in logger.filters
    monkeypatch.setenv(startup.VERBOSE_ENV, "0")
    startup.load_tensorflow()
    assert startup.keras_noise_filter in logger.filters
