"""DreamerV3's world-model loss (ELBO with KL balancing and free bits) for :class:`RSSM`.

``L = β_pred (L_image + L_reward + L_continue) + β_dyn L_dyn + β_rep L_rep`` with, per step,
``L_dyn = max(free_bits, KL[sg(q) ‖ p])`` and ``L_rep = max(free_bits, KL[q ‖ sg(p)])``
(KL summed over the latent groups, ``q`` the posterior, ``p`` a prior member; averaged over
members), ``L_image`` the squared error summed over pixels (unit-variance Gaussian),
``L_reward`` the squared error of ``symlog(r)`` and ``L_continue`` the Bernoulli NLL of
``1 - is_terminal``. Defaults are DreamerV3's: β_pred = 1, β_dyn = 0.5, β_rep = 0.1,
free bits 1 nat.

Example:
    >>> import torch
    >>> from tensordict import TensorDict
    >>> from torchrl_leq.modules.rssm import RSSM
    >>> model = RSSM(2, channels=2, deter_dim=8, hidden_dim=8, groups=2, classes=3)
    >>> B, T = 2, 4
    >>> td = TensorDict({"pixels": torch.randint(0, 256, (B, T, 3, 64, 64), dtype=torch.uint8),
    ...                  "action": torch.zeros(B, T, 2), "reward": torch.zeros(B, T),
    ...                  "is_first": torch.zeros(B, T, dtype=torch.bool),
    ...                  "is_terminal": torch.zeros(B, T, dtype=torch.bool)}, [B, T])
    >>> out = RSSMLoss(model)(td)
    >>> sorted(k for k in out.keys() if k.startswith("loss"))
    ['loss_continue', 'loss_dyn', 'loss_image', 'loss_rep', 'loss_reward']
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from tensordict import TensorDict, TensorDictBase
from tensordict.utils import NestedKey
from torch import Tensor
from torchrl.modules.functional import symlog
from torchrl.objectives import LossModule

from torchrl_leq.modules.rssm import RSSM, pixels_to_float

__all__ = ["RSSMLoss", "categorical_kl", "balanced_kl_terms"]


def categorical_kl(p: Tensor, q: Tensor) -> Tensor:
    """``KL[p ‖ q]`` of categoricals ``[..., groups, classes]``, summed over groups → ``[...]``.

    Example:
        >>> p = torch.tensor([[[0.5, 0.5]]]); q = torch.tensor([[[0.25, 0.75]]])
        >>> round(float(categorical_kl(p, q)), 4)  # 0.5 ln 2 + 0.5 ln(2/3)
        0.1438
    """
    return (p * (p.log() - q.log())).sum(dim=(-2, -1))


def balanced_kl_terms(
    post_probs: Tensor, prior_probs: Tensor, free_bits: float = 1.0
) -> tuple[Tensor, Tensor, Tensor]:
    """``(L_dyn, L_rep, KL)`` per step: free-bits-clipped KLs with stop-gradients swapped.

    ``post_probs [..., G, K]``; ``prior_probs [E, ..., G, K]`` (members averaged).
    ``L_dyn`` trains the prior only, ``L_rep`` the posterior only; both equal
    ``max(free_bits, KL)`` in value. ``KL`` (unclipped, member mean) is for logging.

    Example:
        >>> q = torch.tensor([[[0.5, 0.5]]]); p = torch.tensor([[[[0.25, 0.75]]]])
        >>> dyn, rep, kl = balanced_kl_terms(q, p, free_bits=0.1)
        >>> round(float(dyn), 4), round(float(kl), 4)
        (0.1438, 0.1438)
    """
    post = post_probs.unsqueeze(0)
    kl_dyn = categorical_kl(post.detach(), prior_probs)
    kl_rep = categorical_kl(post, prior_probs.detach())
    dyn = kl_dyn.clamp_min(free_bits).mean(0)
    rep = kl_rep.clamp_min(free_bits).mean(0)
    return dyn, rep, kl_dyn.detach().mean(0)


class RSSMLoss(LossModule):
    """DreamerV3 world-model loss of an :class:`~torchrl_leq.modules.rssm.RSSM` (module docstring).

    Input: a tensordict ``[B, T]`` in the sequence layout of :mod:`torchrl_leq.modules.rssm`:
    ``pixels`` (uint8 ``[B, T, 3, 64, 64]`` or floats in ``[-0.5, 0.5]``), ``action``
    (previous action), ``reward``, ``is_first``, ``is_terminal`` (``[B, T]`` or ``[B, T, 1]``).
    Output: ``loss_image``, ``loss_reward``, ``loss_continue`` (each times β_pred),
    ``loss_dyn``, ``loss_rep`` (times their β) — sum them — and diagnostics ``kl``,
    ``image_mse`` (per pixel and channel, ``[-0.5, 0.5]`` scale).

    Args:
        world_model: the model (registered as a submodule: its parameters are trained).
        beta_pred, beta_dyn, beta_rep: loss weights.
        free_bits: KL clip (nats per step).
        mode: how the posterior latents feeding the heads are drawn (``"sample"``).
    """

    @dataclass
    class _AcceptedKeys:
        """Input keys (remap with ``set_keys``)."""

        pixels: NestedKey = "pixels"
        action: NestedKey = "action"
        reward: NestedKey = "reward"
        is_first: NestedKey = "is_first"
        is_terminal: NestedKey = "is_terminal"

    default_keys = _AcceptedKeys
    tensor_keys: _AcceptedKeys
    out_keys = ["loss_image", "loss_reward", "loss_continue", "loss_dyn", "loss_rep", "kl",
                "image_mse"]

    def __init__(
        self,
        world_model: RSSM,
        *,
        beta_pred: float = 1.0,
        beta_dyn: float = 0.5,
        beta_rep: float = 0.1,
        free_bits: float = 1.0,
        mode: str = "sample",
    ) -> None:
        super().__init__()
        for name, v in (("beta_pred", beta_pred), ("beta_dyn", beta_dyn),
                        ("beta_rep", beta_rep), ("free_bits", free_bits)):
            if v < 0:
                raise ValueError(f"{name} must be >= 0, got {v}")
        self.world_model = world_model
        self.beta_pred, self.beta_dyn, self.beta_rep = beta_pred, beta_dyn, beta_rep
        self.free_bits = free_bits
        self.mode = mode

    def _forward_value_estimator_keys(self, **kwargs) -> None:
        pass

    def forward(self, tensordict: TensorDictBase) -> TensorDictBase:
        """Losses of one batch of sequences (see class docstring)."""
        if tensordict.batch_dims != 2:
            raise ValueError(
                f"RSSMLoss expects a [B, T] tensordict of sequences, got batch size "
                f"{tuple(tensordict.batch_size)}"
            )
        k, model = self.tensor_keys, self.world_model
        bt = tensordict.batch_size
        pixels = tensordict.get(k.pixels)
        if pixels.dtype == torch.uint8:
            pixels = pixels_to_float(pixels)
        action = tensordict.get(k.action).to(pixels.dtype)
        reward = tensordict.get(k.reward).reshape(bt).to(pixels.dtype)
        is_first = tensordict.get(k.is_first).reshape(bt).bool()
        not_terminal = (~tensordict.get(k.is_terminal).reshape(bt).bool()).to(pixels.dtype)

        out = model.observe(pixels, action, is_first, mode=self.mode)
        features = out["features"]
        dyn, rep, kl = balanced_kl_terms(
            model.probs(out["post_logits"]), model.probs(out["prior_logits"]), self.free_bits
        )
        recon = model.decode(features)
        sq = (recon - pixels).square()
        image = sq.sum(dim=(-3, -2, -1))
        reward_err = (model.reward_head(features).squeeze(-1) - symlog(reward)).square()
        cont = torch.nn.functional.binary_cross_entropy_with_logits(
            model.continue_logit(features).squeeze(-1), not_terminal, reduction="none"
        )
        return TensorDict(
            {
                "loss_image": self.beta_pred * image.mean(),
                "loss_reward": self.beta_pred * reward_err.mean(),
                "loss_continue": self.beta_pred * cont.mean(),
                "loss_dyn": self.beta_dyn * dyn.mean(),
                "loss_rep": self.beta_rep * rep.mean(),
                "kl": kl.mean(),
                "image_mse": sq.detach().mean(),
            },
            batch_size=[],
        )
