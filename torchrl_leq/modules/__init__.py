"""Networks: the vectorised probabilistic ensemble (world model)."""

from .ensemble import ProbabilisticEnsemble

__all__ = ["ProbabilisticEnsemble"]
