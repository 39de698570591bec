"""Networks: the LEQ actor/critic and the vectorised probabilistic ensemble (world model)."""

from .actor_critic import (
    InputScaler,
    PreTanhGaussianNoise,
    make_exploration_policy,
    make_leq_actor,
    make_leq_critic,
)
from .combo import make_combo_actor, make_combo_critic
from .ensemble import ProbabilisticEnsemble

__all__ = [
    "InputScaler",
    "PreTanhGaussianNoise",
    "ProbabilisticEnsemble",
    "make_combo_actor",
    "make_combo_critic",
    "make_exploration_policy",
    "make_leq_actor",
    "make_leq_critic",
]
