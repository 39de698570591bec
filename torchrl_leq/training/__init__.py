"""Training: evaluation in the real environment, the world-model and RSSM training loops
(:mod:`~torchrl_leq.training.world_model`, :mod:`~torchrl_leq.training.rssm`), the trainer,
checkpoints and the examples' builders."""

from torchrl_leq.training.evaluation import RandomActor, evaluate

__all__ = ["evaluate", "RandomActor"]
