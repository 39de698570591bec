"""The data-collection policy of the generated point-maze datasets: a PD controller that steers
to the next cell of a BFS shortest path to the goal (optionally with Gaussian action noise).

Example:
    >>> import torch
    >>> from tensordict import TensorDict
    >>> actor = make_controller_actor("pointmaze-umaze")
    >>> actor(TensorDict({"observation": torch.zeros(1, 4)}, [1]))["action"].shape
    torch.Size([1, 2])
"""

from __future__ import annotations

from collections import deque

import numpy as np
import torch
from tensordict.nn import TensorDictModule

from torchrl_leq.tasks import PointMazeTask, free_cells, resolve_task

__all__ = ["waypoint_table", "pd_action", "WaypointController", "make_controller_actor"]


KP, KD = 10.0, 1.0


def waypoint_table(task: PointMazeTask) -> np.ndarray:
    """``table[gr, gc, r, c]`` = xy centre of the next cell on a BFS shortest path from ``(r, c)``
    to goal cell ``(gr, gc)`` (the goal cell's own centre at the goal, and for wall cells).

    Example:
        >>> t = waypoint_table(resolve_task("pointmaze-umaze"))
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
        >>> ctrl = WaypointController(resolve_task("pointmaze-umaze"))
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
