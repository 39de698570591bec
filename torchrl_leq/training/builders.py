"""``make_*`` factories shared by the example scripts, tests and benchmarks.

The examples read like Algorithm 1 because all the assembly lives here: data → world model →
model env → actor/critic → loss → optimisers → trainer. Every factory takes plain values or a
config node (hydra ``DictConfig``/mapping) of the example YAMLs.

Example:
    >>> data = make_offline_data({"source": "pointmaze", "task": "pointmaze-umaze",
    ...                           "steps": 5000, "reward_transform": "maze"})  # doctest: +SKIP
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from tensordict import TensorDict, TensorDictBase
from tensordict.nn import TensorDictModule
from torchrl.data import TensorDictReplayBuffer
from tqdm.auto import tqdm

from torchrl_leq.data import (
    apply_reward_transform,
    data_root,
    expand_model_buffer,
    make_model_buffer,
    make_replay_buffer,
    read_d4rl_hdf5,
    read_minari,
    read_pointmaze_dataset,
)
from torchrl_leq.envs import LEQModelEnv
from torchrl_leq.modules import (
    ProbabilisticEnsemble,
    make_exploration_policy,
    make_leq_actor,
    make_leq_critic,
)
from torchrl_leq.objectives import LEQLoss
from torchrl_leq.objectives.pretrain import BCLoss, FQELoss
from torchrl_leq.objectives.world_model import (
    load_world_model,
    save_world_model,
    train_world_model,
)
from torchrl_leq.tasks import POINTMAZE_TASKS

__all__ = [
    "OfflineData",
    "make_offline_data",
    "make_world_model",
    "make_model_env",
    "make_leq_networks",
    "make_leq_loss",
    "make_leq_optimizers",
    "make_expansion_hook",
    "make_leq_batch_sampler",
    "pretrain_bc",
    "pretrain_fqe",
    "input_stats",
]

DATA_SOURCES = ("pointmaze", "d4rl_hdf5", "minari")


def _get(cfg: Any, key: str, default: Any = None) -> Any:
    if cfg is None:
        return default
    if isinstance(cfg, Mapping):
        return cfg.get(key, default)
    return getattr(cfg, key, default)


@dataclass
class OfflineData:
    """D_env: all transitions (reward-transformed) and a replay buffer sampling them."""

    task: str
    transitions: TensorDict
    buffer: TensorDictReplayBuffer
    description: str

    @property
    def observation_dim(self) -> int:
        return self.transitions["observation"].shape[-1]

    @property
    def action_dim(self) -> int:
        return self.transitions["action"].shape[-1]


def make_offline_data(cfg: Any, *, batch_size: int = 256) -> OfflineData:
    """Load D_env from ``cfg.source``: ``pointmaze`` (generated on first use: ``task``,
    ``steps``, ``seed``), ``d4rl_hdf5`` (``path``) or ``minari`` (``dataset_id``, ``root``);
    apply ``cfg.reward_transform`` (``maze``/``antmaze`` r-1, ``locomotion``, ``none``)."""
    source, task = _get(cfg, "source"), _get(cfg, "task")
    if source not in DATA_SOURCES:
        raise ValueError(f"data.source must be one of {DATA_SOURCES}, got {source!r}.")
    if source == "pointmaze":
        if task not in POINTMAZE_TASKS:
            raise ValueError(f"Unknown point-maze task {task!r}; known: {sorted(POINTMAZE_TASKS)}")
        steps, seed = int(_get(cfg, "steps", 1_000_000)), int(_get(cfg, "seed", 0))
        transitions = read_pointmaze_dataset(task, steps, seed, _get(cfg, "root"))
        description = f"{task}/diverse-s{seed}-n{steps}"
    elif source == "d4rl_hdf5":
        path = _get(cfg, "path")
        if not path:
            raise ValueError(
                "data.path must point to a D4RL-format HDF5 file for source=d4rl_hdf5."
            )
        transitions = read_d4rl_hdf5(os.path.expanduser(str(path)))
        description = str(path)
    else:
        dataset_id = _get(cfg, "dataset_id")
        if not dataset_id:
            raise ValueError("data.dataset_id must name a local Minari dataset for source=minari.")
        transitions = read_minari(
            dataset_id, root=_get(cfg, "root"), observation_key=_get(cfg, "observation_key")
        )
        description = str(dataset_id)
    kind = _get(cfg, "reward_transform", "none")
    if kind not in (None, "none"):
        transitions = apply_reward_transform(kind, transitions)
        description += f"+{kind}"
    buffer = make_replay_buffer(transitions, batch_size=batch_size)
    return OfflineData(str(task), transitions, buffer, description)


def input_stats(x: torch.Tensor, eps: float = 1e-3) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-feature mean and std (``+ eps``) of a ``[N, F]`` tensor."""
    x = x.double()
    return x.mean(0).float(), (x.std(0) + eps).float()


