"""Networks, named by kind: the deterministic actor (LEQ), the tanh-Gaussian actor (COMBO, IQL,
CQL), Q- and state-value networks, and the vectorised probabilistic ensemble (world model)."""

from .actor_critic import (
    InputScaler,
    PreTanhGaussianNoise,
    make_deterministic_actor,
    make_exploration_policy,
    make_qvalue_network,
    make_state_value_network,
)
from .ensemble import ProbabilisticEnsemble
from .stochastic_actor import make_tanh_normal_actor

__all__ = [
    "InputScaler",
    "PreTanhGaussianNoise",
    "ProbabilisticEnsemble",
    "make_deterministic_actor",
    "make_exploration_policy",
    "make_qvalue_network",
    "make_state_value_network",
    "make_tanh_normal_actor",
]
