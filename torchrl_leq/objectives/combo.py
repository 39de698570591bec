"""COMBOLoss: Conservative Offline Model-Based policy Optimization (Yu et al., NeurIPS 2021)
as a TorchRL LossModule: SAC with twin critics on a real/model mixed batch, plus COMBO's
conservative critic regulariser (Eq. 2)."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from tensordict import TensorDict, TensorDictBase, TensorDictParams
from tensordict.nn import ProbabilisticTensorDictSequential, TensorDictModule
from tensordict.utils import NestedKey
from torch import Tensor, nn
from torch.distributions import Distribution, Independent, Normal, TransformedDistribution
from torchrl.data import TensorSpec
from torchrl.objectives import LossModule, ValueEstimators
from torchrl.objectives.utils import dispatch_value_estimator
from torchrl.objectives.value import ValueEstimatorBase

from torchrl_leq.modules.seed_batched import num_seeds_of

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

    K stacked seeds (``num_seeds`` K > 1, networks from
    :func:`~torchrl_leq.modules.seed_batched.stack_seed_modules`): both batches are the K seeds'
    batches concatenated seed-major (``[K*B_env]``, ``[K*B_model]``), the mixed batch is seed k's
    env rows then its model rows for each k in turn, and every loss and diagnostic is seed k's own
    (``[K]`` tensors; one temperature per seed), so ``sum(loss)`` gives each seed exactly its
    single-seed gradient.

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
            ``"none"`` output equals ``"mean"``; per seed with K > 1).
        validate_inputs: check inputs for NaN/inf (one host sync per input; off in benchmarks).
        num_seeds: K, the number of stacked seeds the networks hold (1: a single-seed loss).
        generators: K > 1 only: seed k's random draws (its critics' initialisation, proposal
            and policy samples) come from ``generators[k]`` (its RNG stream,
            :class:`~torchrl_leq.training.multi_seed.SeedStreams`), in the order and shapes a
            single-seed loss draws them from the global RNG. ``None``: the global RNG.

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
        num_seeds: int = 1,
        generators: Sequence[torch.Generator] | None = None,
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
        num_seeds = int(num_seeds)
        if num_seeds < 1:
            raise ValueError(f"num_seeds must be >= 1, got {num_seeds}.")
        for name, net in (("actor_network", actor_network), ("qvalue_network", qvalue_network)):
            if num_seeds_of(net) != num_seeds:
                raise ValueError(
                    f"{name} holds {num_seeds_of(net)} stacked seed(s), num_seeds is {num_seeds}."
                )
        if generators is not None and (num_seeds == 1 or len(generators) != num_seeds):
            raise ValueError("generators: one per seed, for num_seeds > 1 only.")
        super().__init__()
        self.num_seeds = num_seeds
        self.generators = list(generators) if generators is not None else [None] * num_seeds
        low, high = self._action_bounds(actor_network, action_spec)
        self.convert_to_functional(actor_network, "actor_network", create_target_params=False)
        if num_seeds == 1:
            self.convert_to_functional(
                qvalue_network, "qvalue_network", num_qvalue_nets, create_target_params=True
            )
        else:
            self._convert_seed_critics(qvalue_network, num_qvalue_nets)
        device = low.device
        for p in self.actor_network_params.values(True, True):
            device = p.device
            break
        if target_entropy == "auto":
            target_entropy = -float(low.numel())
        elif isinstance(target_entropy, str):
            raise ValueError(f"target_entropy must be a number or 'auto', got {target_entropy!r}.")
        log_alpha = torch.tensor(math.log(alpha_init), device=device)
        if num_seeds > 1:  # per seed: seed k's slice of every state is a single-seed loss's
            low, high = low.expand(num_seeds, -1).clone(), high.expand(num_seeds, -1).clone()
            log_alpha = log_alpha.expand(num_seeds).clone()
        self.register_buffer("action_low", low.to(device))
        self.register_buffer("action_high", high.to(device))
        self.register_buffer("target_entropy", torch.tensor(float(target_entropy), device=device))
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

    def _convert_seed_critics(self, network: TensorDictModule, num_nets: int) -> None:
        """K > 1: ``qvalue_network_params`` ``[K, num_nets, ...]`` (seed-major like every
        stacked state) and their target copies. Seed k's critics start as a single-seed loss's
        do (TorchRL's ``convert_to_functional``: each parameter redrawn uniformly between the min
        and max of the network's, buffers repeated), drawn in parameter order from its generator.
        """
        self.convert_to_functional(network, "qvalue_network", create_target_params=True)
        K = self.num_seeds

        def seed_major(t: Tensor) -> Tensor:
            if not isinstance(t, nn.Parameter):
                return t.unsqueeze(1).expand(K, num_nets, *t.shape[1:]).clone()
            drawn = [
                torch.empty(
                    num_nets, *p.shape, dtype=p.dtype, device=p.device if g is None else g.device
                ).uniform_(p.min().item(), p.max().item(), generator=g)
                for p, g in zip(t.detach(), self.generators)
            ]
            return nn.Parameter(torch.stack(drawn).to(t.device))

        params = TensorDict.from_module(network, as_module=True).apply(
            seed_major, batch_size=[K, num_nets]
        )
        self.qvalue_network_params = TensorDictParams(params, no_convert=True)
        self.target_qvalue_network_params = TensorDictParams(params.data.clone(), no_convert=True)

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
        """Current entropy temperature α (detached; ``[K]`` with K seeds)."""
        return self.log_alpha.detach().exp()

    # ------------------------------------------------------------------ stacked seeds
    def _rows(self, x: Tensor, n: int) -> Tensor:
        """A per-seed ``[K, ...]`` value on each row of an ``[n]`` seed-major batch (K = 1:
        ``x``)."""
        return x if self.num_seeds == 1 else x.repeat_interleave(n // self.num_seeds, 0)

    def _per_seed(self, x: Tensor) -> Tensor:
        """``x`` with its (last, seed-major) batch dim split into a leading seed dim:
        ``[K, ..., B]`` (K = 1: ``x``)."""
        if self.num_seeds == 1:
            return x
        return x.unflatten(-1, (self.num_seeds, -1)).movedim(-2, 0)

    def _draw(
        self, sample: Callable[..., Tensor], shape: Sequence[int], dim: int, like: Tensor
    ) -> Tensor:
        """``sample(shape)`` (``torch.rand`` / ``torch.randn``) in ``like``'s dtype and device;
        with K > 1 seed k's share of the seed-major ``dim`` is drawn from its generator."""
        if self.num_seeds == 1:
            return sample(tuple(shape), dtype=like.dtype, device=like.device)
        part = list(shape)
        part[dim] //= self.num_seeds
        draws = []
        for g in self.generators:
            device = like.device if g is None else g.device
            draws.append(sample(part, generator=g, dtype=like.dtype, device=device))
        return torch.cat(draws, dim).to(like.device)

    def _seed_rsample(self, dist: Distribution, shape: torch.Size) -> tuple[Tensor, Tensor]:
        """K > 1: reparameterised tanh-Gaussian actions and log-densities, the Gaussian noise
        drawn per seed (:meth:`_draw`): ``u = loc + ε·scale``, then the distribution's
        transforms, log π = log N(u) − Σ log|det J|."""
        base = getattr(dist, "base_dist", None)
        if not (
            isinstance(dist, TransformedDistribution)
            and isinstance(base, Independent)
            and isinstance(base.base_dist, Normal)
            and len(dist.event_shape) == 1
        ):
            raise TypeError(
                "COMBOLoss with num_seeds > 1 needs a tanh-Gaussian actor (TanhNormal over a "
                f"vector action), got {type(dist).__name__}."
            )
        normal = base.base_dist
        noise = self._draw(torch.randn, (*shape, *normal.loc.shape), len(shape), normal.loc)
        x = normal.loc + noise * normal.scale
        log_prob = base.log_prob(x)
        for transform in dist.transforms:
            y = transform(x)
            log_prob = log_prob - transform.log_abs_det_jacobian(x, y).sum(-1)
            x = y
        return x, log_prob

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
        if self.num_seeds > 1:
            return self._seed_rsample(dist, shape)
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

        # The critics' dim: 0, or 1 behind the seed dim of K stacked seeds ([K, critics, ...]).
        q = torch.vmap(one, (None, 0 if self.num_seeds == 1 else 1))(td, params)
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
        if self.num_seeds > 1:  # seed k's box on its rows: [N, 1, |A|]
            low, high = self._rows(low, n).unsqueeze(1), self._rows(high, n).unsqueeze(1)
        uniform = self._draw(torch.rand, (n, m, low.shape[-1]), 0, low)
        uniform = low + (high - low) * uniform
        log_uniform = (-(high - low).log().sum(-1)).expand(n, m)
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
        if b % self.num_seeds:
            raise ValueError(
                f"COMBOLoss: {name} has {b} rows, not num_seeds={self.num_seeds} equal seed parts."
            )
        act_dim = self.action_low.shape[-1]
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
        """Concatenate the two batches (env rows first; per seed, seed-major) and build the
        mixture weights."""
        k, K = self.tensor_keys, self.num_seeds
        n_env, n_model = env_td.batch_size[0] // K, model_td.batch_size[0] // K  # per seed
        n = n_env + n_model

        def cat(key: NestedKey, shape_1: bool = False) -> Tensor:
            parts = [env_td.get(key), model_td.get(key)]
            if shape_1:
                parts = [p.reshape(-1, 1) for p in parts]
            return torch.cat([p.unflatten(0, (K, -1)) for p in parts], 1).flatten(0, 1)

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
            "weight": weight.repeat(K),
            "data_weight": data_weight.repeat(K),
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
        alpha_rows = self._rows(alpha, n)
        critic_params = self.qvalue_network_params

        # ---- critic: Bellman term on d_f (Eq. 2, second term).
        target = self._bellman_target(batch, alpha_rows).reshape(n)
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
        actor_per_sample = weight * (alpha_rows * log_prob - q_pi)

        # ---- temperature.
        if self.fixed_alpha:
            alpha_per_sample = torch.zeros_like(log_prob)
        else:
            alpha_per_sample = weight * (
                -self._rows(self.log_alpha, n) * (log_prob.detach() + self.target_entropy)
            )

        red, K = self.reduction, self.num_seeds
        with torch.no_grad():  # means over the batch (per seed: self._per_seed) and the critics
            lse_term = self._per_seed(weight * lse).mean(-1).mean(-1)
            data_term = self._per_seed(data_weight * q_data).mean(-1).mean(-1)
            diagnostics = {
                "alpha": alpha,
                "entropy": -self._per_seed(weight * log_prob).mean(-1),
                "conservative_gap": lse_term - data_term,
                "q_mean": self._per_seed(weight * q_data).flatten(-2).mean(-1),
                "logsumexp_term": lse_term,
                "dataset_term": data_term,
                "critic_bellman": self._per_seed(weight * bellman).flatten(-2).mean(-1),
            }
        return TensorDict(
            {
                "loss_actor": reduce_loss(actor_per_sample, red, K),
                "loss_qvalue": reduce_loss(qvalue_per_sample, red, K),
                "loss_alpha": reduce_loss(alpha_per_sample, red, K),
                **diagnostics,
            },
            batch_size=[],
        )
