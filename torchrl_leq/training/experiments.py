"""Experiment runners behind the example scripts: Algorithm 1 for model-based losses (LEQ and
friends) and a model-free runner for TorchRL's IQL / CQL and BC on the same data, reward
transform and evaluation.

Example:
    >>> from omegaconf import OmegaConf
    >>> cfg = OmegaConf.load("examples/config/leq_pointmaze.yaml")  # doctest: +SKIP
    >>> run_model_based(prepare_config(cfg, smoke=True))  # doctest: +SKIP
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf
from tensordict.nn import TensorDictModuleBase
from torchrl.objectives import SoftUpdate

from torchrl_leq.envs.antmaze import termination_from_config
from torchrl_leq.envs.termination import get_termination_fn
from torchrl_leq.tasks import POINTMAZE_TASKS

from .builders import (
    OfflineData,
    make_expansion_hook,
    make_leq_batch_sampler,
    make_leq_loss,
    make_leq_networks,
    make_leq_optimizers,
    make_model_env,
    make_model_start_buffer,
    make_offline_data,
    make_world_model,
    pretrain_bc,
    pretrain_fqe,
)
from .evaluation import evaluate
from .loggers import make_logger
from .trainer import OfflineTrainer, PeriodicHook

__all__ = [
    "prepare_config",
    "check_config",
    "seed_everything",
    "make_evaluator",
    "run_model_based",
    "run_model_free",
    "LossComponents",
    "MODEL_BASED_LOSSES",
]


def prepare_config(cfg: DictConfig, *, smoke: bool | None = None, cli_overrides=()) -> DictConfig:
    """Apply ``smoke_overrides`` when ``smoke`` (then re-apply the command-line overrides, so
    they win), drop the ``smoke_overrides`` node and validate."""
    cfg = OmegaConf.create(OmegaConf.to_container(cfg, resolve=True))
    smoke = bool(cfg.get("smoke", False)) if smoke is None else smoke
    if smoke and "smoke_overrides" in cfg:
        cfg = OmegaConf.merge(cfg, cfg.smoke_overrides)
        cli = [o for o in cli_overrides if not o.lstrip("+~").startswith("smoke=")]
        if cli:
            cfg = OmegaConf.merge(cfg, OmegaConf.from_dotlist([o.lstrip("+") for o in cli]))
    cfg.smoke = smoke
    if "smoke_overrides" in cfg:
        del cfg["smoke_overrides"]
    check_config(cfg)
    return cfg


def _check_range(
    name: str, value: Any, lo: float, hi: float, *, open_lo=False, open_hi=False
) -> None:
    if value is None:
        return
    ok = (value > lo if open_lo else value >= lo) and (value < hi if open_hi else value <= hi)
    if not ok:
        lo_b, hi_b = "(" if open_lo else "[", ")" if open_hi else "]"
        raise ValueError(f"{name} must lie in {lo_b}{lo}, {hi}{hi_b}, got {value}.")


def check_config(cfg: DictConfig) -> None:
    """Fail fast, before any data or model work, on invalid tasks and hyperparameters."""
    task = cfg.get("task")
    source = cfg.get("data", {}).get("source")
    if source == "pointmaze" and task not in POINTMAZE_TASKS:
        raise ValueError(f"Unknown point-maze task {task!r}; known: {sorted(POINTMAZE_TASKS)}")
    if cfg.get("algo") in MODEL_BASED_LOSSES:
        get_termination_fn(task)  # raises a ValueError listing the known tasks
    loss = cfg.get("loss", {})
    _check_range("loss.tau", loss.get("tau"), 0.0, 1.0, open_lo=True, open_hi=True)
    _check_range("loss.actor_tau", loss.get("actor_tau"), 0.0, 1.0, open_lo=True, open_hi=True)
    _check_range("loss.env_tau", loss.get("env_tau"), 0.0, 1.0, open_lo=True, open_hi=True)
    _check_range("loss.expectile", loss.get("expectile"), 0.0, 1.0, open_lo=True, open_hi=True)
    _check_range("loss.lmbda", loss.get("lmbda"), 0.0, 1.0)
    _check_range("loss.gamma", loss.get("gamma"), 0.0, 1.0)
    _check_range("loss.beta", loss.get("beta"), 0.0, 1.0)
    horizon = loss.get("horizon")
    if horizon is not None and (not isinstance(horizon, int) or horizon < 1):
        raise ValueError(f"loss.horizon must be an integer >= 1, got {horizon!r}.")
    train = cfg.get("train", {})
    for key in ("total_steps", "eval_every", "eval_episodes", "final_eval_episodes"):
        value = train.get(key)
        if value is not None and value < (0 if key == "total_steps" else 1):
            raise ValueError(f"train.{key} must be positive, got {value}.")


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def make_evaluator(
    task: str, actor: TensorDictModuleBase, cfg: Any
) -> Callable[[int, int], dict[str, Any]]:
    """``(episodes, seed) -> evaluate(...)`` in the real env: the point-maze evaluation env, or
    ``cfg.env_id`` (a gymnasium id) with the D4RL-style reference scores of ``task``."""
    env_id = cfg.get("env_id") if cfg is not None else None
    num_envs = int(cfg.get("num_envs", 10)) if cfg is not None else 10
    if task in POINTMAZE_TASKS and env_id is None:
        return lambda episodes, seed: evaluate(actor, task, episodes, seed, num_envs=num_envs)
    if env_id is None:
        raise ValueError(
            f"eval.env_id must name a gymnasium env to evaluate task {task!r} "
            "(e.g. Hopper-v5 for hopper datasets)."
        )
    import gymnasium as gym

    def env_fn():
        return gym.make(env_id, **dict(cfg.get("env_kwargs", {}) or {}))

    return lambda episodes, seed: evaluate(
        actor, env_fn, episodes, seed, task=task, num_envs=num_envs
    )


def _run_dir(cfg: DictConfig) -> Path:
    if cfg.get("run_dir"):
        return Path(cfg.run_dir)
    try:
        from hydra.core.hydra_config import HydraConfig

        return Path(HydraConfig.get().runtime.output_dir)
    except (ImportError, ValueError):
        return Path("outputs") / str(cfg.get("algo", "run"))


@dataclass
class LossComponents:
    """What a model-based loss plugs into Algorithm 1's loop."""

    loss: torch.nn.Module
    optimizers: dict[str, torch.optim.Optimizer]
    sample_batch: Callable[[], Any]
    eval_actor: TensorDictModuleBase
    schedulers: dict[str, Any] = field(default_factory=dict)
    target_updater: Any = None
    hooks: list[PeriodicHook] = field(default_factory=list)
    stateful: dict[str, Any] = field(default_factory=dict)
    loss_keys: tuple[str, ...] | None = None


