"""C-LAP's recurrent latent action state-space model (Alles et al., CoRL 2024, Sec. 3, Fig. 2).

A generative model of observations *and* actions, ``p(o_{1:T}, a_{1:T})``, with Gaussian latent
states ``s_t`` (stochastic part, next to a GRU's deterministic ``h_t``) and Gaussian latent
actions ``u_t``:

* deterministic transition ``h_t = f(h_{t-1}, s_{t-1}, a_{t-1})`` (GRU),
* latent state prior ``p(s_t | h_t)`` and posterior ``q(s_t | h_t, o_t)``,
* latent action prior ``p(u_t | s_t)`` and posterior ``q(u_t | s_t, a_t)``,
* observation decoder ``p(o_t | s_t)`` (unit-variance Gaussian; MLP for vectors, TorchRL's
  conv ``ObsDecoder`` for 64×64 pixels),
* action decoder ``p(a_t | s_t, u_t)``: a Beta distribution per action dimension, mapped to
  ``[-1, 1]`` (:class:`BetaAction`; Table 2),
* reward ``p(r_t | s_t)`` (unit-variance Gaussian) and termination ``p(t_t | s_t)``
  (Bernoulli logit) heads.

"``s_t``" in the heads' conditioning is the whole latent state ``features = cat(h_t, s_t)``
(``feature_dim = deter_dim + stoch_dim``), as in PlaNet/Dreamer. The latent state prior
``p(s_t | s_{t-1}, u_{t-1})`` is this transition fed with the action decoded from ``u_{t-1}``
(:meth:`imagine_step` with a decoded action).

``latent_action=False`` builds the paper's "no latent action" ablation: a plain Dreamer
state-space model (no ``u``, no action heads).

Why not :class:`~torchrl_leq.modules.rssm.RSSM`'s core: its latents are DreamerV3's discrete
categoricals (straight-through one-hot samples, uniform mix, an ensemble of prior heads) while
C-LAP's model is the continuous Gaussian one of PlaNet/Dreamer (Table 2: 30 stochastic units;
App. D "continuous states"), and the KL terms of Eq. 4 need Gaussian latents. The model here
keeps the RSSM's method names and sequence layout (:meth:`observe`, :meth:`imagine_step`,
:meth:`recurrent`, :meth:`split`, :meth:`initial`, :meth:`reward`; row ``t`` holds ``o_t`` and
the previous action ``a_{t-1}``) and reuses the same conv encoder/decoder for pixels.

Example:
    >>> import torch
    >>> model = LatentActionModel(obs_dim=4, action_dim=2, stoch_dim=3, deter_dim=8,
    ...                           hidden_dim=16, embed_dim=5, latent_action_dim=2, units=16)
    >>> obs = torch.randn(2, 6, 4)
    >>> out = model.observe(obs, torch.zeros(2, 6, 2), torch.zeros(2, 6, dtype=torch.bool))
    >>> out["features"].shape, out["post_loc"].shape
    (torch.Size([2, 6, 11]), torch.Size([2, 6, 3]))
    >>> loc, scale = model.action_prior(out["features"])
    >>> a = model.action_decoder(out["features"], loc).mean
    >>> a.shape, bool(a.abs().max() < 1)
    (torch.Size([2, 6, 2]), True)
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor, nn
from torchrl.modules import ObsDecoder, ObsEncoder

from .rssm import pixels_to_float

__all__ = ["LatentActionModel", "BetaAction", "gaussian_kl", "mlp"]


def mlp(in_dim: int, out_dim: int, units: int, layers: int, act: type = nn.SELU) -> nn.Sequential:
    """``layers`` hidden layers of ``units`` with ``act`` (SELU, Table 2), then a linear output.

    Example:
        >>> mlp(3, 2, 8, 2)(torch.zeros(5, 3)).shape
        torch.Size([5, 2])
    """
    mods: list[nn.Module] = []
    d = in_dim
    for _ in range(layers):
        mods += [nn.Linear(d, units), act()]
        d = units
    mods.append(nn.Linear(d, out_dim))
    return nn.Sequential(*mods)


def gaussian_kl(loc_q: Tensor, scale_q: Tensor, loc_p: Tensor, scale_p: Tensor) -> Tensor:
    """``KL[N(loc_q, scale_q) ‖ N(loc_p, scale_p)]`` of diagonal Gaussians, summed over the
    last dim.

    Example:
        >>> z, o = torch.zeros(1, 1), torch.ones(1, 1)
        >>> round(float(gaussian_kl(z, o, o, 2 * o)), 4)  # log 2 + (1 + 1) / 8 - 1/2
        0.4431
    """
    var_ratio = (scale_q / scale_p).pow(2)
    diff = ((loc_q - loc_p) / scale_p).pow(2)
    return 0.5 * (var_ratio + diff - 1.0 - var_ratio.log()).sum(-1)


class BetaAction:
    """A factorised Beta distribution on ``[-1, 1]^A``: ``a = 2x - 1``, ``x ~ Beta(α, β)``.

    ``α = c + softplus(raw_α)``, ``β = c + softplus(raw_β)`` with ``c = min_concentration``
    (``c = 1``: unimodal, finite density at the bounds; ``c < 1`` also allows mass piled at a
    bound, which saturated offline actions need — see :class:`LatentActionModel`).
    :meth:`log_prob` sums over action dims and clamps ``a`` into ``[-1 + eps, 1 - eps]`` first (clipped actions at exactly ±1 are common in offline data).

    Example:
        >>> d = BetaAction(torch.zeros(1, 2), torch.zeros(1, 2))
        >>> d.mean.tolist()
        [[0.0, 0.0]]
        >>> a = 1 + math.log(2)  # α = β = 1 + softplus(0); log density at x = 1/2, minus log 2
        >>> one = 2 * (a - 1) * math.log(0.5) - (2 * math.lgamma(a) - math.lgamma(2 * a)) - math.log(2)
        >>> round(float(d.log_prob(torch.zeros(1, 2))), 4) == round(2 * one, 4)
        True
    """

    def __init__(
        self, raw_alpha: Tensor, raw_beta: Tensor, eps: float = 1e-4,
        min_concentration: float = 1.0,
    ) -> None:
        self.alpha = min_concentration + nn.functional.softplus(raw_alpha)
        self.beta = min_concentration + nn.functional.softplus(raw_beta)
        self.eps = eps
        self._dist = torch.distributions.Beta(self.alpha, self.beta, validate_args=False)

    @property
    def mean(self) -> Tensor:
        """``E[a] = 2α/(α+β) − 1``."""
        return 2.0 * self.alpha / (self.alpha + self.beta) - 1.0

    @property
    def mode(self) -> Tensor:
        """``2(α−1)/(α+β−2) − 1`` (the mean where ``α = β = 1``)."""
        denom = self.alpha + self.beta - 2.0
        x = torch.where(denom > 1e-6, (self.alpha - 1.0) / denom.clamp_min(1e-6), 0.5)
        return 2.0 * x - 1.0

    def rsample(self) -> Tensor:
        """A reparameterised sample in ``[-1, 1]^A`` (implicit gradients of the Gamma samples)."""
        return 2.0 * self._dist.rsample() - 1.0

    def log_prob(self, action: Tensor) -> Tensor:
        """``log p(a)`` summed over the action dims (density on ``[-1, 1]``: ``− A log 2``)."""
        x = ((action + 1.0) / 2.0).clamp(self.eps, 1.0 - self.eps)
        return (self._dist.log_prob(x) - math.log(2.0)).sum(-1)


class LatentActionModel(nn.Module):
    """Recurrent latent action state-space model (module docstring).

    Args:
        obs_dim: observation size, or ``None`` for 64×64 RGB pixels (``[..., 3, 64, 64]``).
        action_dim: action size (actions in ``[-1, 1]``).

    Keyword Args (Table 2 defaults, low-dimensional features):
        stoch_dim: stochastic latent state size (30).
        deter_dim: deterministic (GRU) state size (200; visual: 512).
        hidden_dim: width of the transition and latent-state heads (200).
        embed_dim: observation embedding size (30; pixels: the conv encoder's 32·channels).
        encoder_units, encoder_layers: vector observation encoder/decoder MLP (128, 2).
        latent_action_dim: latent action size (12).
        action_encoder_units: latent action posterior MLP width (512, 2 layers).
        action_decoder_units: action decoder MLP width (512, 2 layers).
        action_prior_units: latent action prior MLP width (256, 2 layers).
        units: if given, every MLP width above (tests, smoke runs).
        channels: conv encoder/decoder base width for pixels (Table 2: 32).
        min_std: lower bound of the Gaussian standard deviations (Dreamer: 0.1).
        latent_action: ``False``: the "no latent action" ablation (a plain state-space model).
        beta_min_concentration: lower bound ``c`` of the action decoder's Beta concentrations
            (:class:`BetaAction`). ``1`` (unimodal) collapses on data with many actions at ±1
            (40 % of the point-maze's): any α, β > 1 costs ``(α − 1)·log(1e-4)`` nats at the
            opposite bound, so both are driven to 1 — a uniform decoder that ignores ``u``, whose
            mean is 0 — and softplus' vanishing gradient keeps them there. ``c < 1`` lets the
            decoder pile mass at a bound (umaze: decoded prior 10/10 vs 0/10 with ``c = 1``).
    """

    def __init__(
        self,
        obs_dim: int | None,
        action_dim: int,
        *,
        stoch_dim: int = 30,
        deter_dim: int = 200,
        hidden_dim: int = 200,
        embed_dim: int = 30,
        encoder_units: int = 128,
        encoder_layers: int = 2,
        latent_action_dim: int = 12,
        action_encoder_units: int = 512,
        action_decoder_units: int = 512,
        action_prior_units: int = 256,
        units: int | None = None,
        channels: int = 32,
        min_std: float = 0.1,
        latent_action: bool = True,
        beta_min_concentration: float = 0.1,
    ) -> None:
        super().__init__()
        for name, v in (("action_dim", action_dim), ("stoch_dim", stoch_dim),
                        ("deter_dim", deter_dim), ("hidden_dim", hidden_dim),
                        ("latent_action_dim", latent_action_dim)):
            if v < 1:
                raise ValueError(f"{name} must be >= 1, got {v}")
        if obs_dim is not None and obs_dim < 1:
            raise ValueError(f"obs_dim must be >= 1 or None (pixels), got {obs_dim}")
        if min_std <= 0:
            raise ValueError(f"min_std must be > 0, got {min_std}")
        if not beta_min_concentration > 0:
            raise ValueError(f"beta_min_concentration must be > 0, got {beta_min_concentration}")
        self.config: dict[str, Any] = dict(
            obs_dim=obs_dim, action_dim=action_dim, stoch_dim=stoch_dim, deter_dim=deter_dim,
            hidden_dim=hidden_dim, embed_dim=embed_dim, encoder_units=encoder_units,
            encoder_layers=encoder_layers, latent_action_dim=latent_action_dim,
            action_encoder_units=action_encoder_units,
            action_decoder_units=action_decoder_units, action_prior_units=action_prior_units,
            units=units, channels=channels, min_std=min_std, latent_action=latent_action,
            beta_min_concentration=beta_min_concentration,
        )
        if units is not None:
            hidden_dim = encoder_units = action_encoder_units = units
            action_decoder_units = action_prior_units = units
        self.obs_dim, self.action_dim = obs_dim, action_dim
        self.stoch_dim, self.deter_dim = stoch_dim, deter_dim
        self.feature_dim = deter_dim + stoch_dim
        self.latent_action = latent_action
        self.latent_action_dim = latent_action_dim if latent_action else 0
        self.min_std = min_std
        self.beta_min_concentration = float(beta_min_concentration)
        self.pixels = obs_dim is None
        if self.pixels:  # Table 2's CNNs are TorchRL's Dreamer encoder/decoder (channels 32).
            self.encoder = ObsEncoder(channels=channels, in_channels=3)
            self.decoder = ObsDecoder(channels=channels, latent_dim=self.feature_dim)
            embed_dim = channels * 8 * 2 * 2
        else:
            self.encoder = mlp(obs_dim, embed_dim, encoder_units, encoder_layers)
            self.decoder = mlp(self.feature_dim, obs_dim, encoder_units, encoder_layers)
        self.embed_dim = embed_dim
        f, h = self.feature_dim, hidden_dim
        self.img_in = nn.Sequential(nn.Linear(stoch_dim + action_dim, h), nn.SELU())
        self.gru = nn.GRUCell(h, deter_dim)
        self.prior_head = mlp(deter_dim, 2 * stoch_dim, h, 1)
        self.posterior_head = mlp(deter_dim + embed_dim, 2 * stoch_dim, h, 1)
        self.reward_head = mlp(f, 1, h, 2)
        self.termination_head = mlp(f, 1, h, 2)
        if latent_action:
            u = latent_action_dim
            self.action_prior_head = mlp(f, 2 * u, action_prior_units, 2)
            self.action_posterior_head = mlp(f + action_dim, 2 * u, action_encoder_units, 2)
            self.action_decoder_head = mlp(f + u, 2 * action_dim, action_decoder_units, 2)

    # ---------------------------------------------------------------- distributions
    def _gaussian(self, raw: Tensor) -> tuple[Tensor, Tensor]:
        loc, s = raw.chunk(2, -1)
        return loc, nn.functional.softplus(s) + self.min_std

    def state_prior(self, h: Tensor) -> tuple[Tensor, Tensor]:
        """``p(s_t | h_t)``: ``(loc, scale)``."""
        return self._gaussian(self.prior_head(h))

    def state_posterior(self, h: Tensor, embed: Tensor) -> tuple[Tensor, Tensor]:
        """``q(s_t | h_t, o_t)`` from the observation embedding: ``(loc, scale)``."""
        return self._gaussian(self.posterior_head(torch.cat([h, embed], -1)))

    def _need_latent_action(self) -> None:
        if not self.latent_action:
            raise RuntimeError("this model was built with latent_action=False (no u, no action heads)")

    def action_prior(self, features: Tensor) -> tuple[Tensor, Tensor]:
        """Latent action prior ``p(u_t | s_t)``: ``(loc, scale)``."""
        self._need_latent_action()
        return self._gaussian(self.action_prior_head(features))

    def action_posterior(self, features: Tensor, action: Tensor) -> tuple[Tensor, Tensor]:
        """Latent action posterior ``q(u_t | s_t, a_t)``: ``(loc, scale)``."""
        self._need_latent_action()
        return self._gaussian(self.action_posterior_head(torch.cat([features, action], -1)))

    def action_decoder(self, features: Tensor, latent_action: Tensor) -> BetaAction:
        """Action decoder ``p(a_t | s_t, u_t)``, a :class:`BetaAction` on ``[-1, 1]``."""
        self._need_latent_action()
        raw = self.action_decoder_head(torch.cat([features, latent_action], -1))
        return BetaAction(*raw.chunk(2, -1), min_concentration=self.beta_min_concentration)

    def reward(self, features: Tensor) -> Tensor:
        """Mean of ``p(r_t | s_t)``, ``[..., 1]``."""
        return self.reward_head(features)

    def termination_logit(self, features: Tensor) -> Tensor:
        """Logit of ``p(t_t = 1 | s_t)`` (``s_t`` is terminal), ``[..., 1]``."""
        return self.termination_head(features)

    def decode(self, features: Tensor) -> Tensor:
        """Mean of ``p(o_t | s_t)`` (pixels: ``[..., 3, 64, 64]`` in ``[-0.5, 0.5]`` scale)."""
        if self.pixels:
            h, s = self.split(features)
            return self.decoder(s, h)
        return self.decoder(features)

    def encode(self, obs: Tensor) -> Tensor:
        """Embeddings of observations (uint8 pixels are mapped to ``[-0.5, 0.5]`` first)."""
        if self.pixels:
            if obs.dtype == torch.uint8:
                obs = pixels_to_float(obs)
            if obs.shape[-3:] != (3, 64, 64):
                raise ValueError(f"expected frames shaped [..., 3, 64, 64], got {tuple(obs.shape)}")
        elif obs.shape[-1] != self.obs_dim:
            raise ValueError(f"observations have {obs.shape[-1]} entries, expected {self.obs_dim}")
        return self.encoder(obs)

    # ---------------------------------------------------------------- states
    def split(self, features: Tensor) -> tuple[Tensor, Tensor]:
        """``features -> (h, s)``."""
        if features.shape[-1] != self.feature_dim:
            raise ValueError(
                f"features have {features.shape[-1]} entries, expected {self.feature_dim} "
                f"(deter {self.deter_dim} + stoch {self.stoch_dim})"
            )
        return features[..., : self.deter_dim], features[..., self.deter_dim :]

    def initial(self, batch: tuple[int, ...], like: Tensor) -> tuple[Tensor, Tensor]:
        """Zero ``(h, s)`` for a fresh episode."""
        return like.new_zeros(*batch, self.deter_dim), like.new_zeros(*batch, self.stoch_dim)

    def recurrent(self, h: Tensor, s: Tensor, action: Tensor) -> Tensor:
        """``h_t = f(h_{t-1}, s_{t-1}, a_{t-1})`` (GRU) for flat ``[N, ·]`` inputs."""
        return self.gru(self.img_in(torch.cat([s, action], -1)), h)

    @staticmethod
    def _draw(loc: Tensor, scale: Tensor, mode: str) -> Tensor:
        if mode == "sample":
            return loc + scale * torch.randn_like(loc)
        if mode == "mean":
            return loc
        raise ValueError(f"mode must be 'sample' or 'mean', got {mode!r}")

    def imagine_step(self, features: Tensor, action: Tensor, *, mode: str = "sample") -> Tensor:
        """Next features from the latent state prior: ``h' = f(h, s, a)``, ``s' ~ p(s' | h')``
        (reparameterised; ``mode="mean"`` takes the prior mean). ``[N, F], [N, A] -> [N, F]``.

        Example:
            >>> m = LatentActionModel(3, 2, stoch_dim=2, deter_dim=4, units=8, embed_dim=3,
            ...                       latent_action_dim=2)
            >>> m.imagine_step(torch.zeros(5, m.feature_dim), torch.zeros(5, 2)).shape
            torch.Size([5, 6])
        """
        h, s = self.split(features)
        h = self.recurrent(h, s, action)
        return torch.cat([h, self._draw(*self.state_prior(h), mode)], -1)

    def observe(
        self,
        obs: Tensor,
        prev_action: Tensor,
        is_first: Tensor,
        *,
        state: tuple[Tensor, Tensor] | None = None,
        mode: str = "sample",
    ) -> dict[str, Any]:
        """Filter sequences ``[B, T, ...]`` with the latent state posterior.

        ``obs`` ``[B, T, obs_dim]`` (or frames); ``prev_action`` ``[B, T, A]`` (row t holds
        ``a_{t-1}``); ``is_first`` ``[B, T]`` resets ``(h, s)`` and the previous action to
        zeros; ``state`` continues from a previous call's ``(h, s)``; ``mode``: posterior
        ``"sample"`` (reparameterised) or ``"mean"``.

        Returns ``features [B, T, F]``, ``post_loc``/``post_scale`` and
        ``prior_loc``/``prior_scale`` ``[B, T, stoch]``, and the last ``state``.
        """
        batch, steps = obs.shape[:2]
        embed = self.encode(obs)
        h, s = self.initial((batch,), embed) if state is None else state
        first = is_first.reshape(batch, steps, 1).to(embed.dtype)
        prev_action = prev_action.to(embed.dtype)
        out: dict[str, list[Tensor]] = {k: [] for k in (
            "features", "post_loc", "post_scale", "prior_loc", "prior_scale")}
        for t in range(steps):
            keep = 1.0 - first[:, t]
            h, s, a = h * keep, s * keep, prev_action[:, t] * keep
            h = self.recurrent(h, s, a)
            prior_loc, prior_scale = self.state_prior(h)
            post_loc, post_scale = self.state_posterior(h, embed[:, t])
            s = self._draw(post_loc, post_scale, mode)
            for key, v in (("features", torch.cat([h, s], -1)), ("post_loc", post_loc),
                           ("post_scale", post_scale), ("prior_loc", prior_loc),
                           ("prior_scale", prior_scale)):
                out[key].append(v)
        result: dict[str, Any] = {k: torch.stack(v, 1) for k, v in out.items()}
        result["state"] = (h, s)
        return result
