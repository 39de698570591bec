r"""C-LAP's constrained latent action policy (Sec. 3, Eqs. 8–12) and its two ablations.

The policy :math:`\pi_\psi(\hat u_t | s_t)` is a tanh-Gaussian, so :math:`\hat u_t \in [-1, 1]`
(Eq. 11), and the latent action handed to the action decoder is the linear map of Eq. 12,

.. math::  u_t = g(\hat u_t, \mu_\theta, \sigma_\theta) = \mu_\theta(s_t) + \hat u_t\,\tilde\epsilon\,\sigma_\theta(s_t),

with :math:`(\mu_\theta, \sigma_\theta)` the latent action prior :math:`p_\theta(u_t | s_t)`.
Every generated latent action therefore lies in :math:`\mu_\theta \pm \tilde\epsilon\sigma_\theta`
(Eq. 9) whatever the policy network outputs (:func:`constrain_latent_action` clamps
:math:`\hat u` into ``[-1, 1]`` as well, so even a saturated or non-finite-gradient tanh keeps the
bound). Inside the support the policy is unrestricted (no divergence to the prior).

Variants (``make_clap_actor``): ``"clap"`` (the above), ``"no_constraint"`` (a Gaussian over
the whole latent action space, ignoring the prior: App. F), ``"no_latent_action"`` (a
tanh-Gaussian over the env's actions, for a model built with ``latent_action=False``: the
Dreamer-style ablation).

Example:
    >>> import torch
    >>> from tensordict import TensorDict
    >>> actor = CLAPActor(6, 2, epsilon=2.0, units=16, layers=2)
    >>> td = TensorDict({"observation": torch.randn(4, 6), "prior_loc": torch.zeros(4, 2),
    ...                  "prior_scale": torch.full((4, 2), 0.5)}, [4])
    >>> u = actor(td)["action"]
    >>> bool((u.abs() <= 2.0 * 0.5).all())
    True
"""

from __future__ import annotations

import math

import torch
from tensordict import TensorDictBase
from tensordict.nn import TensorDictModuleBase
from torch import Tensor, nn
from torchrl.envs.utils import ExplorationType, exploration_type

from .latent_action_model import mlp

__all__ = ["CLAPActor", "constrain_latent_action", "make_clap_actor", "VARIANTS"]

VARIANTS = ("clap", "no_constraint", "no_latent_action")


def constrain_latent_action(
    policy_sample: Tensor, prior_loc: Tensor, prior_scale: Tensor, epsilon: float
) -> Tensor:
    """Eq. 12: ``g(û, μ, σ) = μ + clamp(û, -1, 1) · ε̃ · σ`` — always within ``μ ± ε̃σ``.

    Example:
        >>> g = constrain_latent_action(torch.tensor([1e9, -3.0, 0.5]), torch.zeros(3),
        ...                             torch.ones(3), 2.0)
        >>> g.tolist()
        [2.0, -2.0, 1.0]
    """
    return prior_loc + policy_sample.clamp(-1.0, 1.0) * (epsilon * prior_scale)


def _log1m_tanh_sq(z: Tensor) -> Tensor:
    """``log(1 − tanh(z)²)`` computed stably: ``2 (log 2 − z − softplus(−2z))``."""
    return 2.0 * (math.log(2.0) - z - nn.functional.softplus(-2.0 * z))


