"""Losses: LEQ (and its λ-return estimator and expectile loss)."""

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
    load_world_model,
    save_world_model,
    train_world_model,
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
    "train_world_model",
    "save_world_model",
    "load_world_model",
]
