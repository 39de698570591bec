"""Checks of an example config before any heavy work: unset keys, types and ranges of every
hyperparameter a user sets, the logger backend, the dataset's presence.

A failed check raises a :class:`ConfigError` whose message is one line saying what is wrong and
how to fix it (the examples print it as ``error: ...`` and exit with status 2).

Example:
    >>> from omegaconf import OmegaConf
    >>> check_config(OmegaConf.create({"seed": 0, "train": {"total_steps": "abc"}}))
    Traceback (most recent call last):
    ...
    torchrl_leq.objectives.hyperparameters.ConfigError: train.total_steps must be an integer, got 'abc' — ...
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from omegaconf import DictConfig, ListConfig, OmegaConf

from torchrl_leq.data.pixels import VIEWS
from torchrl_leq.objectives.hyperparameters import (
    NON_NEGATIVE_INT,
    POSITIVE,
    POSITIVE_INT,
    UNIT,
    UNIT_OPEN,
    ConfigError,
    Rule,
    boolean,
    check_hyperparameters,
    choice,
    number,
)

from .datasets import check_data_shapes, check_dataset, check_eval_env
from .run_dir import RunDirectory

__all__ = [
    "ConfigError",
    "check_config",
    "check_value",
    "check_run_dir",
    "CONFIG_RULES",
    "RENDER_RULES",
    "PIXEL_RULES",
]


def widths(key: str, value: Any) -> None:
    """Rule: a non-empty list of positive integers (hidden-layer widths)."""
    if not isinstance(value, (list, tuple, ListConfig)) or len(value) == 0:
        raise ConfigError(
            f"{key} must be a non-empty list of layer widths, got {value!r} — set "
            f"{key}=[256,256]."
        )
    for i, item in enumerate(value):
        POSITIVE_INT(f"{key}[{i}]", item)


def text(key: str, value: Any) -> None:
    """Rule: a non-empty string."""
    if not isinstance(value, str) or not value:
        raise ConfigError(f"{key} must be a non-empty string, got {value!r} — set {key}=<name>.")


def optional_text(key: str, value: Any) -> None:
    """Rule: null or a non-empty string (a path, an id)."""
    if value is not None:
        text(key, value)


def dmc_task(key: str, value: Any) -> None:
    """Rule: null or a DeepMind Control suite task ``<domain>_<task>`` (needs dm_control)."""
    if value is None:
        return
    text(key, value)
    from torchrl_leq.envs.dmc import dmc_tasks

    if value not in dmc_tasks():
        raise ValueError(f"{key}={value!r} is not a DMC suite task: use <domain>_<task>, "
                         "e.g. walker_walk or cheetah_run")


def mapping(key: str, value: Any) -> None:
    """Rule: a mapping (keyword arguments)."""
    if not isinstance(value, (Mapping, DictConfig)):
        raise ConfigError(
            f"{key} must be a mapping of keyword arguments, got {value!r} — set "
            f"{key}={{name: value}} (or {{}})."
        )


def termination(key: str, value: Any) -> None:
    """Rule: null (the task's own termination) or ``{goal: [x, y], radius: r > 0}``."""
    if value is None:
        return
    how = f"set {key}={{goal: [x, y], radius: 0.5}}, or {key}=null for the task's own"
    goal = value.get("goal") if isinstance(value, (Mapping, DictConfig)) else None
    if not isinstance(goal, (list, tuple, ListConfig)) or len(goal) != 2:
        raise ConfigError(f"{key}.goal must be a list [x, y], got {goal!r} — {how}.")
    for i, item in enumerate(goal):
        number(float)(f"{key}.goal[{i}]", item)
    if value.get("radius") is not None:
        POSITIVE(f"{key}.radius", value.get("radius"))


CONFIG_RULES: dict[str, Rule] = {
    "task": text,
    "run_dir": optional_text,
    "termination": termination,
    "network.num_cells": widths,
    "network.layer_norm": boolean,
    "world_model.hidden_dims": widths,
    "data.path": optional_text,
    "data.dataset_id": optional_text,
    "data.env_kwargs": mapping,
    "eval.env_id": optional_text,
    "eval.env_kwargs": mapping,
    "logger.exp_name": text,
    "loss.with_lagrange": boolean,
    "loss.deterministic_backup": boolean,
    "loss.lagrange_thresh": POSITIVE,
    "loss.real_ratio": UNIT,
    "seed": NON_NEGATIVE_INT,
    "smoke": boolean,
    "resume": boolean,
    "progress": boolean,
    "data.steps": number(int, 2, nullable=True),
    "data.seed": NON_NEGATIVE_INT,
    "data.source": choice("pointmaze", "d4rl_hdf5", "minari", "simulator"),
    "data.action_noise": number(float, 0.0),
    "data.waypoint_jitter": UNIT,
    "diagnostics.wall_every": NON_NEGATIVE_INT,
    "diagnostics.num_starts": POSITIVE_INT,
    "data.reward_transform": choice("maze", "antmaze", "locomotion", "none", None),
    "world_model.num_members": POSITIVE_INT,
    "world_model.num_elites": POSITIVE_INT,
    "world_model.batch_size": POSITIVE_INT,
    "world_model.lr": POSITIVE,
    "world_model.max_epochs": number(int, 1, nullable=True),
    "world_model.patience": POSITIVE_INT,
    "world_model.cache": boolean,
    "world_model.seed": number(int, 0, nullable=True),
    "loss.expectile": UNIT_OPEN,
    "loss.gamma": UNIT,
    "loss.temperature": POSITIVE,
    "loss.num_random": POSITIVE_INT,
    "loss.min_q_weight": number(float, 0.0),
    "optim.actor_lr": POSITIVE,
    "optim.critic_lr": POSITIVE,
    "optim.alpha_lr": POSITIVE,
    "optim.ema_decay": UNIT,
    "optim.batch_size_env": POSITIVE_INT,
    "optim.batch_size_model": POSITIVE_INT,
    "optim.cosine_actor_lr": boolean,
    "expansion.enabled": boolean,
    "expansion.every": POSITIVE_INT,
    "expansion.num_starts": POSITIVE_INT,
    "expansion.rollout_length": POSITIVE_INT,
    "expansion.noise": number(float, 0.0),
    "expansion.capacity": POSITIVE_INT,
    "rollout.every": POSITIVE_INT,
    "rollout.num_starts": POSITIVE_INT,
    "rollout.length": POSITIVE_INT,
    "rollout.capacity": POSITIVE_INT,
    "pretrain.enabled": boolean,
    "pretrain.bc_steps": NON_NEGATIVE_INT,
    "pretrain.fqe_steps": NON_NEGATIVE_INT,
    "pretrain.bc_lr": POSITIVE,
    "train.total_steps": NON_NEGATIVE_INT,
    "train.eval_every": POSITIVE_INT,
    "train.eval_episodes": POSITIVE_INT,
    "train.final_eval_episodes": POSITIVE_INT,
    "train.log_every": POSITIVE_INT,
    "train.checkpoint_every": NON_NEGATIVE_INT,
    "train.stop_after_steps": number(int, 1, nullable=True),
    "eval.num_envs": POSITIVE_INT,
    "logger.backend": choice("csv", "tensorboard", "wandb", "none"),
}
"""Config key -> check; a key absent from a config is not checked (not every example has it).
The ``loss.*`` keys here are those of TorchRL's IQL/CQL losses; LEQ's and COMBO's come from their
classes' ``hyperparameter_rules`` (see :func:`check_config`)."""

RENDER_RULES: dict[str, Rule] = {
    "data.ball_radius": POSITIVE,
    "data.view": choice(*VIEWS),
    "data.dmc_env": dmc_task,
}
"""How the rendered point maze is drawn (:class:`~torchrl_leq.data.pixels.PointMazeRenderer`)
and the DMC task a V-D4RL policy is evaluated in, checked before the data are generated; part
of :data:`PIXEL_RULES` and C-LAP's rules."""

PIXEL_RULES: dict[str, Rule] = {
    "data.source": choice("rendered_pointmaze", "vd4rl"),
    "data.episode_length": POSITIVE_INT,
    "data.reward_shift": number(float),
    **RENDER_RULES,
    **{
        f"world_model.{key}": POSITIVE_INT
        for key in ("channels", "deter_dim", "hidden_dim", "groups", "classes", "prior_members",
                    "epochs", "steps_per_epoch", "seq_len")
    },
    "world_model.holdout_fraction": UNIT_OPEN,
    "world_model.termination": choice("continue_head", "none"),
    "train.max_eval_steps": number(int, 1, nullable=True),
}
"""The pixel examples' own keys (``examples/leq_pixels.py``, ``bc_pixels.py``), checked over
:data:`CONFIG_RULES` (``check_config(cfg, ..., PIXEL_RULES)``)."""


def check_value(key: str, value: Any) -> None:
    """Check one config value against :data:`CONFIG_RULES` (unknown keys pass).

    Example:
        >>> check_value("loss.expectile", 0.9)
        >>> check_value("loss.expectile", 2.0)
        Traceback (most recent call last):
        ...
        torchrl_leq.objectives.hyperparameters.ConfigError: loss.expectile must lie in (0.0, 1.0), ...
    """
    rule = CONFIG_RULES.get(key)
    if rule is not None:
        rule(key, value)


def check_config(
    cfg: DictConfig,
    loss_rules: Mapping[str, Rule] | None = None,
    rules: Mapping[str, Rule] | None = None,
) -> None:
    """Every unset (``???``) key, every key of :data:`CONFIG_RULES` (updated with an example's
    own ``rules``, e.g. :data:`PIXEL_RULES`) present in ``cfg``, the ``loss.*`` keys against
    ``loss_rules`` (a loss class's ``hyperparameter_rules``: the checks its constructor applies),
    then the dataset and the evaluation env of ``cfg.data`` / ``cfg.eval``.

    Example:
        >>> from omegaconf import OmegaConf
        >>> from torchrl_leq.objectives import LEQLoss
        >>> check_config(OmegaConf.create({"loss": {"beta": 2.0}}), LEQLoss.hyperparameter_rules)
        Traceback (most recent call last):
        ...
        torchrl_leq.objectives.hyperparameters.ConfigError: loss.beta must lie in [0.0, 1.0], ...
    """
    missing = sorted(OmegaConf.missing_keys(cfg))
    if missing:
        raise ConfigError(
            f"config value {missing[0]} is not set — pass {missing[0]}=<value> on the command "
            "line (or pick a task config with --config-name)."
        )
    for key, rule in {**CONFIG_RULES, **(rules or {})}.items():
        node = OmegaConf.select(cfg, key, default=_ABSENT, throw_on_missing=False)
        if node is not _ABSENT:
            rule(key, node)
    if loss_rules and cfg.get("loss") is not None:
        check_hyperparameters(loss_rules, "loss.", **{k: cfg.loss[k] for k in cfg.loss})
    if cfg.get("world_model") is not None and "num_members" in cfg.world_model:
        wm = cfg.world_model
        if wm.num_elites > wm.num_members:
            raise ConfigError(
                f"world_model.num_elites ({wm.num_elites}) must be <= world_model.num_members "
                f"({wm.num_members}) — lower world_model.num_elites or raise num_members."
            )
    if "data" in cfg and "task" in cfg:
        check_dataset(cfg.data, cfg.task)
        check_eval_env(cfg)
        check_data_shapes(cfg)
    if "resume" in cfg and "train" in cfg and "logger" in cfg:
        check_run_dir(cfg)


def check_run_dir(cfg: DictConfig) -> None:
    """The run directory of ``cfg`` (:func:`~torchrl_leq.training.builders.run_directory`) can
    be claimed as the trainer will claim it: writable, not held by another process, no other
    run there without ``resume=true``, the same config on resume (:meth:`RunDirectory.check`;
    nothing is written but the directory and its lock file)."""
    from .builders import run_directory  # builders imports the heavy stack

    config = OmegaConf.to_container(cfg, resolve=True)
    RunDirectory(run_directory(cfg), config).check(resume=bool(cfg.resume))


_ABSENT = object()