class CLAPActor(TensorDictModuleBase):
    """Policy over latent features: ``observation`` (features ``cat(h, s)``) → ``action``.

    With ``epsilon`` (ε̃ of Eq. 8) the output is the constrained latent action of Eq. 12 and
    ``prior_loc``/``prior_scale`` (the latent action prior at the state, written by
    :class:`~torchrl_leq.envs.clap_env.CLAPModelEnv` and :class:`~torchrl_leq.envs.clap_env.CLAPPolicy`)
    are read too; without, ``squash=False`` gives a Gaussian latent action (no constraint) and
    ``squash=True`` a tanh-Gaussian env action (no latent action). Writes ``action`` and
    ``action_log_prob`` (log-density of the policy's own sample: û for the constrained policy).
    Under ``ExplorationType.DETERMINISTIC``/``MODE``/``MEAN`` it acts with the Gaussian's mean
    (``tanh`` of it where squashed), otherwise it samples.

    Args:
        feature_dim: latent feature size.
        out_dim: latent action size (or the env's action size for ``no_latent_action``).

    Keyword Args:
        epsilon: ε̃ > 0 (Table 3/4 values: 0.5–3), or ``None`` for the ablations.
        squash: tanh-squash the sample (forced ``True`` with ``epsilon``).
        units, layers: MLP (Table 2: 256 × 3, SELU).
        init_std: standard deviation at initialisation; ``min_std``: its lower bound.
    """

    def __init__(
        self,
        feature_dim: int,
        out_dim: int,
        *,
        epsilon: float | None = 1.0,
        squash: bool = True,
        units: int = 256,
        layers: int = 3,
        init_std: float = 1.0,
        min_std: float = 1e-4,
    ) -> None:
        super().__init__()
        if epsilon is not None and not (math.isfinite(epsilon) and epsilon > 0):
            raise ValueError(f"epsilon must be a finite number > 0 or None, got {epsilon}")
        if init_std <= min_std:
            raise ValueError(f"init_std ({init_std}) must exceed min_std ({min_std})")
        self.epsilon = None if epsilon is None else float(epsilon)
        self.squash = True if epsilon is not None else bool(squash)
        self.feature_dim, self.out_dim = feature_dim, out_dim
        self.min_std = min_std
        self._std_shift = math.log(math.expm1(init_std - min_std))
        self.net = mlp(feature_dim, 2 * out_dim, units, layers)
        self.in_keys = ["observation"] + (["prior_loc", "prior_scale"] if self.constrained else [])
        self.out_keys = ["action", "action_log_prob"]

    @property
    def constrained(self) -> bool:
        return self.epsilon is not None

    def params(self, features: Tensor) -> tuple[Tensor, Tensor]:
        """``(loc, scale)`` of the Gaussian before the optional tanh."""
        loc, raw = self.net(features).chunk(2, -1)
        return loc, nn.functional.softplus(raw + self._std_shift) + self.min_std

    def sample(
        self,
        features: Tensor,
        prior_loc: Tensor | None = None,
        prior_scale: Tensor | None = None,
        *,
        mode: str = "sample",
    ) -> tuple[Tensor, Tensor]:
        """``(action, log_prob)``: a reparameterised sample (``mode="sample"``) or the mean
        (``"mean"``); ``log_prob`` is that of the policy's own sample, ``[...]``."""
        loc, scale = self.params(features)
        if mode == "sample":
            z = loc + scale * torch.randn_like(loc)
        elif mode == "mean":
            z = loc
        else:
            raise ValueError(f"mode must be 'sample' or 'mean', got {mode!r}")
        eps = (z - loc) / scale
        log_prob = (-0.5 * eps.pow(2) - scale.log() - 0.5 * math.log(2 * math.pi)).sum(-1)
        if not self.squash:
            return z, log_prob
        u_hat = torch.tanh(z)
        log_prob = log_prob - _log1m_tanh_sq(z).sum(-1)
        if not self.constrained:
            return u_hat, log_prob
        if prior_loc is None or prior_scale is None:
            raise ValueError("the constrained policy needs the latent action prior (loc, scale)")
        return constrain_latent_action(u_hat, prior_loc, prior_scale, self.epsilon), log_prob

    def forward(self, tensordict: TensorDictBase) -> TensorDictBase:
        deterministic = exploration_type() in (
            ExplorationType.DETERMINISTIC, ExplorationType.MODE, ExplorationType.MEAN)
        prior = (
            (tensordict.get("prior_loc"), tensordict.get("prior_scale"))
            if self.constrained else (None, None)
        )
        action, log_prob = self.sample(
            tensordict.get("observation"), *prior, mode="mean" if deterministic else "sample"
        )
        tensordict.set("action", action)
        return tensordict.set("action_log_prob", log_prob)


def make_clap_actor(
    feature_dim: int,
    latent_action_dim: int,
    action_dim: int,
    variant: str = "clap",
    *,
    epsilon: float = 1.0,
    units: int = 256,
    layers: int = 3,
    init_std: float = 1.0,
) -> CLAPActor:
    """The policy of ``variant`` (``"clap"``, ``"no_constraint"``, ``"no_latent_action"``).

    Example:
        >>> make_clap_actor(8, 3, 2, "no_latent_action", units=8, layers=1).out_dim
        2
    """
    if variant not in VARIANTS:
        raise ValueError(f"variant must be one of {VARIANTS}, got {variant!r}")
    if variant == "clap":
        return CLAPActor(feature_dim, latent_action_dim, epsilon=epsilon, units=units,
                         layers=layers, init_std=init_std)
    if variant == "no_constraint":
        return CLAPActor(feature_dim, latent_action_dim, epsilon=None, squash=False,
                         units=units, layers=layers, init_std=init_std)
    return CLAPActor(feature_dim, action_dim, epsilon=None, squash=True, units=units,
                     layers=layers, init_std=init_std)
