"""COMBOLoss: Conservative Offline Model-Based policy Optimization (Yu et al., NeurIPS 2021)
as a TorchRL LossModule: SAC with twin critics on a real/model mixed batch, plus COMBO's
conservative critic regulariser (Eq. 2)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from tensordict import TensorDict, TensorDictBase, TensorDictParams
from tensordict.nn import ProbabilisticTensorDictSequential, TensorDictModule
from tensordict.utils import NestedKey
from torch import Tensor
from torchrl.data import TensorSpec
from torchrl.objectives import LossModule, ValueEstimators
from torchrl.objectives.utils import dispatch_value_estimator
from torchrl.objectives.value import ValueEstimatorBase

from ._utils import check_reduction, flat_key, reduce_loss
from .hyperparameters import (
    NON_NEGATIVE,
    POSITIVE,
    POSITIVE_INT,
    UNIT,
    Rule,
    boolean,
    check_hyperparameters,
)

__all__ = ["COMBOLoss"]


class COMBOLoss(LossModule):
    r"""COMBO's critic (Eq. 2), actor (Eq. 3, SAC form) and entropy-temperature losses.

    One call takes a D_env batch and a D_model batch of transitions (the same layout) and
    treats their concatenation as a sample of d_f, the f-mixture of real and model data
    (``real_ratio`` = f). Every mixed-batch average below is an f-weighted average:
    :math:`\bar x = f\,\mathrm{mean}_{env}(x) + (1-f)\,\mathrm{mean}_{model}(x)`, so the
    sub-batch sizes do not change the objective (sampling ``f·B`` real and ``(1-f)·B`` model
    transitions, as the paper does, makes every weight 1).

    * ``loss_qvalue`` = :math:`\sum_{k=1,2}` [ ½·avg\ :sub:`d_f` (Q_k(s,a) − y)²
      + β·( avg\ :sub:`d_f` LSE_k(s) − mean\ :sub:`D_env` Q_k(s,a) ) ], with the soft
      TD(0) target y = r + γ·(1−terminated)·(min_k Q̄_k(s',a') − α·log π(a'|s')), a' ∼ π(·|s'),
      Q̄ the target (EMA) critics, computed by TorchRL's ``TD0Estimator``;
    * the conservative term LSE_k(s) is CQL(H)'s importance-sampled log-sum-exp over
      ``3·num_random`` actions per mixed-batch state s: ``num_random`` uniform actions in the
      action box (log-density −Σ log(high−low)), ``num_random`` actions from π(·|s) and
      ``num_random`` from π(·|s') (all evaluated at Q(s, ·), each minus its log-density under the
      distribution it was drawn from, log-densities detached):
      :math:`\mathrm{LSE}_k(s) = \log\sum_j \exp(Q_k(s, a_j) - \log p_j(a_j))`
      (no :math:`-\log(3M)`, as in CQL and TorchRL's ``CQLLoss``);
    * ``loss_actor`` = avg\ :sub:`d_f` [ α·log π(ã|s) − min_k Q_k(s, ã) ], ã ∼ π(·|s)
      reparameterised, critics frozen;
    * ``loss_alpha`` = avg\ :sub:`d_f` [ −log α · (log π(ã|s) + H̄) ], H̄ = −|A| by default
      (zero when ``fixed_alpha``).

    Gradients: ``loss_qvalue`` reaches only the critics, ``loss_actor`` only the actor,
    ``loss_alpha`` only ``log_alpha``; the target critics get none. Update the targets with
    ``SoftUpdate(loss, tau=0.005)``.

    Diagnostics (keys not starting with ``loss``): ``alpha``, ``entropy`` (avg −log π),
    ``conservative_gap`` (avg\ :sub:`d_f` LSE − mean\ :sub:`D_env` Q, mean over critics: the
    quantity the paper's offline hyperparameter rule minimises), ``q_mean`` (avg\ :sub:`d_f`
    Q(s,a)), ``logsumexp_term``, ``dataset_term``, ``critic_bellman`` (½ squared TD error).

    Input layout: a tensordict with batch size ``[]`` holding two sub-tensordicts of 1-d batch
    size (remap with :meth:`set_keys`), each in TorchRL's transition layout (``observation``,
    ``action``, ``("next", "observation")``, ``("next", "reward")``, ``("next", "terminated")``):

    * ``"env"`` ``[B_env]``: D_env transitions (also the dataset term's state-actions);
    * ``"model"`` ``[B_model]``: model-rollout transitions
      (:func:`~torchrl_leq.data.model_rollouts.rollout_model_transitions`).

    Args:
        actor_network: stochastic actor (e.g. a ``ProbabilisticActor`` with ``TanhNormal``,
            :func:`~torchrl_leq.modules.stochastic_actor.make_tanh_normal_actor`) whose ``get_dist`` reads
            ``observation``.
        qvalue_network: one Q-network ``(observation, action) -> state_action_value``; it is
            copied ``num_qvalue_nets`` times (independently re-initialised) with target copies.

    Keyword Args:
        beta: β ≥ 0, weight of the conservative regulariser (paper grid {0.5, 1, 5}).
        real_ratio: f ∈ [0, 1], share of real data in d_f (paper: 0.5).
        num_random: M ≥ 1, actions per proposal (uniform, π(·|s), π(·|s')) in the log-sum-exp.
        gamma: discount γ.
        num_qvalue_nets: number of critics (2: twin critics).
        alpha_init: initial entropy temperature α.
        fixed_alpha: keep α fixed (a buffer; ``loss_alpha`` is zero) instead of learning it.
        target_entropy: H̄, or ``"auto"`` for −|A| (|A| read from ``action_spec``).
        action_spec: bounded action spec (box of the uniform proposal, |A|). Defaults to the
            actor's ``spec[action]``.
        reduction: ``"mean"``, ``"sum"`` or ``"none"`` (per-sample losses over the mixed batch,
            env rows first, each already multiplied by its mixture weight, so ``"mean"`` of the
            ``"none"`` output equals ``"mean"``).
        validate_inputs: check inputs for NaN/inf (one host sync per input; off in benchmarks).

    Example:
        >>> import torch
        >>> from tensordict import TensorDict
        >>> from torchrl.objectives import SoftUpdate
        >>> from torchrl_leq.modules import make_qvalue_network, make_tanh_normal_actor
        >>> actor = make_tanh_normal_actor(3, 2, num_cells=(32, 32))
        >>> critic = make_qvalue_network(3, 2, layer_norm=False, use_symlog=False, num_cells=(32, 32))
        >>> loss = COMBOLoss(actor, critic, beta=1.0, real_ratio=0.5)
        >>> target_updater = SoftUpdate(loss, tau=0.005)
        >>> def transitions(b):
        ...     return TensorDict({
        ...         "observation": torch.randn(b, 3), "action": torch.rand(b, 2) * 2 - 1,
        ...         "next": {"observation": torch.randn(b, 3), "reward": torch.randn(b, 1),
        ...                  "terminated": torch.zeros(b, 1, dtype=torch.bool)}}, [b])
        >>> out = loss(TensorDict({"env": transitions(8), "model": transitions(8)}, []))
        >>> sorted(k for k in out.keys() if k.startswith("loss"))
        ['loss_actor', 'loss_alpha', 'loss_qvalue']
        >>> (out["loss_actor"] + out["loss_qvalue"] + out["loss_alpha"]).backward()
        >>> target_updater.step()
    """

    @dataclass
    class _AcceptedKeys:
        """Configurable tensordict keys (remap with ``set_keys``).

        Attributes:
            env_batch: sub-tensordict of D_env transitions. Defaults to ``"env"``.
            model_batch: sub-tensordict of model-rollout transitions. Defaults to ``"model"``.
            observation: observation key (both batches, also under ``"next"``; read by the actor
                and the critic).
            action: action key (both batches; read by the critic).
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
    default_value_estimator = ValueEstimators.TD0
    SUPPORTED_VALUE_ESTIMATORS = (ValueEstimators.TD0,)
    diagnostic_keys = (
        "alpha",
        "entropy",
        "conservative_gap",
        "q_mean",
        "logsumexp_term",
        "dataset_term",
        "critic_bellman",
    )
    out_keys = ["loss_actor", "loss_qvalue", "loss_alpha", *diagnostic_keys]
    hyperparameter_rules: dict[str, Rule] = {
        "beta": NON_NEGATIVE,
        "real_ratio": UNIT,
        "num_random": POSITIVE_INT,
        "gamma": UNIT,
        "num_qvalue_nets": POSITIVE_INT,
        "alpha_init": POSITIVE,
        "fixed_alpha": boolean,
    }
    """Constructor argument -> range check (also applied to ``loss.<argument>`` of a config)."""

    # Keys of the internal tensordict handed to the value estimator.
    _EST_KEYS = {
        "value": "state_value",
        "value_target": "value_target",
        "reward": "reward",
        "done": "done",
        "terminated": "terminated",
    }

    actor_network: TensorDictModule
    actor_network_params: TensorDictParams
    target_actor_network_params: TensorDictParams
    qvalue_network: TensorDictModule
    qvalue_network_params: TensorDictParams
    target_qvalue_network_params: TensorDictParams

    def __init__(
        self,
        actor_network: ProbabilisticTensorDictSequential,
        qvalue_network: TensorDictModule,
        *,
        beta: float = 1.0,
        real_ratio: float = 0.5,
        num_random: int = 10,
        gamma: float = 0.99,
        num_qvalue_nets: int = 2,
        alpha_init: float = 1.0,
        fixed_alpha: bool = False,
        target_entropy: float | str = "auto",
        action_spec: TensorSpec | None = None,
        reduction: str = "mean",
        validate_inputs: bool = True,
    ) -> None:
        check_hyperparameters(
            self.hyperparameter_rules, beta=beta, real_ratio=real_ratio, num_random=num_random,
            gamma=gamma, num_qvalue_nets=num_qvalue_nets, alpha_init=alpha_init,
            fixed_alpha=fixed_alpha,
        )
        beta, real_ratio, gamma = float(beta), float(real_ratio), float(gamma)
        check_reduction(reduction)
        if not hasattr(actor_network, "get_dist"):
            raise TypeError(
                "actor_network must be a probabilistic actor with get_dist (e.g. a "
                f"ProbabilisticActor with TanhNormal), got {type(actor_network).__name__}."
            )
        super().__init__()
        low, high = self._action_bounds(actor_network, action_spec)
        self.convert_to_functional(actor_network, "actor_network", create_target_params=False)
        self.convert_to_functional(
            qvalue_network, "qvalue_network", num_qvalue_nets, create_target_params=True
        )
        device = low.device
        for p in self.actor_network_params.values(True, True):
            device = p.device
            break
        self.register_buffer("action_low", low.to(device))
        self.register_buffer("action_high", high.to(device))
        if target_entropy == "auto":
            target_entropy = -float(low.numel())
        elif isinstance(target_entropy, str):
            raise ValueError(f"target_entropy must be a number or 'auto', got {target_entropy!r}.")
        self.register_buffer("target_entropy", torch.tensor(float(target_entropy), device=device))
        log_alpha = torch.tensor(math.log(alpha_init), device=device)
        if fixed_alpha:
            self.register_buffer("log_alpha", log_alpha)
        else:
            self.register_parameter("log_alpha", torch.nn.Parameter(log_alpha))
        self.fixed_alpha = fixed_alpha
        self.beta = beta
        self.real_ratio = real_ratio
        self.num_random = num_random
        self.num_qvalue_nets = num_qvalue_nets
        self.reduction = reduction
        self.validate_inputs = validate_inputs
        self.make_value_estimator(gamma=gamma)

    @staticmethod
    def _action_bounds(actor: TensorDictModule, spec: TensorSpec | None) -> tuple[Tensor, Tensor]:
        if spec is None:
            actor_spec = getattr(actor, "spec", None)
            out_keys = list(getattr(actor, "out_keys", []))
            for key in ("action", *out_keys):
                try:
                    spec = actor_spec[key] if actor_spec is not None else None
                except KeyError:
                    spec = None
                if spec is not None:
                    break
        space = getattr(spec, "space", None)
        low, high = getattr(space, "low", None), getattr(space, "high", None)
        if low is None or high is None:
            raise ValueError(
                "COMBOLoss needs a bounded action spec (uniform proposal box and |A| for the "
                "target entropy): pass action_spec=Bounded(low, high, (act_dim,)) or give the "
                "actor a spec (make_tanh_normal_actor does)."
            )
        low, high = low.detach().flatten().float(), high.detach().flatten().float()
        if not bool(
            torch.isfinite(low).all() and torch.isfinite(high).all() and (high > low).all()
        ):
            raise ValueError("action spec bounds must be finite with high > low.")
        return low, high

    # ------------------------------------------------------------------ TorchRL plumbing
    def make_value_estimator(
        self, value_type: ValueEstimators | type | ValueEstimatorBase | None = None, **hyperparams
    ) -> COMBOLoss:
        """Build the Bellman-target estimator (default: TorchRL's ``TD0Estimator``).

        The estimator reads an internal tensordict holding ``("next", "state_value")`` =
        min_k Q̄_k(s', a') − α·log π(a'|s'), ``("next", "reward")`` and
        ``("next", "terminated")`` (also used as ``"done"``: a 1-step target bootstraps unless
        terminated). ``gamma`` defaults to the current estimator's γ: the estimator is the
        only store of γ (:attr:`gamma` reads it).
        """
        if value_type is None:
            value_type = self.default_value_estimator
        if isinstance(value_type, ValueEstimatorBase) or isinstance(value_type, type):
            super().make_value_estimator(value_type, **hyperparams)
            return self
        hp = {"gamma": 0.99 if self._value_estimator is None else self.gamma}
        hp.update(hyperparams)
        dispatch_value_estimator(
            self,
            value_type,
            supported=self.SUPPORTED_VALUE_ESTIMATORS,
            tensor_keys=dict(self._EST_KEYS),
            value_network=None,
            **hp,
        )
        return self

    @property
    def gamma(self) -> float:
        """Discount γ, read from the value estimator (its only store; a host sync on GPU)."""
        return float(self._value_estimator.gamma)

    def _forward_value_estimator_keys(self, **kwargs) -> None:
        # The estimator reads an internal tensordict built with its own keys.
        pass

    @property
    def in_keys(self) -> list[NestedKey]:
        k = self.tensor_keys
        keys = []
        for batch in (k.env_batch, k.model_batch):
            keys += [
                flat_key(batch, k.observation),
                flat_key(batch, k.action),
                flat_key(batch, "next", k.observation),
                flat_key(batch, "next", k.reward),
                flat_key(batch, "next", k.terminated),
            ]
        return keys

    @property
    def alpha(self) -> Tensor:
        """Current entropy temperature α (detached)."""
        return self.log_alpha.detach().exp()

    # ------------------------------------------------------------------ networks
    def _dist(self, observation: Tensor, params: TensorDictBase):
        td = TensorDict({self.tensor_keys.observation: observation}, observation.shape[:-1])
        with params.to_module(self.actor_network):
            return self.actor_network.get_dist(td)

    def _sample_policy(
        self, observation: Tensor, params: TensorDictBase, num_samples: int | None = None
    ) -> tuple[Tensor, Tensor]:
        """Reparameterised actions and their log-densities; leading sample dim if requested."""
        dist = self._dist(observation, params)
        shape = torch.Size([] if num_samples is None else [num_samples])
        if hasattr(dist, "rsample_and_log_prob"):
            return dist.rsample_and_log_prob(shape)
        action = dist.rsample(shape)
        return action, dist.log_prob(action)

    def _q(self, observation: Tensor, action: Tensor, params: TensorDictBase) -> Tensor:
        """All critics at once (vmap over the stacked params): ``[K, *batch]`` (value dim
        dropped)."""
        k = self.tensor_keys
        batch = observation.shape[:-1]
        td = TensorDict({k.observation: observation, k.action: action}, batch)
        net = self.qvalue_network

        def one(td_in: TensorDictBase, p: TensorDictBase) -> Tensor:
            with p.to_module(net):
                return net(td_in).get(k.state_action_value)

        q = torch.vmap(one, (None, 0))(td, params)
        return q.reshape(q.shape[0], *batch)

    # ------------------------------------------------------------------ regulariser
    @torch.no_grad()
    def sample_regularizer_actions(
        self, observation: Tensor, next_observation: Tensor
    ) -> tuple[Tensor, Tensor]:
        """The CQL(H) proposal actions of the log-sum-exp term and their log-densities.

        Returns ``actions`` ``[N, 3M, |A|]`` and ``log_density`` ``[N, 3M]`` (M = ``num_random``)
        in the order: M uniform actions in ``[action_low, action_high]``, M actions from
        π(·|s), M from π(·|s'); no gradient flows through either.
        """
        n, m = observation.shape[0], self.num_random
        low, high = self.action_low.to(observation.dtype), self.action_high.to(observation.dtype)
        uniform = torch.rand(n, m, low.numel(), device=observation.device, dtype=low.dtype)
        uniform = low + (high - low) * uniform
        log_uniform = (-(high - low).log().sum()).expand(n, m)
        params = self.actor_network_params.detach()
        a_s, lp_s = self._sample_policy(observation, params, m)  # [M, N, A], [M, N]
        a_n, lp_n = self._sample_policy(next_observation, params, m)
        actions = torch.cat([uniform, a_s.transpose(0, 1), a_n.transpose(0, 1)], 1)
        log_density = torch.cat([log_uniform, lp_s.transpose(0, 1), lp_n.transpose(0, 1)], 1)
        return actions, log_density.to(actions.dtype)

    @staticmethod
    def importance_logsumexp(q_samples: Tensor, log_density: Tensor) -> Tensor:
        """``log Σ_j exp(Q(s, a_j) − log p(a_j))`` over the last dim (CQL(H))."""
        return torch.logsumexp(q_samples - log_density, dim=-1)

    # ------------------------------------------------------------------ inputs
    def _check_batch(
        self, name: str, sub: TensorDictBase | None, key: NestedKey, obs_dim: int | None
    ) -> TensorDictBase:
        """Keys, batch size, feature dims (``obs_dim``: that of the other batch, if known)."""
        k = self.tensor_keys
        if sub is None:
            raise KeyError(
                f"COMBOLoss: input tensordict has no {name} sub-tensordict at {key!r}; pass "
                "TensorDict(env=..., model=..., batch_size=[]) or remap with set_keys."
            )
        if not isinstance(sub, TensorDictBase):
            raise TypeError(f"COMBOLoss: {name} at {key!r} must be a tensordict, got {type(sub)}.")
        present = set(sub.keys(include_nested=True, leaves_only=True))
        for req in (
            k.observation,
            k.action,
            ("next", k.observation),
            ("next", k.reward),
            ("next", k.terminated),
        ):
            if req not in present:
                raise KeyError(f"COMBOLoss: {name} {key!r} is missing the key {req!r}.")
        if sub.batch_dims != 1:
            raise ValueError(
                f"COMBOLoss: {name} must have a 1-d batch size [B], got {tuple(sub.batch_size)}."
            )
        if sub.batch_size[0] == 0:
            raise ValueError(f"COMBOLoss: {name} is empty; both batches need B >= 1.")
        b = sub.batch_size[0]
        act_dim = self.action_low.numel()
        for req, dim in (
            (k.observation, obs_dim),
            (("next", k.observation), obs_dim),
            (k.action, act_dim),
        ):
            shape = sub.get(req).shape
            if len(shape) != 2 or (dim is not None and shape[-1] != dim):
                want = f"[{b}, {dim}]" if dim is not None else f"[{b}, F]"
                raise ValueError(
                    f"COMBOLoss: {name} {req!r} must be shaped {want}, got {tuple(shape)}."
                )
            if req == k.observation:
                obs_dim = shape[-1]
        for req in (("next", k.reward), ("next", k.terminated)):
            shape = sub.get(req).shape
            if shape not in ((b,), (b, 1)):
                raise ValueError(
                    f"COMBOLoss: {name} {req!r} must be shaped [B] or [B, 1], got {tuple(shape)}."
                )
        if self.validate_inputs and not torch.compiler.is_compiling():
            for req in (k.observation, k.action, ("next", k.observation), ("next", k.reward)):
                val = sub.get(req)
                if val.is_floating_point() and not bool(torch.isfinite(val).all()):
                    raise ValueError(f"COMBOLoss: NaN or inf in {name} key {req!r}.")
        return sub

    def _split_and_check(self, tensordict: TensorDictBase) -> tuple[TensorDictBase, TensorDictBase]:
        k = self.tensor_keys
        env_td = self._check_batch(
            "env_batch", tensordict.get(k.env_batch, None), k.env_batch, None
        )
        model_td = self._check_batch(
            "model_batch",
            tensordict.get(k.model_batch, None),
            k.model_batch,
            env_td.get(k.observation).shape[-1],
        )
        return env_td, model_td

    def _mixed(self, env_td: TensorDictBase, model_td: TensorDictBase) -> dict[str, Tensor]:
        """Concatenate the two batches (env rows first) and build the mixture weights."""
        k = self.tensor_keys
        n_env, n_model = env_td.batch_size[0], model_td.batch_size[0]
        n = n_env + n_model

        def cat(key: NestedKey, shape_1: bool = False) -> Tensor:
            parts = [env_td.get(key), model_td.get(key)]
            if shape_1:
                parts = [p.reshape(-1, 1) for p in parts]
            return torch.cat(parts, 0)

        obs = cat(k.observation)
        dtype, device = obs.dtype, obs.device
        f = self.real_ratio
        weight = torch.cat(
            [
                torch.full((n_env,), f * n / n_env, dtype=dtype, device=device),
                torch.full((n_model,), (1 - f) * n / n_model, dtype=dtype, device=device),
            ]
        )
        data_weight = torch.cat(
            [
                torch.full((n_env,), n / n_env, dtype=dtype, device=device),
                torch.zeros(n_model, dtype=dtype, device=device),
            ]
        )
        return {
            "observation": obs,
            "action": cat(k.action).to(dtype),
            "next_observation": cat(("next", k.observation)),
            "reward": cat(("next", k.reward), True).to(dtype),
            "terminated": cat(("next", k.terminated), True).bool(),
            "weight": weight,
            "data_weight": data_weight,
        }

    # ------------------------------------------------------------------ forward
    @torch.no_grad()
    def _bellman_target(self, batch: dict[str, Tensor], alpha: Tensor) -> Tensor:
        """Soft TD(0) target ``[N, 1]`` from the target critics."""
        next_obs = batch["next_observation"]
        next_action, next_log_prob = self._sample_policy(
            next_obs, self.actor_network_params.detach()
        )
        q_next = self._q(next_obs, next_action, self.target_qvalue_network_params)  # [K, N]
        next_value = (q_next - alpha * next_log_prob).min(0).values.unsqueeze(-1)  # [N, 1]
        keys = self._value_estimator.tensor_keys
        term = batch["terminated"]
        td = TensorDict(
            {
                "next": {
                    keys.value: next_value,
                    keys.reward: batch["reward"],
                    keys.done: term,
                    keys.terminated: term,
                }
            },
            batch_size=term.shape[:1],
        )
        return self._value_estimator.value_estimate(td)

    def forward(self, tensordict: TensorDictBase) -> TensorDictBase:
        """Compute ``loss_qvalue``, ``loss_actor``, ``loss_alpha`` and diagnostics."""
        env_td, model_td = self._split_and_check(tensordict)
        batch = self._mixed(env_td, model_td)
        obs, act = batch["observation"], batch["action"]
        weight, data_weight = batch["weight"], batch["data_weight"]
        n = obs.shape[0]
        alpha = self.alpha.to(obs.dtype)
        critic_params = self.qvalue_network_params

        # ---- critic: Bellman term on d_f (Eq. 2, second term).
        target = self._bellman_target(batch, alpha).reshape(n)
        reg_actions, reg_log_density = self.sample_regularizer_actions(
            obs, batch["next_observation"]
        )
        m3 = reg_actions.shape[1]
        # One critic call on [N, 1 + 3M]: the batch action first, then the proposals.
        all_actions = torch.cat([act.unsqueeze(1), reg_actions.to(act.dtype)], 1)
        all_obs = obs.unsqueeze(1).expand(n, 1 + m3, obs.shape[-1])
        q_all = self._q(all_obs, all_actions, critic_params)  # [K, N, 1+3M]
        q_data, q_samples = q_all[..., 0], q_all[..., 1:]
        bellman = 0.5 * (q_data - target).pow(2)  # [K, N]

        # ---- critic: conservative term (Eq. 2, first term).
        lse = self.importance_logsumexp(q_samples, reg_log_density)  # [K, N]
        regulariser = weight * lse - data_weight * q_data  # [K, N]; mean over N = gap
        qvalue_per_sample = (weight * bellman + self.beta * regulariser).sum(0)

        # ---- actor (Eq. 3, SAC form) on the states of d_f; critics frozen.
        action_pi, log_prob = self._sample_policy(obs, self.actor_network_params)
        q_pi = self._q(obs, action_pi, critic_params.detach()).min(0).values
        actor_per_sample = weight * (alpha * log_prob - q_pi)

        # ---- temperature.
        if self.fixed_alpha:
            alpha_per_sample = torch.zeros_like(log_prob)
        else:
            alpha_per_sample = weight * (
                -self.log_alpha * (log_prob.detach() + self.target_entropy)
            )

        red = self.reduction
        with torch.no_grad():
            lse_term = (weight * lse).mean(1).mean(0)
            data_term = (data_weight * q_data).mean(1).mean(0)
            diagnostics = {
                "alpha": alpha,
                "entropy": -(weight * log_prob).mean(),
                "conservative_gap": lse_term - data_term,
                "q_mean": (weight * q_data).mean(),
                "logsumexp_term": lse_term,
                "dataset_term": data_term,
                "critic_bellman": (weight * bellman).mean(),
            }
        return TensorDict(
            {
                "loss_actor": reduce_loss(actor_per_sample, red),
                "loss_qvalue": reduce_loss(qvalue_per_sample, red),
                "loss_alpha": reduce_loss(alpha_per_sample, red),
                **diagnostics,
            },
            batch_size=[],
        )
