"""Vectorised probabilistic ensemble of dynamics models (OfflineRL-Kit / MBPO style).

Every member is an MLP ``(s, a) -> N(mean, diag(exp(logvar)))`` over ``(Δs, r)``. All members
live in the same weight tensors shaped ``(E, in, out)`` and run in one ``torch.baddbmm`` per
layer; there is no Python loop over members.

Example:
    >>> import torch
    >>> from torchrl_leq.modules import ProbabilisticEnsemble
    >>> model = ProbabilisticEnsemble(obs_dim=3, action_dim=2, hidden_dims=(16, 16))
    >>> mean, logvar = model(torch.randn(10, 3), torch.randn(10, 2))
    >>> mean.shape  # (members, batch, obs_dim + 1)
    torch.Size([7, 10, 4])
    >>> out = model.sample(torch.randn(10, 3), torch.randn(10, 2))
    >>> out.next_obs.shape, out.reward.shape, out.members.shape
    (torch.Size([10, 3]), torch.Size([10, 1]), torch.Size([10]))
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

SAMPLING_MODES = ("gather", "stratified")
DEFAULT_WEIGHT_DECAYS = (2.5e-5, 5e-5, 7.5e-5, 7.5e-5, 1e-4)


class EnsembleSample(NamedTuple):
    """One model step for a batch: the sampled next observation and reward, and which member
    (ensemble index, not elite position) produced each sample."""

    next_obs: torch.Tensor
    reward: torch.Tensor
    members: torch.Tensor


def _soft_clamp(x: torch.Tensor, lo: torch.Tensor, hi: torch.Tensor) -> torch.Tensor:
    """Differentiable clamp of ``x`` into ``(lo, hi)`` with softplus (MBPO / OfflineRL-Kit)."""
    x = hi - F.softplus(hi - x)
    return lo + F.softplus(x - lo)


class ProbabilisticEnsemble(nn.Module):
    """Ensemble of Gaussian dynamics models over ``(Δs, r)`` given ``(s, a)``.

    Args:
        obs_dim: observation size.
        action_dim: action size.
        num_members: ensemble size ``E`` (7).
        num_elites: members used for sampling (5), chosen by holdout loss after training.
        hidden_dims: hidden layer widths (4 × 200).
        weight_decays: one L2 coefficient per linear layer (``len(hidden_dims) + 1`` values);
            default ``(2.5e-5, 5e-5, 7.5e-5, 7.5e-5, 1e-4)`` (OfflineRL-Kit) for 4 hidden
            layers, otherwise evenly spaced from 2.5e-5 to 1e-4.
        sampling: default "random elite per sample" path, ``"stratified"`` (each elite runs on
            an equal random slice of the batch; measured faster, see
            ``benchmarks/world_model_speed.py``) or ``"gather"`` (every elite runs on every
            sample, then the chosen output is gathered).
        dtype: parameter dtype.

    Example:
        >>> model = ProbabilisticEnsemble(3, 2, num_members=4, num_elites=2, hidden_dims=(8,))
        >>> model.weight_decays
        (2.5e-05, 0.0001)
    """

    def __init__(
        self,
        obs_dim: int,
        action_dim: int,
        *,
        num_members: int = 7,
        num_elites: int = 5,
        hidden_dims: Sequence[int] = (200, 200, 200, 200),
        weight_decays: Sequence[float] | None = None,
        sampling: str = "stratified",
        dtype: torch.dtype | str = torch.float32,
    ) -> None:
        super().__init__()
        if isinstance(dtype, str):
            dtype = getattr(torch, dtype.removeprefix("torch."))
        if obs_dim < 1 or action_dim < 1:
            raise ValueError(f"obs_dim and action_dim must be >= 1, got {obs_dim}, {action_dim}")
        if not 1 <= num_elites <= num_members:
            raise ValueError(
                f"num_elites must be in [1, num_members={num_members}], got num_elites={num_elites}"
            )
        if weight_decays is None:
            n_layers = len(hidden_dims) + 1
            weight_decays = (
                DEFAULT_WEIGHT_DECAYS
                if n_layers == len(DEFAULT_WEIGHT_DECAYS)
                else torch.linspace(2.5e-5, 1e-4, n_layers, dtype=torch.float64).tolist()
            )
        if len(weight_decays) != len(hidden_dims) + 1:
            raise ValueError(
                f"need one weight decay per linear layer ({len(hidden_dims) + 1}), "
                f"got {len(weight_decays)}"
            )
        if sampling not in SAMPLING_MODES:
            raise ValueError(f"sampling must be one of {SAMPLING_MODES}, got {sampling!r}")
        self.obs_dim, self.action_dim = int(obs_dim), int(action_dim)
        self.num_members, self.num_elites = int(num_members), int(num_elites)
        self.hidden_dims = tuple(int(h) for h in hidden_dims)
        self.weight_decays = tuple(float(w) for w in weight_decays)
        self.sampling = sampling
        self.in_dim = self.obs_dim + self.action_dim
        self.out_dim = self.obs_dim + 1  # (Δs, r)

        dims = (self.in_dim, *self.hidden_dims, 2 * self.out_dim)
        self.weights = nn.ParameterList()
        self.biases = nn.ParameterList()
        for d_in, d_out in zip(dims[:-1], dims[1:]):
            w = torch.empty(num_members, d_in, d_out, dtype=dtype)
            nn.init.trunc_normal_(w, std=1.0 / (2.0 * math.sqrt(d_in)))
            self.weights.append(nn.Parameter(w))
            self.biases.append(nn.Parameter(torch.zeros(num_members, 1, d_out, dtype=dtype)))
        self.max_logvar = nn.Parameter(torch.full((self.out_dim,), 0.5, dtype=dtype))
        self.min_logvar = nn.Parameter(torch.full((self.out_dim,), -10.0, dtype=dtype))
        self.register_buffer("input_mean", torch.zeros(self.in_dim, dtype=dtype))
        self.register_buffer("input_std", torch.ones(self.in_dim, dtype=dtype))
        self.register_buffer("elites", torch.arange(self.num_elites))
        self._elite_cache: tuple[tuple, list[tuple[torch.Tensor, torch.Tensor]]] | None = None

    @property
    def config(self) -> dict[str, Any]:
        """Constructor arguments (plain Python values), enough to rebuild the module."""
        return {
            "obs_dim": self.obs_dim,
            "action_dim": self.action_dim,
            "num_members": self.num_members,
            "num_elites": self.num_elites,
            "hidden_dims": list(self.hidden_dims),
            "weight_decays": list(self.weight_decays),
            "sampling": self.sampling,
            "dtype": str(self.max_logvar.dtype).removeprefix("torch."),
        }

    # ------------------------------------------------------------------ checks and scaler
    def _check(self, obs: torch.Tensor, action: torch.Tensor) -> None:
        if obs.shape[-1] != self.obs_dim:
            raise ValueError(
                f"observation has last dim {obs.shape[-1]}, expected obs_dim={self.obs_dim}"
            )
        if action.shape[-1] != self.action_dim:
            raise ValueError(
                f"action has last dim {action.shape[-1]}, expected action_dim={self.action_dim}"
            )
        if obs.shape[:-1] != action.shape[:-1]:
            raise ValueError(
                f"observation and action batch shapes differ: {tuple(obs.shape[:-1])} vs "
                f"{tuple(action.shape[:-1])}"
            )

    @torch.no_grad()
    def fit_scaler(self, obs: torch.Tensor, action: torch.Tensor) -> None:
        """Fit the input standardiser (mean/std of ``cat(obs, action)``) on data ``[N, ·]``."""
        self._check(obs, action)
        x = torch.cat([obs, action], -1).reshape(-1, self.in_dim).to(self.input_mean)
        if not torch.isfinite(x).all():
            raise ValueError("fit_scaler got NaN or inf in the observations or actions")
        std = x.std(0, unbiased=False)
        self.input_mean.copy_(x.mean(0))
        self.input_std.copy_(torch.where(std < 1e-12, torch.ones_like(std), std))

    def set_elites(self, elites: Sequence[int] | torch.Tensor) -> None:
        """Set the elite member indices (``num_elites`` distinct values in ``[0, E)``)."""
        elites = torch.as_tensor(elites, dtype=torch.long).flatten()
        if elites.numel() != self.num_elites or elites.unique().numel() != self.num_elites:
            raise ValueError(f"need {self.num_elites} distinct elites, got {elites.tolist()}")
        if elites.min() < 0 or elites.max() >= self.num_members:
            raise ValueError(f"elites must lie in [0, {self.num_members}), got {elites.tolist()}")
        self.elites.copy_(elites.to(self.elites.device))

    def weight_decay_loss(self) -> torch.Tensor:
        """``Σ_l decay_l · ½‖W_l‖²`` over all members (biases are not decayed)."""
        return sum(d * 0.5 * w.square().sum() for d, w in zip(self.weight_decays, self.weights))

    # ------------------------------------------------------------------ forward passes
    def _layers(self, idx: torch.Tensor | None) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """``(weight, bias)`` per layer of members ``idx`` (all if ``None``)."""
        if idx is None:
            return list(zip(self.weights, self.biases))
        return [
            (w.index_select(0, idx), b.index_select(0, idx))
            for w, b in zip(self.weights, self.biases)
        ]

    def _elite_layers(self) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """The elites' layers, gathered once and reused while nothing changed.

        Reused while the parameters and ``elites`` keep their identity and version and need no
        gradient (a frozen model in imagined rollouts): saves 2 copies per layer per model step.
        """
        tensors = (self.elites, *self.weights, *self.biases)
        if torch.compiler.is_compiling() or (
            torch.is_grad_enabled() and any(t.requires_grad for t in tensors)
        ):
            return self._layers(self.elites)
        key = tuple((id(t), t.data_ptr(), t._version) for t in tensors)
        if self._elite_cache is None or self._elite_cache[0] != key:
            with torch.no_grad():
                self._elite_cache = (key, self._layers(self.elites))
        return self._elite_cache[1]

    def _mlp(
        self, x: torch.Tensor, layers: list[tuple[torch.Tensor, torch.Tensor]]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Run the members whose ``layers`` are given on standardised inputs.

        ``x`` is ``[N, in]`` (shared by all members) or ``[M, N, in]`` (one slice per member).
        Returns ``(mean, logvar)`` shaped ``[M, N, out_dim]``.
        """
        last = len(layers) - 1
        h = x
        for i, (w, b) in enumerate(layers):
            h = torch.matmul(h, w) + b if h.dim() == 2 else torch.baddbmm(b, h, w)
            if i < last:
                h = F.silu(h)
        mean, logvar = h.split(self.out_dim, dim=-1)
        return mean, _soft_clamp(logvar, self.min_logvar, self.max_logvar)

    def _normalize(self, obs: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        return (torch.cat([obs, action], -1) - self.input_mean) / self.input_std

    def forward(
        self, obs: torch.Tensor, action: torch.Tensor, members: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and log-variance of ``(Δs, r)`` from every member (or ``members``).

        Inputs are ``[N, d]`` (every member sees the same batch) or ``[M, N, d]`` (member ``m``
        sees slice ``m``; used by bootstrapped training). Output ``[M, N, obs_dim + 1]``.
        """
        self._check(obs, action)
        if obs.dim() not in (2, 3):
            raise ValueError(f"expected inputs [N, d] or [M, N, d], got {tuple(obs.shape)}")
        return self._mlp(self._normalize(obs, action), self._layers(members))

    def sample(
        self,
        obs: torch.Tensor,
        action: torch.Tensor,
        *,
        sampling: str | None = None,
        members: torch.Tensor | None = None,
        deterministic: bool = False,
        generator: torch.Generator | None = None,
    ) -> EnsembleSample:
        """Sample ``(s', r)`` with a uniformly random elite per sample (reparameterised).

        Args:
            obs, action: ``[..., obs_dim]`` and ``[..., action_dim]``, any leading dims.
            sampling: ``"gather"`` or ``"stratified"``; defaults to ``self.sampling``.
            members: optional ``[...]`` ensemble indices to use instead of random elites
                (any member, gather path; for tests and analysis).
            deterministic: return the chosen member's mean (no noise).
            generator: RNG for the member choice and the noise (global RNG if ``None``).

        The noise ``eps`` is drawn first, in the input order, so the same seed and the same
        member assignment give the same sample on both paths. Gradients flow to ``obs`` and
        ``action`` (``s' = s + μ + σ·eps``).
        """
        self._check(obs, action)
        sampling = self.sampling if sampling is None else sampling
        if sampling not in SAMPLING_MODES:
            raise ValueError(f"sampling must be one of {SAMPLING_MODES}, got {sampling!r}")
        lead = obs.shape[:-1]
        obs_flat = obs.reshape(-1, self.obs_dim)
        x = self._normalize(obs_flat, action.reshape(-1, self.action_dim))
        n = x.shape[0]
        eps = None
        if not deterministic:
            eps = torch.randn(n, self.out_dim, generator=generator, device=x.device, dtype=x.dtype)
        if members is not None:
            members = members.reshape(-1).to(device=x.device, dtype=torch.long)
            if members.numel() != n:
                raise ValueError(f"members has {members.numel()} entries, expected {n}")
            mean, logvar = self._gather(x, self._layers(None), members)
        elif sampling == "gather":
            pos = torch.randint(self.num_elites, (n,), generator=generator, device=x.device)
            mean, logvar = self._gather(x, self._elite_layers(), pos)
            members = self.elites[pos]
        else:
            mean, logvar, members = self._stratified(x, generator)
        out = mean if eps is None else mean + torch.exp(0.5 * logvar) * eps
        next_obs = obs_flat + out[:, : self.obs_dim]
        return EnsembleSample(
            next_obs.reshape(*lead, self.obs_dim),
            out[:, self.obs_dim :].reshape(*lead, 1),
            members.reshape(lead),
        )

    def _gather(
        self, x: torch.Tensor, layers: list[tuple[torch.Tensor, torch.Tensor]], pos: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Every member in ``layers`` runs on every sample; pick member ``pos[i]`` for sample i."""
        mean, logvar = self._mlp(x, layers)
        rows = torch.arange(x.shape[0], device=x.device)
        return mean[pos, rows], logvar[pos, rows]

    def _stratified(
        self, x: torch.Tensor, generator: torch.Generator | None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Random permutation; elite ``j`` runs on the ``j``-th contiguous slice.

        With ``N`` not divisible by the number of elites ``k``, slices hold ``ceil(N/k)`` or
        ``ceil(N/k) - 1`` samples (the short ones get one zero pad row whose output is
        dropped); which slices are short is random, so each sample's member stays uniform over
        the elites.
        """
        n, k = x.shape[0], self.num_elites
        chunk = -(-n // k)
        perm = torch.randperm(n, generator=generator, device=x.device)
        grid = torch.arange(k * chunk, device=x.device)
        full = n - (chunk - 1) * k  # number of full slices
        if full < k:
            full_slices = torch.randperm(k, generator=generator, device=x.device) < full
            keep = (grid % chunk < chunk - 1) | full_slices[grid // chunk]
            # grid[keep] without a host sync (its n entries, ascending): a stable sort puts the
            # kept slots first, in order; the output shape stays static (capture-ready).
            grid = torch.argsort((~keep).to(torch.uint8), stable=True)[:n]
        slot = torch.empty_like(perm)
        slot[perm] = grid  # sample perm[q] -> the q-th free slot
        xs = x.new_zeros(k * chunk, self.in_dim).index_copy(0, slot, x)
        mean, logvar = self._mlp(xs.view(k, chunk, self.in_dim), self._elite_layers())
        mean = mean.reshape(k * chunk, self.out_dim).index_select(0, slot)
        logvar = logvar.reshape(k * chunk, self.out_dim).index_select(0, slot)
        return mean, logvar, self.elites[slot // chunk]