def build_leq(cfg: DictConfig, data: OfflineData, model_env: Any, resuming: bool) -> LossComponents:
    """LEQ: networks (BC/FQE-pretrained when ``pretrain.enabled``), loss, optimisers, EMA,
    D_model with its expansion hook."""
    actor, critic = make_leq_networks(cfg.network, data)
    pre = cfg.get("pretrain", {})
    if pre.get("enabled", False) and not resuming:
        progress = bool(cfg.get("progress", True))
        pretrain_bc(
            actor,
            data.buffer,
            int(pre.bc_steps),
            lr=float(pre.get("bc_lr", 3e-4)),
            progress=progress,
        )
        pretrain_fqe(
            actor,
            critic,
            data.buffer,
            int(pre.fqe_steps),
            gamma=float(cfg.loss.gamma),
            lr=float(cfg.optim.critic_lr),
            progress=progress,
        )
    loss = make_leq_loss(cfg.loss, actor, critic, model_env)
    total = int(cfg.train.total_steps)
    optimizers, schedulers = make_leq_optimizers(cfg.optim, loss, total)
    d_model = make_model_start_buffer(cfg.expansion, int(cfg.optim.batch_size_model))
    expand = make_expansion_hook(cfg.expansion, d_model, data.buffer, model_env, actor)
    every = int(cfg.expansion.every) if cfg.expansion.get("enabled", True) else max(total, 1) + 1
    return LossComponents(
        loss=loss,
        optimizers=optimizers,
        schedulers=schedulers,
        sample_batch=make_leq_batch_sampler(data.buffer, d_model),
        eval_actor=actor,
        target_updater=SoftUpdate(loss, eps=float(cfg.optim.ema_decay)),
        hooks=[PeriodicHook(every, expand, "expand_d_model")],
        stateful={"d_model": d_model},
    )


