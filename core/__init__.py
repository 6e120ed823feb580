"""The bottom layer: the configuration schema and the errors, shared by dataset/, model/ and trainer/.

Importing it selects tf-keras for TensorFlow: transformers' TensorFlow models run on Keras 2 (tf-keras),
and setting TF_USE_LEGACY_KERAS before TensorFlow is imported keeps `tf.keras` on tf-keras as well, so
Keras 3 can never be mixed in by accident. Every package of the project imports this one first.
"""
import os

os.environ["TF_USE_LEGACY_KERAS"] = "1"
