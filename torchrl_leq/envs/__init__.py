"""Environments: the ensemble as a TorchRL model-based env, true termination functions."""

from .model_env import LEQModelEnv
from .termination import get_termination_fn

__all__ = ["LEQModelEnv", "get_termination_fn"]
