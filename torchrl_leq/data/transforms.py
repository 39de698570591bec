"""Reward transforms of the released LEQ code, as pure functions on transition TensorDicts.

- AntMaze / maze tasks: ``r - 1`` (:func:`shift_rewards`).
- Locomotion: ``r * 1000 / (max_episode_return - min_episode_return)`` with the returns of the
  dataset's episodes (:func:`scale_rewards_by_return_range`), except ``*-random`` datasets,
  whose rewards the released code keeps raw (:func:`released_reward_kind`).

Episodes are identified by the ``"episode"`` key our loaders write (else by ``("next", "done")``).
:class:`RewardAffine` is the same map as a TorchRL ``Transform`` (out of place: ``buffer[:]`` may
hand a transform the storage's own TensorDict, so TorchRL's in-place ``RewardScaling`` would
rewrite the stored rewards each time it is read).

Example:
    >>> rb.append_transform(make_reward_transform("maze"))  # doctest: +SKIP
    >>> shifted = apply_reward_transform("maze", transitions)  # doctest: +SKIP
"""

from __future__ import annotations

import re
from typing import Literal

import torch
from tensordict import TensorDictBase
from torchrl.envs.transforms import Transform

__all__ = [
    "RewardKind",
    "released_reward_kind",
    "episode_ids",
    "episode_returns",
    "shift_rewards",
    "locomotion_reward_scale",
    "scale_rewards_by_return_range",
    "apply_reward_transform",
    "RewardAffine",
    "make_reward_transform",
]

RewardKind = Literal["maze", "locomotion", "none"]
_REWARD = ("next", "reward")


def released_reward_kind(task: str, *, scale_random: bool = False) -> RewardKind:
    """The released code's reward transform for a task / dataset name: ``"maze"`` for AntMaze
    and point mazes, ``"none"`` for locomotion ``*-random`` data (raw rewards; ``scale_random``
    scales them too), ``"locomotion"`` for the other locomotion data.

    Example:
        >>> released_reward_kind("hopper-random-v2"), released_reward_kind("hopper-medium-v2")
        ('none', 'locomotion')
        >>> released_reward_kind("D4RL/antmaze/umaze-v1")
        'maze'
    """
    tokens = set(re.split(r"[/\-]", task.strip().lower()))
    if tokens & {"antmaze", "pointmaze"}:
        return "maze"
    if tokens & {"hopper", "walker2d", "halfcheetah"}:
        return "none" if "random" in tokens and not scale_random else "locomotion"
    raise ValueError(
        f"No released reward transform for {task!r}: expected an antmaze / pointmaze / "
        "hopper / walker2d / halfcheetah task."
    )


def episode_ids(td: TensorDictBase) -> torch.Tensor:
    """Episode index per transition: the ``"episode"`` key, else a count of earlier dones."""
    if "episode" in td.keys():
        return td["episode"].long()
    done = td["next", "done"].reshape(-1).long()
    return torch.cumsum(done, 0) - done


def episode_returns(td: TensorDictBase) -> torch.Tensor:
    """Undiscounted return of each episode in the transitions (episodes in index order).

    Example:
        >>> from tensordict import TensorDict
        >>> td = TensorDict({"episode": torch.tensor([0, 0, 1]),
        ...                  "next": {"reward": torch.tensor([[1.0], [2.0], [5.0]])}}, [3])
        >>> episode_returns(td).tolist()
        [3.0, 5.0]
    """
    ids = episode_ids(td)
    _, inverse = torch.unique(ids, return_inverse=True)
    returns = torch.zeros(int(inverse.max()) + 1, dtype=torch.float64)
    return returns.index_add_(0, inverse, td[_REWARD].reshape(-1).double())


def _with_reward(td: TensorDictBase, reward: torch.Tensor) -> TensorDictBase:
    out = td.copy()  # shallow: other entries are shared, the reward is replaced
    out.set(_REWARD, reward)
    return out


