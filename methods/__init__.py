"""Regularization methods on the looked-up embeddings: one module each (see methods/base.py for the
contract), and METHODS, the dict from the name a config gives (`regularizer: {name: ...}`) to the method.

Adding a method: its module, one entry here, its tests, its configs and a row in the README's methods table.
"""
from core.startup import load_tensorflow

load_tensorflow()  # before the methods import TensorFlow: keeps its start-up noise off the terminal

from methods.fgm import FGM  # noqa: E402
from methods.fgsm import FGSM  # noqa: E402
from methods.freelb import FreeLB  # noqa: E402
from methods.noise import RandomNoise  # noqa: E402
from methods.pgd import PGD  # noqa: E402
from methods.smart import SMART  # noqa: E402
from methods.vat import VAT  # noqa: E402

METHODS = {
    "random": RandomNoise,
    "fgsm": FGSM,
    "fgm": FGM,
    "pgd": PGD,
    "vat": VAT,
    "freelb": FreeLB,
    "smart": SMART,
}
