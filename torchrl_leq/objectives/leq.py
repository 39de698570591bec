"""LEQLoss: Lower Expectile Q-learning (Park & Lee, arXiv:2407.00699) as a TorchRL LossModule."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import wraps
from typing import Literal, TypeVar

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
from .hyperparameters import (
    NON_NEGATIVE,
    POSITIVE_INT,
    UNIT,
    UNIT_OPEN,
    Rule,
    boolean,
    check_hyperparameters,
    choice,
    number,
)
from .per_step_gradients import StepGraph, per_step_actor_loss
from .value import (
    NormalizedLambdaReturnEstimator,
    expectile_loss,
    expectile_weight,
)

__all__ = ["LEQLoss"]

ActorGradient = Literal["per_step", "backprop"]
Metadata = dict[str, Tensor]
_F = TypeVar("_F", bound=Callable)


def _bound_networks(method: _F) -> _F:
    """Run ``method`` with the online actor and critic parameters bound (once per forward)."""

    @wraps(method)
    def wrapper(self: LEQLoss, *args, **kwargs):
        with self._online_networks():
            return method(self, *args, **kwargs)

    return wrapper  # type: ignore[return-value]


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

    Each term is a public method returning ``(loss, metadata)`` (TorchRL's ``IQLLoss`` style),
    reduced with ``reduction``; :meth:`forward` runs them on one rollout and mixes them (Eq. 7):

    * :meth:`imagine`: the ``[B, H+1]`` imagined rollout (the single model rollout per update);
    * :meth:`actor_loss` (Eq. 11, with the λ-returns of Eq. 8; writes ``"value_target"``);
    * :meth:`model_critic_loss` (Eq. 9) on the rollout's first H steps;
    * :meth:`env_critic_loss` (Eq. 5) on D_env;
    * :meth:`ema_loss` (Eq. 6).

    γ, λ and the 0-step switch live in the value estimator only (TorchRL's rule):
    ``make_value_estimator(gamma=0.9)`` changes the λ-returns, the D_env target, the per-step
    critic weights γ^t and the per-step actor gradients alike; :attr:`gamma`, :attr:`lmbda` and
    :attr:`include_current` read them from there.

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
        gamma: discount γ (builds the value estimator).
        lmbda: λ of the λ-return (builds the value estimator).
        include_current: include the 0-step term Q(s_t, a_t) in the λ-return (released code;
            builds the value estimator).
        actor_gradient: ``"per_step"`` (released code: per step t the Jacobian ∂Q^λ_t/∂a_t through
            the reparameterised model, applied to ∂a_t/∂θ) or ``"backprop"`` (one backward pass
            of Σ_t w_t Q^λ_t through the whole rollout, Dreamer style).
        ema_on_model: also regularise rollout state-actions towards the EMA critic.
        reduction: ``"mean"``, ``"sum"`` or ``"none"`` (per sample; needs B_env == B_model).
        validate_inputs: check inputs for NaN/inf (one host sync per input; off in benchmarks
            and in a captured update). Shapes are always checked (no sync).
        num_seeds: K > 1 when the networks hold K stacked seeds
            (:func:`~torchrl_leq.modules.seed_batched.stack_seed_modules`) and both batches are
            the K seeds' batches concatenated seed-major: every loss and diagnostic is then
            reduced per seed (``[K]`` tensors), so seed k's parameters get exactly its own
            single-seed gradient from ``sum(loss)``.

    Example:
        >>> import torch
        >>> from tensordict import TensorDict
        >>> from torchrl_leq.envs.analytic import LinearQuadraticEnv
        >>> from torchrl_leq.modules import make_deterministic_actor, make_qvalue_network
        >>> env = LinearQuadraticEnv(obs_dim=3, action_dim=2)
        >>> actor = make_deterministic_actor(3, 2, num_cells=(32, 32))
        >>> critic = make_qvalue_network(3, 2, num_cells=(32, 32))
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
    hyperparameter_rules: dict[str, Rule] = {
        "horizon": POSITIVE_INT,
        "tau": UNIT_OPEN,
        "actor_tau": number(float, 0.0, 1.0, open_lo=True, open_hi=True, nullable=True),
        "env_tau": UNIT_OPEN,
        "beta": UNIT,
        "ema_weight": NON_NEGATIVE,
        "gamma": UNIT,
        "lmbda": UNIT,
        "include_current": boolean,
        "actor_gradient": choice("per_step", "backprop"),
        "ema_on_model": boolean,
    }
    """Constructor argument -> range check (also applied to ``loss.<argument>`` of a config)."""

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
        num_seeds: int = 1,
    ) -> None:
        actor_tau = tau if actor_tau is None else actor_tau
        check_hyperparameters(
            self.hyperparameter_rules, horizon=horizon, tau=tau, actor_tau=actor_tau,
            env_tau=env_tau, beta=beta, ema_weight=ema_weight, gamma=gamma, lmbda=lmbda,
            include_current=include_current, actor_gradient=actor_gradient,
            ema_on_model=ema_on_model,
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
        self.actor_gradient = actor_gradient
        self.ema_on_model = ema_on_model
        self.reduction = reduction
        self.validate_inputs = validate_inputs
        if int(num_seeds) < 1:
            raise ValueError(f"num_seeds must be >= 1, got {num_seeds}.")
        self.num_seeds = int(num_seeds)
        self._networks_bound = False
        self._action_dim = int(model_env.action_spec.shape[-1])
        self.make_value_estimator(gamma=gamma, lmbda=lmbda, include_current=include_current)

    # ------------------------------------------------------------------ TorchRL plumbing
    _ESTIMATOR_DEFAULTS = {"gamma": 0.997, "lmbda": 0.95, "include_current": True}

    @property
    def gamma(self) -> float | Tensor:
        """Discount γ, read from the value estimator (its only store)."""
        return self._value_estimator.gamma

    @property
    def lmbda(self) -> float | Tensor:
        """λ of the λ-return, read from the value estimator."""
        return self._value_estimator.lmbda

    @property
    def include_current(self) -> bool:
        """Whether the λ-return includes the 0-step term, read from the value estimator."""
        return getattr(self._value_estimator, "include_current", False)

    def make_value_estimator(
        self, value_type: ValueEstimators | type | ValueEstimatorBase | None = None, **hyperparams
    ) -> LEQLoss:
        """Choose the λ-return estimator: the one home of γ, λ and the 0-step switch.

        ``None``/``ValueEstimators.TDLambda``: :class:`NormalizedLambdaReturnEstimator` with
        ``gamma``, ``lmbda``, ``include_current``. ``ValueEstimators.TD0``: the 1-step target
        ``r + γ Q(s', a')`` (λ = 0, no 0-step term). Hyperparameters not given keep the current
        estimator's (γ always; λ and the 0-step switch unless the current one is TD0, then
        0.95 and ``True``). An estimator instance or class is used as is (TorchRL's base
        behaviour). Every use of γ (λ-returns, D_env target, per-step weights γ^t, per-step
        actor gradients) reads the estimator.

        Example:
            >>> from torchrl_leq.envs.analytic import LinearQuadraticEnv
            >>> from torchrl_leq.modules import make_deterministic_actor, make_qvalue_network
            >>> loss = LEQLoss(make_deterministic_actor(3, 2, num_cells=(8,)),
            ...                make_qvalue_network(3, 2, num_cells=(8,)), LinearQuadraticEnv(3, 2))
            >>> loss.make_value_estimator(gamma=0.9).gamma, loss.lmbda
            (0.9, 0.95)
        """
        if value_type is None:
            value_type = self.default_value_estimator
        if isinstance(value_type, ValueEstimatorBase) or isinstance(value_type, type):
            return super().make_value_estimator(value_type, **hyperparams)
        if value_type not in (ValueEstimators.TDLambda, ValueEstimators.TD0):
            raise NotImplementedError(
                f"LEQLoss supports ValueEstimators.TDLambda and TD0 (or an estimator instance); "
                f"got {value_type}."
            )
        params = dict(self._ESTIMATOR_DEFAULTS)
        current = self._value_estimator
        if isinstance(current, NormalizedLambdaReturnEstimator):
            params["gamma"] = current.gamma
            if self.value_type != ValueEstimators.TD0:
                params.update(lmbda=current.lmbda, include_current=current.include_current)
        params.update(hyperparams)
        if value_type == ValueEstimators.TD0:
            params.update(lmbda=0.0, include_current=False)
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
        instead of per network call saves ~25 calls per loss evaluation. Re-entrant: the
        sub-losses bind too when called on their own, and do nothing inside :meth:`forward`.
        """
        if self._networks_bound:
            yield
            return
        with (
            self.actor_network_params.to_module(self.actor_network),
            self.qvalue_network_params.to_module(self.qvalue_network),
        ):
            self._networks_bound = True
            try:
                yield
            finally:
                self._networks_bound = False

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

    def _reduce(self, per_sample: Tensor) -> Tensor:
        """``reduction`` over the batch (per seed with ``num_seeds`` > 1)."""
        return reduce_loss(per_sample, self.reduction, self.num_seeds)

    def _mean(self, x: Tensor) -> Tensor:
        """Diagnostic mean over the batch (a ``[K]`` tensor with ``num_seeds`` K > 1)."""
        return x.mean() if self.num_seeds == 1 else x.reshape(self.num_seeds, -1).mean(1)

    def _sum(self, x: Tensor) -> Tensor:
        return x.sum() if self.num_seeds == 1 else x.reshape(self.num_seeds, -1).sum(1)

    def _trainable_actor_params(self) -> list[Tensor]:
        return [p for p in self.actor_network_params.values(True, True) if p.requires_grad]

    # ------------------------------------------------------------------ inputs
    def _sub_batch(
        self, tensordict: TensorDictBase, name: str, key: NestedKey, required: list[NestedKey]
    ) -> TensorDictBase:
        """The sub-tensordict at ``key``: present, with the ``required`` keys, ``[B]``, B ≥ 1."""
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
        if sub.batch_size[0] == 0:
            raise ValueError(f"LEQLoss: {name} is empty (B = 0); both batches need B >= 1.")
        return sub

    def _check_shapes(self, env_td: TensorDictBase, model_td: TensorDictBase) -> None:
        """Feature widths and reward/termination shapes (shapes only: no host sync)."""
        k = self.tensor_keys
        obs_dim = env_td.get(k.observation).shape[-1]
        for name, x in (
            ("env next observation", env_td.get(("next", k.observation))),
            ("model observation", model_td.get(k.observation)),
        ):
            if x.shape[-1] != obs_dim:
                raise ValueError(
                    f"LEQLoss: {name} has {x.shape[-1]} features, env observation has {obs_dim}."
                )
        act_dim = env_td.get(k.action).shape[-1]
        if act_dim != self._action_dim:
            raise ValueError(
                f"LEQLoss: action has {act_dim} features, the critic expects {self._action_dim} "
                "(the model env's action width)."
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

    def _split_and_check(self, tensordict: TensorDictBase) -> tuple[TensorDictBase, TensorDictBase]:
        k = self.tensor_keys
        env_keys = [k.observation, k.action, *(("next", key) for key in self._next_keys())]
        env_td = self._sub_batch(tensordict, "env_batch", k.env_batch, env_keys)
        model_td = self._sub_batch(tensordict, "model_batch", k.model_batch, [k.observation])
        self._check_shapes(env_td, model_td)
        if self.validate_inputs and not torch.compiler.is_compiling():
            for name, sub in (("env", env_td), ("model", model_td)):
                for key, val in sub.items(include_nested=True, leaves_only=True):
                    if val.is_floating_point() and not bool(torch.isfinite(val).all()):
                        raise ValueError(f"LEQLoss: NaN or inf in {name} batch key {key!r}.")
        return env_td, model_td

    def _next_keys(self) -> tuple[NestedKey, ...]:
        k = self.tensor_keys
        return (k.observation, k.reward, k.terminated)

    # ------------------------------------------------------------------ the rollout
    @_bound_networks
    def imagine(self, model_batch: TensorDictBase) -> tuple[TensorDictBase, list[StepGraph]]:
        """Roll the actor H steps in the model env from D_model start states (Alg. 1, l. 14).

        Returns the ``[B, H+1]`` rollout (keys as in ``tensor_keys``): ``observation`` s_t and
        ``action`` a_t = π(s_t) for t = 0..H, ``"alive"`` (1 until the first termination),
        ``("next", reward)`` r_t and ``("next", terminated)`` for t < H (0 and ``False`` at
        t = H, where no step is taken); with ``actor_gradient="per_step"`` also
        ``state_action_value`` Q(s_t, a_t) (critic graph on leaf inputs), and the per-step
        graphs (:class:`~torchrl_leq.objectives.per_step_gradients.StepGraph`, an empty list
        with ``"backprop"``): the same forward passes then serve the per-step actor gradient and
        the critic's model loss. The model env is held out of the graph (``hold_out_net``);
        its own reward key and ``"terminated"`` are read (``set_keys`` remaps the batches).
        """
        k, env, per_step = self.tensor_keys, self.model_env, self.actor_gradient == "per_step"
        observations, actions, rewards, terminated, alive, steps = [], [], [], [], [], []
        alive_t = torch.ones_like(model_batch.get(k.observation)[..., :1])
        with hold_out_net(env):
            td = env.reset(model_batch.select(k.observation))
            for t in range(self.horizon + 1):
                if per_step:
                    td.set(k.observation, td.get(k.observation).detach().requires_grad_(True))
                obs = td.get(k.observation)
                action = self._actor(obs)
                if per_step:
                    policy_action, action = action, action.detach().requires_grad_(True)
                    steps.append(StepGraph(obs, action, policy_action, self._q(obs, action)))
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
                    steps[-1].reward, steps[-1].next_obs = reward, nxt.get(k.observation)
                rewards.append(reward)
                terminated.append(term)
                alive_t = alive_t * (~term).to(alive_t.dtype)
                td = nxt.exclude(env.reward_key, *env.done_keys)
        rewards.append(torch.zeros_like(rewards[-1]))
        terminated.append(torch.zeros_like(terminated[-1]))
        rollout = TensorDict(
            {
                k.observation: torch.stack(observations, 1),
                k.action: torch.stack(actions, 1),
                "alive": torch.stack(alive, 1),
            },
            batch_size=(*model_batch.batch_size, self.horizon + 1),
        )
        rollout.set(("next", *_tuple(k.reward)), torch.stack(rewards, 1))
        rollout.set(("next", *_tuple(k.terminated)), torch.stack(terminated, 1))
        if per_step:
            rollout.set(k.state_action_value, torch.stack([step.q for step in steps], 1))
        return rollout, steps

    def _lambda_returns(self, q: Tensor, reward: Tensor, terminated: Tensor) -> Tensor:
        """Q^λ_t for t = 0..H (the last is Q(s_H, a_H)) from Q over t = 0..H (Eq. 8)."""
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

    def _step_weights(self, transitions: TensorDictBase) -> Tensor:
        """Per-step critic weights γ^t·alive_t ``[B, H, 1]`` (released code)."""
        alive = transitions.get("alive").detach()
        discounts = self.gamma ** torch.arange(
            alive.shape[1], dtype=alive.dtype, device=alive.device
        )
        return alive * discounts.view(1, -1, 1)

    def _rollout_q(self, transitions: TensorDictBase) -> Tensor:
        """Online Q(s_t, a_t) on detached rollout inputs: the rollout's own (per-step path) or
        computed once and stored in ``transitions``."""
        k = self.tensor_keys
        q = transitions.get(k.state_action_value, None)
        if q is None:
            obs, act = transitions.get(k.observation), transitions.get(k.action)
            q = self._q(obs.detach(), act.detach())
            transitions.set(k.state_action_value, q)
        return q

    def _env_q(self, env_batch: TensorDictBase) -> Tensor:
        """Online Q(s, a) on D_env, as stored by :meth:`env_critic_loss` (computed if absent)."""
        k = self.tensor_keys
        q = env_batch.get(_ENV_Q, None)
        if q is None:
            q = self._q(env_batch.get(k.observation), env_batch.get(k.action))
            env_batch.set(_ENV_Q, q)
        return q

    # ------------------------------------------------------------------ the losses
    @_bound_networks
    def actor_loss(
        self, rollout: TensorDictBase, steps: list[StepGraph] | tuple = ()
    ) -> tuple[Tensor, Metadata]:
        r"""Eq. 11: ``-Σ_t |τ - 1(Q(s_t,a_t) > Q^λ_t)| · alive_t · Q^λ_t``, t = 0..H (½ at H).

        Q^λ_t (Eq. 8, the value estimator) is built from the online critic. With
        ``actor_gradient="backprop"`` the critic is evaluated with frozen parameters on the
        rollout and the gradient reaches the actor through the whole rollout; with
        ``"per_step"`` the rollout's own Q is used and the gradient is the released code's
        per-step one (:mod:`~torchrl_leq.objectives.per_step_gradients`; needs ``steps`` from
        :meth:`imagine`). Writes the detached λ-returns to ``rollout["value_target"]``, the
        targets of :meth:`model_critic_loss`.

        Returns the reduced loss and ``lambda_return_mean``, ``lower_expectile_fraction``.
        """
        k = self.tensor_keys
        obs, act, alive = rollout.get(k.observation), rollout.get(k.action), rollout.get("alive")
        reward = rollout.get(("next", k.reward))[:, :-1]
        terminated = rollout.get(("next", k.terminated))[:, :-1]
        per_step = self.actor_gradient == "per_step"
        if per_step and len(steps) != rollout.shape[1]:
            raise ValueError(
                "LEQLoss.actor_loss with actor_gradient='per_step' needs the step graphs that "
                "imagine() returns with the rollout."
            )
        if per_step:
            q = rollout.get(k.state_action_value).detach()
        else:
            # Q with frozen critic: gradients reach the actor only (through actions/states).
            q = self._q(obs, act, self.qvalue_network_params.detach())
        lambda_return = self._lambda_returns(q, reward, terminated)  # [B, H+1, 1]
        target = lambda_return.detach()
        weights = self._actor_weights(q.detach(), target) * alive
        rollout.set("value_target", target)
        if per_step:
            loss = per_step_actor_loss(
                steps,
                terminated,
                weights,
                target,
                self._value_estimator,
                self.reduction,
                self._trainable_actor_params(),
                self.num_seeds,
            )
        else:
            loss = self._reduce(-(weights * lambda_return).sum(dim=(1, 2)))
        with torch.no_grad():
            alive_steps = alive[:, :-1]
            n_alive = self._sum(alive_steps).clamp_min(1.0)
            lower = (q[:, :-1] > lambda_return[:, :-1]).to(alive.dtype) * alive_steps
            metadata = {
                "lambda_return_mean": self._sum(lambda_return[:, :-1] * alive_steps) / n_alive,
                "lower_expectile_fraction": self._sum(lower) / n_alive,
            }
        return loss, metadata

    @_bound_networks
    def model_critic_loss(self, transitions: TensorDictBase) -> tuple[Tensor, Metadata]:
        """Eq. 9: lower-expectile (τ) regression of Q(s_t, a_t) on sg(Q^λ_t), t = 0..H-1.

        ``transitions`` is ``rollout[:, :-1]`` after :meth:`actor_loss` (which wrote
        ``"value_target"``). Per-step weights γ^t·alive_t (released code), mean over the H
        steps, then ``reduction`` over the batch. Stores Q(s_t, a_t) in ``transitions``
        (for :meth:`ema_loss`) where the rollout did not already carry it.

        Returns the loss and ``critic_model`` (the per-sample mean).
        """
        target = transitions.get("value_target", None)
        if target is None:
            raise KeyError(
                "LEQLoss.model_critic_loss: the transitions have no 'value_target'; run "
                "actor_loss on the rollout first."
            )
        q = self._rollout_q(transitions)
        weighted = self._step_weights(transitions) * expectile_loss(q - target, self.tau)
        per_sample = weighted.mean(dim=(1, 2))
        return self._reduce(per_sample), {"critic_model": self._mean(per_sample.detach())}

    @_bound_networks
    def env_critic_loss(self, env_batch: TensorDictBase) -> tuple[Tensor, Metadata]:
        """Eq. 5 (with Eq. 3's target): ``expectile(Q(s, a) − sg(r + γ (1 − d) Q(s', π(s'))))``.

        Expectile ``env_tau`` = 0.5 is Eq. 5's ½ squared one-step TD error (the target uses the
        online critic, as the released code does); a lower ``env_tau`` is the "expectile on
        D_env" ablation. Stores Q(s, a) in ``env_batch`` for :meth:`ema_loss`.

        Returns the reduced loss and ``critic_env`` (per-sample mean), ``q_env_mean``.
        """
        k = self.tensor_keys
        obs = env_batch.get(k.observation)
        next_obs = env_batch.get(("next", k.observation))
        batch = env_batch.batch_size
        reward = env_batch.get(("next", k.reward)).reshape(*batch, 1).to(obs.dtype)
        not_term = (~env_batch.get(("next", k.terminated)).reshape(*batch, 1).bool()).to(obs.dtype)
        with torch.no_grad():
            next_action = self._actor(next_obs)
            target = reward + self.gamma * not_term * self._q(next_obs, next_action)
        env_batch.set(_ENV_Q, self._q(obs, env_batch.get(k.action)))
        q = env_batch.get(_ENV_Q)
        per_sample = expectile_loss(q - target, self.env_tau).squeeze(-1)
        metadata = {
            "critic_env": self._mean(per_sample.detach()),
            "q_env_mean": self._mean(q.detach()),
        }
        return self._reduce(per_sample), metadata

    @_bound_networks
    def ema_loss(
        self, env_batch: TensorDictBase, transitions: TensorDictBase
    ) -> tuple[Tensor, Metadata]:
        """Eq. 6: squared distance of the online critic to the EMA critic Q̄.

        On D_env and, with ``ema_on_model`` (released code), on the rollout's state-actions
        (weights γ^t·alive_t), the two mixed with β like the critic terms:
        ``β·L_EMA,model + (1 − β)·L_EMA,env``; only the D_env term otherwise. Reuses the online Q
        stored by :meth:`env_critic_loss` / :meth:`model_critic_loss` (computed if absent).

        Returns the reduced loss and ``critic_ema`` (the per-sample means, mixed).
        """
        k = self.tensor_keys
        q_env = self._env_q(env_batch)
        obs, act = transitions.get(k.observation).detach(), transitions.get(k.action).detach()
        with torch.no_grad(), self.target_qvalue_network_params.to_module(self.qvalue_network):
            q_env_ema = self._q(env_batch.get(k.observation), env_batch.get(k.action))
            q_model_ema = self._q(obs, act) if self.ema_on_model else None
        ema_env = (q_env - q_env_ema).pow(2).squeeze(-1)
        if q_model_ema is None:
            parts = ((1.0, ema_env),)
        else:
            diff = self._rollout_q(transitions) - q_model_ema
            ema_model = (self._step_weights(transitions) * diff.pow(2)).mean(dim=(1, 2))
            parts = ((self.beta, ema_model), (1 - self.beta, ema_env))
        loss = sum(c * self._reduce(v) for c, v in parts)
        return loss, {"critic_ema": sum(c * self._mean(v.detach()) for c, v in parts)}

    def forward(self, tensordict: TensorDictBase) -> TensorDictBase:
        """``loss_actor``, ``loss_qvalue`` = β·L_model + (1−β)·L_env + ω·L_EMA (Eq. 7) and the
        diagnostics, from one imagined rollout (see the class docstring)."""
        env_td, model_td = self._split_and_check(tensordict)
        env_td = env_td.copy()  # env_critic_loss stores Q(s, a) in it
        with self._online_networks():
            rollout, steps = self.imagine(model_td)
            loss_actor, meta_actor = self.actor_loss(rollout, steps)
            transitions = rollout[:, :-1]
            loss_model, meta_model = self.model_critic_loss(transitions)
            loss_env, meta_env = self.env_critic_loss(env_td)
            loss_ema, meta_ema = self.ema_loss(env_td, transitions)
        loss_qvalue = (
            self.beta * loss_model + (1 - self.beta) * loss_env + self.ema_weight * loss_ema
        )
        with torch.no_grad():
            alive, alive_steps = rollout.get("alive"), transitions.get("alive")
            n_alive = self._sum(alive_steps).clamp_min(1.0)
            reward = transitions.get(("next", self.tensor_keys.reward))
            rollout_meta = {
                "rollout_alive_fraction": self._mean(alive[:, 1:]),
                "model_reward_mean": self._sum(reward * alive_steps) / n_alive,
            }
        metadata = {**meta_env, **meta_model, **meta_ema, **meta_actor, **rollout_meta}
        return TensorDict(
            {
                "loss_actor": loss_actor,
                "loss_qvalue": loss_qvalue,
                **{key: metadata[key] for key in self.diagnostic_keys},
            },
            batch_size=[],
        )


_ENV_Q = "_leq_online_state_action_value"


def _tuple(key: NestedKey) -> tuple:
    return key if isinstance(key, tuple) else (key,)
