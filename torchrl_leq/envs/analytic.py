"""A small differentiable analytic env for tests, demos and benchmarks of model-based losses.

``LinearQuadraticEnv`` follows the model-env contract of :class:`~torchrl_leq.envs.LEQModelEnv`:
``reset(td)`` adopts the batch size of ``td`` and starts from ``td["observation"]``; ``step``
is differentiable w.r.t. observation and action; rollouts are fixed-length with an ``"alive"``
mask (1 until termination, then 0).

Dynamics ``s' = A s + B a (+ noise_std * eps)``, reward ``r = -|s'|^2 - action_cost |a|^2``,
terminated when ``|s'_0| > termination_bound``.

Example:
    >>> import torch
    >>> from tensordict import TensorDict
    >>> env = LinearQuadraticEnv(obs_dim=3, action_dim=2)
    >>> td = env.reset(TensorDict({"observation": torch.ones(5, 3)}, [5]))
    >>> td["action"] = torch.zeros(5, 2)
    >>> env.step(td)["next", "reward"].shape
    torch.Size([5, 1])
"""

from __future__ import annotations

import torch
from tensordict import TensorDict, TensorDictBase
from torch import Tensor
from torchrl.data import Bounded, Composite, Unbounded
from torchrl.envs import EnvBase

__all__ = ["LinearQuadraticEnv"]


class LinearQuadraticEnv(EnvBase):
    """Linear dynamics, quadratic reward, optional termination; batch size set by ``reset``."""

    def __init__(
        self,
        obs_dim: int = 3,
        action_dim: int = 2,
        *,
        A: Tensor | None = None,
        B: Tensor | None = None,
        noise_std: float = 0.0,
        action_cost: float = 0.1,
        termination_bound: float = float("inf"),
        dtype: torch.dtype = torch.float32,
        seed: int = 0,
    ) -> None:
        super().__init__(batch_size=torch.Size([]))
        gen = torch.Generator().manual_seed(seed)
        if A is None:
            A = torch.eye(obs_dim) + 0.1 * torch.randn(obs_dim, obs_dim, generator=gen)
        if B is None:
            B = 0.5 * torch.randn(obs_dim, action_dim, generator=gen)
        self.register_buffer("A", A.to(dtype))
        self.register_buffer("B", B.to(dtype))
        self.obs_dim, self.action_dim, self.dtype_ = obs_dim, action_dim, dtype
        self.noise_std = noise_std
        self.action_cost = action_cost
        self.termination_bound = termination_bound
        self._make_specs(torch.Size([]))

    def _make_specs(self, batch: torch.Size) -> None:
        # The batch-size setter would try to reshape the old specs; rebuild them instead.
        self.__dict__["_batch_size"] = torch.Size(batch)
        dt = self.dtype_
        self.observation_spec = Composite(
            observation=Unbounded((*batch, self.obs_dim), dtype=dt),
            alive=Unbounded((*batch, 1), dtype=dt),
            shape=batch,
        )
        self.action_spec = Bounded(-1.0, 1.0, (*batch, self.action_dim), dtype=dt)
        self.reward_spec = Unbounded((*batch, 1), dtype=dt)
        self.done_spec = Composite(
            done=Bounded(0, 1, (*batch, 1), dtype=torch.bool),
            terminated=Bounded(0, 1, (*batch, 1), dtype=torch.bool),
            shape=batch,
        )

    def dynamics(self, observation: Tensor, action: Tensor) -> Tensor:
        """Mean next observation ``A s + B a``."""
        return observation @ self.A.T + action @ self.B.T

    def reset(self, tensordict: TensorDictBase | None = None, **kwargs) -> TensorDictBase:
        """Start from ``tensordict["observation"]``, adopting the tensordict's batch size."""
        if tensordict is not None and tensordict.batch_size != self.batch_size:
            self._make_specs(tensordict.batch_size)
        return super().reset(tensordict, **kwargs)

    def any_done(self, tensordict: TensorDictBase) -> bool:
        """Fixed-length rollouts: never reset part of the batch (the alive mask records ends)."""
        return False

    def maybe_reset(self, tensordict: TensorDictBase) -> TensorDictBase:
        return tensordict

    def _reset(self, tensordict: TensorDictBase | None, **kwargs) -> TensorDictBase:
        if tensordict is None or "observation" not in tensordict.keys():
            raise KeyError("LinearQuadraticEnv.reset needs a tensordict with 'observation'.")
        obs = tensordict.get("observation")
        if obs.shape[-1] != self.obs_dim:
            raise ValueError(f"observation must have {self.obs_dim} features, got {obs.shape[-1]}.")
        batch = tensordict.batch_size
        false = torch.zeros((*batch, 1), dtype=torch.bool, device=obs.device)
        return TensorDict(
            {
                "observation": obs,
                "alive": torch.ones((*batch, 1), dtype=obs.dtype, device=obs.device),
                "done": false,
                "terminated": false.clone(),
            },
            batch,
        )

    def _step(self, tensordict: TensorDictBase) -> TensorDictBase:
        obs = tensordict.get("observation")
        action = tensordict.get("action").clamp(-1.0, 1.0)
        next_obs = self.dynamics(obs, action)
        if self.noise_std > 0:
            next_obs = next_obs + self.noise_std * torch.randn_like(next_obs)
        reward = -(next_obs.pow(2).sum(-1, keepdim=True)) - self.action_cost * action.pow(2).sum(
            -1, keepdim=True
        )
        terminated = next_obs[..., :1].abs() > self.termination_bound
        alive = tensordict.get("alive", torch.ones_like(reward))
        return TensorDict(
            {
                "observation": next_obs,
                "reward": reward,
                "terminated": terminated,
                "done": terminated.clone(),
                "alive": alive * (~terminated).to(alive.dtype),
            },
            tensordict.batch_size,
        )

    def _set_seed(self, seed: int | None) -> None:
        if seed is not None:
            torch.manual_seed(seed)
