"""Model-free baselines on exactly LEQ's data pipeline: TorchRL's ``IQLLoss`` and ``CQLLoss``
(tanh-Gaussian actor, twin critics) and deterministic behaviour cloning.

Example:
    >>> comp = build_baseline(cfg, data)  # doctest: +SKIP
"""

from __future__ import annotations

from typing import Any

import torch
from tensordict.nn import NormalParamExtractor, TensorDictModule
from torch import nn
from torchrl.data import Bounded
from torchrl.modules import MLP, ProbabilisticActor, TanhNormal
from torchrl.objectives import CQLLoss, IQLLoss, SoftUpdate

from torchrl_leq.modules.actor_critic import InputScaler
from torchrl_leq.objectives.pretrain import BCLoss

from .builders import OfflineData, input_stats, make_leq_networks
from .experiments import LossComponents

__all__ = ["build_baseline", "make_tanh_gaussian_actor", "make_q_network", "make_value_network"]

BASELINES = ("iql", "cql", "bc")


def _mlp(in_dim: int, out_dim: int, num_cells, scaler: InputScaler) -> nn.Module:
    return nn.Sequential(
        scaler,
        MLP(
            in_features=in_dim,
            out_features=out_dim,
            num_cells=list(num_cells),
            activation_class=nn.ReLU,
        ),
    )


class _Concat(nn.Module):
    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, observation: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        return self.net(torch.cat([observation, action], -1))


def make_tanh_gaussian_actor(data: OfflineData, num_cells=(256, 256)) -> ProbabilisticActor:
    """``observation -> TanhNormal(loc, scale)`` over ``[-1, 1]^A`` (mode when deterministic)."""
    loc, scale = input_stats(data.transitions["observation"])
    net = nn.Sequential(
        _mlp(
            data.observation_dim,
            2 * data.action_dim,
            num_cells,
            InputScaler(loc, scale, use_symlog=False),
        ),
        NormalParamExtractor(scale_mapping="biased_softplus_1.0"),
    )
    module = TensorDictModule(net, in_keys=["observation"], out_keys=["loc", "scale"])
    spec = Bounded(-1.0, 1.0, (data.action_dim,))
    return ProbabilisticActor(
        module,
        in_keys=["loc", "scale"],
        spec=spec,
        distribution_class=TanhNormal,
        distribution_kwargs={"low": -1.0, "high": 1.0},
        return_log_prob=False,
    )


def make_q_network(data: OfflineData, num_cells=(256, 256)) -> TensorDictModule:
    obs, act = data.transitions["observation"], data.transitions["action"]
    loc, scale = input_stats(torch.cat([obs, act], -1))
    net = _Concat(
        _mlp(obs.shape[-1] + act.shape[-1], 1, num_cells, InputScaler(loc, scale, use_symlog=False))
    )
    return TensorDictModule(net, in_keys=["observation", "action"], out_keys=["state_action_value"])


def make_value_network(data: OfflineData, num_cells=(256, 256)) -> TensorDictModule:
    loc, scale = input_stats(data.transitions["observation"])
    net = _mlp(data.observation_dim, 1, num_cells, InputScaler(loc, scale, use_symlog=False))
    return TensorDictModule(net, in_keys=["observation"], out_keys=["state_value"])


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
    actor = make_tanh_gaussian_actor(data, num_cells)
    qvalue = make_q_network(data, num_cells)
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
