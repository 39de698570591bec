r"""CLAPLoss: C-LAP's agent losses (Alles et al., CoRL 2024, Sec. 3 and Algorithm 1, agent part).

From start latent states (posterior features of dataset states) the policy is rolled out ``H``
steps in the latent action model (:class:`~torchrl_leq.envs.clap_env.CLAPModelEnv`):
latent action :math:`u_\tau = g(\hat u_\tau, \mu_\theta, \sigma_\theta)` (Eq. 12, the policy's
job), action :math:`a_\tau \sim p_\theta(a | s_\tau, u_\tau)`, next state from the latent
state prior, reward and termination from their heads. With the value model :math:`v_\xi`:

* value targets: the λ-return :math:`V^\lambda_\tau` (Eq. 6's n-step returns mixed with weights
  λ, Dreamer's :math:`V_\lambda`; TorchRL's ``TDLambdaEstimator``, or ``TD0``), bootstrapped
  from the mean of the ``num_value_nets`` value networks (Table 2: 2), cut at predicted
  terminations (``alive``);
* ``loss_actor`` = :math:`-\frac1H\sum_\tau \mathrm{alive}_\tau\,(V^\lambda_\tau - \eta\log\pi_\psi(\hat u_\tau|s_\tau))`
  — Algorithm 1's :math:`\nabla_\psi \sum_\tau V^k_N(s_\tau)`, gradients through the imagined
  trajectory (reparameterised latent actions, Beta actions and latent states; model and value
  parameters frozen), plus Table 2's log-prob/entropy regulariser :math:`\eta` (0.01);
* ``loss_value`` = :math:`\frac1H\sum_\tau \mathrm{alive}_\tau \sum_k \tfrac12 (v_{\xi_k}(s_\tau) - \mathrm{sg}(V^\lambda_\tau))^2`
  on detached states.

γ and λ live in the value estimator only (TorchRL's rule): ``make_value_estimator(gamma=...)``
changes them; :attr:`gamma` / :attr:`lmbda` read them. ``loss_actor`` reaches only the policy,
``loss_value`` only the value networks; the world model (held out with ``hold_out_net``) gets
no gradient from either.

The ablations of App. F are choices of modules, not of this loss: ``"no_constraint"`` is a
Gaussian :class:`~torchrl_leq.modules.clap_policy.CLAPActor` over the latent action space and
``"no_latent_action"`` a model built with ``latent_action=False`` and an actor on env actions
(:func:`~torchrl_leq.modules.clap_policy.make_clap_actor`); :attr:`CLAPLoss.variant` names the
one in use.

Example:
    >>> import torch
    >>> from tensordict import TensorDict
    >>> from torchrl_leq.envs.clap_env import CLAPModelEnv
    >>> from torchrl_leq.modules.clap_policy import make_clap_actor
    >>> from torchrl_leq.modules.latent_action_model import LatentActionModel
    >>> from torchrl_leq.modules import make_state_value_network
    >>> model = LatentActionModel(4, 2, stoch_dim=3, deter_dim=5, units=16, embed_dim=3,
    ...                           latent_action_dim=2)
    >>> env = CLAPModelEnv(model)
    >>> actor = make_clap_actor(model.feature_dim, 2, 2, "clap", epsilon=2.0, units=16, layers=2)
    >>> value = make_state_value_network(model.feature_dim, num_cells=(16, 16))
    >>> loss = CLAPLoss(actor, value, env, horizon=3)
    >>> out = loss(TensorDict({"observation": torch.randn(8, model.feature_dim)}, [8]))
    >>> (out["loss_actor"] + out["loss_value"]).backward()
    >>> sorted(k for k in out.keys() if k.startswith("loss")), loss.variant
    (['loss_actor', 'loss_value'], 'clap')
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from tensordict import TensorDict, TensorDictBase, TensorDictParams
from tensordict.nn import TensorDictModule
from tensordict.utils import NestedKey
from torch import Tensor
from torchrl.envs import EnvBase
from torchrl.objectives import LossModule, ValueEstimators
from torchrl.objectives.utils import dispatch_value_estimator, hold_out_net
from torchrl.objectives.value import ValueEstimatorBase

from torchrl_leq.modules.clap_policy import CLAPActor

from ._utils import check_reduction, reduce_loss
from .hyperparameters import NON_NEGATIVE, POSITIVE_INT, UNIT, Rule, check_hyperparameters

__all__ = ["CLAPLoss"]


class CLAPLoss(LossModule):
    """C-LAP's actor and value losses from one imagined rollout per start state (module doc).

    Input: a tensordict ``[B]`` of start states, posterior features under ``observation``
    (remap with :meth:`set_keys`). Output: ``loss_actor``, ``loss_value`` and diagnostics
    ``value_mean``, ``lambda_return_mean``, ``model_reward_mean``, ``rollout_alive_fraction``,
    ``policy_log_prob`` (mean log π of the policy samples), ``latent_action_sigma`` (the
    largest ``|u − μ| / σ`` of the rollout: at most ε̃ for the constrained policy; 0 without
    latent actions).

    Args:
        actor_network: a :class:`~torchrl_leq.modules.clap_policy.CLAPActor`.
        value_network: ``observation -> state_value`` (e.g.
            :func:`~torchrl_leq.modules.make_state_value_network`), copied ``num_value_nets``
            times (independently re-initialised).
        model_env: a :class:`~torchrl_leq.envs.clap_env.CLAPModelEnv` (not a submodule: not in
            this loss's parameters or ``state_dict``).

    Keyword Args:
        horizon: dream rollout length H (Table 2: 5).
        gamma, lmbda: discount and λ of the value estimator.
        entropy_coef: η of the log-prob regulariser (Table 2: 0.01).
        num_value_nets: number of value networks (Table 2: 2); their mean is bootstrapped.
        reduction: ``"mean"``, ``"sum"`` or ``"none"`` (per start state, ``[B]``).
    """

    @dataclass
    class _AcceptedKeys:
        """Configurable tensordict keys (remap with ``set_keys``).

        Attributes:
            observation: start latent features in the input batch.
            state_value: key written by the value network.
        """

        observation: NestedKey = "observation"
        state_value: NestedKey = "state_value"

    tensor_keys: _AcceptedKeys
    default_keys = _AcceptedKeys
    default_value_estimator = ValueEstimators.TDLambda
    SUPPORTED_VALUE_ESTIMATORS = (ValueEstimators.TDLambda, ValueEstimators.TD0)
    diagnostic_keys = ("value_mean", "lambda_return_mean", "model_reward_mean",
                       "rollout_alive_fraction", "policy_log_prob", "latent_action_sigma")
    out_keys = ["loss_actor", "loss_value", *diagnostic_keys]
    hyperparameter_rules: dict[str, Rule] = {
        "horizon": POSITIVE_INT,
        "gamma": UNIT,
        "lmbda": UNIT,
        "entropy_coef": NON_NEGATIVE,
        "num_value_nets": POSITIVE_INT,
    }
    """Constructor argument -> range check (also applied to ``loss.<argument>`` of a config)."""

    _EST_KEYS = {"value": "state_value", "value_target": "value_target", "reward": "reward",
                 "done": "done", "terminated": "terminated"}

    actor_network: CLAPActor
    actor_network_params: TensorDictParams
    target_actor_network_params: TensorDictParams
    value_network: TensorDictModule
    value_network_params: TensorDictParams
    target_value_network_params: TensorDictParams

    def __init__(
        self,
        actor_network: CLAPActor,
        value_network: TensorDictModule,
        model_env: EnvBase,
        *,
        horizon: int = 5,
        gamma: float = 0.99,
        lmbda: float = 0.95,
        entropy_coef: float = 0.01,
        num_value_nets: int = 2,
        reduction: str = "mean",
    ) -> None:
        check_hyperparameters(
            self.hyperparameter_rules, horizon=horizon, gamma=gamma, lmbda=lmbda,
            entropy_coef=entropy_coef, num_value_nets=num_value_nets,
        )
        check_reduction(reduction)
        if not isinstance(actor_network, CLAPActor):
            raise TypeError(f"actor_network must be a CLAPActor, got {type(actor_network).__name__}")
        if not isinstance(model_env, EnvBase):
            raise TypeError(f"model_env must be a torchrl EnvBase, got {type(model_env)}")
        model = getattr(model_env, "world_model", None)
        latent = bool(getattr(model, "latent_action", False))
        want = model.latent_action_dim if latent else model.action_dim
        if actor_network.out_dim != want or (actor_network.constrained and not latent):
            raise ValueError(
                f"actor_network acts in a {actor_network.out_dim}-dim space but the model env "
                f"takes {'latent' if latent else 'env'} actions of size {want}"
                + (" (a constrained actor needs a model with latent actions)"
                   if actor_network.constrained and not latent else "")
            )
        super().__init__()
        self.convert_to_functional(actor_network, "actor_network", create_target_params=False)
        self.convert_to_functional(value_network, "value_network", num_value_nets,
                                   create_target_params=False)
        self.__dict__["model_env"] = model_env  # deliberately not a submodule
        self.horizon = int(horizon)
        self.entropy_coef = float(entropy_coef)
        self.num_value_nets = int(num_value_nets)
        self.reduction = reduction
        self.latent_action = latent
        self.make_value_estimator(gamma=gamma, lmbda=lmbda)

    @property
    def variant(self) -> str:
        """``"clap"``, ``"no_constraint"`` or ``"no_latent_action"`` (App. F)."""
        if not self.latent_action:
            return "no_latent_action"
        return "clap" if self.actor_network.constrained else "no_constraint"

    # ------------------------------------------------------------------ TorchRL plumbing
    def make_value_estimator(
        self, value_type: ValueEstimators | type | ValueEstimatorBase | None = None, **hyperparams
    ) -> CLAPLoss:
        """The λ-return estimator (TorchRL's ``TDLambdaEstimator``, or ``TD0``): the one home of
        γ and λ. Hyperparameters not given keep the current estimator's.

        Example:
            >>> loss.make_value_estimator(gamma=0.9).gamma  # doctest: +SKIP
            0.9
        """
        if value_type is None:
            value_type = self.default_value_estimator
        if isinstance(value_type, (ValueEstimatorBase, type)):
            super().make_value_estimator(value_type, **hyperparams)
            return self
        hp: dict = {}
        current = self._value_estimator
        if current is not None:
            hp["gamma"] = float(current.gamma)
            if hasattr(current, "lmbda"):
                hp["lmbda"] = float(current.lmbda)
        if value_type == ValueEstimators.TD0:
            hp.pop("lmbda", None)
            hyperparams.pop("lmbda", None)
        elif "lmbda" not in hp and "lmbda" not in hyperparams:
            hp["lmbda"] = 0.95
        hp.update(hyperparams)
        dispatch_value_estimator(
            self, value_type, supported=self.SUPPORTED_VALUE_ESTIMATORS,
            tensor_keys=dict(self._EST_KEYS), value_network=None, **hp,
        )
        return self

    @property
    def gamma(self) -> float:
        """Discount γ, read from the value estimator."""
        return float(self._value_estimator.gamma)

    @property
    def lmbda(self) -> float:
        """λ of the λ-return (0 for TD0), read from the value estimator."""
        return float(getattr(self._value_estimator, "lmbda", 0.0))

    def _forward_value_estimator_keys(self, **kwargs) -> None:
        pass  # the estimator reads an internal tensordict built with its own keys

    @property
    def in_keys(self) -> list[NestedKey]:
        return [self.tensor_keys.observation]

    # ------------------------------------------------------------------ networks
    def _values(self, features: Tensor, params: TensorDictBase) -> Tensor:
        """Every value network at once (vmap over stacked params): ``[K, *batch, 1]``."""
        lead = features.shape[:-1]
        flat = features.reshape(-1, features.shape[-1])
        td = TensorDict({"observation": flat}, flat.shape[:1])
        net, key = self.value_network, self.value_network.out_keys[0]

        def one(td_in: TensorDictBase, p: TensorDictBase) -> Tensor:
            with p.to_module(net):
                return net(td_in).get(key)

        v = torch.vmap(one, (None, 0), randomness="same")(td, params)
        return v.reshape(v.shape[0], *lead, 1)

    # ------------------------------------------------------------------ the pieces
    def imagine(self, start: Tensor) -> TensorDictBase:
        """Algorithm 1's dream rollout from start features ``[B, F]``: ``[B, H]`` steps with
        ``observation`` s_τ, ``action`` u_τ (or a_τ), ``action_log_prob``, ``alive``,
        ``latent_action_sigma`` and ``("next", ...)`` ``observation`` s_{τ+1}, ``reward``,
        ``terminated``. Differentiable w.r.t. the policy; the model is held out."""
        env, actor = self.model_env, self.actor_network
        steps = []
        with hold_out_net(env), self.actor_network_params.to_module(actor):
            td = env.reset(TensorDict({"observation": start}, start.shape[:1]))
            td = td.exclude("done", "terminated")
            for _ in range(self.horizon):
                prior = ((td.get("prior_loc"), td.get("prior_scale"))
                         if actor.constrained else (None, None))
                action, log_prob = actor.sample(td.get("observation"), *prior)
                td.set("action", action)
                td.set("action_log_prob", log_prob)
                if self.latent_action:
                    loc, scale = td.get("prior_loc"), td.get("prior_scale")
                    dev = ((action - loc).abs() / scale).amax(-1)
                else:
                    dev = torch.zeros_like(log_prob)
                td.set("latent_action_sigma", dev.detach())
                td = env.step(td)
                steps.append(td)
                td = td.get("next").exclude("reward", "done", "terminated")
        return torch.stack(steps, 1)

    def lambda_returns(self, rollout: TensorDictBase, next_value: Tensor) -> Tensor:
        """``V^λ_τ`` ``[B, H, 1]`` from rewards r_{τ+1}, bootstrap values v(s_{τ+1}) and
        predicted terminations (the estimator's γ, λ); the rollout ends (done) at τ = H-1."""
        keys = self._value_estimator.tensor_keys
        reward = rollout.get(("next", "reward"))
        terminated = rollout.get(("next", "terminated")).bool()
        last = torch.zeros_like(terminated)
        last[:, -1] = True
        td = TensorDict(
            {"next": {keys.value: next_value, keys.reward: reward,
                      keys.done: terminated | last, keys.terminated: terminated}},
            rollout.batch_size,
        )
        return self._value_estimator.value_estimate(td)

    def actor_loss(self, rollout: TensorDictBase) -> tuple[Tensor, dict[str, Tensor]]:
        """``-mean_τ alive_τ (V^λ_τ − η log π(û_τ|s_τ))`` per start state, reduced; value
        parameters frozen (gradients reach the policy through the rollout). Writes the
        detached ``value_target`` into ``rollout``."""
        next_obs = rollout.get(("next", "observation"))
        next_value = self._values(next_obs, self.value_network_params.detach()).mean(0)
        lam = self.lambda_returns(rollout, next_value)
        rollout.set("value_target", lam.detach())
        alive = rollout.get("alive")
        log_prob = rollout.get("action_log_prob").unsqueeze(-1)
        objective = alive * (lam - self.entropy_coef * log_prob)
        per_sample = -objective.mean(dim=(1, 2))
        with torch.no_grad():
            n = alive.sum().clamp_min(1.0)
            meta = {"lambda_return_mean": (lam * alive).sum() / n,
                    "policy_log_prob": (log_prob * alive).sum() / n}
        return reduce_loss(per_sample, self.reduction), meta

    def value_loss(self, rollout: TensorDictBase) -> tuple[Tensor, dict[str, Tensor]]:
        """``mean_τ alive_τ Σ_k ½ (v_k(s_τ) − sg(V^λ_τ))²`` per start state on detached states;
        needs :meth:`actor_loss`'s ``value_target``."""
        target = rollout.get("value_target", None)
        if target is None:
            raise KeyError("CLAPLoss.value_loss: run actor_loss on the rollout first "
                           "(it writes 'value_target')")
        v = self._values(rollout.get("observation").detach(), self.value_network_params)
        alive = rollout.get("alive").detach()
        sq = 0.5 * (v - target.unsqueeze(0)).pow(2).sum(0)
        per_sample = (alive * sq).mean(dim=(1, 2))
        with torch.no_grad():
            meta = {"value_mean": (v.mean(0) * alive).sum() / alive.sum().clamp_min(1.0)}
        return reduce_loss(per_sample, self.reduction), meta

    def forward(self, tensordict: TensorDictBase) -> TensorDictBase:
        """``loss_actor``, ``loss_value`` and the diagnostics from one imagined rollout."""
        key = self.tensor_keys.observation
        start = tensordict.get(key, None)
        if start is None:
            raise KeyError(f"CLAPLoss: the input has no start features at {key!r} "
                           "(remap with set_keys)")
        if tensordict.batch_dims != 1 or start.ndim != 2:
            raise ValueError(
                "CLAPLoss expects a [B] tensordict of start features [B, F], got batch size "
                f"{tuple(tensordict.batch_size)} and features {tuple(start.shape)}"
            )
        rollout = self.imagine(start)
        loss_actor, meta_actor = self.actor_loss(rollout)
        loss_value, meta_value = self.value_loss(rollout)
        with torch.no_grad():
            alive = rollout.get("alive")
            meta = {
                "model_reward_mean": (rollout.get(("next", "reward")) * alive).sum()
                / alive.sum().clamp_min(1.0),
                "rollout_alive_fraction": rollout.get(("next", "alive")).mean(),
                "latent_action_sigma": rollout.get("latent_action_sigma").max(),
            }
        meta = {**meta_actor, **meta_value, **meta}
        return TensorDict(
            {"loss_actor": loss_actor, "loss_value": loss_value,
             **{k: meta[k].detach() for k in self.diagnostic_keys}},
            batch_size=[],
        )
