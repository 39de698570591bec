"""Losses: LEQ (and its λ-return estimator and expectile loss)."""

from .combo import COMBOLoss
from .leq import LEQLoss
from .value import (
    NormalizedLambdaReturnEstimator,
    expectile_loss,
    expectile_weight,
    normalized_lambda_return,
)

__all__ = [
    "COMBOLoss",
    "LEQLoss",
    "NormalizedLambdaReturnEstimator",
    "expectile_loss",
    "expectile_weight",
    "normalized_lambda_return",
]
