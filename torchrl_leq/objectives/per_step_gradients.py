r"""LEQ's per-step actor gradient (released code): ∂Q^λ_t/∂a_t for every step, one backward sweep.

The released actor update (Eq. 11) differentiates each step's λ-return only through its own
action: ``∇_θ L = -Σ_t w_t (∂π_θ(s_t)/∂θ)ᵀ ∂Q^λ_t/∂a_t`` with ``a_t = π_θ(s_t)`` and
``Q^λ_t`` a function of ``a_t`` through the reparameterised model rollout
``(s_t, a_t) -> (r_t, s_{t+1}) -> a_{t+1} = π(s_{t+1}) -> ...``. A direct port computes H+1
Jacobians, each by a backward pass through the whole rollout. This module gets all of them from
one backward sweep over the steps, each step's graph traversed once.

Derivation. Let ``S_n = Σ_{i<n} λ^i`` and ``N = H - t`` the steps left. With the 0-step term
(``include_current``), Eq. 8's recursion is
``Q^λ_t = (Q_t + λ S_N (r_t + γ d_t Q^λ_{t+1})) / S_{N+1}``, ``d_t = 1 - terminated_t``,
``Q^λ_H = Q_H``. Let ``V_t = ∇_{s_t} Q^λ_t`` be the *total* derivative (through
``a_t = π(s_t)`` and every later step). Holding ``V_{t+1}`` fixed, ``Q^λ_t`` depends on
``(s_t, a_t)`` exactly like the scalar

.. math::
    F_t = \frac{Q(s_t, a_t) + \lambda S_N r_t}{S_{N+1}}
          + \frac{\lambda S_N \gamma}{S_{N+1}} d_t \langle \mathrm{sg}(V_{t+1}), s_{t+1}\rangle,

so ``∂Q^λ_t/∂a_t = ∂F_t/∂a_t`` and ``V_t = ∂F_t/∂s_t + (∂π(s_t)/∂s_t)ᵀ ∂F_t/∂a_t``: one
small backward pass through step t's model call, critic and policy, going backwards from
``t = H`` (``F_H = Q_H``). Without the 0-step term the recursion is
``Q^λ_t = r_t + γ d_t ((1-λ'_t) Q_{t+1} + λ'_t Q^λ_{t+1})`` with ``λ'_t = λ S_{N-1}/S_N``, which
also depends on ``Q_{t+1} = Q(s_{t+1}, π(s_{t+1}))`` directly; its total state derivative
``W_{t+1}`` is one more pass per step and ``F_t = r_t + γ d_t ⟨sg((1-λ'_t) W_{t+1} + λ'_t
V_{t+1}), s_{t+1}⟩``. Samples are independent, so batch sums give every sample's own gradient.

Fusing the actor's backward. With ``coef_t`` the actor loss's weight of step t (``-w_t`` or
``-w_t / B``), the pass through π that yields ``V_t`` can carry ``coef_t · ∂F_t/∂a_t`` as its
upstream gradient: the same call returns ``(∂π/∂s_t)ᵀ coef_t ∂F_t/∂a_t`` (divided by ``coef_t``
it is ``V_t``'s policy part) and ``Σ_i coef_it (∂π(s_it)/∂θ)ᵀ ∂Q^λ_it/∂a_it``, the actor-loss
gradient of step t. :class:`WithParamGrads` hands the summed gradients to the actor parameters
in the loss's backward, so π is traversed once per step in total.

Example:
    >>> import torch
    >>> from torchrl_leq.objectives.per_step_gradients import StepGraph, action_gradients
    >>> from torchrl_leq.objectives import NormalizedLambdaReturnEstimator
    >>> s0 = torch.ones(1, 1, requires_grad=True)
    >>> a0 = torch.full((1, 1), 2.0, requires_grad=True)
    >>> s1 = s0 + a0  # model step; reward a0, Q(s, a) = s · a, policy π(s) = s
    >>> s1_leaf = s1.detach().requires_grad_(True)
    >>> a1 = s1_leaf.detach().requires_grad_(True)
    >>> steps = [StepGraph(s0, a0, s0 * 1.0, s0 * a0, a0 * 1.0, s1),
    ...          StepGraph(s1_leaf, a1, s1_leaf * 1.0, s1_leaf * a1)]
    >>> est = NormalizedLambdaReturnEstimator(gamma=1.0, lmbda=0.0, include_current=False)
    >>> grads, _ = action_gradients(steps, torch.zeros(1, 1, 1, dtype=torch.bool), est)
    >>> grads[0, 0]  # Q^λ_0 = a0 + (s0 + a0)²: ∂/∂a0 = 1 + 2 · 3
    tensor([7.])
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from ._utils import reduce_loss
from .value import NormalizedLambdaReturnEstimator, _geometric_sums

__all__ = ["StepGraph", "WithParamGrads", "action_gradients", "per_step_actor_loss"]


@dataclass
class StepGraph:
    """One imagined step with a graph of its own (``obs`` and ``action`` are fresh leaves).

    Attributes:
        obs: ``s_t`` ``[B, obs]``, a leaf.
        action: ``a_t`` ``[B, act]``, a leaf holding the value of ``policy_action``.
        policy_action: ``π(s_t)`` with the actor's graph.
        q: ``Q(s_t, a_t)`` ``[B, 1]`` with the critic's graph.
        reward: ``r_t`` ``[B, 1]`` from ``(s_t, a_t)`` (``None`` at t = H).
        next_obs: ``s_{t+1}`` from ``(s_t, a_t)`` (``None`` at t = H).
    """

    obs: Tensor
    action: Tensor
    policy_action: Tensor
    q: Tensor
    reward: Tensor | None = None
    next_obs: Tensor | None = None


def _through_policy(step: StepGraph, grad_a: Tensor) -> Tensor:
    """``(∂π(s_t)/∂s_t)ᵀ grad_a``: the part of ``dF/ds_t`` that goes through ``a_t = π(s_t)``."""
    (grad_s,) = torch.autograd.grad(step.policy_action, step.obs, grad_a, retain_graph=True)
    return grad_s


def _weighted_policy_pass(
    step: StepGraph, grad_a: Tensor, c: Tensor, params: Sequence[Tensor]
) -> tuple[Tensor, list[Tensor]]:
    """One pass through π with upstream ``c · grad_a``: ``(∂π/∂s_t)ᵀ grad_a`` and the
    step's actor-parameter gradients ``Σ_i c_i (∂π(s_i)/∂θ)ᵀ grad_a_i``."""
    through, *step_param_grads = torch.autograd.grad(
        step.policy_action,
        [step.obs, *params],
        grad_a * c,
        retain_graph=True,
        allow_unused=True,
        materialize_grads=True,
    )
    # c = 0 only for dead samples, whose V_t feeds nothing but their own dead steps
    return torch.where(c != 0, through / c, 0.0), step_param_grads