def _build_combo(*args: Any) -> LossComponents:
    from .combo import build_combo

    return build_combo(*args)


MODEL_BASED_LOSSES: dict[str, Callable[..., LossComponents]] = {
    "leq": build_leq,
    "combo": _build_combo,
}


def _make_trainer(
    cfg: DictConfig, comp: LossComponents, task: str, modules: dict
) -> OfflineTrainer:
    run_dir = _run_dir(cfg)
    logger = make_logger(
        cfg.logger.get("backend", "csv"), run_dir / "logs", cfg.logger.get("exp_name", cfg.algo)
    )
    train = cfg.train
    return OfflineTrainer(
        loss=comp.loss,
        loss_keys=comp.loss_keys,
        modules=modules,
        optimizers=comp.optimizers,
        schedulers=comp.schedulers,
        sample_batch=comp.sample_batch,
        evaluate=make_evaluator(task, comp.eval_actor, cfg.get("eval")),
        run_dir=run_dir,
        total_steps=int(train.total_steps),
        eval_every=int(train.eval_every),
        eval_episodes=int(train.eval_episodes),
        final_eval_episodes=int(train.final_eval_episodes),
        log_every=int(train.get("log_every", 1000)),
        checkpoint_every=int(train.get("checkpoint_every", 0)),
        target_updater=comp.target_updater,
        hooks=comp.hooks,
        stateful=comp.stateful,
        logger=logger,
        seed=int(cfg.seed),
        progress=bool(cfg.get("progress", True)),
        stop_after_steps=train.get("stop_after_steps"),
    )


def run_model_based(cfg: DictConfig) -> dict[str, Any]:
    """Algorithm 1 for ``cfg.algo`` in :data:`MODEL_BASED_LOSSES`: D_env → world model (trained
    once per dataset, cached) → model env with the true termination → loss → training loop."""
    seed_everything(int(cfg.seed))
    build = MODEL_BASED_LOSSES.get(cfg.algo)
    if build is None:
        raise ValueError(f"algo must be one of {sorted(MODEL_BASED_LOSSES)}, got {cfg.algo!r}.")
    data = make_offline_data(cfg.data, batch_size=int(cfg.optim.batch_size_env))
    wm_seed = cfg.world_model.get("seed")  # null: one model per run seed (as in the paper)
    ensemble = make_world_model(
        cfg.world_model,
        data,
        seed=int(cfg.seed if wm_seed is None else wm_seed),
        progress=bool(cfg.get("progress", True)),
    )
    model_env = make_model_env(ensemble, termination_from_config(cfg.get("termination"), cfg.task))
    seed_everything(int(cfg.seed) + 1)  # the same RNG stream whether data/model came from cache
    resuming = bool(cfg.get("resume", False)) and (_run_dir(cfg) / "checkpoint.pt").exists()
    comp = build(cfg, data, model_env, resuming)
    trainer = _make_trainer(cfg, comp, cfg.task, {"loss": comp.loss})
    if cfg.get("resume", False):
        trainer.resume()
    return trainer.train()


def run_model_free(cfg: DictConfig) -> dict[str, Any]:
    """TorchRL's IQL / CQL or our BC on the same data, reward transform and evaluation."""
    from .baselines import build_baseline

    seed_everything(int(cfg.seed))
    data = make_offline_data(cfg.data, batch_size=int(cfg.optim.batch_size_env))
    comp = build_baseline(cfg, data)
    trainer = _make_trainer(cfg, comp, cfg.task, {"loss": comp.loss})
    if cfg.get("resume", False):
        trainer.resume()
    return trainer.train()
