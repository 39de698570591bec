"""Expectile regression (Eq. 1) and LEQ's normalized λ-return (Eq. 8).

Time is at dim ``-2`` (TorchRL's convention): tensors are shaped ``[..., T, F]``.

Example:
    >>> import torch
    >>> from torchrl_leq.objectives.value import normalized_lambda_return
    >>> reward = torch.ones(2, 3, 1)
    >>> next_value = torch.zeros(2, 3, 1)
    >>> normalized_lambda_return(reward, next_value, gamma=1.0, lmbda=0.0)[0, :, 0]
    tensor([1., 1., 1.])
"""

from __future__ import annotations

import torch
from tensordict import TensorDictBase
from tensordict.nn import TensorDictModule
from torch import Tensor
from torchrl.objectives.value import ValueEstimatorBase

from .hyperparameters import UNIT

__all__ = [
    "expectile_loss",
    "expectile_weight",
    "normalized_lambda_return",
    "NormalizedLambdaReturnEstimator",
]


def expectile_weight(diff: Tensor, tau: float) -> Tensor:
    """Asymmetric weight ``|tau - 1(diff > 0)|`` of Eq. 1, ``diff = prediction - target``.

    A prediction above its target gets weight ``1 - tau``, one below gets ``tau``: with
    ``tau < 0.5`` over-estimates are penalised more, which pulls the fit to a *lower* expectile.

    Example:
        >>> expectile_weight(torch.tensor([1.0, -1.0]), 0.1)
        tensor([0.9000, 0.1000])
    """
    return torch.where(diff > 0, 1.0 - tau, tau).to(diff.dtype)


def expectile_loss(diff: Tensor, tau: float) -> Tensor:
    """Eq. 1, elementwise: ``|tau - 1(diff > 0)| * diff**2`` with ``diff = prediction - target``.

    Minimising ``mean(expectile_loss(x - y, tau))`` over a scalar ``x`` gives the ``tau``-expectile
    of the sample ``y`` (the mean for ``tau = 0.5``, below it for ``tau < 0.5``). Note the sign
    convention: IQL writes ``1(u < 0)`` with ``u = target - prediction``, the same thing.

    Example:
        >>> expectile_loss(torch.tensor([2.0, -2.0]), 0.25)
        tensor([3., 1.])
    """
    UNIT("tau", tau)
    return expectile_weight(diff, tau) * diff.pow(2)


def _geometric_sums(lmbda: float, max_terms: int) -> list[float]:
    """``S_n = sum_{i<n} lmbda**i`` for ``n = 0..max_terms`` (exact for ``lmbda = 1``)."""
    sums = [0.0]
    for i in range(max_terms):
        sums.append(sums[-1] + lmbda**i)
    return sums


def normalized_lambda_return(
    reward: Tensor,
    next_value: Tensor,
    *,
    gamma: float,
    lmbda: float,
    terminated: Tensor | None = None,
    value: Tensor | None = None,
) -> Tensor:
    r"""LEQ's normalized λ-return (Eq. 8) of a fixed-length rollout, weights summing to one.

    For step ``t`` with ``N = T - t`` steps left,

    .. math::
        Q^\lambda_t = \frac{1-\lambda}{1-\lambda^N} \sum_{i=1}^{N} \lambda^{i-1} G_{t:t+i},
        \qquad G_{t:t+i} = \sum_{k<i} \gamma^k r_{t+k} + \gamma^i Q(s_{t+i}, a_{t+i}).

    With ``value`` given (``value[t] = Q(s_t, a_t)``), the 0-step return ``G_{t:t} = Q(s_t, a_t)``
    is included as the released LEQ code does:
    :math:`Q^\lambda_t = \sum_{i=0}^{N} \lambda^i G_{t:t+i} / \sum_{i=0}^{N} \lambda^i`.

    Args:
        reward: ``r_t``, shape ``[..., T, F]``.
        next_value: ``Q(s_{t+1}, a_{t+1})``, same shape as ``reward``.

    Keyword Args:
        gamma: discount in ``[0, 1]``.
        lmbda: λ in ``[0, 1]``; ``0`` gives the 1-step target (or, with ``value``, ``Q(s_t, a_t)``
            itself), ``1`` the uniform average of the n-step returns.
        terminated: optional bool, same shape; ``terminated[t]`` means ``s_{t+1}`` is terminal:
            no reward after it and no bootstrap from it.
        value: optional ``Q(s_t, a_t)``; when given, the 0-step term is included. It must be
            consistent with ``next_value`` (``value[t + 1] == next_value[t]``).

    Returns:
        ``Q^λ_t``, same shape as ``reward``. Differentiable w.r.t. every input tensor.
    """
    UNIT("gamma", gamma)
    UNIT("lmbda", lmbda)
    if reward.ndim < 2:
        raise ValueError(
            f"reward must be shaped [..., T, F] with time at dim -2, got shape {tuple(reward.shape)}."
        )
    for name, other in (("next_value", next_value), ("terminated", terminated), ("value", value)):
        if other is not None and other.shape != reward.shape:
            raise ValueError(
                f"{name} must have the shape of reward {tuple(reward.shape)}, "
                f"got {tuple(other.shape)}."
            )
    num_steps = reward.shape[-2]
    not_terminal = (
        torch.ones_like(reward) if terminated is None else (~terminated.bool()).to(reward.dtype)
    )
    geometric = _geometric_sums(lmbda, num_steps + 1)
    returns = []
    ret = next_value[..., -1, :]
    for t in reversed(range(num_steps)):
        steps_left = num_steps - t
        r_t, nt_t, nv_t = reward[..., t, :], not_terminal[..., t, :], next_value[..., t, :]
        if value is None:
            # Q^λ_t = r_t + γ [(1 - λ'_t) Q_{t+1} + λ'_t Q^λ_{t+1}],  λ'_t = λ S_{N-1} / S_N.
            lmbda_t = lmbda * geometric[steps_left - 1] / geometric[steps_left]
            bootstrap = nv_t if t == num_steps - 1 else (1 - lmbda_t) * nv_t + lmbda_t * ret
            ret = r_t + gamma * nt_t * bootstrap
        else:
            # Q^λ_t = (Q_t + λ S_N (r_t + γ Q^λ_{t+1})) / S_{N+1}.
            scale = lmbda * geometric[steps_left]
            ret = (value[..., t, :] + scale * (r_t + gamma * nt_t * ret)) / geometric[
                steps_left + 1
            ]
        returns.append(ret)
    return torch.stack(returns[::-1], dim=-2)


