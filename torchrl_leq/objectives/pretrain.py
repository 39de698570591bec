"""Pretraining losses (Algorithm 1, line 3): BC for the actor, FQE (Algorithm 2) for the critic."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from tensordict import TensorDict, TensorDictBase, TensorDictParams
from tensordict.nn import TensorDictModule
from tensordict.utils import NestedKey
from torchrl.objectives import LossModule, ValueEstimators
from torchrl.objectives.value import ValueEstimatorBase

from ._utils import check_reduction, reduce_loss
from .hyperparameters import NON_NEGATIVE, UNIT, Rule, check_hyperparameters
from .value import NormalizedLambdaReturnEstimator

__all__ = ["BCLoss", "FQELoss"]


def _require(td: TensorDictBase, keys: list[NestedKey], owner: str) -> None:
    present = set(td.keys(include_nested=True, leaves_only=True))
    for key in keys:
        if key not in present:
            raise KeyError(f"{owner}: input is missing the key {key!r}.")


class BCLoss(LossModule):
    """Behaviour cloning of a deterministic actor: ``loss_actor = |π(s) - a|²`` (summed over
    action dims, averaged over the batch).

    Example:
        >>> from tensordict import TensorDict
        >>> from torchrl_leq.modules import make_deterministic_actor
        >>> loss = BCLoss(make_deterministic_actor(3, 2, num_cells=(8,)))
        >>> td = TensorDict({"observation": torch.randn(4, 3), "action": torch.zeros(4, 2)}, [4])
        >>> loss(td)["loss_actor"].shape
        torch.Size([])
    """

    @dataclass
    class _AcceptedKeys:
        """Keys: ``observation`` read by the actor, dataset ``action`` (target)."""

        observation: NestedKey = "observation"
        action: NestedKey = "action"

    tensor_keys: _AcceptedKeys
    default_keys = _AcceptedKeys
    out_keys = ["loss_actor"]
    actor_network: TensorDictModule
    actor_network_params: TensorDictParams
    target_actor_network_params: TensorDictParams

    def __init__(self, actor_network: TensorDictModule, *, reduction: str = "mean") -> None:
        check_reduction(reduction)
        super().__init__()
        self.convert_to_functional(actor_network, "actor_network", create_target_params=False)
        self.reduction = reduction

    def forward(self, tensordict: TensorDictBase) -> TensorDictBase:
        k = self.tensor_keys
        _require(tensordict, [k.observation, k.action], "BCLoss")
        target = tensordict.get(k.action)
        inp = TensorDict({k.observation: tensordict.get(k.observation)}, tensordict.batch_size)
        with self.actor_network_params.to_module(self.actor_network):
            pred = self.actor_network(inp).get(k.action)
        per_sample = (pred - target).pow(2).sum(-1)
        return TensorDict({"loss_actor": reduce_loss(per_sample, self.reduction)}, [])


class FQELoss(LossModule):
    r"""Fitted Q Evaluation of a fixed policy (Algorithm 2) with an EMA regulariser.

    ``loss_qvalue = (Q(s,a) - sg(r + γ (1 - terminated) Q(s', π(s'))))² + ω (Q(s,a) - Q̄(s,a))²``,
    the target using the online critic (as the released code does) and ``Q̄`` the EMA critic
    (``SoftUpdate``). Algorithm 2's printed target drops γ and the termination mask; we keep
    both (the released code does). The target comes from the value estimator (TD0, the only
    store of γ): ``make_value_estimator(gamma=g)`` equals a fresh ``FQELoss(gamma=g)``.

    Example:
        >>> from tensordict import TensorDict
        >>> from torchrl_leq.modules import make_deterministic_actor, make_qvalue_network
        >>> loss = FQELoss(make_deterministic_actor(3, 2, num_cells=(8,)), make_qvalue_network(3, 2, num_cells=(8,)))
        >>> td = TensorDict({"observation": torch.randn(4, 3), "action": torch.zeros(4, 2),
        ...     "next": {"observation": torch.randn(4, 3), "reward": torch.ones(4, 1),
        ...              "terminated": torch.zeros(4, 1, dtype=torch.bool)}}, [4])
        >>> loss(td)["loss_qvalue"].shape
        torch.Size([])
    """

    @dataclass
    class _AcceptedKeys:
        """Keys of the D_env transition layout and the critic output."""

        observation: NestedKey = "observation"
        action: NestedKey = "action"
        reward: NestedKey = "reward"
        terminated: NestedKey = "terminated"
        state_action_value: NestedKey = "state_action_value"

    tensor_keys: _AcceptedKeys
    default_keys = _AcceptedKeys
    out_keys = ["loss_qvalue", "fqe_td_error", "q_mean"]
    hyperparameter_rules: dict[str, Rule] = {"gamma": UNIT, "ema_weight": NON_NEGATIVE}
    default_value_estimator = ValueEstimators.TD0
    actor_network: TensorDictModule
    actor_network_params: TensorDictParams
    target_actor_network_params: TensorDictParams
    qvalue_network: TensorDictModule
    qvalue_network_params: TensorDictParams
    target_qvalue_network_params: TensorDictParams

    def __init__(
        self,
        actor_network: TensorDictModule,
        qvalue_network: TensorDictModule,
        *,
        gamma: float = 0.997,
        ema_weight: float = 1.0,
        reduction: str = "mean",
    ) -> None:
        check_hyperparameters(self.hyperparameter_rules, gamma=gamma, ema_weight=ema_weight)
        check_reduction(reduction)
        super().__init__()
        self.convert_to_functional(actor_network, "actor_network", create_target_params=False)
        self.convert_to_functional(qvalue_network, "qvalue_network", create_target_params=True)
        self.ema_weight, self.reduction = float(ema_weight), reduction
        self.make_value_estimator(gamma=gamma)

    @property
    def gamma(self) -> float:
        """Discount γ, read from the value estimator (its only store)."""
        return self._value_estimator.gamma

    def make_value_estimator(
        self, value_type: ValueEstimators | type | ValueEstimatorBase | None = None, **hyperparams
    ) -> FQELoss:
        """TD0 target ``r + γ (1 - terminated) Q(s', π(s'))``: the normalized λ-return
        estimator with λ = 0 and no 0-step term. ``gamma`` defaults to the current one. An
        estimator instance or class is used as is (TorchRL's base behaviour)."""
        if value_type is None:
            value_type = self.default_value_estimator
        if isinstance(value_type, ValueEstimatorBase) or isinstance(value_type, type):
            return super().make_value_estimator(value_type, **hyperparams)
        if value_type != ValueEstimators.TD0:
            raise NotImplementedError(f"FQELoss supports ValueEstimators.TD0; got {value_type}.")
        hp = {"gamma": 0.997 if self._value_estimator is None else self.gamma}
        hp.update(hyperparams, lmbda=0.0, include_current=False)
        self._value_estimator = NormalizedLambdaReturnEstimator(**hp)
        self.value_type = value_type
        return self

    def _forward_value_estimator_keys(self, **kwargs) -> None:
        # The estimator reads an internal [B, 1] tensordict built with its own keys.
        pass

    def _q(self, obs: torch.Tensor, act: torch.Tensor, params: TensorDictBase) -> torch.Tensor:
        k = self.tensor_keys
        td = TensorDict({k.observation: obs, k.action: act}, obs.shape[:-1])
        with params.to_module(self.qvalue_network):
            return self.qvalue_network(td).get(k.state_action_value)

    def _td0_target(
        self, reward: torch.Tensor, terminated: torch.Tensor, next_q: torch.Tensor
    ) -> torch.Tensor:
        """``r + γ (1 - terminated) Q(s', π(s'))`` ``[B, 1]`` from the value estimator."""
        keys = self._value_estimator.tensor_keys
        step = {keys.value: next_q, keys.reward: reward, keys.terminated: terminated}
        batch = [*reward.shape[:-1], 1]  # a one-step "trajectory" per sample
        td = TensorDict({"next": {key: v.unsqueeze(-2) for key, v in step.items()}}, batch)
        return self._value_estimator.value_estimate(td).squeeze(-2)

    def forward(self, tensordict: TensorDictBase) -> TensorDictBase:
        k = self.tensor_keys
        _require(
            tensordict,
            [
                k.observation,
                k.action,
                ("next", k.observation),
                ("next", k.reward),
                ("next", k.terminated),
            ],
            "FQELoss",
        )
        obs, act = tensordict.get(k.observation), tensordict.get(k.action)
        next_obs = tensordict.get(("next", k.observation))
        batch = tensordict.batch_size
        reward = tensordict.get(("next", k.reward)).reshape(*batch, 1).to(obs.dtype)
        terminated = tensordict.get(("next", k.terminated)).reshape(*batch, 1).bool()
        with torch.no_grad():
            with self.actor_network_params.to_module(self.actor_network):
                next_act = self.actor_network(TensorDict({k.observation: next_obs}, batch)).get(
                    k.action
                )
            next_q = self._q(next_obs, next_act, self.qvalue_network_params.detach())
            target = self._td0_target(reward, terminated, next_q)
            q_ema = self._q(obs, act, self.target_qvalue_network_params)
        q = self._q(obs, act, self.qvalue_network_params)
        td_error = (q - target).pow(2).squeeze(-1)
        per_sample = td_error + self.ema_weight * (q - q_ema).pow(2).squeeze(-1)
        return TensorDict(
            {
                "loss_qvalue": reduce_loss(per_sample, self.reduction),
                "fqe_td_error": td_error.detach().mean(),
                "q_mean": q.detach().mean(),
            },
            [],
        )