def _cache_key(payload: Mapping[str, Any]) -> str:
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[
        :16
    ]


def make_world_model(
    cfg: Any,
    data: OfflineData,
    *,
    seed: int = 0,
    cache_dir: str | os.PathLike | None = None,
    progress: bool = True,
) -> ProbabilisticEnsemble:
    """Train the ensemble on D_env (Gaussian NLL, early stopping, elites), or load it from the
    cache (``<data root>/world_models/<hash of data + config + seed>.pt``) when ``cfg.cache``."""
    params = {
        "num_members": int(_get(cfg, "num_members", 7)),
        "num_elites": int(_get(cfg, "num_elites", 5)),
        "hidden_dims": list(_get(cfg, "hidden_dims", [200, 200, 200, 200])),
    }
    train_kwargs = {
        "batch_size": int(_get(cfg, "batch_size", 256)),
        "lr": float(_get(cfg, "lr", 1e-3)),
        "max_epochs": _get(cfg, "max_epochs"),
        "patience": int(_get(cfg, "patience", 5)),
    }
    cache_dir = Path(cache_dir) if cache_dir is not None else data_root() / "world_models"
    key = _cache_key(
        {
            "data": data.description,
            "n": len(data.transitions),
            **params,
            **train_kwargs,
            "seed": seed,
        }
    )
    path = cache_dir / f"{key}.pt"
    if _get(cfg, "cache", True) and path.exists():
        return load_world_model(path)
    td = data.transitions
    ensemble = ProbabilisticEnsemble(data.observation_dim, data.action_dim, **params)
    train_world_model(
        ensemble,
        td["observation"],
        td["action"],
        td["next", "observation"],
        td["next", "reward"],
        seed=seed,
        progress=progress,
        **train_kwargs,
    )
    if _get(cfg, "cache", True):
        save_world_model(path, ensemble)
    return ensemble


def make_model_env(ensemble: ProbabilisticEnsemble, termination: Any) -> LEQModelEnv:
    """The ensemble as a TorchRL env with the task's true termination function (a task name
    for :func:`~torchrl_leq.envs.get_termination_fn`, or a callable)."""
    return LEQModelEnv(ensemble, termination)


def make_leq_networks(cfg: Any, data: OfflineData) -> tuple[TensorDictModule, TensorDictModule]:
    """Actor and critic with input statistics fitted on D_env (``num_cells``, ``layer_norm``)."""
    num_cells = tuple(_get(cfg, "num_cells", (256, 256, 256)))
    layer_norm = bool(_get(cfg, "layer_norm", True))
    obs, act = data.transitions["observation"], data.transitions["action"]
    obs_loc, obs_scale = input_stats(obs)
    in_loc, in_scale = input_stats(torch.cat([obs, act], -1))
    actor = make_leq_actor(
        data.observation_dim,
        data.action_dim,
        num_cells=num_cells,
        layer_norm=layer_norm,
        obs_loc=obs_loc,
        obs_scale=obs_scale,
    )
    critic = make_leq_critic(
        data.observation_dim,
        data.action_dim,
        num_cells=num_cells,
        layer_norm=layer_norm,
        input_loc=in_loc,
        input_scale=in_scale,
    )
    return actor, critic


LOSS_KEYS = (
    "horizon",
    "tau",
    "actor_tau",
    "env_tau",
    "beta",
    "ema_weight",
    "gamma",
    "lmbda",
    "include_current",
    "actor_gradient",
    "ema_on_model",
)


def make_leq_loss(
    cfg: Any, actor: TensorDictModule, critic: TensorDictModule, model_env: LEQModelEnv
) -> LEQLoss:
    """``LEQLoss`` from a config node holding any of its keyword arguments."""
    kwargs = {k: _get(cfg, k) for k in LOSS_KEYS if _get(cfg, k) is not None}
    kwargs["validate_inputs"] = bool(_get(cfg, "validate_inputs", False))
    return LEQLoss(actor, critic, model_env, **kwargs)


def make_adam(params: list[torch.Tensor], lr: float) -> torch.optim.Adam:
    """Adam, fused (one kernel for all parameters) where the parameters' device supports it.

    Same update rule as the default per-tensor loop; on this CPU the fused step is 3× faster
    (0.39 vs 1.18 ms for LEQ's actor + critic).

    Example:
        >>> opt = make_adam([torch.nn.Parameter(torch.zeros(3))], lr=1e-3)
        >>> opt.defaults["fused"]
        True
    """
    fused = all(p.is_floating_point() and p.device.type in ("cpu", "cuda") for p in params)
    return torch.optim.Adam(params, lr=lr, fused=fused or None)


