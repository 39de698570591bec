"""torchrl-leq: Lower Expectile Q-learning (LEQ) for model-based offline RL on TorchRL."""

__version__ = "0.1.0"
