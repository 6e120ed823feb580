"""The two axes a config chooses along, one table each: METHODS (`regularizer: {name: ...}`) and BACKBONES
(`model.name`). An entry holds what the config loader needs, without TensorFlow, and names the class that
implements it ("module:Class"), which the layer above imports when a run is built: methods.method_class(name)
for a method, trainer.families.family(cfg) for a backbone.

Adding a method: its module under methods/, its settings class in core/settings.py (or one that exists) and an
entry here. Adding a backbone: an entry here, with a family that exists or a new family class in trainer/.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from core.settings import (
    EpsilonParams,
    FreeLBParams,
    FreeParams,
    LinfEpsilonParams,
    PGDParams,
    Radii,
    SMARTParams,
    VATParams,
)


@dataclass(frozen=True)
class MethodEntry:
    """A regularization method: its settings class (core/settings.py), the class that implements it under
    methods/ ("module:Class"), and whether the train step hands it the unlabeled batch (methods that need no
    labels), and whether it replays each batch, updating the weights every time (its settings' `replays`)."""
    params: type
    implementation: str
    reads_unlabeled: bool = False
    replays_batches: bool = False

    def has_setting(self, name: str) -> bool:
        """Whether `name` is one of the method's settings (a field of its Params)."""
        return name in self.params.__dataclass_fields__


METHODS = {
    "random": MethodEntry(EpsilonParams, "methods.noise:RandomNoise"),
    "fgsm": MethodEntry(LinfEpsilonParams, "methods.fgsm:FGSM"),
    "fgm": MethodEntry(EpsilonParams, "methods.fgm:FGM"),
    "pgd": MethodEntry(PGDParams, "methods.pgd:PGD"),
    "vat": MethodEntry(VATParams, "methods.vat:VAT", reads_unlabeled=True),
    "freelb": MethodEntry(FreeLBParams, "methods.freelb:FreeLB"),
    "smart": MethodEntry(SMARTParams, "methods.smart:SMART", reads_unlabeled=True),
    "free": MethodEntry(FreeParams, "methods.free:Free", replays_batches=True),
}

# Default radii of the methods: on frequency-normalized LSTM embeddings, on a pretrained encoder's.
LSTM_RADII = Radii(l2=5.0, linf=0.05)
ENCODER_RADII = Radii(l2=1.0, linf=0.01)


@dataclass(frozen=True)
class Backbone:
    """A backbone: the family class that prepares its vocabulary and builds it ("module:Class" under trainer/), its
    poolings (the first is the default), the methods' default radii and the robustness curves' default grids
    (L2, L-inf), and what it can do, each stated (core/rules.py reads these, never a family's name):
    checkpoint: a Hugging Face encoder, from model.pretrained or model.config_overrides (with lower_case);
    normalizes_embeddings: its embedding table can be normalized by word frequency (model.normalize_embeddings);
    language_model: it can be pretrained as a language model (task: lm) and started from one (model.init_from);
    xla: its step compiles with XLA (train.jit_compile);
    bidirectional: it reads both ways (a Bi-LSTM; its language model is a forward and a backward one)."""
    family: str
    poolings: tuple[str, ...]
    radii: Radii
    epsilons: tuple[float, ...]
    fgsm_epsilons: tuple[float, ...]
    checkpoint: bool
    normalizes_embeddings: bool
    language_model: bool
    xla: bool
    bidirectional: bool = False


_LSTM = Backbone("trainer.families:LSTMFamily", ("max", "last", "mean", "concat"), LSTM_RADII,
                 (0.0, 1.0, 2.0, 5.0, 10.0), (0.0, 0.01, 0.02, 0.05, 0.1),
                 checkpoint=False, normalizes_embeddings=True, language_model=True, xla=False)
BACKBONES = {
    "lstm": _LSTM,
    "bilstm": dataclasses.replace(_LSTM, bidirectional=True),
    "bert": Backbone("trainer.families:HuggingFaceFamily", ("cls", "first_token", "mean"), ENCODER_RADII,
                     (0.0, 0.25, 0.5, 1.0, 2.0), (0.0, 0.0025, 0.005, 0.01, 0.02),
                     checkpoint=True, normalizes_embeddings=False, language_model=False, xla=True),
}