def _local_objective(
    step: StepGraph,
    t: int,
    horizon: int,
    estimator: NormalizedLambdaReturnEstimator,
    sums: list[float],
    not_term: Tensor,
    v_next: Tensor | None,
    w_next: Tensor | None,
) -> Tensor:
    """``F_t`` of the module docstring (summed over the batch)."""
    gamma, lmbda, left = estimator.gamma, estimator.lmbda, horizon - t
    if t == horizon:
        return step.q.sum()
    if estimator.include_current:
        local = (step.q + lmbda * sums[left] * step.reward) / sums[left + 1]
        coef_t = lmbda * sums[left] * gamma / sums[left + 1]
        return local.sum() + (coef_t * not_term[:, t] * v_next * step.next_obs).sum()
    lmbda_t = lmbda * sums[left - 1] / sums[left]
    direction = (1 - lmbda_t) * w_next + lmbda_t * v_next
    return step.reward.sum() + (gamma * not_term[:, t] * direction * step.next_obs).sum()


def action_gradients(
    steps: Sequence[StepGraph],
    terminated: Tensor,
    estimator: NormalizedLambdaReturnEstimator,
    coef: Tensor | None = None,
    params: Sequence[Tensor] = (),
) -> tuple[Tensor, tuple[Tensor, ...]]:
    """∂Q^λ_t/∂a_t for every t = 0..H (the Jacobian's diagonal blocks) in one backward sweep.

    Args:
        steps: the H+1 step graphs of one rollout.
        terminated: ``[B, H, 1]`` bool, ``terminated[:, t]`` = s_{t+1} is terminal.
        estimator: supplies γ, λ and the 0-step switch (the loss's value estimator).
        coef: optional ``[B, H+1, 1]``, the actor loss's weight of each step's surrogate term,
            zero exactly where a sample is dead; with it the actor-parameter gradient
            ``Σ_t Σ_i coef_it (∂π(s_it)/∂θ)ᵀ ∂Q^λ_it/∂a_it`` is accumulated for ``params``.
        params: the trainable actor parameters (only with ``coef``).

    Returns ``(grads [B, H+1, act], actor parameter gradients or ())``. Graphs are retained:
    the rollout's Q serves the critic loss afterwards.
    """
    if not isinstance(estimator, NormalizedLambdaReturnEstimator):
        raise TypeError(
            "actor_gradient='per_step' needs the NormalizedLambdaReturnEstimator; use "
            "actor_gradient='backprop' with a custom value estimator."
        )
    horizon = len(steps) - 1
    sums = _geometric_sums(estimator.lmbda, horizon + 2)
    not_term = (~terminated).to(steps[0].q.dtype)
    param_grads: list[Tensor] = []
    grads: list[Tensor] = []
    v_next = w_next = None
    for t in reversed(range(horizon + 1)):
        step = steps[t]
        objective = _local_objective(step, t, horizon, estimator, sums, not_term, v_next, w_next)
        grad_s, grad_a = torch.autograd.grad(objective, [step.obs, step.action], retain_graph=True)
        grads.insert(0, grad_a)
        if coef is None:
            v_next = grad_s + _through_policy(step, grad_a)
        else:
            through, step_param_grads = _weighted_policy_pass(step, grad_a, coef[:, t], params)
            v_next = grad_s + through
            param_grads = (
                [a + b for a, b in zip(param_grads, step_param_grads)]
                if param_grads
                else step_param_grads
            )
        if not estimator.include_current and t > 0:
            if t == horizon:
                w_next = v_next
            else:
                grad_s, grad_a = torch.autograd.grad(
                    step.q.sum(), [step.obs, step.action], retain_graph=True
                )
                w_next = grad_s + _through_policy(step, grad_a)
    return torch.stack(grads, 1), tuple(param_grads)


