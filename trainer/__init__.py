"""The top library layer: a run's story (run.py: prepare, fit, finish), the adversarial train_step
(adversarial_model.py), backbone families, checkpoints and resume, evaluation and attacks, export."""
import core  # noqa: F401  (selects tf-keras before TensorFlow is imported)