class NormalizedLambdaReturnEstimator(ValueEstimatorBase):
    """TorchRL value estimator computing LEQ's normalized λ-return (Eq. 8).

    Reads, on a ``[*B, T]`` tensordict: ``state_action_value`` (``Q(s_t, a_t)``, only with
    ``include_current=True``), ``("next", "state_action_value")``, ``("next", "reward")`` and
    ``("next", "terminated")``; writes ``value_target`` (and ``advantage`` =
    ``value_target - state_action_value`` when the current value is present). Keys are
    remappable with :meth:`set_keys`. Values must already be in the tensordict unless a
    ``value_network`` is given, in which case it is called on the tensordict and on
    ``tensordict["next"]``.

    Args:
        gamma: discount.
        lmbda: λ.
        include_current: include the 0-step term ``Q(s_t, a_t)`` (released LEQ code).
        value_network: optional module writing the value key.

    Example:
        >>> from tensordict import TensorDict
        >>> est = NormalizedLambdaReturnEstimator(gamma=0.99, lmbda=0.95)
        >>> td = TensorDict({"state_action_value": torch.zeros(4, 5, 1), "next": {
        ...     "state_action_value": torch.zeros(4, 5, 1), "reward": torch.ones(4, 5, 1),
        ...     "terminated": torch.zeros(4, 5, 1, dtype=torch.bool)}}, [4, 5])
        >>> est.value_estimate(td).shape
        torch.Size([4, 5, 1])
    """

    def __init__(
        self,
        *,
        gamma: float,
        lmbda: float,
        include_current: bool = False,
        value_network: TensorDictModule | None = None,
        **kwargs,
    ) -> None:
        super().__init__(value_network=value_network, **kwargs)
        UNIT("gamma", gamma)
        UNIT("lmbda", lmbda)
        self.gamma = float(gamma)
        self.lmbda = float(lmbda)
        self.include_current = include_current
        self.set_keys(value="state_action_value")

    def _get_value(self, tensordict: TensorDictBase, params: TensorDictBase | None) -> Tensor:
        key = self.tensor_keys.value
        if key not in tensordict.keys(include_nested=True):
            if self.value_network is None:
                raise KeyError(
                    f"NormalizedLambdaReturnEstimator: missing {key!r} and no value_network "
                    "to compute it."
                )
            if params is not None:
                with params.to_module(self.value_network):
                    self.value_network(tensordict)
            else:
                self.value_network(tensordict)
        return tensordict.get(key)

    def value_estimate(
        self,
        tensordict: TensorDictBase,
        target_params: TensorDictBase | None = None,
        next_value: Tensor | None = None,
        **kwargs,
    ) -> Tensor:
        """Return ``Q^λ`` for every step of the ``[*B, T]`` tensordict."""
        keys = self.tensor_keys
        if tensordict.batch_dims < 1:
            raise ValueError("NormalizedLambdaReturnEstimator needs a [*B, T] tensordict.")
        reward = tensordict.get(("next", keys.reward))
        terminated = tensordict.get(("next", keys.terminated), None)
        if next_value is None:
            next_value = self._get_value(tensordict.get("next"), target_params)
        value = self._get_value(tensordict, target_params) if self.include_current else None
        return normalized_lambda_return(
            reward.unsqueeze(-1) if reward.ndim == tensordict.batch_dims else reward,
            next_value,
            gamma=self.gamma,
            lmbda=self.lmbda,
            terminated=terminated,
            value=value,
        )

    def forward(
        self,
        tensordict: TensorDictBase,
        *,
        params: TensorDictBase | None = None,
        target_params: TensorDictBase | None = None,
    ) -> TensorDictBase:
        """Write ``value_target`` (and ``advantage`` when the current value is present)."""
        target = self.value_estimate(tensordict, target_params=target_params)
        if not self.differentiable:
            target = target.detach()
        tensordict.set(self.tensor_keys.value_target, target)
        value = tensordict.get(self.tensor_keys.value, None)
        if value is not None:
            tensordict.set(self.tensor_keys.advantage, target - value)
        return tensordict