def per_step_actor_loss(
    steps: Sequence[StepGraph],
    terminated: Tensor,
    weights: Tensor,
    lambda_return: Tensor,
    estimator: NormalizedLambdaReturnEstimator,
    reduction: str,
    params: Sequence[Tensor],
    num_groups: int = 1,
) -> Tensor:
    """Eq. 11, ``reduce(-Σ_t w_t Q^λ_t)``, whose actor gradient is the per-step one.

    ``num_groups`` K > 1: the batch is K stacked seeds (seed-major); the loss is reduced per
    seed (a ``[K]`` tensor) and each seed's mean divides by its own batch size.

    ``weights`` and ``lambda_return`` are ``[B, H+1, 1]`` and detached. With a ``"mean"`` or
    ``"sum"`` reduction (and grad mode on) the actor gradient is accumulated during the sweep
    and attached with :class:`WithParamGrads`; with ``"none"`` it goes through the surrogate
    ``Σ_t w_t <sg(∂Q^λ_t/∂a_t), π(s_t)>`` (zero-valued, per sample).
    """
    if reduction != "none" and torch.is_grad_enabled():
        coef = -weights if reduction == "sum" else -weights / (weights.shape[0] // num_groups)
        injected = action_gradients(steps, terminated, estimator, coef, params)[1]
        loss = reduce_loss(-(weights * lambda_return).sum(dim=(1, 2)), reduction, num_groups)
        return WithParamGrads.apply(loss, injected, *params)
    grads = action_gradients(steps, terminated, estimator)[0]
    policy_action = torch.stack([step.policy_action for step in steps], 1)
    surrogate = (grads * (policy_action - policy_action.detach())).sum(-1, keepdim=True)
    return reduce_loss(
        -(weights * (lambda_return + surrogate)).sum(dim=(1, 2)), reduction, num_groups
    )


class WithParamGrads(torch.autograd.Function):
    """``value`` whose gradient w.r.t. the actor parameters was computed in the forward pass.

    ``apply(value, grads, *params)`` returns ``value``; backward hands ``upstream · grads`` to
    ``params`` (computed by :func:`action_gradients`). ``value`` itself carries no gradient (it
    is built from detached λ-returns and weights).
    """

    @staticmethod
    def forward(ctx, value: Tensor, grads: tuple[Tensor, ...], *params: Tensor) -> Tensor:
        ctx.grads = grads
        return value.clone()

    @staticmethod
    def backward(ctx, upstream: Tensor) -> tuple[Tensor | None, ...]:
        if upstream.dim() == 1:  # [K] per-seed losses of K stacked seeds: seed k owns g[k]
            return (None, None, *(upstream.view(-1, *[1] * (g.dim() - 1)) * g for g in ctx.grads))
        return (None, None, *(upstream * g for g in ctx.grads))
