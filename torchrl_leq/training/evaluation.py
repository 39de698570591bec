"""Evaluation of a deterministic actor in the real environment, batched over episodes.

Episodes run in a ``gymnasium.vector.SyncVectorEnv`` (``num_envs`` at a time); episode ``i`` is
reset with seed ``seed + i``, so results do not depend on ``num_envs``. Once an env's episode has
ended, its later steps (gymnasium's auto-reset included) are masked out: they add no reward and
no length. Success = the episode ended by ``terminated`` (goal reached in the maze tasks).
The actor's input holds ``"observation"`` and ``"is_first"`` (``[num_envs]`` bool, True at the
first step of each batch of episodes), so recurrent policies (a filtering world-model policy)
know when to reset their state.

Example:
    >>> from torchrl_leq.data.waypoint_controller import make_controller_actor
    >>> out = evaluate(make_controller_actor("pointmaze-umaze"), "pointmaze-umaze", episodes=2)
    >>> out["success"].tolist()
    [True, True]
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from tensordict import TensorDict
from tensordict.nn import TensorDictModuleBase
from torchrl.envs.utils import ExplorationType, set_exploration_type

from torchrl_leq.data.scores import normalized_score
from torchrl_leq.envs.pointmaze import make_pointmaze_env
from torchrl_leq.tasks import PointMazeTask

__all__ = ["evaluate", "RandomActor"]


class RandomActor(TensorDictModuleBase):
    """Uniform random actions in ``[low, high]^action_dim`` (seeded); reads ``"observation"``.

    Example:
        >>> actor = RandomActor(2, seed=0)
        >>> actor(TensorDict({"observation": torch.zeros(3, 4)}, [3]))["action"].shape
        torch.Size([3, 2])
    """

    in_keys = ["observation"]
    out_keys = ["action"]

    def __init__(
        self, action_dim: int, low: float = -1.0, high: float = 1.0, seed: int | None = None
    ):
        super().__init__()
        self.action_dim, self.low, self.high = action_dim, low, high
        self.generator = torch.Generator()
        if seed is not None:
            self.generator.manual_seed(seed)

    def forward(self, tensordict: TensorDict) -> TensorDict:
        shape = (*tensordict.batch_size, self.action_dim)
        u = torch.rand(shape, generator=self.generator)
        return tensordict.set("action", self.low + (self.high - self.low) * u)


def _resolve_env(env_fn_or_task: Any, task: str | None) -> tuple[Callable[[], gym.Env], str | None]:
    if isinstance(env_fn_or_task, (str, PointMazeTask)):
        name = env_fn_or_task if isinstance(env_fn_or_task, str) else env_fn_or_task.name
        return functools.partial(make_pointmaze_env, env_fn_or_task), task or name
    if callable(env_fn_or_task):
        return env_fn_or_task, task
    raise TypeError(
        f"Expected a task name, PointMazeTask or env factory, got {type(env_fn_or_task)}"
    )


def _device(actor: torch.nn.Module) -> torch.device:
    for p in actor.parameters():
        return p.device
    for b in actor.buffers():
        return b.device
    return torch.device("cpu")


@torch.no_grad()
def evaluate(
    actor: TensorDictModuleBase,
    env_fn_or_task: str | PointMazeTask | Callable[[], gym.Env],
    episodes: int = 10,
    seed: int = 0,
    *,
    num_envs: int = 16,
    task: str | None = None,
    max_steps: int | None = None,
    reference_scores: tuple[float, float] | None = None,
) -> dict[str, Any]:
    """Run ``episodes`` deterministic episodes; returns ``returns`` / ``lengths`` / ``success``
    (tensors of length ``episodes``), ``mean_return``, ``success_rate`` and
    ``normalized_score`` (mean, or ``None`` when ``task`` has no reference scores).

    ``env_fn_or_task``: a point-maze task (name or :class:`PointMazeTask`, env from
    :func:`make_pointmaze_env`) or a zero-argument factory of a gymnasium env with array
    observations; ``task`` names the reference scores for the latter, or ``reference_scores``
    gives them directly as ``(R_random, R_expert)`` (e.g. a Minari dataset's ``ref_min_score`` /
    ``ref_max_score``; it wins over ``task``). ``max_steps`` caps an episode (default: the env's
    ``spec.max_episode_steps``).

    Example:
        >>> evaluate(RandomActor(2, seed=0), "pointmaze-umaze", episodes=2)["lengths"].tolist()
        [300, 300]
    """
    if reference_scores is not None:
        low, high = (float(v) for v in reference_scores)
        if not high > low:
            raise ValueError(
                f"reference_scores must be (R_random, R_expert) with R_expert > R_random, "
                f"got {tuple(reference_scores)}."
            )
    env_fn, task = _resolve_env(env_fn_or_task, task)
    n_envs = max(1, min(num_envs, episodes))
    venv = gym.vector.SyncVectorEnv([env_fn] * n_envs)
    if max_steps is None:
        spec = venv.envs[0].spec
        max_steps = spec.max_episode_steps if spec is not None else None
        if max_steps is None:
            venv.close()
            raise ValueError("The env has no time limit: pass max_steps.")
    space = venv.single_action_space
    device = _device(actor)

    returns = np.zeros(episodes)
    lengths = np.zeros(episodes, dtype=np.int64)
    success = np.zeros(episodes, dtype=bool)
    with set_exploration_type(ExplorationType.DETERMINISTIC):
        for first in range(0, episodes, n_envs):
            count = min(n_envs, episodes - first)
            obs, _ = venv.reset(seed=[seed + first + i for i in range(n_envs)])
            alive = np.arange(n_envs) < count
            for step in range(max_steps):
                if not alive.any():
                    break
                td = TensorDict(
                    {"observation": torch.as_tensor(obs, dtype=torch.float32, device=device),
                     "is_first": torch.full((n_envs,), step == 0, device=device)},
                    batch_size=[n_envs],
                )
                action = actor(td)["action"].detach().cpu().numpy().astype(space.dtype)
                action = np.clip(action, space.low, space.high)
                obs, reward, terminated, truncated, _ = venv.step(action)
                idx = first + np.flatnonzero(alive)
                returns[idx] += reward[alive]
                lengths[idx] += 1
                success[idx] |= terminated[alive]
                alive &= ~(terminated | truncated)
    venv.close()

    returns_t = torch.as_tensor(returns)
    out: dict[str, Any] = {
        "returns": returns_t,
        "lengths": torch.as_tensor(lengths),
        "success": torch.as_tensor(success),
        "mean_return": float(returns.mean()),
        "success_rate": float(success.mean()),
        "normalized_score": None,
    }
    if reference_scores is not None:
        out["normalized_score"] = float(100.0 * (returns.mean() - low) / (high - low))
    elif task is not None:
        try:
            out["normalized_score"] = float(normalized_score(task, returns_t).mean())
        except ValueError:
            pass
    return out
