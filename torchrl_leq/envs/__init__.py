"""Environments: the ensemble as a TorchRL model-based env, true termination functions, the
point-maze evaluation envs."""

from .model_env import LEQModelEnv
from .pointmaze import PointMazeTaskWrapper, make_pointmaze_env, make_pointmaze_torchrl_env
from .termination import get_termination_fn

__all__ = [
    "LEQModelEnv",
    "PointMazeTaskWrapper",
    "get_termination_fn",
    "make_pointmaze_env",
    "make_pointmaze_torchrl_env",
]
