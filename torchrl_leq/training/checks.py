"""Checks of an example config before any heavy work: unset keys, types and ranges of every
hyperparameter a user sets, the logger backend, the dataset's presence.

A failed check raises a :class:`ConfigError` whose message is one line saying what is wrong and
how to fix it (the examples print it as ``error: ...`` and exit with status 2).

Example:
    >>> from omegaconf import OmegaConf
    >>> check_config(OmegaConf.create({"seed": 0, "train": {"total_steps": "abc"}}))
    Traceback (most recent call last):
    ...
    torchrl_leq.training.checks.ConfigError: train.total_steps must be an integer, got 'abc' — ...
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from omegaconf import DictConfig, OmegaConf

from .datasets import check_dataset, check_eval_env

__all__ = ["ConfigError", "check_config", "check_value", "CONFIG_RULES"]


class ConfigError(ValueError):
    """A config value a user must change (one-line message)."""


def _number(kind: type, lo: float | None = None, hi: float | None = None, *, open_lo=False,
            open_hi=False, nullable=False) -> Callable[[str, Any], None]:
    def check(key: str, value: Any) -> None:
        if value is None and nullable:
            return
        ok_type = isinstance(value, (int, float)) and not isinstance(value, bool)
        if kind is int:
            ok_type = isinstance(value, int) and not isinstance(value, bool)
        if not ok_type:
            what = "an integer" if kind is int else "a number"
            raise ConfigError(f"{key} must be {what}, got {value!r} — set {key}=<{what.split()[1]}>.")
        if lo is not None and (value <= lo if open_lo else value < lo):
            raise ConfigError(_range_message(key, value, lo, hi, open_lo, open_hi))
        if hi is not None and (value >= hi if open_hi else value > hi):
            raise ConfigError(_range_message(key, value, lo, hi, open_lo, open_hi))

    return check


def _range_message(key, value, lo, hi, open_lo, open_hi) -> str:
    if hi is None:
        bound = f"> {lo}" if open_lo else f">= {lo}"
        return f"{key} must be {bound}, got {value} — pass {key}=<value {bound}>."
    lo_b, hi_b = "(" if open_lo else "[", ")" if open_hi else "]"
    return f"{key} must lie in {lo_b}{lo}, {hi}{hi_b}, got {value} — pass a value in that range."


def _boolean(key: str, value: Any) -> None:
    if not isinstance(value, bool):
        raise ConfigError(f"{key} must be true or false, got {value!r} — set {key}=true|false.")


def _choice(*options: Any) -> Callable[[str, Any], None]:
    def check(key: str, value: Any) -> None:
        if value not in options:
            raise ConfigError(f"{key} must be one of {list(options)}, got {value!r}.")

    return check


_UNIT_OPEN = _number(float, 0.0, 1.0, open_lo=True, open_hi=True)
_UNIT = _number(float, 0.0, 1.0)
_POSITIVE_INT = _number(int, 1)
_NON_NEGATIVE_INT = _number(int, 0)
_POSITIVE = _number(float, 0.0, open_lo=True)

CONFIG_RULES: dict[str, Callable[[str, Any], None]] = {
    "seed": _NON_NEGATIVE_INT,
    "smoke": _boolean,
    "resume": _boolean,
    "progress": _boolean,
    "data.steps": _number(int, 2, nullable=True),
    "data.seed": _NON_NEGATIVE_INT,
    "data.source": _choice("pointmaze", "d4rl_hdf5", "minari", "simulator"),
    "data.reward_transform": _choice("maze", "antmaze", "locomotion", "none", None),
    "world_model.num_members": _POSITIVE_INT,
    "world_model.num_elites": _POSITIVE_INT,
    "world_model.batch_size": _POSITIVE_INT,
    "world_model.lr": _POSITIVE,
    "world_model.max_epochs": _number(int, 1, nullable=True),
    "world_model.patience": _POSITIVE_INT,
    "world_model.cache": _boolean,
    "world_model.seed": _number(int, 0, nullable=True),
    "loss.horizon": _POSITIVE_INT,
    "loss.tau": _UNIT_OPEN,
    "loss.actor_tau": _number(float, 0.0, 1.0, open_lo=True, open_hi=True, nullable=True),
    "loss.env_tau": _UNIT_OPEN,
    "loss.expectile": _UNIT_OPEN,
    "loss.beta": _number(float, 0.0),
    "loss.ema_weight": _number(float, 0.0),
    "loss.gamma": _UNIT,
    "loss.lmbda": _UNIT,
    "loss.temperature": _POSITIVE,
    "loss.real_ratio": _UNIT,
    "loss.num_random": _POSITIVE_INT,
    "loss.min_q_weight": _number(float, 0.0),
    "loss.include_current": _boolean,
    "loss.ema_on_model": _boolean,
    "loss.actor_gradient": _choice("per_step", "backprop"),
    "optim.actor_lr": _POSITIVE,
    "optim.critic_lr": _POSITIVE,
    "optim.alpha_lr": _POSITIVE,
    "optim.ema_decay": _UNIT,
    "optim.batch_size_env": _POSITIVE_INT,
    "optim.batch_size_model": _POSITIVE_INT,
    "optim.cosine_actor_lr": _boolean,
    "expansion.enabled": _boolean,
    "expansion.every": _POSITIVE_INT,
    "expansion.num_starts": _POSITIVE_INT,
    "expansion.rollout_length": _POSITIVE_INT,
    "expansion.noise": _number(float, 0.0),
    "expansion.capacity": _POSITIVE_INT,
    "rollout.every": _POSITIVE_INT,
    "rollout.num_starts": _POSITIVE_INT,
    "rollout.length": _POSITIVE_INT,
    "rollout.capacity": _POSITIVE_INT,
    "pretrain.enabled": _boolean,
    "pretrain.bc_steps": _NON_NEGATIVE_INT,
    "pretrain.fqe_steps": _NON_NEGATIVE_INT,
    "pretrain.bc_lr": _POSITIVE,
    "train.total_steps": _NON_NEGATIVE_INT,
    "train.eval_every": _POSITIVE_INT,
    "train.eval_episodes": _POSITIVE_INT,
    "train.final_eval_episodes": _POSITIVE_INT,
    "train.log_every": _POSITIVE_INT,
    "train.checkpoint_every": _NON_NEGATIVE_INT,
    "train.stop_after_steps": _number(int, 1, nullable=True),
    "eval.num_envs": _POSITIVE_INT,
    "logger.backend": _choice("csv", "tensorboard", "wandb", "none"),
}
"""Config key -> check; a key absent from a config is not checked (not every example has it)."""


def check_value(key: str, value: Any) -> None:
    """Check one config value against :data:`CONFIG_RULES` (unknown keys pass).

    Example:
        >>> check_value("loss.tau", 0.1)
        >>> check_value("loss.tau", 2.0)
        Traceback (most recent call last):
        ...
        torchrl_leq.training.checks.ConfigError: loss.tau must lie in (0.0, 1.0), got 2.0 — ...
    """
    rule = CONFIG_RULES.get(key)
    if rule is not None:
        rule(key, value)


def check_config(cfg: DictConfig) -> None:
    """Every unset (``???``) key, every key of :data:`CONFIG_RULES` present in ``cfg``, then the
    dataset file and the evaluation env of ``cfg.data`` / ``cfg.eval``."""
    missing = sorted(OmegaConf.missing_keys(cfg))
    if missing:
        raise ConfigError(
            f"config value {missing[0]} is not set — pass {missing[0]}=<value> on the command "
            "line (or pick a task config with --config-name)."
        )
    for key in CONFIG_RULES:
        node = OmegaConf.select(cfg, key, default=_ABSENT, throw_on_missing=False)
        if node is not _ABSENT:
            check_value(key, node)
    if "data" in cfg and "task" in cfg:
        check_dataset(cfg.data, cfg.task)
        check_eval_env(cfg)
    if cfg.get("world_model") is not None and "num_members" in cfg.world_model:
        wm = cfg.world_model
        if wm.num_elites > wm.num_members:
            raise ConfigError(
                f"world_model.num_elites ({wm.num_elites}) must be <= world_model.num_members "
                f"({wm.num_members})."
            )


_ABSENT = object()
