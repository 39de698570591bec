"""Losses: LEQ (its λ-return estimator and expectile loss), COMBO, the world-model NLL, and the
hyperparameter rules the loss constructors and the config check share."""

from .combo import COMBOLoss
from .leq import LEQLoss
from .value import (
    NormalizedLambdaReturnEstimator,
    expectile_loss,
    expectile_weight,
    normalized_lambda_return,
)
from .world_model import (
    gaussian_nll_ensemble_loss,
    world_model_loss,
)

__all__ = [
    "COMBOLoss",
    "LEQLoss",
    "NormalizedLambdaReturnEstimator",
    "expectile_loss",
    "expectile_weight",
    "normalized_lambda_return",
    "gaussian_nll_ensemble_loss",
    "world_model_loss",
]
