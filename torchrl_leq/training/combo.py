"""COMBO plugged into Algorithm 1's runner: same data, world model, model env and trainer as
LEQ; only the loss, its networks and what goes into the model replay buffer differ.

Registered as ``MODEL_BASED_LOSSES["combo"]``: ``algo=combo`` in any model-based config.

Example:
    >>> comp = build_combo(cfg, data, model_env, resuming=False)  # doctest: +SKIP
"""

from __future__ import annotations

from typing import Any

import torch
from tensordict import TensorDict
from torchrl.objectives import SoftUpdate

from torchrl_leq.data import (
    make_model_transition_buffer,
    rollout_model_transitions,
    sample_mixed_batch,
)
from torchrl_leq.modules import make_combo_actor, make_combo_critic
from torchrl_leq.objectives import COMBOLoss

from .builders import OfflineData, input_stats
from .experiments import LossComponents
from .trainer import PeriodicHook

__all__ = ["build_combo"]


def build_combo(cfg: Any, data: OfflineData, model_env: Any, resuming: bool) -> LossComponents:
    """COMBO: SAC actor + twin critics, conservative regulariser (``loss.beta``), real/model
    mix ``loss.real_ratio``; every ``rollout.every`` steps ``rollout.num_starts`` D_env states
    are rolled ``rollout.length`` model steps and the transitions appended to the model buffer."""
    obs, act = data.transitions["observation"], data.transitions["action"]
    obs_loc, obs_scale = input_stats(obs)
    in_loc, in_scale = input_stats(torch.cat([obs, act], -1))
    num_cells = tuple(cfg.network.num_cells)
    actor = make_combo_actor(
        data.observation_dim, data.action_dim, num_cells, obs_loc=obs_loc, obs_scale=obs_scale
    )
    critic = make_combo_critic(
        data.observation_dim, data.action_dim, num_cells, input_loc=in_loc, input_scale=in_scale
    )
    lc = cfg.loss
    loss = COMBOLoss(
        actor,
        critic,
        beta=float(lc.get("beta", 1.0)),
        real_ratio=float(lc.get("real_ratio", 0.5)),
        num_random=int(lc.get("num_random", 10)),
        gamma=float(lc.get("gamma", 0.99)),
        validate_inputs=False,
    )
    optim = cfg.optim
    optimizers = {
        "actor": torch.optim.Adam(
            [p for p in loss.actor_network_params.values(True, True) if p.requires_grad],
            lr=float(optim.actor_lr),
        ),
        "critic": torch.optim.Adam(
            [p for p in loss.qvalue_network_params.values(True, True) if p.requires_grad],
            lr=float(optim.critic_lr),
        ),
        "alpha": torch.optim.Adam([loss.log_alpha], lr=float(optim.get("alpha_lr", 1e-4))),
    }
    rc = cfg.rollout
    model_buffer = make_model_transition_buffer(int(rc.get("capacity", 1_000_000)))
    num_starts, length = int(rc.num_starts), int(rc.length)

    def fill(step: int) -> None:
        start = TensorDict(
            {"observation": data.buffer.sample(num_starts)["observation"]}, [num_starts]
        )
        model_buffer.extend(rollout_model_transitions(model_env, loss.actor_network, start, length))

    batch_size, ratio = int(optim.batch_size_env), float(lc.get("real_ratio", 0.5))
    return LossComponents(
        loss=loss,
        optimizers=optimizers,
        sample_batch=lambda: sample_mixed_batch(data.buffer, model_buffer, batch_size, ratio),
        eval_actor=actor,
        target_updater=SoftUpdate(loss, eps=float(optim.ema_decay)),
        hooks=[PeriodicHook(int(rc.every), fill, "model_rollouts")],
        stateful={"model_transitions": model_buffer},
    )
