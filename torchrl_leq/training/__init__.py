"""Training utilities: evaluation in the real environment."""

from torchrl_leq.training.evaluation import RandomActor, evaluate, make_random_actor

__all__ = ["evaluate", "RandomActor", "make_random_actor"]