def make_leq_optimizers(
    cfg: Any, loss: LEQLoss, total_steps: int
) -> tuple[dict[str, torch.optim.Optimizer], dict[str, Any]]:
    """Adam for actor (``actor_lr``, cosine decay to 0 over ``total_steps`` when
    ``cosine_actor_lr``) and critic (``critic_lr``), as in Table 9 / the released code."""
    actor_params = [p for p in loss.actor_network_params.values(True, True) if p.requires_grad]
    critic_params = [p for p in loss.qvalue_network_params.values(True, True) if p.requires_grad]
    optimizers = {
        "actor": make_adam(actor_params, lr=float(_get(cfg, "actor_lr", 3e-5))),
        "critic": make_adam(critic_params, lr=float(_get(cfg, "critic_lr", 1e-4))),
    }
    schedulers: dict[str, Any] = {}
    if _get(cfg, "cosine_actor_lr", True) and total_steps > 0:
        schedulers["actor"] = torch.optim.lr_scheduler.CosineAnnealingLR(
            optimizers["actor"], T_max=max(total_steps, 1)
        )
    return optimizers, schedulers


def make_leq_batch_sampler(
    env_buffer: TensorDictReplayBuffer, model_buffer: TensorDictReplayBuffer
) -> Callable[[], TensorDictBase]:
    """``() -> TensorDict(env=D_env batch, model=D_model batch)``, LEQLoss's input layout."""

    def sample() -> TensorDictBase:
        return TensorDict({"env": env_buffer.sample(), "model": model_buffer.sample()}, [])

    return sample


def make_expansion_hook(
    cfg: Any,
    model_buffer: TensorDictReplayBuffer,
    env_buffer: TensorDictReplayBuffer,
    model_env: LEQModelEnv,
    actor: TensorDictModule,
) -> Callable[[int], Any]:
    """Algorithm 1 lines 7-11: every call adds ``num_starts × rollout_length`` model states
    (exploration noise ``noise`` before the actor's tanh). With ``enabled: false`` D_model is
    filled once with D_env states (the "no expansion" ablation)."""
    policy = make_exploration_policy(actor, float(_get(cfg, "noise", 1.0)))
    num_starts = int(_get(cfg, "num_starts", 50_000))
    rollout_length = int(_get(cfg, "rollout_length", 5))
    enabled = bool(_get(cfg, "enabled", True))

    def expand(step: int) -> None:
        if enabled:
            expand_model_buffer(
                model_buffer,
                env_buffer,
                model_env,
                policy,
                num_starts=num_starts,
                rollout_length=rollout_length,
            )
        elif step == 0:
            model_buffer.extend(env_buffer[:].select("observation"))

    return expand


def _loop(
    loss: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    sample: Callable[[], TensorDictBase],
    steps: int,
    key: str,
    desc: str,
    progress: bool,
    after_step: Callable[[], None] | None = None,
) -> float:
    last = math.nan
    for _ in tqdm(range(steps), desc=desc, disable=not progress):
        out = loss(sample())
        optimizer.zero_grad(set_to_none=True)
        out[key].backward()
        optimizer.step()
        if after_step is not None:
            after_step()
        last = out[key].detach()
    return float(last) if steps else last


def pretrain_bc(
    actor: TensorDictModule,
    env_buffer: TensorDictReplayBuffer,
    steps: int,
    *,
    lr: float = 3e-4,
    progress: bool = True,
) -> float:
    """Behaviour-clone ``actor`` on D_env for ``steps`` Adam steps; returns the last loss."""
    loss = BCLoss(actor)
    opt = torch.optim.Adam([p for p in loss.parameters() if p.requires_grad], lr=lr)
    return _loop(loss, opt, env_buffer.sample, steps, "loss_actor", "BC pretrain", progress)


def pretrain_fqe(
    actor: TensorDictModule,
    critic: TensorDictModule,
    env_buffer: TensorDictReplayBuffer,
    steps: int,
    *,
    gamma: float = 0.997,
    lr: float = 1e-4,
    ema_decay: float = 0.995,
    progress: bool = True,
) -> float:
    """FQE (Algorithm 2) of ``actor`` into ``critic`` for ``steps`` Adam steps."""
    from torchrl.objectives import SoftUpdate

    loss = FQELoss(actor, critic, gamma=gamma)
    updater = SoftUpdate(loss, eps=ema_decay)
    params = [p for p in loss.qvalue_network_params.values(True, True) if p.requires_grad]
    opt = torch.optim.Adam(params, lr=lr)
    return _loop(
        loss, opt, env_buffer.sample, steps, "loss_qvalue", "FQE pretrain", progress, updater.step
    )


def make_model_start_buffer(cfg: Any, batch_size: int) -> TensorDictReplayBuffer:
    """D_model (FIFO, ``capacity``)."""
    return make_model_buffer(capacity=int(_get(cfg, "capacity", 1_250_000)), batch_size=batch_size)
