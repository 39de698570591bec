r"""C-LAP's model objective (Eq. 5): the negative ELBO of Eq. 4 plus reward and termination NLLs.

For a window of ``T`` rows (sequence layout of :mod:`torchrl_leq.data.sequences`: row ``t``
holds ``o_t``, the previous action ``a_{t-1}``, the reward of reaching ``o_t``, ``is_first``,
``is_terminal``), with ``s_t ~ q(s_t | h_t, o_t)`` and ``u_t ~ q(u_t | s_t, a_t)``
(reparameterised) and ``a_t`` read from row ``t + 1``:

.. math::

    L = \frac{1}{T}\sum_t \Big[ \underbrace{-\log p(o_t|s_t)}_{\text{obs. reconstruction}}
        \underbrace{-\log p(a_t|s_t,u_t)}_{\text{action reconstruction}}
        + \underbrace{\mathrm{KL}(q(s_t|\cdot)\,\|\,p(s_t|\cdot))}_{\text{obs. consistency}}
        + \underbrace{\mathrm{KL}(q(u_t|s_t,a_t)\,\|\,p(u_t|s_t))}_{\text{action consistency}}
        - \log p(r_t|s_t) - \log p(t_t|s_t) \Big]

Masks: the action terms need ``a_t`` (row ``t + 1`` in the window and not ``is_first``); the
reward term skips ``is_first`` rows (no transition led there). Unit-variance Gaussians for
observations and rewards (constants ``½ log 2π`` per dimension included: the terms are exact
NLLs), a Beta action decoder, a Bernoulli termination head. Prior and posterior of ``s_t`` share
``h_t = f(h_{t-1}, s_{t-1}, a_{t-1})`` computed with the dataset's ``a_{t-1}``
(docs/clap.md: departures).

Example:
    >>> import torch
    >>> from tensordict import TensorDict
    >>> from torchrl_leq.modules.latent_action_model import LatentActionModel
    >>> model = LatentActionModel(3, 2, stoch_dim=2, deter_dim=4, units=8, embed_dim=3,
    ...                           latent_action_dim=2)
    >>> B, T = 2, 5
    >>> td = TensorDict({"observation": torch.randn(B, T, 3), "action": torch.rand(B, T, 2) * 2 - 1,
    ...                  "reward": torch.randn(B, T), "is_first": torch.zeros(B, T, dtype=torch.bool),
    ...                  "is_terminal": torch.zeros(B, T, dtype=torch.bool)}, [B, T])
    >>> out = CLAPModelLoss(model)(td)
    >>> sorted(k for k in out.keys() if k.startswith("loss"))  # doctest: +NORMALIZE_WHITESPACE
    ['loss_action_consistency', 'loss_action_reconstruction', 'loss_obs_consistency',
     'loss_obs_reconstruction', 'loss_reward', 'loss_termination']
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from tensordict import TensorDict, TensorDictBase
from tensordict.utils import NestedKey
from torch import Tensor
from torchrl.objectives import LossModule

from torchrl_leq.modules.latent_action_model import LatentActionModel, gaussian_kl

from ._utils import check_reduction, reduce_loss
from .hyperparameters import NON_NEGATIVE, Rule, check_hyperparameters, choice

__all__ = ["CLAPModelLoss", "unit_gaussian_nll"]

_HALF_LOG_2PI = 0.5 * math.log(2.0 * math.pi)


def unit_gaussian_nll(target: Tensor, mean: Tensor, event_dims: int = 1) -> Tensor:
    """``−log N(target; mean, I)`` summed over the last ``event_dims`` dims.

    Example:
        >>> round(float(unit_gaussian_nll(torch.tensor([1.0]), torch.tensor([0.0]))), 4)
        1.4189
    """
    nll = 0.5 * (target - mean).pow(2) + _HALF_LOG_2PI
    return nll.sum(dim=tuple(range(-event_dims, 0))) if event_dims else nll


class CLAPModelLoss(LossModule):
    """Eq. 5 for a :class:`~torchrl_leq.modules.latent_action_model.LatentActionModel`.

    Input: a ``[B, T]`` tensordict in the sequence layout (keys remappable with ``set_keys``):
    ``observation`` (vectors, or uint8/float frames for a pixel model), ``action`` (previous
    action), ``reward``, ``is_first``, ``is_terminal`` (``[B, T]`` or ``[B, T, 1]``).

    Output (each term's per-sequence value is ``Σ_t mask_t · term_t / T``, then ``reduction``
    over the batch): ``loss_obs_reconstruction``, ``loss_obs_consistency`` (× ``state_kl_scale``),
    ``loss_reward``, ``loss_termination`` and, with latent actions,
    ``loss_action_reconstruction``, ``loss_action_consistency`` (× ``action_kl_scale``). Sum the
    ``loss_*`` entries. Diagnostics: ``elbo`` (per step, mean over the batch), ``state_kl``,
    ``action_kl``, ``obs_mse`` (per entry), ``action_mae`` (decoder mean vs dataset action),
    ``reward_mse``.

    Each term is a method (:meth:`obs_reconstruction`, :meth:`action_reconstruction`,
    :meth:`obs_consistency`, :meth:`action_consistency`, :meth:`reward_nll`,
    :meth:`termination_nll`) returning per-step values ``[B, T]``.

    Args:
        world_model: the model (a registered submodule: its parameters are trained).

    Keyword Args:
        state_kl_scale, action_kl_scale: weights of the two KL terms (1 = Eq. 4).
        free_nats: KL values below this are not penalised (0 = Eq. 4; Dreamer uses 3).
        mode: how the latent state posterior feeding the heads is drawn (``"sample"``).
        reduction: ``"mean"``, ``"sum"`` or ``"none"`` (per sequence, ``[B]``).
    """

    @dataclass
    class _AcceptedKeys:
        """Input keys (remap with ``set_keys``)."""

        observation: NestedKey = "observation"
        action: NestedKey = "action"
        reward: NestedKey = "reward"
        is_first: NestedKey = "is_first"
        is_terminal: NestedKey = "is_terminal"

    default_keys = _AcceptedKeys
    tensor_keys: _AcceptedKeys
    hyperparameter_rules: dict[str, Rule] = {
        "state_kl_scale": NON_NEGATIVE,
        "action_kl_scale": NON_NEGATIVE,
        "free_nats": NON_NEGATIVE,
        "mode": choice("sample", "mean"),
    }
    diagnostic_keys = ("elbo", "state_kl", "action_kl", "obs_mse", "action_mae", "reward_mse")

    def __init__(
        self,
        world_model: LatentActionModel,
        *,
        state_kl_scale: float = 1.0,
        action_kl_scale: float = 1.0,
        free_nats: float = 0.0,
        mode: str = "sample",
        reduction: str = "mean",
    ) -> None:
        check_hyperparameters(
            self.hyperparameter_rules, state_kl_scale=state_kl_scale,
            action_kl_scale=action_kl_scale, free_nats=free_nats, mode=mode,
        )
        check_reduction(reduction)
        super().__init__()
        self.world_model = world_model
        self.state_kl_scale, self.action_kl_scale = float(state_kl_scale), float(action_kl_scale)
        self.free_nats, self.mode, self.reduction = float(free_nats), mode, reduction

    @property
    def out_keys(self) -> list[str]:
        keys = ["loss_obs_reconstruction", "loss_obs_consistency", "loss_reward",
                "loss_termination"]
        if self.world_model.latent_action:
            keys += ["loss_action_reconstruction", "loss_action_consistency"]
        return keys + list(self.diagnostic_keys)

    @property
    def in_keys(self) -> list[NestedKey]:
        k = self.tensor_keys
        return [k.observation, k.action, k.reward, k.is_first, k.is_terminal]

    def _forward_value_estimator_keys(self, **kwargs) -> None:
        pass

    # ------------------------------------------------------------------ the terms
    def obs_reconstruction(self, obs: Tensor, features: Tensor) -> Tensor:
        """``−log p(o_t | s_t)`` per step ``[B, T]`` (unit-variance Gaussian)."""
        model = self.world_model
        recon = model.decode(features)
        if model.pixels:
            return unit_gaussian_nll(obs, recon, event_dims=3)
        return unit_gaussian_nll(obs, recon)

    def action_reconstruction(
        self, features: Tensor, latent_action: Tensor, action: Tensor
    ) -> Tensor:
        """``−log p(a_t | s_t, u_t)`` per step (Beta decoder)."""
        return -self.world_model.action_decoder(features, latent_action).log_prob(action)

    def obs_consistency(self, post: tuple[Tensor, Tensor], prior: tuple[Tensor, Tensor]) -> Tensor:
        """``KL(q(s_t | ·) ‖ p(s_t | ·))`` per step (free nats applied)."""
        return gaussian_kl(*post, *prior).clamp_min(self.free_nats)

    def action_consistency(
        self, post: tuple[Tensor, Tensor], prior: tuple[Tensor, Tensor]
    ) -> Tensor:
        """``KL(q(u_t | s_t, a_t) ‖ p(u_t | s_t))`` per step (free nats applied)."""
        return gaussian_kl(*post, *prior).clamp_min(self.free_nats)

    def reward_nll(self, features: Tensor, reward: Tensor) -> Tensor:
        """``−log p(r_t | s_t)`` per step (unit-variance Gaussian)."""
        return unit_gaussian_nll(reward, self.world_model.reward(features).squeeze(-1), 0)

    def termination_nll(self, features: Tensor, is_terminal: Tensor) -> Tensor:
        """``−log p(t_t | s_t)`` per step (Bernoulli)."""
        logit = self.world_model.termination_logit(features).squeeze(-1)
        return torch.nn.functional.binary_cross_entropy_with_logits(
            logit, is_terminal, reduction="none"
        )

    # ------------------------------------------------------------------ forward
    def forward(self, tensordict: TensorDictBase) -> TensorDictBase:
        """The terms of Eq. 5 on one batch of windows (see the class docstring)."""
        if tensordict.batch_dims != 2:
            raise ValueError(
                "CLAPModelLoss expects a [B, T] tensordict of sequences, got batch size "
                f"{tuple(tensordict.batch_size)}"
            )
        k, model = self.tensor_keys, self.world_model
        present = set(tensordict.keys(include_nested=True, leaves_only=True))
        for key in self.in_keys:
            if key not in present:
                raise KeyError(f"CLAPModelLoss: the input has no {key!r} (remap with set_keys)")
        bt = tensordict.batch_size
        steps = bt[1]
        obs = tensordict.get(k.observation)
        if model.pixels and obs.dtype == torch.uint8:
            obs = obs.float() / 255.0 - 0.5
        dtype = next(model.parameters()).dtype
        obs = obs.to(dtype)
        prev_action = tensordict.get(k.action).to(dtype)
        reward = tensordict.get(k.reward).reshape(bt).to(dtype)
        is_first = tensordict.get(k.is_first).reshape(bt).bool()
        is_terminal = tensordict.get(k.is_terminal).reshape(bt).to(dtype)

        out = model.observe(obs, prev_action, is_first, mode=self.mode)
        features = out["features"]
        per_step = {
            "loss_obs_reconstruction": self.obs_reconstruction(obs, features),
            "loss_obs_consistency": self.state_kl_scale * self.obs_consistency(
                (out["post_loc"], out["post_scale"]), (out["prior_loc"], out["prior_scale"])),
            "loss_reward": self.reward_nll(features, reward) * (~is_first).to(dtype),
            "loss_termination": self.termination_nll(features, is_terminal),
        }
        diag: dict[str, Tensor] = {}
        if model.latent_action:
            # a_t sits in row t + 1; the window's last row has none.
            action = torch.cat([prev_action[:, 1:], prev_action[:, -1:]], 1)
            has_action = torch.cat([~is_first[:, 1:], is_first.new_zeros(bt[0], 1)], 1).to(dtype)
            post_u = model.action_posterior(features, action)
            prior_u = model.action_prior(features)
            u = model._draw(*post_u, self.mode)
            recon_a = self.action_reconstruction(features, u, action)
            kl_u = self.action_consistency(post_u, prior_u)
            per_step["loss_action_reconstruction"] = recon_a * has_action
            per_step["loss_action_consistency"] = self.action_kl_scale * kl_u * has_action
            with torch.no_grad():
                mean_a = model.action_decoder(features, u).mean
                n_act = has_action.sum().clamp_min(1.0)
                diag["action_kl"] = (gaussian_kl(*post_u, *prior_u) * has_action).sum() / n_act
                diag["action_mae"] = ((mean_a - action).abs().mean(-1) * has_action).sum() / n_act
        else:
            diag["action_kl"] = features.new_zeros(()).detach()
            diag["action_mae"] = features.new_zeros(()).detach()
        losses = {
            key: reduce_loss(v.sum(1) / steps, self.reduction) for key, v in per_step.items()
        }
        with torch.no_grad():
            elbo_terms = [per_step[key] for key in per_step if "reconstruction" in key
                          or "consistency" in key]
            diag["elbo"] = -sum(v.sum(1) / steps for v in elbo_terms).mean()
            diag["state_kl"] = gaussian_kl(
                out["post_loc"], out["post_scale"], out["prior_loc"], out["prior_scale"]).mean()
            diag["obs_mse"] = (model.decode(features) - obs).pow(2).mean()
            not_first = (~is_first).to(dtype)
            diag["reward_mse"] = (
                ((model.reward(features).squeeze(-1) - reward).pow(2) * not_first).sum()
                / not_first.sum().clamp_min(1.0)
            )
        return TensorDict(
            {**losses, **{key: diag[key] for key in self.diagnostic_keys}}, batch_size=[]
        )
