"""World-model objective (OfflineRL-Kit recipe): the ensemble's Gaussian NLL plus the log-variance
bound and weight-decay terms. The training loop and save/load are in
:mod:`torchrl_leq.training.world_model`.

Example:
    >>> import torch
    >>> from torchrl_leq.modules import ProbabilisticEnsemble
    >>> model = ProbabilisticEnsemble(3, 2, num_members=3, num_elites=2, hidden_dims=(8,),
    ...                               weight_decays=(0.0, 0.0))
    >>> obs, act = torch.randn(5, 3), torch.randn(5, 2)
    >>> world_model_loss(model, obs, act, torch.zeros(3, 5, 4)).shape
    torch.Size([])
"""

from __future__ import annotations

import torch

from torchrl_leq.modules.ensemble import ProbabilisticEnsemble


def gaussian_nll_ensemble_loss(
    mean: torch.Tensor, logvar: torch.Tensor, target: torch.Tensor
) -> torch.Tensor:
    """Gaussian NLL (up to constants) of an ensemble, ``[E, N, D]`` inputs.

    Per member: mean over batch and output dims of ``(μ - y)² · exp(-logvar) + logvar``;
    summed over members (OfflineRL-Kit's ``mse_loss_inv.sum() + var_loss.sum()``).
    """
    inv_var = torch.exp(-logvar)
    per_member = ((mean - target).square() * inv_var + logvar).mean(dim=(-2, -1))
    return per_member.sum()


def world_model_loss(
    ensemble: ProbabilisticEnsemble,
    obs: torch.Tensor,
    action: torch.Tensor,
    target: torch.Tensor,
    *,
    logvar_bound_coef: float = 0.01,
) -> torch.Tensor:
    """Full training loss: NLL + ``coef·(Σ max_logvar − Σ min_logvar)`` + weight decay.

    ``obs``/``action`` are ``[N, ·]`` or ``[E, N, ·]``; ``target = (next_obs − obs, reward)``
    shaped like the ensemble output (``[E, N, obs_dim + 1]`` or broadcastable to it).
    """
    mean, logvar = ensemble(obs, action)
    loss = gaussian_nll_ensemble_loss(mean, logvar, target)
    bounds = ensemble.max_logvar.sum() - ensemble.min_logvar.sum()
    return loss + logvar_bound_coef * bounds + ensemble.weight_decay_loss()


