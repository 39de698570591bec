"""A DreamerV3-style recurrent state-space model (RSSM) for 64×64 pixel observations.

Parts: TorchRL's :class:`~torchrl.modules.ObsEncoder` / :class:`~torchrl.modules.ObsDecoder`
(4 stride-2 convolutions, 64×64 RGB ↔ features), a GRU deterministic state ``h``, discrete
stochastic latents ``z`` (``groups`` one-hot categoricals of ``classes`` classes, 1 % uniform
mix, straight-through samples, DreamerV3), an ensemble of prior heads ``h -> z`` (OfflineDV2,
a random member per sample per imagined step, as in the paper's appendix), a posterior head
``(h, embed) -> z``, a reward head (regresses ``symlog(r)``) and a continuation head
(Bernoulli logit of ``1 - is_terminal``). TorchRL's own ``RSSMPrior``/``RSSMPosterior`` are
Gaussian; DreamerV3's discrete latents do not fit them, hence the core here.

The latent state seen by actors and critics is ``features = cat(h, z)``
(``feature_dim = deter_dim + groups * classes``): everything the model needs to continue
from a state is in it, so a model env can carry the state in ``"observation"`` alone.

Sequence layout (DreamerV3 / V-D4RL ``*.npz``): row ``t`` holds frame ``x_t``, the action
``a_{t-1}`` that led to it (zeros at an episode's first row), the reward of that transition and
``is_first``/``is_terminal``.

Example:
    >>> import torch
    >>> model = RSSM(action_dim=2, channels=4, deter_dim=16, hidden_dim=16, groups=2,
    ...              classes=4)
    >>> pixels = torch.rand(3, 5, 3, 64, 64) - 0.5
    >>> out = model.observe(pixels, torch.zeros(3, 5, 2), torch.zeros(3, 5, dtype=torch.bool))
    >>> out["features"].shape, out["prior_logits"].shape
    (torch.Size([3, 5, 24]), torch.Size([1, 3, 5, 2, 4]))
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor, nn
from torchrl.modules import ObsDecoder, ObsEncoder
from torchrl.modules.functional import symexp

__all__ = ["RSSM", "EnsembleMLP", "pixels_to_float", "straight_through_sample"]


def pixels_to_float(pixels: Tensor) -> Tensor:
    """``uint8`` frames ``[..., 3, H, W]`` in 0..255 → floats in ``[-0.5, 0.5]``.

    Example:
        >>> pixels_to_float(torch.tensor([0, 255], dtype=torch.uint8))
        tensor([-0.5000,  0.5000])
    """
    return pixels.float() / 255.0 - 0.5


def straight_through_sample(probs: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """One-hot sample of the categoricals ``probs [..., K]`` with straight-through gradients.

    The value is the one-hot sample; the gradient is that of ``probs``.

    Example:
        >>> p = torch.tensor([[0.0, 1.0, 0.0]], requires_grad=True)
        >>> s = straight_through_sample(p)
        >>> s.tolist(), s.requires_grad
        ([[0.0, 1.0, 0.0]], True)
    """
    flat = probs.detach().reshape(-1, probs.shape[-1])
    idx = torch.multinomial(flat, 1, generator=generator).reshape(probs.shape[:-1])
    onehot = nn.functional.one_hot(idx, probs.shape[-1]).to(probs.dtype)
    return onehot + probs - probs.detach()


class EnsembleMLP(nn.Module):
    """``E`` independent MLPs ``in -> hidden -> out`` (LayerNorm without affine, SiLU), batched.

    ``forward(x [N, in]) -> [E, N, out]`` (every member on every input; one ``baddbmm`` each).

    Example:
        >>> EnsembleMLP(3, 4, 8, 5)(torch.randn(2, 4)).shape
        torch.Size([3, 2, 5])
    """

    def __init__(self, members: int, in_dim: int, hidden_dim: int, out_dim: int) -> None:
        super().__init__()
        if members < 1:
            raise ValueError(f"members must be >= 1, got {members}")
        self.members = members
        self.w1 = nn.Parameter(torch.empty(members, in_dim, hidden_dim))
        self.b1 = nn.Parameter(torch.zeros(members, 1, hidden_dim))
        self.w2 = nn.Parameter(torch.empty(members, hidden_dim, out_dim))
        self.b2 = nn.Parameter(torch.zeros(members, 1, out_dim))
        for w in (self.w1, self.w2):
            bound = 1.0 / math.sqrt(w.shape[1])
            nn.init.uniform_(w, -bound, bound)

    def forward(self, x: Tensor) -> Tensor:
        x = x.unsqueeze(0).expand(self.members, *x.shape)
        hidden = torch.baddbmm(self.b1, x, self.w1)
        hidden = nn.functional.silu(nn.functional.layer_norm(hidden, hidden.shape[-1:]))
        return torch.baddbmm(self.b2, hidden, self.w2)


def _mlp(in_dim: int, hidden_dim: int, out_dim: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Linear(in_dim, hidden_dim), nn.LayerNorm(hidden_dim), nn.SiLU(),
        nn.Linear(hidden_dim, out_dim),
    )


class RSSM(nn.Module):
    """Recurrent state-space world model over 64×64 RGB frames (see module docstring).

    Args:
        action_dim: action size.
        channels: base width of the conv encoder/decoder (DreamerV3 S: 32; smoke: 4).
        deter_dim: GRU state size ``h``.
        hidden_dim: width of the MLP heads and of the GRU input layer.
        groups, classes: discrete latent ``z`` of ``groups`` categoricals with ``classes`` each.
        prior_members: number of prior heads (OfflineDV2 ensemble; 1 = plain DreamerV3).
        unimix: uniform mixing of the latent categoricals (DreamerV3: 0.01).
    """

    def __init__(
        self,
        action_dim: int,
        *,
        channels: int = 32,
        deter_dim: int = 512,
        hidden_dim: int = 512,
        groups: int = 32,
        classes: int = 32,
        prior_members: int = 1,
        unimix: float = 0.01,
    ) -> None:
        super().__init__()
        for name, v in (("action_dim", action_dim), ("channels", channels),
                        ("deter_dim", deter_dim), ("hidden_dim", hidden_dim),
                        ("groups", groups), ("classes", classes)):
            if v < 1:
                raise ValueError(f"{name} must be >= 1, got {v}")
        if not 0.0 <= unimix < 1.0:
            raise ValueError(f"unimix must be in [0, 1), got {unimix}")
        self.config: dict[str, Any] = dict(
            action_dim=action_dim, channels=channels, deter_dim=deter_dim,
            hidden_dim=hidden_dim, groups=groups, classes=classes,
            prior_members=prior_members, unimix=unimix,
        )
        self.action_dim, self.deter_dim = action_dim, deter_dim
        self.groups, self.classes, self.unimix = groups, classes, unimix
        self.stoch_dim = groups * classes
        self.feature_dim = deter_dim + self.stoch_dim
        self.embed_dim = channels * 8 * 2 * 2
        self.encoder = ObsEncoder(channels=channels, in_channels=3)
        self.decoder = ObsDecoder(channels=channels, latent_dim=self.feature_dim)
        self.img_in = nn.Sequential(
            nn.Linear(self.stoch_dim + action_dim, hidden_dim), nn.LayerNorm(hidden_dim),
            nn.SiLU(),
        )
        self.gru = nn.GRUCell(hidden_dim, deter_dim)
        self.prior = EnsembleMLP(prior_members, deter_dim, hidden_dim, self.stoch_dim)
        self.posterior = _mlp(deter_dim + self.embed_dim, hidden_dim, self.stoch_dim)
        self.reward_head = _mlp(self.feature_dim, hidden_dim, 1)
        self.continue_head = _mlp(self.feature_dim, hidden_dim, 1)

    # ---------------------------------------------------------------- distributions
    def probs(self, logits: Tensor) -> Tensor:
        """Categorical probabilities with the uniform mix, ``[..., groups, classes]``."""
        p = logits.softmax(-1)
        return (1.0 - self.unimix) * p + self.unimix / self.classes

    def _group(self, flat: Tensor) -> Tensor:
        return flat.reshape(*flat.shape[:-1], self.groups, self.classes)

    def split(self, features: Tensor) -> tuple[Tensor, Tensor]:
        """``features -> (h, z)`` (``z`` flat, ``[..., groups * classes]``)."""
        if features.shape[-1] != self.feature_dim:
            raise ValueError(
                f"features have {features.shape[-1]} entries, expected {self.feature_dim} "
                f"(deter {self.deter_dim} + stoch {self.stoch_dim})"
            )
        return features[..., : self.deter_dim], features[..., self.deter_dim :]

    def initial(self, batch: tuple[int, ...], like: Tensor) -> tuple[Tensor, Tensor]:
        """Zero ``(h, z)`` for a fresh episode."""
        h = like.new_zeros(*batch, self.deter_dim)
        return h, like.new_zeros(*batch, self.stoch_dim)

    def _stoch(self, logits: Tensor, mode: str, generator: torch.Generator | None) -> Tensor:
        probs = self.probs(logits)
        if mode == "sample":
            z = straight_through_sample(probs, generator)
        elif mode == "argmax":
            z = nn.functional.one_hot(probs.argmax(-1), self.classes).to(probs.dtype)
        elif mode == "probs":
            z = probs
        else:
            raise ValueError(f"mode must be 'sample', 'argmax' or 'probs', got {mode!r}")
        return z.flatten(-2)

    # ---------------------------------------------------------------- steps
    def recurrent(self, h: Tensor, z: Tensor, action: Tensor) -> Tensor:
        """``h' = GRU(h, [z, a])`` for flat ``[N, ·]`` inputs."""
        return self.gru(self.img_in(torch.cat([z, action], -1)), h)

    def prior_logits(self, h: Tensor) -> Tensor:
        """Logits of every prior member, ``[E, N, groups, classes]``."""
        return self._group(self.prior(h))

    def imagine_step(
        self,
        features: Tensor,
        action: Tensor,
        *,
        mode: str = "sample",
        generator: torch.Generator | None = None,
    ) -> Tensor:
        """One imagined step from ``features [N, F]`` with ``action [N, A]``: a random prior
        member per sample, then ``z'`` by ``mode`` (``"sample"``: straight-through one-hot;
        ``"probs"``: the expected one-hot, smooth — for finite-difference checks;
        ``"argmax"``). Returns the next features ``[N, F]``.

        Example:
            >>> m = RSSM(2, channels=2, deter_dim=4, hidden_dim=8, groups=2, classes=3)
            >>> m.imagine_step(torch.zeros(5, m.feature_dim), torch.zeros(5, 2)).shape
            torch.Size([5, 10])
        """
        h, z = self.split(features)
        h = self.recurrent(h, z, action)
        logits = self.prior_logits(h)  # [E, N, G, K]
        if logits.shape[0] > 1:
            member = torch.randint(
                logits.shape[0], (h.shape[0],), generator=generator, device=h.device
            )
            logits = logits[member, torch.arange(h.shape[0], device=h.device)]
        else:
            logits = logits[0]
        return torch.cat([h, self._stoch(logits, mode, generator)], -1)

    def reward(self, features: Tensor) -> Tensor:
        """Predicted reward ``symexp(head(features))``, ``[..., 1]``."""
        return symexp(self.reward_head(features))

    def continue_logit(self, features: Tensor) -> Tensor:
        """Logit of "the episode continues after arriving here", ``[..., 1]``."""
        return self.continue_head(features)

    def decode(self, features: Tensor) -> Tensor:
        """Mean frame in ``[-0.5, 0.5]`` scale, ``[..., 3, 64, 64]``."""
        h, z = self.split(features)
        return self.decoder(z, h)

    def encode(self, pixels: Tensor) -> Tensor:
        """Embeddings of float frames ``[..., 3, 64, 64]``."""
        if pixels.shape[-3:] != (3, 64, 64):
            raise ValueError(f"expected frames shaped [..., 3, 64, 64], got {tuple(pixels.shape)}")
        return self.encoder(pixels)

    def observe(
        self,
        pixels: Tensor,
        prev_action: Tensor,
        is_first: Tensor,
        *,
        state: tuple[Tensor, Tensor] | None = None,
        mode: str = "sample",
        generator: torch.Generator | None = None,
    ) -> dict[str, Tensor]:
        """Filter sequences ``[B, T, ...]`` with the posterior.

        ``pixels`` float ``[B, T, 3, 64, 64]``; ``prev_action`` ``[B, T, A]``;
        ``is_first`` ``[B, T]`` resets ``(h, z)`` and the previous action to zeros;
        ``state`` continues from ``(h, z)`` of a previous call.

        Returns ``features [B, T, F]``, ``post_logits [B, T, G, K]``,
        ``prior_logits [E, B, T, G, K]`` and the last ``state``.
        """
        batch, steps = pixels.shape[:2]
        embed = self.encode(pixels)
        h, z = self.initial((batch,), embed) if state is None else state
        first = is_first.reshape(batch, steps, 1).to(embed.dtype)
        features, posts, priors = [], [], []
        for t in range(steps):
            keep = 1.0 - first[:, t]
            h, z, a = h * keep, z * keep, prev_action[:, t] * keep
            h = self.recurrent(h, z, a)
            post = self._group(self.posterior(torch.cat([h, embed[:, t]], -1)))
            priors.append(self.prior_logits(h))
            z = self._stoch(post, mode, generator)
            posts.append(post)
            features.append(torch.cat([h, z], -1))
        return {
            "features": torch.stack(features, 1),
            "post_logits": torch.stack(posts, 1),
            "prior_logits": torch.stack(priors, 2),
            "state": (h, z),
        }
