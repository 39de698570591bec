"""Transition TensorDicts in the standard TorchRL layout and replay buffers over them.

Layout of every loader's output (``N`` transitions)::

    observation              [N, obs_dim] float32
    action                   [N, act_dim] float32
    episode                  [N]          int64   (index of the source episode)
    next/observation         [N, obs_dim] float32
    next/reward              [N, 1]       float32
    next/terminated          [N, 1]       bool
    next/truncated           [N, 1]       bool
    next/done                [N, 1]       bool    (terminated | truncated)

Example:
    >>> import torch
    >>> td = make_transitions(torch.zeros(3, 2), torch.zeros(3, 1), torch.ones(3, 2),
    ...                       torch.zeros(3), torch.zeros(3, dtype=torch.bool),
    ...                       torch.zeros(3, dtype=torch.bool), torch.zeros(3, dtype=torch.long))
    >>> make_replay_buffer(td, batch_size=2).sample().batch_size
    torch.Size([2])
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from tensordict import TensorDict
from torchrl.data import LazyTensorStorage, RandomSampler, TensorDictReplayBuffer
from torchrl.data.replay_buffers.samplers import Sampler

__all__ = ["make_transitions", "make_replay_buffer"]


def _as_tensor(x: Any, dtype: torch.dtype) -> torch.Tensor:
    if isinstance(x, np.ndarray):
        x = torch.from_numpy(np.ascontiguousarray(x))
    return torch.as_tensor(x).to(dtype)


def make_transitions(
    observation: Any,
    action: Any,
    next_observation: Any,
    reward: Any,
    terminated: Any,
    truncated: Any,
    episode: Any,
) -> TensorDict:
    """Stack arrays (numpy or torch, leading dim ``N``) into the standard transition layout.

    Example:
        >>> td = make_transitions([[0.0]], [[1.0]], [[2.0]], [3.0], [True], [False], [0])
        >>> td["next", "done"].tolist()
        [[True]]
    """
    obs = _as_tensor(observation, torch.float32)
    n = obs.shape[0]
    term = _as_tensor(terminated, torch.bool).reshape(n, 1)
    trunc = _as_tensor(truncated, torch.bool).reshape(n, 1)
    return TensorDict(
        {
            "observation": obs,
            "action": _as_tensor(action, torch.float32).reshape(n, -1),
            "episode": _as_tensor(episode, torch.long).reshape(n),
            "next": {
                "observation": _as_tensor(next_observation, torch.float32),
                "reward": _as_tensor(reward, torch.float32).reshape(n, 1),
                "terminated": term,
                "truncated": trunc,
                "done": term | trunc,
            },
        },
        batch_size=[n],
    )


def make_replay_buffer(
    transitions: TensorDict,
    batch_size: int = 256,
    sampler: Sampler | None = None,
    device: torch.device | str | None = None,
) -> TensorDictReplayBuffer:
    """A ``TensorDictReplayBuffer`` (``LazyTensorStorage``, ``RandomSampler`` by default)
    holding all ``transitions``; ``buffer[:]`` gives them back whole.

    Example:
        >>> rb = make_replay_buffer(td, batch_size=128)  # doctest: +SKIP
        >>> batch = rb.sample()  # doctest: +SKIP
    """
    n = transitions.shape[0]
    if n == 0:
        raise ValueError("Cannot build a replay buffer from zero transitions.")
    buffer = TensorDictReplayBuffer(
        storage=LazyTensorStorage(n, device=device if device is not None else "cpu"),
        sampler=sampler if sampler is not None else RandomSampler(),
        batch_size=batch_size,
    )
    buffer.extend(transitions)
    return buffer
