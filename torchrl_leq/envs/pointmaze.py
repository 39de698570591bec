"""Point-maze evaluation envs (gymnasium-robotics PointMaze v3, as gym and as TorchRL envs).

The evaluation env is gymnasium-robotics PointMaze (v3) with ``continuing_task=False``, the task's
fixed start and goal cells, its time limit and the 4-dim observation ``[x, y, vx, vy]``. Its goal
is set exactly to the task's goal centre (gymnasium-robotics would add ±0.25 noise to it), so
rewards and success match the generated datasets' (``task.goal_xy``, radius 0.45); the start keeps
gymnasium-robotics' ±0.25 position noise. Success = ``terminated``.

Example:
    >>> from torchrl_leq.tasks import get_pointmaze_task
    >>> task = get_pointmaze_task("pointmaze-umaze")
    >>> env = make_pointmaze_env(task, seed=0)
    >>> obs, info = env.reset(seed=0)
    >>> obs.shape
    (4,)
"""


from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
import torch

import torchrl_leq._robotics  # noqa: F401  (registers the maze envs, quietly)
from torchrl_leq.tasks import POINTMAZE_SUCCESS_RADIUS, PointMazeTask, resolve_task

__all__ = ["PointMazeTaskWrapper", "make_pointmaze_env", "make_pointmaze_torchrl_env"]


class PointMazeTaskWrapper(gym.Wrapper):
    """Fixed start/goal cells, exact goal centre, float32 ``[x, y, vx, vy]`` observations.

    ``reset(options=...)`` may override ``reset_cell``/``goal_cell`` (the goal is then that
    cell's centre).
    """

    def __init__(self, env: gym.Env, task: PointMazeTask) -> None:
        super().__init__(env)
        self.task = task
        self.observation_space = gym.spaces.Box(-np.inf, np.inf, (4,), np.float32)

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        opts = {"reset_cell": self.task.start_cell, "goal_cell": self.task.goal_cell}
        opts.update(options or {})
        obs, info = self.env.reset(seed=seed, options=opts)
        maze_env = self.env.unwrapped
        goal = np.array(self.task.cell_to_xy(tuple(opts["goal_cell"])), dtype=np.float64)
        maze_env.goal = goal
        maze_env.update_target_site_pos()
        info["success"] = bool(
            np.linalg.norm(obs["achieved_goal"] - goal) <= POINTMAZE_SUCCESS_RADIUS
        )
        return obs["observation"].astype(np.float32), info

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        obs, reward, terminated, truncated, info = self.env.step(action)
        return obs["observation"].astype(np.float32), float(reward), terminated, truncated, info


def make_pointmaze_env(task: PointMazeTask | str, seed: int | None = None) -> gym.Env:
    """Evaluation env of a point-maze task (see module docstring); ``seed`` seeds the first reset.

    Example:
        >>> env = make_pointmaze_env("pointmaze-medium")
        >>> env.spec.max_episode_steps
        600
    """
    task = resolve_task(task)
    env = gym.make(
        task.env_id,
        maze_map=[list(row) for row in task.maze_map],
        continuing_task=False,
        reset_target=False,
        max_episode_steps=task.max_episode_steps,
    )
    env = PointMazeTaskWrapper(env, task)
    if seed is not None:
        env.reset(seed=seed)
        env.action_space.seed(seed)
    return env


def make_pointmaze_torchrl_env(
    task: PointMazeTask | str, seed: int | None = None, device: torch.device | str = "cpu"
):
    """The evaluation env as a TorchRL ``GymWrapper`` (keys ``observation``, ``action``,
    ``("next", "reward")``, ``terminated``/``truncated``/``done``).

    Example:
        >>> env = make_pointmaze_torchrl_env("pointmaze-umaze", seed=0)
        >>> env.rollout(3)["next", "observation"].shape
        torch.Size([3, 4])
    """
    from torchrl.envs import GymWrapper

    env = GymWrapper(make_pointmaze_env(task), device=device)
    if seed is not None:
        env.set_seed(seed)
    return env
