"""Training: configuration, regularizers and the adversarial train_step."""
import core  # noqa: F401  (selects tf-keras before TensorFlow is imported)
