"""LEQLoss: Lower Expectile Q-learning (Park & Lee, arXiv:2407.00699) as a TorchRL LossModule."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Literal

import torch
from tensordict import TensorDict, TensorDictBase, TensorDictParams
from tensordict.nn import TensorDictModule
from tensordict.utils import NestedKey
from torch import Tensor
from torchrl.envs import EnvBase
from torchrl.objectives import LossModule, ValueEstimators
from torchrl.objectives.utils import hold_out_net
from torchrl.objectives.value import ValueEstimatorBase

from ._utils import call_module, check_reduction, flat_key, reduce_loss
from .value import (
    NormalizedLambdaReturnEstimator,
    _check_unit_interval,
    _geometric_sums,
    expectile_loss,
    expectile_weight,
)

__all__ = ["LEQLoss"]

ActorGradient = Literal["per_step", "backprop"]


class LEQLoss(LossModule):
    r"""LEQ's critic (Eq. 7) and actor (Eq. 11) losses from one imagined rollout per start state.

    One call imagines ``horizon`` steps from each D_model start state with the deterministic actor
    in ``model_env`` (any batched, differentiable TorchRL env following the
    :class:`~torchrl_leq.envs.LEQModelEnv` contract), computes the normalized λ-return
    :math:`Q^\lambda_t` (Eq. 8) of every step with the online critic, and returns

    * ``loss_qvalue`` = β·L_model (Eq. 9, expectile τ, per-step weights γ^t·alive_t)
      + (1-β)·L_env (Eq. 5, ½ squared one-step TD error on D_env)
      + ω·L_EMA (Eq. 6, squared distance to the EMA critic; on D_env and, as in the released
      code, on the rollout, mixed with the same β — ``ema_on_model=False`` keeps Eq. 6's D_env
      term only);
    * ``loss_actor`` = Eq. 11, ``-Σ_t |τ - 1(Q(s_t,a_t) > Q^λ_t)| · alive_t · Q^λ_t`` for
      t = 0..H (weight ½ at t = H, where Q^λ_H = Q(s_H, a_H), as in the released code).

    The critic gets gradients only from ``loss_qvalue``, the actor only from ``loss_actor``; the
    EMA (target) critic and the world model get none. Update the EMA critic with
    ``SoftUpdate(loss, eps=0.995)``.

    Input layout: a tensordict with batch size ``[]`` holding two sub-tensordicts (keys remappable
    with :meth:`set_keys`):

    * ``"env"`` ``[B_env]``: D_env transitions in TorchRL's layout: ``observation``, ``action``,
      ``("next", "observation")``, ``("next", "reward")``, ``("next", "terminated")``;
    * ``"model"`` ``[B_model]``: D_model start states, ``observation``.

    Args:
        actor_network: deterministic actor, ``observation -> action``.
        qvalue_network: critic, ``(observation, action) -> state_action_value``.
        model_env: the world model as a TorchRL env (not registered as a submodule: it is not
            part of this loss's parameters or ``state_dict``; move it to a device yourself).

    Keyword Args:
        horizon: imagination length H (≥ 1).
        tau: expectile τ ∈ (0, 1) of the critic's model loss (and the actor's weights).
        actor_tau: expectile of the actor weights; defaults to ``tau`` (0.5 = plain λ-return
            maximisation, the "no expectile in the policy" ablation).
        env_tau: expectile of the D_env critic term; 0.5 (default) is Eq. 5's ½ squared TD
            error, a lower value is the "expectile on D_env" ablation (paper Table 18).
        beta: β ∈ [0, 1], weight of the model loss against the D_env loss.
        ema_weight: ω ≥ 0 of the EMA regulariser.
        gamma: discount γ.
        lmbda: λ of the λ-return.
        include_current: include the 0-step term Q(s_t, a_t) in the λ-return (released code).
        actor_gradient: ``"per_step"`` (released code: per step t the Jacobian ∂Q^λ_t/∂a_t through
            the reparameterised model, applied to ∂a_t/∂θ) or ``"backprop"`` (one backward pass
            of Σ_t w_t Q^λ_t through the whole rollout, Dreamer style).
        ema_on_model: also regularise rollout state-actions towards the EMA critic.
        reduction: ``"mean"``, ``"sum"`` or ``"none"`` (per sample; needs B_env == B_model).
        validate_inputs: check inputs for NaN/inf (one host sync per input; off in benchmarks).

    Example:
        >>> import torch
        >>> from tensordict import TensorDict
        >>> from torchrl_leq.envs.analytic import LinearQuadraticEnv
        >>> from torchrl_leq.modules import make_leq_actor, make_leq_critic
        >>> env = LinearQuadraticEnv(obs_dim=3, action_dim=2)
        >>> actor = make_leq_actor(3, 2, num_cells=(32, 32))
        >>> critic = make_leq_critic(3, 2, num_cells=(32, 32))
        >>> loss = LEQLoss(actor, critic, env, horizon=5)
        >>> B = 16
        >>> batch = TensorDict({
        ...     "env": TensorDict({
        ...         "observation": torch.randn(B, 3), "action": torch.rand(B, 2) * 2 - 1,
        ...         "next": {"observation": torch.randn(B, 3), "reward": torch.randn(B, 1),
        ...                  "terminated": torch.zeros(B, 1, dtype=torch.bool)}}, [B]),
        ...     "model": TensorDict({"observation": torch.randn(B, 3)}, [B]),
        ... }, [])
        >>> out = loss(batch)
        >>> (out["loss_actor"] + out["loss_qvalue"]).backward()
        >>> sorted(k for k in out.keys() if k.startswith("loss"))
        ['loss_actor', 'loss_qvalue']
    """

    @dataclass
    class _AcceptedKeys:
        """Configurable tensordict keys (remap with ``set_keys``).

        Attributes:
            env_batch: sub-tensordict of D_env transitions. Defaults to ``"env"``.
            model_batch: sub-tensordict of D_model start states. Defaults to ``"model"``.
            observation: observation key (in both batches and the model env).
            action: action key written by the actor.
            state_action_value: key written by the critic.
            reward: reward key under ``"next"``.
            terminated: termination key under ``"next"``.
        """

        env_batch: NestedKey = "env"
        model_batch: NestedKey = "model"
        observation: NestedKey = "observation"
        action: NestedKey = "action"
        state_action_value: NestedKey = "state_action_value"
        reward: NestedKey = "reward"
        terminated: NestedKey = "terminated"

    tensor_keys: _AcceptedKeys
    default_keys = _AcceptedKeys
    default_value_estimator = ValueEstimators.TDLambda
    diagnostic_keys = (
        "critic_env",
        "critic_model",
        "critic_ema",
        "q_env_mean",
        "lambda_return_mean",
        "lower_expectile_fraction",
        "rollout_alive_fraction",
        "model_reward_mean",
    )
    out_keys = ["loss_actor", "loss_qvalue", *diagnostic_keys]

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
        model_env: EnvBase,
        *,
        horizon: int = 10,
        tau: float = 0.1,
        actor_tau: float | None = None,
        env_tau: float = 0.5,
        beta: float = 0.25,
        ema_weight: float = 1.0,
        gamma: float = 0.997,
        lmbda: float = 0.95,
        include_current: bool = True,
        actor_gradient: ActorGradient = "per_step",
        ema_on_model: bool = True,
        reduction: str = "mean",
        validate_inputs: bool = True,
    ) -> None:
        if not isinstance(horizon, int) or isinstance(horizon, bool) or horizon < 1:
            raise ValueError(f"horizon must be an integer >= 1, got {horizon!r}.")
        _check_unit_interval("tau", tau, open_interval=True)
        actor_tau = tau if actor_tau is None else actor_tau
        _check_unit_interval("actor_tau", actor_tau, open_interval=True)
        _check_unit_interval("env_tau", env_tau, open_interval=True)
        _check_unit_interval("beta", beta)
        _check_unit_interval("gamma", gamma)
        _check_unit_interval("lmbda", lmbda)
        if ema_weight < 0:
            raise ValueError(f"ema_weight must be >= 0, got {ema_weight}.")
        if actor_gradient not in ("per_step", "backprop"):
            raise ValueError(
                f"actor_gradient must be 'per_step' or 'backprop', got {actor_gradient!r}."
            )
        check_reduction(reduction)
        if not isinstance(model_env, EnvBase):
            raise TypeError(f"model_env must be a torchrl EnvBase, got {type(model_env)}.")
        super().__init__()
        self.convert_to_functional(actor_network, "actor_network", create_target_params=False)
        self.convert_to_functional(qvalue_network, "qvalue_network", create_target_params=True)
        self.__dict__["model_env"] = model_env  # deliberately not a submodule
        self.horizon = horizon
        self.tau = float(tau)
        self.actor_tau = float(actor_tau)
        self.env_tau = float(env_tau)
        self.beta = float(beta)
        self.ema_weight = float(ema_weight)
        self.gamma = float(gamma)
        self.lmbda = float(lmbda)
        self.include_current = include_current
        self.actor_gradient = actor_gradient
        self.ema_on_model = ema_on_model
        self.reduction = reduction
        self.validate_inputs = validate_inputs
        self.make_value_estimator(gamma=gamma, lmbda=lmbda, include_current=include_current)

    # ------------------------------------------------------------------ TorchRL plumbing
    def make_value_estimator(
        self, value_type: ValueEstimators | type | ValueEstimatorBase | None = None, **hyperparams
    ) -> LEQLoss:
        """Choose the λ-return estimator of the rollout targets.

        ``None``/``ValueEstimators.TDLambda``: :class:`NormalizedLambdaReturnEstimator` with
        ``gamma``, ``lmbda``, ``include_current`` (defaults: this loss's values).
        ``ValueEstimators.TD0``: the 1-step target ``r + γ Q(s', a')`` (λ = 0, no 0-step term).
        An estimator instance or class is used as is (TorchRL's base behaviour).
        """
        if value_type is None:
            value_type = self.default_value_estimator
        if isinstance(value_type, ValueEstimatorBase) or isinstance(value_type, type):
            return super().make_value_estimator(value_type, **hyperparams)
        params = {
            "gamma": self.__dict__.get("gamma", 0.997),
            "lmbda": self.__dict__.get("lmbda", 0.95),
            "include_current": self.__dict__.get("include_current", True),
        }
        params.update(hyperparams)
        if value_type == ValueEstimators.TD0:
            params.update(lmbda=0.0, include_current=False)
        elif value_type != ValueEstimators.TDLambda:
            raise NotImplementedError(
                f"LEQLoss supports ValueEstimators.TDLambda and TD0 (or an estimator instance); "
                f"got {value_type}."
            )
        self._value_estimator = NormalizedLambdaReturnEstimator(**params)
        self.value_type = value_type
        return self

    def _forward_value_estimator_keys(self, **kwargs) -> None:
        # The estimator reads an internal rollout tensordict built with its own keys.
        pass

    @property
    def in_keys(self) -> list[NestedKey]:
        k, env, model = self.tensor_keys, self.tensor_keys.env_batch, self.tensor_keys.model_batch
        return [
            flat_key(env, k.observation),
            flat_key(env, k.action),
            flat_key(env, "next", k.observation),
            flat_key(env, "next", k.reward),
            flat_key(env, "next", k.terminated),
            flat_key(model, k.observation),
        ]

    # ------------------------------------------------------------------ networks
    @contextmanager
    def _online_networks(self) -> Iterator[None]:
        """Bind the online actor and critic parameters once for a whole forward pass.

        ``to_module`` costs ~1 ms of Python per call on these small networks; binding once
        instead of per network call saves ~25 calls per loss evaluation.
        """
        with (
            self.actor_network_params.to_module(self.actor_network),
            self.qvalue_network_params.to_module(self.qvalue_network),
        ):
            yield

    def _actor(self, obs: Tensor) -> Tensor:
        """π(s) with the bound (online) actor parameters."""
        k = self.tensor_keys
        lead, flat = obs.shape[:-1], obs.reshape(-1, obs.shape[-1])
        action = call_module(self.actor_network, {k.observation: flat}, k.action, flat.shape[:1])
        return action.reshape(*lead, action.shape[-1])

    def _q(self, obs: Tensor, action: Tensor, params: TensorDictBase | None = None) -> Tensor:
        """Q(s, a) with ``params`` (the bound online parameters if ``None``)."""
        # Networks see 2-D [N, features] inputs: Linear on a 3-D input costs an extra output copy
        # per layer (the rollout's [B, H] batches were ~20 % slower).
        k = self.tensor_keys
        lead = obs.shape[:-1]
        inputs = {
            k.observation: obs.reshape(-1, obs.shape[-1]),
            k.action: action.reshape(-1, action.shape[-1]),
        }
        n = inputs[k.observation].shape[:1]
        if params is None:
            q = call_module(self.qvalue_network, inputs, k.state_action_value, n)
        else:
            with params.to_module(self.qvalue_network):
                q = call_module(self.qvalue_network, inputs, k.state_action_value, n)
        return q.reshape(*lead, q.shape[-1])

    # ------------------------------------------------------------------ inputs
    def _split_and_check(self, tensordict: TensorDictBase) -> tuple[TensorDictBase, TensorDictBase]:
        k = self.tensor_keys
        batches = []
        for name, key, required in (
            (
                "env_batch",
                k.env_batch,
                [
                    k.observation,
                    k.action,
                    ("next", k.observation),
                    ("next", k.reward),
                    ("next", k.terminated),
                ],
            ),
            ("model_batch", k.model_batch, [k.observation]),
        ):
            sub = tensordict.get(key, None)
            if sub is None:
                raise KeyError(
                    f"LEQLoss: input tensordict has no {name} sub-tensordict at {key!r} "
                    f"(found {list(tensordict.keys())}); pass TensorDict(env=..., model=..., "
                    "batch_size=[]) or remap with set_keys."
                )
            present = set(sub.keys(include_nested=True, leaves_only=True))
            for req in required:
                if req not in present:
                    raise KeyError(f"LEQLoss: {name} {key!r} is missing the key {req!r}.")
            if sub.batch_dims != 1:
                raise ValueError(
                    f"LEQLoss: {name} must have a 1-d batch size [B], got {tuple(sub.batch_size)}."
                )
            batches.append(sub)
        env_td, model_td = batches
        obs_dim = env_td.get(k.observation).shape[-1]
        for name, x in (
            ("env next observation", env_td.get(("next", k.observation))),
            ("model observation", model_td.get(k.observation)),
        ):
            if x.shape[-1] != obs_dim:
                raise ValueError(
                    f"LEQLoss: {name} has {x.shape[-1]} features, env observation has {obs_dim}."
                )
        for key in (("next", k.reward), ("next", k.terminated)):
            shape = env_td.get(key).shape
            if shape not in (env_td.batch_size, (*env_td.batch_size, 1)):
                raise ValueError(
                    f"LEQLoss: env {key!r} must be shaped [B] or [B, 1], got {tuple(shape)}."
                )
        if self.reduction == "none" and env_td.batch_size != model_td.batch_size:
            raise ValueError(
                "LEQLoss with reduction='none' returns per-sample losses and needs "
                f"B_env == B_model, got {env_td.batch_size[0]} and {model_td.batch_size[0]}."
            )
        if self.validate_inputs and not torch.compiler.is_compiling():
            for name, sub in (("env", env_td), ("model", model_td)):
                for key, val in sub.items(include_nested=True, leaves_only=True):
                    if val.is_floating_point() and not bool(torch.isfinite(val).all()):
                        raise ValueError(f"LEQLoss: NaN or inf in {name} batch key {key!r}.")
        return env_td, model_td

    # ------------------------------------------------------------------ rollout
    def _imagine(self, start: TensorDictBase, per_step: bool) -> dict[str, Any]:
        """Roll the actor H steps in the model env; stack observations/actions over t = 0..H.

        The model env's own reward key and ``"terminated"`` are read (``set_keys`` remaps the
        D_env batch, not the env's outputs).

        With ``per_step`` (per-step actor gradients), every step gets a graph of its own:
        ``s_t`` and ``a_t`` are fresh leaves, the policy output ``π(s_t)`` (with the actor's
        parameter graph), ``Q(s_t, a_t)`` (with the critic's), ``r_t`` and ``s_{t+1}`` are recorded
        under ``"steps"``, so that ∂Q^λ_t/∂a_t can be computed by one backward sweep
        (:meth:`_per_step_action_grads`) and the same forward passes serve the actor surrogate and
        the critic's model loss (no second pass over the rollout).
        """
        k = self.tensor_keys
        env = self.model_env
        td = env.reset(start.select(k.observation))
        observations, actions, rewards, terminated, alive, steps = [], [], [], [], [], []
        alive_t = torch.ones_like(start.get(k.observation)[..., :1])
        for t in range(self.horizon + 1):
            if per_step:
                td.set(k.observation, td.get(k.observation).detach().requires_grad_(True))
            obs = td.get(k.observation)
            action = self._actor(obs)
            if per_step:
                policy_action, action = action, action.detach().requires_grad_(True)
                q = self._q(obs, action)
                steps.append({"obs": obs, "action": action, "policy_action": policy_action, "q": q})
            observations.append(obs)
            actions.append(action)
            alive.append(alive_t)
            if t == self.horizon:
                break
            td.set(k.action, action)
            nxt = env.step(td).get("next")
            reward = nxt.get(env.reward_key)
            term = nxt.get("terminated").reshape(reward.shape).bool()
            if per_step:
                steps[-1].update(reward=reward, next_obs=nxt.get(k.observation))
            rewards.append(reward)
            terminated.append(term)
            alive_t = alive_t * (~term).to(alive_t.dtype)
            td = nxt.exclude(env.reward_key, *env.done_keys)
        return {
            "observation": torch.stack(observations, 1),  # [B, H+1, obs]
            "action": torch.stack(actions, 1),  # [B, H+1, act]
            "reward": torch.stack(rewards, 1),  # [B, H, 1]
            "terminated": torch.stack(terminated, 1),  # [B, H, 1]
            "alive": torch.stack(alive, 1),  # [B, H+1, 1]
            "steps": steps,
        }

    def _lambda_returns(self, q: Tensor, reward: Tensor, terminated: Tensor) -> Tensor:
        """Q^λ_t for t = 0..H (the last is Q(s_H, a_H)) from Q over t = 0..H."""
        keys = self._value_estimator.tensor_keys
        td = TensorDict(
            {
                keys.value: q[:, :-1],
                "next": {keys.value: q[:, 1:], keys.reward: reward, keys.terminated: terminated},
            },
            reward.shape[:2],
        )
        return torch.cat([self._value_estimator.value_estimate(td), q[:, -1:]], 1)

    def _actor_weights(self, q: Tensor, lambda_return: Tensor) -> Tensor:
        """Eq. 11 weights |τ - 1(Q > Q^λ)|, ½ at t = H."""
        w = expectile_weight(q - lambda_return, self.actor_tau)
        return torch.cat([w[:, :-1], torch.full_like(w[:, -1:], 0.5)], 1)

    # ------------------------------------------------------------------ forward
    def forward(self, tensordict: TensorDictBase) -> TensorDictBase:
        """Compute ``loss_actor``, ``loss_qvalue`` and diagnostics (see class docstring)."""
        env_td, model_td = self._split_and_check(tensordict)
        per_step = self.actor_gradient == "per_step"
        with self._online_networks():
            return self._losses(env_td, model_td, per_step)

    def _losses(
        self, env_td: TensorDictBase, model_td: TensorDictBase, per_step: bool
    ) -> TensorDictBase:
        k = self.tensor_keys
        with hold_out_net(self.model_env):
            rollout = self._imagine(model_td, per_step)
            if per_step:
                q_rollout = torch.stack([step["q"] for step in rollout["steps"]], 1)
                q_actor = q_rollout.detach()
            obs, act = rollout["observation"], rollout["action"]
            reward, terminated, alive = rollout["reward"], rollout["terminated"], rollout["alive"]
            if not per_step:
                # Q with frozen critic: gradients reach the actor only (through actions/states).
                q_actor = self._q(obs, act, self.qvalue_network_params.detach())
            lambda_return = self._lambda_returns(q_actor, reward, terminated)  # [B, H+1, 1]
            weights = self._actor_weights(q_actor.detach(), lambda_return.detach()) * alive
            injected = None
            if per_step and self.reduction != "none" and torch.is_grad_enabled():
                # ∂loss_actor/∂θ is accumulated during the sweep (see _per_step_action_grads).
                coef = -weights if self.reduction == "sum" else -weights / weights.shape[0]
                actor_params = self._trainable_actor_params()
                injected = self._per_step_action_grads(
                    rollout["steps"], terminated, coef, actor_params
                )[1]
                objective = lambda_return.detach()
            elif per_step:
                grads = self._per_step_action_grads(rollout["steps"], terminated)[0]
                policy_action = torch.stack([step["policy_action"] for step in rollout["steps"]], 1)
                surrogate = (grads * (policy_action - policy_action.detach())).sum(-1, keepdim=True)
                objective = lambda_return.detach() + surrogate
            else:
                objective = lambda_return
            actor_per_sample = -(weights * objective).sum(dim=(1, 2))

        # ---- critic: model term (Eq. 9) on t = 0..H-1, weights γ^t·alive_t.
        obs_c, act_c = obs[:, :-1].detach(), act[:, :-1].detach()
        if per_step:
            # The rollout's Q(s_t, a_t) on leaf inputs: its backward reaches the critic only.
            q_model = q_rollout[:, :-1]
        else:
            q_model = self._q(obs_c, act_c)
        target_model = lambda_return[:, :-1].detach()
        discounts = self.gamma ** torch.arange(
            self.horizon, dtype=q_model.dtype, device=q_model.device
        )
        step_w = alive[:, :-1].detach() * discounts.view(1, -1, 1)
        model_per_sample = (step_w * expectile_loss(q_model - target_model, self.tau)).mean(
            dim=(1, 2)
        )

        # ---- critic: D_env term (Eq. 5), ½ squared one-step TD error.
        obs_e, act_e = env_td.get(k.observation), env_td.get(k.action)
        next_obs = env_td.get(("next", k.observation))
        r_e = env_td.get(("next", k.reward))
        term_e = env_td.get(("next", k.terminated))
        r_e = r_e.reshape(*env_td.batch_size, 1).to(obs_e.dtype)
        not_term = (~term_e.reshape(*env_td.batch_size, 1).bool()).to(obs_e.dtype)
        with torch.no_grad():
            next_action = self._actor(next_obs)
            target_env = r_e + self.gamma * not_term * self._q(next_obs, next_action)
        q_env = self._q(obs_e, act_e)
        # expectile 0.5 is Eq. 5's ½ squared error; env_tau < 0.5 is the "expectile on D_env" ablation
        env_per_sample = expectile_loss(q_env - target_env, self.env_tau).squeeze(-1)

        # ---- critic: EMA regulariser (Eq. 6).
        with torch.no_grad(), self.target_qvalue_network_params.to_module(self.qvalue_network):
            q_env_ema = self._q(obs_e, act_e)
            q_model_ema = self._q(obs_c, act_c) if self.ema_on_model else None
        ema_env = (q_env - q_env_ema).pow(2).squeeze(-1)
        if q_model_ema is not None:
            ema_model = (step_w * (q_model - q_model_ema).pow(2)).mean(dim=(1, 2))
            ema_per_sample = (self.beta, ema_model), (1 - self.beta, ema_env)
        else:
            ema_per_sample = ((1.0, ema_env),)

        red = self.reduction
        if red == "none":
            loss_qvalue = (
                self.beta * model_per_sample
                + (1 - self.beta) * env_per_sample
                + self.ema_weight * sum(c * v for c, v in ema_per_sample)
            )
        else:
            loss_qvalue = (
                self.beta * reduce_loss(model_per_sample, red)
                + (1 - self.beta) * reduce_loss(env_per_sample, red)
                + self.ema_weight * sum(c * reduce_loss(v, red) for c, v in ema_per_sample)
            )
        loss_actor = reduce_loss(actor_per_sample, red)
        if injected is not None:
            loss_actor = _WithParamGrads.apply(loss_actor, injected, *actor_params)

        with torch.no_grad():
            alive_steps = alive[:, :-1]
            n_alive = alive_steps.sum().clamp_min(1.0)
            lower = (q_actor[:, :-1] > lambda_return[:, :-1]).to(alive.dtype) * alive_steps
            diagnostics = {
                "critic_env": env_per_sample.mean(),
                "critic_model": model_per_sample.mean(),
                "critic_ema": sum(c * v.mean() for c, v in ema_per_sample),
                "q_env_mean": q_env.mean(),
                "lambda_return_mean": (lambda_return[:, :-1] * alive_steps).sum() / n_alive,
                "lower_expectile_fraction": lower.sum() / n_alive,
                "rollout_alive_fraction": alive[:, 1:].mean(),
                "model_reward_mean": (reward * alive_steps).sum() / n_alive,
            }
        return TensorDict(
            {"loss_actor": loss_actor, "loss_qvalue": loss_qvalue, **diagnostics}, batch_size=[]
        )

    def _per_step_action_grads(
        self,
        steps: list[dict[str, Tensor]],
        terminated: Tensor,
        coef: Tensor | None = None,
        params: Sequence[Tensor] = (),
    ) -> tuple[Tensor, tuple[Tensor, ...]]:
        """∂Q^λ_t/∂a_t for every t = 0..H (the Jacobian's diagonal blocks) in one backward sweep.

        With ``V_t = ∇_{s_t} Q^λ_t`` (the total derivative, through ``a_t = π(s_t)`` and every
        later step), the λ-return recursion makes both ``∂Q^λ_t/∂a_t`` and ``V_t`` the gradients
        of one scalar per model step ``(s_t, a_t) -> (r_t, s_{t+1})``:
        ``F_t = local_t(Q_t, r_t) + c_t · <sg(V_{t+1}), s_{t+1}>`` — H+1 small backward passes
        through one step each, instead of H+1 passes through the whole rollout. Without the
        0-step term, Q^λ_t also depends on ``Q_{t+1}`` directly, which adds
        ``W_t = ∇_{s_t} Q(s_t, π(s_t))``. Samples are independent, so the batch sums give every
        sample's own gradient.

        With ``coef`` ``[B, H+1, 1]`` (the actor loss's per-sample weight of each surrogate term,
        zero exactly where a sample is dead), the pass through π that gives ``V_t`` also yields
        the actor-loss gradient ``Σ_t Σ_i coef_it (∂π(s_it)/∂θ)ᵀ ∂Q^λ_it/∂a_it``, returned for
        each of the actor ``params`` (saves a second backward through π).

        Returns ``(grads [B, H+1, act], actor parameter gradients or ())``.
        """
        est = self._value_estimator
        if not isinstance(est, NormalizedLambdaReturnEstimator):
            raise TypeError(
                "actor_gradient='per_step' needs the NormalizedLambdaReturnEstimator; use "
                "actor_gradient='backprop' with a custom value estimator."
            )
        gamma, lmbda, current = est.gamma, est.lmbda, est.include_current
        horizon = len(steps) - 1
        sums = _geometric_sums(lmbda, horizon + 2)
        not_term = (~terminated).to(steps[0]["q"].dtype)
        param_grads: list[Tensor] = []
        grads: list[Tensor] = []
        v_next = w_next = None
        for t in reversed(range(horizon + 1)):
            step = steps[t]
            q = step["q"]
            left = horizon - t
            if t == horizon:
                objective = q.sum()
            elif current:
                local = (q + lmbda * sums[left] * step["reward"]) / sums[left + 1]
                coef_t = lmbda * sums[left] * gamma / sums[left + 1]
                objective = (
                    local.sum() + (coef_t * not_term[:, t] * v_next * step["next_obs"]).sum()
                )
            else:
                lmbda_t = lmbda * sums[left - 1] / sums[left]
                direction = (1 - lmbda_t) * w_next + lmbda_t * v_next
                objective = (
                    step["reward"].sum()
                    + (gamma * not_term[:, t] * direction * step["next_obs"]).sum()
                )
            # Graphs are kept: Q's serves the critic loss (and π's the actor surrogate).
            grad_s, grad_a = torch.autograd.grad(
                objective, [step["obs"], step["action"]], retain_graph=True
            )
            grads.insert(0, grad_a)
            if coef is None:
                v_next = grad_s + self._through_policy(step, grad_a)
            else:
                c = coef[:, t]
                through, *step_param_grads = torch.autograd.grad(
                    step["policy_action"],
                    [step["obs"], *params],
                    grad_a * c,
                    retain_graph=True,
                    allow_unused=True,
                    materialize_grads=True,
                )
                # c = 0 only for dead samples, whose V_t feeds nothing but their own dead steps
                v_next = grad_s + torch.where(c != 0, through / c, 0.0)
                param_grads = (
                    [a + b for a, b in zip(param_grads, step_param_grads)]
                    if param_grads
                    else step_param_grads
                )
            if not current and t > 0:
                if t == horizon:
                    w_next = v_next
                else:
                    grad_s, grad_a = torch.autograd.grad(
                        q.sum(), [step["obs"], step["action"]], retain_graph=True
                    )
                    w_next = grad_s + self._through_policy(step, grad_a)
        return torch.stack(grads, 1), tuple(param_grads)

    @staticmethod
    def _through_policy(step: dict[str, Tensor], grad_a: Tensor) -> Tensor:
        """``(∂π(s_t)/∂s_t)ᵀ grad_a``: the part of ``d F/d s_t`` that goes through ``a_t = π(s_t)``."""
        (grad_s,) = torch.autograd.grad(
            step["policy_action"], step["obs"], grad_a, retain_graph=True
        )
        return grad_s

    def _trainable_actor_params(self) -> list[Tensor]:
        return [p for p in self.actor_network_params.values(True, True) if p.requires_grad]


class _WithParamGrads(torch.autograd.Function):
    """``value`` whose gradient w.r.t. the actor parameters was computed in the forward pass.

    ``apply(value, grads, *params)`` returns ``value``; backward hands ``upstream · grads`` to
    ``params`` (computed by :meth:`LEQLoss._per_step_action_grads`). ``value`` itself carries no
    gradient (it is built from detached λ-returns and weights).
    """

    @staticmethod
    def forward(ctx, value: Tensor, grads: tuple[Tensor, ...], *params: Tensor) -> Tensor:
        ctx.grads = grads
        return value.clone()

    @staticmethod
    def backward(ctx, upstream: Tensor) -> tuple[Tensor | None, ...]:
        return (None, None, *(upstream * g for g in ctx.grads))
