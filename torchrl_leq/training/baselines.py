"""Model-free baselines on exactly LEQ's data pipeline: TorchRL's ``IQLLoss`` and ``CQLLoss``
(tanh-Gaussian actor, twin critics) and deterministic behaviour cloning.

Example:
    >>> comp = build_baseline(cfg, data)  # doctest: +SKIP
"""

from __future__ import annotations

from typing import Any

import torch
from tensordict.nn import TensorDictModule
from torch import nn
from torchrl.objectives import CQLLoss, IQLLoss, SoftUpdate

from torchrl_leq.modules import make_combo_actor, make_combo_critic
from torchrl_leq.modules.actor_critic import InputScaler, _mlp
from torchrl_leq.objectives.pretrain import BCLoss

from .builders import OfflineData, input_stats, make_leq_networks
from .experiments import LossComponents

__all__ = ["build_baseline", "make_sac_networks", "make_value_network"]

BASELINES = ("iql", "cql", "bc")


def make_value_network(data: OfflineData, num_cells=(256, 256)) -> TensorDictModule:
    """``observation -> state_value`` (IQL's V), inputs standardised on D_env."""
    loc, scale = input_stats(data.transitions["observation"])
    net = nn.Sequential(
        InputScaler(loc, scale, use_symlog=False), _mlp(data.observation_dim, 1, num_cells, False)
    )
    return TensorDictModule(net, in_keys=["observation"], out_keys=["state_value"])


def make_sac_networks(data: OfflineData, num_cells=(256, 256)):
    """TorchRL-style tanh-Gaussian actor and Q-network, inputs standardised on D_env."""
    obs, act = data.transitions["observation"], data.transitions["action"]
    obs_loc, obs_scale = input_stats(obs)
    in_loc, in_scale = input_stats(torch.cat([obs, act], -1))
    actor = make_combo_actor(
        data.observation_dim, data.action_dim, num_cells, obs_loc=obs_loc, obs_scale=obs_scale
    )
    critic = make_combo_critic(
        data.observation_dim, data.action_dim, num_cells, input_loc=in_loc, input_scale=in_scale
    )
    return actor, critic


def build_baseline(cfg: Any, data: OfflineData) -> LossComponents:
    """IQL (expectile, temperature), CQL (min-Q weight, Lagrange off) or BC, from ``cfg.loss``."""
    algo, loss_cfg, optim = cfg.algo, cfg.loss, cfg.optim
    num_cells = tuple(cfg.network.num_cells)
    gamma = float(loss_cfg.get("gamma", 0.99))
    if algo == "bc":
        actor, _ = make_leq_networks(cfg.network, data)
        loss = BCLoss(actor)
        params = [p for p in loss.parameters() if p.requires_grad]
        return LossComponents(
            loss=loss,
            optimizers={"actor": torch.optim.Adam(params, lr=float(optim.actor_lr))},
            sample_batch=data.buffer.sample,
            eval_actor=actor,
        )
    actor, qvalue = make_sac_networks(data, num_cells)
    loss_keys = None
    if algo == "iql":
        loss = IQLLoss(
            actor,
            qvalue,
            make_value_network(data, num_cells),
            loss_function="l2",
            expectile=float(loss_cfg.get("expectile", 0.7)),
            temperature=float(loss_cfg.get("temperature", 3.0)),
        )
        groups = {
            "actor": ("actor_network_params", optim.actor_lr),
            "critic": ("qvalue_network_params", optim.critic_lr),
            "value": ("value_network_params", optim.critic_lr),
        }
    elif algo == "cql":
        loss = CQLLoss(
            actor,
            qvalue,
            loss_function="l2",
            min_q_weight=float(loss_cfg.get("min_q_weight", 5.0)),
            num_random=int(loss_cfg.get("num_random", 10)),
            with_lagrange=bool(loss_cfg.get("with_lagrange", False)),
            lagrange_thresh=float(loss_cfg.get("lagrange_thresh", 5.0)),
            deterministic_backup=bool(loss_cfg.get("deterministic_backup", False)),
        )
        groups = {
            "actor": ("actor_network_params", optim.actor_lr),
            "critic": ("qvalue_network_params", optim.critic_lr),
        }
        loss_keys = ("loss_actor", "loss_qvalue", "loss_cql", "loss_alpha", "loss_alpha_prime")
    else:
        raise ValueError(f"algo must be one of {BASELINES} or a model-based loss, got {algo!r}.")
    loss.make_value_estimator(gamma=gamma)
    optimizers = {
        name: torch.optim.Adam(
            [p for p in getattr(loss, attr).values(True, True) if p.requires_grad], lr=float(lr)
        )
        for name, (attr, lr) in groups.items()
    }
    extra = [p for n, p in loss.named_parameters() if "log_alpha" in n]
    if extra:
        optimizers["alpha"] = torch.optim.Adam(extra, lr=float(optim.get("alpha_lr", 3e-4)))
    return LossComponents(
        loss=loss,
        optimizers=optimizers,
        sample_batch=data.buffer.sample,
        eval_actor=actor,
        target_updater=SoftUpdate(loss, eps=float(optim.ema_decay)),
        loss_keys=loss_keys,
    )
