"""PointMaze geometry, the BFS-waypoint PD controller and evaluation env factories.

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

from collections import deque
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from tensordict.nn import TensorDictModule

import torchrl_leq._robotics  # noqa: F401  (registers the maze envs, quietly)
from torchrl_leq.tasks import POINTMAZE_SUCCESS_RADIUS, PointMazeTask, get_pointmaze_task

__all__ = [
    "free_cells",
    "waypoint_table",
    "WaypointController",
    "make_controller_actor",
    "PointMazeTaskWrapper",
    "make_pointmaze_env",
    "make_pointmaze_torchrl_env",
    "resolve_task",
]


KP, KD = 10.0, 1.0


def resolve_task(task: PointMazeTask | str) -> PointMazeTask:
    """A :class:`PointMazeTask` from itself or its registry name."""
    return task if isinstance(task, PointMazeTask) else get_pointmaze_task(task)


def free_cells(task: PointMazeTask) -> list[tuple[int, int]]:
    """All non-wall ``(row, col)`` cells of the task's maze, row-major."""
    return [(r, c) for r, row in enumerate(task.maze_map) for c, v in enumerate(row) if v != 1]


def waypoint_table(task: PointMazeTask) -> np.ndarray:
    """``table[gr, gc, r, c]`` = xy centre of the next cell on a BFS shortest path from ``(r, c)``
    to goal cell ``(gr, gc)`` (the goal cell's own centre at the goal, and for wall cells).

    Example:
        >>> t = waypoint_table(get_pointmaze_task("pointmaze-umaze"))
        >>> t[1, 1, 3, 1].tolist()  # from the start cell towards the umaze goal: go right
        [0.0, -1.0]
    """
    maze = np.asarray(task.maze_map)
    n_rows, n_cols = maze.shape
    centres = np.array(
        [[task.cell_to_xy((r, c)) for c in range(n_cols)] for r in range(n_rows)], dtype=np.float64
    )
    table = np.zeros((n_rows, n_cols, n_rows, n_cols, 2))
    for goal in free_cells(task):
        dist = np.full((n_rows, n_cols), np.inf)
        dist[goal] = 0
        queue = deque([goal])
        while queue:
            r, c = queue.popleft()
            for nr, nc in ((r + 1, c), (r - 1, c), (r, c + 1), (r, c - 1)):
                if maze[nr, nc] != 1 and dist[nr, nc] == np.inf:
                    dist[nr, nc] = dist[r, c] + 1
                    queue.append((nr, nc))
        table[goal] = centres[goal]
        for r, c in free_cells(task):
            if (r, c) == goal or dist[r, c] == np.inf:
                continue
            for nr, nc in ((r + 1, c), (r - 1, c), (r, c + 1), (r, c - 1)):
                if dist[nr, nc] == dist[r, c] - 1:
                    table[goal][r, c] = centres[nr, nc]
                    break
    return table


def _xy_to_cell(task: PointMazeTask, xy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    n_rows, n_cols = len(task.maze_map), len(task.maze_map[0])
    col = np.clip(np.floor(xy[..., 0] + n_cols / 2.0), 0, n_cols - 1).astype(np.int64)
    row = np.clip(np.floor(n_rows / 2.0 - xy[..., 1]), 0, n_rows - 1).astype(np.int64)
    return row, col


def pd_action(
    task: PointMazeTask,
    table: np.ndarray,
    obs: np.ndarray,
    goal_xy: np.ndarray,
    goal_cell: tuple[int, int],
) -> np.ndarray:
    """Noise-free PD action (kp 10, kd 1) towards the next BFS waypoint, clipped to [-1, 1].

    ``obs`` is ``[..., 4]``; in the goal cell the target is ``goal_xy`` itself.
    """
    row, col = _xy_to_cell(task, obs[..., :2])
    target = table[goal_cell[0], goal_cell[1], row, col]
    at_goal = (row == goal_cell[0]) & (col == goal_cell[1])
    target = np.where(at_goal[..., None], goal_xy, target)
    return np.clip(KP * (target - obs[..., :2]) - KD * obs[..., 2:4], -1.0, 1.0)


class WaypointController(torch.nn.Module):
    """The BFS-waypoint PD controller to the task's fixed goal as a batched torch module
    (``observation [..., 4] → action [..., 2]``), with optional Gaussian action noise.

    Example:
        >>> ctrl = WaypointController(get_pointmaze_task("pointmaze-umaze"))
        >>> ctrl(torch.zeros(3, 4)).shape
        torch.Size([3, 2])
    """

    def __init__(self, task: PointMazeTask | str, noise: float = 0.0) -> None:
        super().__init__()
        self.task = resolve_task(task)
        self.noise = noise
        self.register_buffer("table", torch.as_tensor(waypoint_table(self.task)))
        self.register_buffer("goal_xy", torch.tensor(self.task.goal_xy, dtype=torch.float64))

    def forward(self, observation: torch.Tensor) -> torch.Tensor:
        action = pd_action(
            self.task,
            self.table.numpy(),
            observation.detach().cpu().double().numpy(),
            self.goal_xy.numpy(),
            self.task.goal_cell,
        )
        action = torch.as_tensor(action, dtype=observation.dtype, device=observation.device)
        if self.noise > 0:
            action = (action + self.noise * torch.randn_like(action)).clamp(-1.0, 1.0)
        return action


def make_controller_actor(task: PointMazeTask | str, noise: float = 0.0) -> TensorDictModule:
    """:class:`WaypointController` as a ``TensorDictModule`` (``"observation"`` → ``"action"``).

    Example:
        >>> actor = make_controller_actor("pointmaze-umaze")
    """
    return TensorDictModule(
        WaypointController(task, noise), in_keys=["observation"], out_keys=["action"]
    )


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
