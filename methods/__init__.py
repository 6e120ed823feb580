"""Regularization methods on the looked-up embeddings, one module each (methods/base.py states the contract).
Which class implements a method, and its settings, is its entry in core.registry.METHODS; method_class(name)
imports it (and so TensorFlow) when a model is built.
"""
from __future__ import annotations

import importlib


def method_class(name: str) -> type:
    """The class that implements the method `name` of core.registry.METHODS."""
    from core.registry import METHODS
    from core.startup import load_tensorflow

    load_tensorflow()  # before the method's module imports TensorFlow: keeps its start-up noise off the terminal
    module, cls = METHODS[name].implementation.split(":")
    return getattr(importlib.import_module(module), cls)