def shift_rewards(td: TensorDictBase, shift: float = -1.0) -> TensorDictBase:
    """``r + shift`` (AntMaze/maze: ``r - 1``); returns a new TensorDict, ``td`` is untouched.

    Example:
        >>> from tensordict import TensorDict
        >>> td = TensorDict({"next": {"reward": torch.tensor([[0.0], [1.0]])}}, [2])
        >>> shift_rewards(td)["next", "reward"].tolist()
        [[-1.0], [0.0]]
    """
    return _with_reward(td, td[_REWARD] + shift)


def locomotion_reward_scale(td: TensorDictBase) -> float:
    """``1000 / (max_episode_return - min_episode_return)`` over the dataset's episodes."""
    returns = episode_returns(td)
    spread = float(returns.max() - returns.min())
    if spread <= 0:
        raise ValueError(
            f"Reward scaling needs episodes with different returns; got {len(returns)} "
            f"episode(s) with return range {spread}."
        )
    return 1000.0 / spread


def scale_rewards_by_return_range(td: TensorDictBase, scale: float | None = None) -> TensorDictBase:
    """``r * 1000 / (max_R - min_R)`` (or ``r * scale``); returns a new TensorDict.

    Example:
        >>> from tensordict import TensorDict
        >>> td = TensorDict({"episode": torch.tensor([0, 1]),
        ...                  "next": {"reward": torch.tensor([[1.0], [3.0]])}}, [2])
        >>> scale_rewards_by_return_range(td)["next", "reward"].tolist()
        [[500.0], [1500.0]]
    """
    scale = locomotion_reward_scale(td) if scale is None else scale
    return _with_reward(td, td[_REWARD] * scale)


def apply_reward_transform(kind: RewardKind, td: TensorDictBase) -> TensorDictBase:
    """Dispatch: ``"maze"`` → :func:`shift_rewards`, ``"locomotion"`` →
    :func:`scale_rewards_by_return_range`, ``"none"`` → ``td``."""
    if kind == "maze":
        return shift_rewards(td)
    if kind == "locomotion":
        return scale_rewards_by_return_range(td)
    if kind == "none":
        return td
    raise ValueError(f"Unknown reward transform {kind!r}; use 'maze', 'locomotion' or 'none'.")


class RewardAffine(Transform):
    """``reward * scale + loc`` on ``("next", "reward")`` (or ``in_keys``), out of place.

    For replay buffers (``rb.append_transform``); inside an env pass ``in_keys=["reward"]``.

    Example:
        >>> rb.append_transform(RewardAffine(loc=-1.0))  # doctest: +SKIP
    """

    def __init__(
        self,
        loc: float = 0.0,
        scale: float = 1.0,
        in_keys: list | None = None,
    ) -> None:
        in_keys = in_keys if in_keys is not None else [_REWARD]
        super().__init__(in_keys=in_keys, out_keys=list(in_keys))
        self.loc = loc
        self.scale = scale

    def forward(self, tensordict: TensorDictBase) -> TensorDictBase:
        # ``buffer[:]`` can hand over the storage's own TensorDict: work on a shallow copy.
        return super().forward(tensordict.copy())

    def _apply_transform(self, reward: torch.Tensor) -> torch.Tensor:
        return reward * self.scale + self.loc

    def _reset(
        self, tensordict: TensorDictBase, tensordict_reset: TensorDictBase
    ) -> TensorDictBase:
        return tensordict_reset


def make_reward_transform(
    kind: RewardKind, transitions: TensorDictBase | None = None
) -> RewardAffine:
    """:class:`RewardAffine` for a task family; ``"locomotion"`` needs the ``transitions``.

    Example:
        >>> make_reward_transform("maze").loc
        -1.0
    """
    if kind == "maze":
        return RewardAffine(loc=-1.0)
    if kind == "locomotion":
        if transitions is None:
            raise ValueError(
                "The locomotion reward scale is computed from the dataset: pass transitions."
            )
        return RewardAffine(scale=locomotion_reward_scale(transitions))
    if kind == "none":
        return RewardAffine()
    raise ValueError(f"Unknown reward transform {kind!r}; use 'maze', 'locomotion' or 'none'.")
