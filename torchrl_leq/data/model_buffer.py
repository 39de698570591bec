"""D_model: the FIFO buffer of model-rollout start states, and its expansion (Algorithm 1,
lines 7-11).

Every ``T_expand`` steps LEQ samples ``N`` start states from D_env, rolls the world model ``R``
steps with the (exploration-noise) policy and appends the visited states ``s_0 .. s_{R-1}``
(``N * R`` states) to D_model, a circular buffer that overwrites its oldest entries. As in the
released code, all visited states are appended, including those after a predicted termination
(the critic's model rollouts carry their own alive mask).

Example:
    >>> d_model = make_model_buffer(capacity=1_000)
    >>> # expand_model_buffer(d_model, d_env, model_env, actor, num_starts=50, rollout_length=5)
"""

from __future__ import annotations

import warnings
from typing import Any

import torch
from tensordict import TensorDict
from tensordict.nn import TensorDictModuleBase
from torchrl.data import LazyTensorStorage, RandomSampler, TensorDictReplayBuffer
from torchrl.envs.utils import ExplorationType, set_exploration_type

__all__ = ["make_model_buffer", "expand_model_buffer"]


def make_model_buffer(
    capacity: int = 1_250_000,
    batch_size: int | None = 256,
    device: torch.device | str = "cpu",
) -> TensorDictReplayBuffer:
    """FIFO circular ``TensorDictReplayBuffer`` of start states (D_model, key ``"observation"``) or of
    model-rollout transitions (COMBO; pass ``batch_size=None`` to sample sizes per call).

    Example:
        >>> rb = make_model_buffer(capacity=3)
        >>> _ = rb.extend(TensorDict({"observation": torch.arange(5.0)[:, None]}, [5]))
        >>> sorted(rb[:]["observation"].flatten().tolist())  # the oldest two were overwritten
        [2.0, 3.0, 4.0]
    """
    if not isinstance(capacity, int) or isinstance(capacity, bool) or capacity < 1:
        raise ValueError(f"capacity must be an integer >= 1, got {capacity!r}.")
    return TensorDictReplayBuffer(
        storage=LazyTensorStorage(capacity, device=device),
        sampler=RandomSampler(),
        batch_size=batch_size,
    )


@torch.no_grad()
def expand_model_buffer(
    model_buffer: TensorDictReplayBuffer,
    env_buffer: TensorDictReplayBuffer,
    model_env: Any,
    policy: TensorDictModuleBase,
    *,
    num_starts: int = 50_000,
    rollout_length: int = 5,
    exploration_type: ExplorationType = ExplorationType.RANDOM,
) -> TensorDict:
    """Roll ``model_env`` ``rollout_length`` steps from ``num_starts`` states sampled from
    ``env_buffer`` and append the ``num_starts * rollout_length`` visited states to
    ``model_buffer``; returns the rollout (``[num_starts, rollout_length]``).

    ``model_env`` follows the LEQ model-env contract (``reset(td)`` / ``rollout(R, policy,
    auto_reset=False, tensordict=td, break_when_any_done=False)`` for any batch size);
    ``exploration_type`` is set during the rollout (``RANDOM``: the policy's noise is on).

    Example:
        >>> expand_model_buffer(d_model, d_env, model_env, actor, num_starts=50_000)  # doctest: +SKIP
    """
    with warnings.catch_warnings():  # sample(n) differing from the buffer's batch size is intended
        warnings.filterwarnings("ignore", message=".*conflicting batch_sizes.*")
        obs = env_buffer.sample(num_starts)["observation"]
    start = TensorDict({"observation": obs}, batch_size=[num_starts], device=obs.device)
    with set_exploration_type(exploration_type):
        start = model_env.reset(start)
        rollout = model_env.rollout(
            rollout_length,
            policy,
            auto_reset=False,
            tensordict=start,
            break_when_any_done=False,
        )
    states = rollout["observation"].reshape(num_starts * rollout_length, -1)
    states = states.to(model_buffer.storage.device)
    model_buffer.extend(TensorDict({"observation": states}, batch_size=[states.shape[0]]))
    return rollout
