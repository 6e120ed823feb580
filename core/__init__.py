"""The bottom layer, below methods/, model/ and dataset/: the configuration (core/settings.py: each method's
settings; core/registry.py: the method and backbone tables; core/schema.py: the config's dataclasses;
core/loader.py: reading YAML into them) and what every layer shares (errors, paths, the command line, quiet
TensorFlow start-up). Nothing here imports TensorFlow: a config is checked before it loads.

Importing it selects tf-keras for TensorFlow: transformers' TensorFlow models run on Keras 2 (tf-keras),
and setting TF_USE_LEGACY_KERAS before TensorFlow is imported keeps `tf.keras` on tf-keras as well, so
Keras 3 can never be mixed in by accident. Every package of the project imports this one first. transformers'
notice that its TensorFlow classes are deprecated (the reason for the pin below 5, said in the README) is kept
off the terminal, like TensorFlow's start-up lines; its other messages come through.
"""
import logging
import os

os.environ["TF_USE_LEGACY_KERAS"] = "1"
logging.getLogger("transformers.modeling_tf_utils").addFilter(
    lambda record: "TensorFlow and JAX classes are deprecated" not in record.getMessage())
