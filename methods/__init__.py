"""Regularization methods on the looked-up embeddings: one module each (see methods/base.py for the
contract), their settings in methods/settings.py (without TensorFlow: a config is checked before it loads),
and METHODS, the dict from the name a config gives (`regularizer: {name: ...}`) to the method, built when it
is first asked for (it loads TensorFlow).

Adding a method: its settings and an entry of SETTINGS in settings.py, its module, one entry here, its
tests, its configs and a row in the README's methods table.
"""


def _methods() -> dict:
    from core.startup import load_tensorflow

    load_tensorflow()  # before the methods import TensorFlow: keeps its start-up noise off the terminal
    from methods.fgm import FGM
    from methods.fgsm import FGSM
    from methods.freelb import FreeLB
    from methods.noise import RandomNoise
    from methods.pgd import PGD
    from methods.smart import SMART
    from methods.vat import VAT

    return {"random": RandomNoise, "fgsm": FGSM, "fgm": FGM, "pgd": PGD, "vat": VAT, "freelb": FreeLB,
            "smart": SMART}


def __getattr__(name: str):
    if name == "METHODS":
        methods = _methods()
        globals()["METHODS"] = methods
        return methods
    raise AttributeError(f"module 'methods' has no attribute {name!r}")
