"""Glue between the hydra example scripts and the runners: smoke mode, one-line errors.

Example:
    >>> run_example(cfg)  # doctest: +SKIP
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from typing import Any, NoReturn

from omegaconf import DictConfig

from .experiments import MODEL_BASED_LOSSES, prepare_config, run_model_based, run_model_free
from .trainer import NonFiniteLossError

__all__ = ["run_example"]

USER_ERRORS = (ValueError, KeyError, FileNotFoundError, NonFiniteLossError)


def _cli_overrides() -> list[str]:
    try:
        from hydra.core.hydra_config import HydraConfig

        return list(HydraConfig.get().overrides.task)
    except (ImportError, ValueError):
        return []


def _exit_with(err: Exception) -> NoReturn:
    message = err.args[0] if isinstance(err, KeyError) and err.args else err
    print(f"error: {message}", file=sys.stderr)
    sys.exit(2)


def run_example(
    cfg: DictConfig, prepare: Callable[[DictConfig], DictConfig] | None = None
) -> dict[str, Any]:
    """Prepare the config (smoke mode, validation), run it, print a one-line JSON summary.

    ``prepare`` runs first on the raw config (e.g. the D4RL examples' dataset check or smoke
    dataset generation). User errors (bad override, unknown task, missing dataset, NaN loss)
    print one line, ``error: ...``, and exit with status 2 instead of a traceback.
    """
    if prepare is not None:
        try:
            cfg = prepare(cfg)
        except (*USER_ERRORS, TypeError) as err:
            _exit_with(err)
    try:
        cfg = prepare_config(cfg, cli_overrides=_cli_overrides())
        runner = run_model_based if cfg.algo in MODEL_BASED_LOSSES else run_model_free
        result = runner(cfg)
    except USER_ERRORS as err:
        _exit_with(err)
    summary = {
        "algo": cfg.algo,
        "task": cfg.task,
        "seed": cfg.seed,
        "last_score": result["last_score"],
        "best_score": result["best_score"],
        "metrics_csv": result["metrics_csv"],
    }
    print(json.dumps(summary))
    return result
