"""Each method's settings (the keys of its `regularizer:` entry besides `name` and `weight`), their defaults,
the ball its radius measures (`linf`: L-inf per coordinate, else L2 per example) and how a backbone fills in the
settings left to it: plain dataclasses, without TensorFlow, so that a config file is checked before TensorFlow
loads. core.registry.METHODS names each method's settings class beside its implementation."""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from core.errors import UserError
from core.fields import setting


@dataclass(frozen=True)
class Radii:
    """Default radii of a backbone's embedding space: an L2 radius per example and an L-inf one per
    coordinate (5.0 and 0.05 on frequency-normalized LSTM embeddings, as in Miyato et al. 2017; 1.0 and 0.01
    on a pretrained encoder's word embeddings)."""
    l2: float
    linf: float


# A relative radius left unset (epsilon_scale: relative): 0.02 of each text's own norm, in either ball (an L-inf
# radius of 0.02 root-mean-square coordinates moves a sign perturbation 0.02 of the norm), on every backbone.
RELATIVE_RADII = Radii(l2=0.02, linf=0.02)


def scaled(radii: Radii | None, epsilon_scale: str) -> Radii | None:
    """The default radii for a method's epsilon_scale: the backbone's, or RELATIVE_RADII."""
    return RELATIVE_RADII if epsilon_scale == "relative" else radii


@dataclass
class EpsilonParams:
    """epsilon: the radius (None: the backbone's default, L2 or L-inf as the method's ball). epsilon_scale:
    absolute, radii in embedding units; relative, multiples of each example's own embedding norm over its
    real tokens (for an L-inf radius: of its root-mean-square coordinate), so that one value means the same
    on every backbone."""
    linf: ClassVar[bool] = False  # the method's ball: L-inf (per coordinate) or L2 (per example)
    epsilon: float | None = setting(None, min=0.0)
    epsilon_scale: str = setting("absolute", choices=("absolute", "relative"))

    def resolve(self, radii: Radii | None) -> None:
        """Fills the settings left to the backbone (None) in place."""
        radii = scaled(radii, self.epsilon_scale)
        if self.epsilon is None:
            self.epsilon = radii.linf if self.linf else radii.l2


@dataclass
class LinfEpsilonParams(EpsilonParams):
    """EpsilonParams of a method whose epsilon is an L-inf radius (FGSM)."""
    linf: ClassVar[bool] = True


@dataclass
class PGDParams(EpsilonParams):
    steps: int = setting(3, min=1)
    # None: 2.5 * epsilon / steps (Madry et al.'s rule of thumb).
    step_size: float | None = setting(None, min_exclusive=0.0)
    # Start from a point drawn uniformly in radius inside the ball, along a random direction.
    random_start: bool = False

    def resolve(self, radii):
        super().resolve(radii)
        if self.step_size is None:
            self.step_size = 2.5 * self.epsilon / self.steps


@dataclass
class VATParams(EpsilonParams):
    xi: float = setting(0.1, min_exclusive=0.0)  # the finite-difference radius of the power iteration
    power_iterations: int = setting(1, min=1)
    entropy_weight: float = setting(0.0, min=0.0)


@dataclass
class FreeParams(EpsilonParams):
    """Free adversarial training (methods/free.py): each batch trained on `replays` times, one weight update
    each, the perturbation moved by the same backward pass. step_size None: epsilon (Shafahi et al. 2019)."""
    replays: int = setting(4, min=2, max=64)  # each replay is a full step: beyond a few tens, no step for minutes
    step_size: float | None = setting(None, min_exclusive=0.0)

    def resolve(self, radii):
        super().resolve(radii)
        if self.step_size is None:
            self.step_size = self.epsilon


@dataclass
class FreeLBParams:
    adv_steps: int = setting(3, min=1)  # K
    # The ascent step; None: 2.5 * max_norm / adv_steps (as PGD's step size).
    adv_lr: float | None = setting(None, min_exclusive=0.0)
    # The random start's magnitude; None: max_norm / 10; 0: start at d_0 = 0.
    init_mag: float | None = setting(None, min=0.0)
    # The radius of the ball the perturbation is projected onto; None: the backbone's default radius.
    max_norm: float | None = setting(None, min_exclusive=0.0)
    norm: str = setting("l2", choices=("l2", "linf"))
    # absolute, or relative: adv_lr, init_mag and max_norm as multiples of each example's embedding norm.
    epsilon_scale: str = setting("absolute", choices=("absolute", "relative"))

    @property
    def linf(self) -> bool:
        """The ball is the one `norm` names."""
        return self.norm == "linf"

    def resolve(self, radii):
        radii = scaled(radii, self.epsilon_scale)
        if self.max_norm is None:
            self.max_norm = radii.linf if self.norm == "linf" else radii.l2
        if self.adv_lr is None:
            self.adv_lr = 2.5 * self.max_norm / self.adv_steps
        if self.init_mag is None:
            self.init_mag = self.max_norm / 10


@dataclass
class SMARTParams:
    linf: ClassVar[bool] = True  # its radius is per coordinate
    # The L-inf radius of the perturbation; None: the backbone's L-inf radius, FGSM's (0.05 on the LSTMs'
    # normalized embeddings, 0.01 on an encoder's; the paper used 1e-5 on BERT-size encoders).
    epsilon: float | None = setting(None, min=0.0)
    # absolute, or relative: epsilon, sigma and step_size as multiples of each example's root-mean-square
    # embedding coordinate.
    epsilon_scale: str = setting("absolute", choices=("absolute", "relative"))
    sigma: float | None = setting(None, min=0.0)  # the starting noise's standard deviation; None: epsilon
    step_size: float | None = setting(None, min=0.0)  # None: 100 * epsilon (the paper's 1e-3 for 1e-5)
    steps: int = setting(1, min=1)
    smoothness: bool = True
    proximal_weight: float = setting(1.0, min=0.0)
    momentum: float = setting(0.99, min=0.0, max=1.0)

    def resolve(self, radii):
        if not self.smoothness and self.proximal_weight == 0:
            raise UserError("regularizer: smart with smoothness false and proximal_weight 0 has no term left; "
                            "switch one of the two parts on")
        if self.epsilon is None:
            self.epsilon = scaled(radii, self.epsilon_scale).linf
        if self.sigma is None:
            self.sigma = self.epsilon
        if self.step_size is None:
            self.step_size = 100 * self.epsilon

