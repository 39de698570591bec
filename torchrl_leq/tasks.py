"""Task registry shared by data generation, termination functions and evaluation.

The generated point-maze tasks are our download-free stand-in for D4RL AntMaze: a
gymnasium-robotics PointMaze (v3) maze, a fixed start cell and a fixed goal cell, sparse
reward within :data:`POINTMAZE_SUCCESS_RADIUS` of the goal. The observation is the 4-dim
``[x, y, vx, vy]`` (the goal is fixed, as in AntMaze, so it is not part of the observation).

Example:
    >>> from torchrl_leq.tasks import POINTMAZE_TASKS
    >>> POINTMAZE_TASKS["pointmaze-umaze"].goal_xy
    (-1.0, 1.0)
"""

from __future__ import annotations

from dataclasses import dataclass

POINTMAZE_SUCCESS_RADIUS = 0.45
"""gymnasium-robotics' success radius for PointMaze."""

ANTMAZE_GOAL_RADIUS = 0.25
"""Model termination radius around the AntMaze goal centre (released LEQ code)."""

ANTMAZE_GOALS: dict[str, tuple[float, float]] = {
    "umaze": (0.75, 8.75),
    "medium": (20.75, 20.75),
    "large": (32.75, 24.75),
    "ultra": (52.75, 36.75),
}
"""Goal centres of the D4RL AntMaze mazes (and Jiang et al.'s ultra maze), in D4RL xy."""


@dataclass(frozen=True)
class PointMazeTask:
    """A generated point-maze task: maze, fixed start and goal cells, time limit."""

    name: str
    env_id: str
    maze_map: tuple[tuple[int, ...], ...]
    start_cell: tuple[int, int]
    goal_cell: tuple[int, int]
    max_episode_steps: int

    def cell_to_xy(self, cell: tuple[int, int]) -> tuple[float, float]:
        """Centre of grid cell ``(row, col)`` in MuJoCo xy (maze scaling 1, map centred)."""
        n_rows, n_cols = len(self.maze_map), len(self.maze_map[0])
        row, col = cell
        return (col + 0.5 - n_cols / 2.0, n_rows / 2.0 - (row + 0.5))

    @property
    def goal_xy(self) -> tuple[float, float]:
        return self.cell_to_xy(self.goal_cell)

    @property
    def start_xy(self) -> tuple[float, float]:
        return self.cell_to_xy(self.start_cell)


_U_MAZE = (
    (1, 1, 1, 1, 1),
    (1, 0, 0, 0, 1),
    (1, 1, 1, 0, 1),
    (1, 0, 0, 0, 1),
    (1, 1, 1, 1, 1),
)
_MEDIUM_MAZE = (
    (1, 1, 1, 1, 1, 1, 1, 1),
    (1, 0, 0, 1, 1, 0, 0, 1),
    (1, 0, 0, 1, 0, 0, 0, 1),
    (1, 1, 0, 0, 0, 1, 1, 1),
    (1, 0, 0, 1, 0, 0, 0, 1),
    (1, 0, 1, 0, 0, 1, 0, 1),
    (1, 0, 0, 0, 1, 0, 0, 1),
    (1, 1, 1, 1, 1, 1, 1, 1),
)
_LARGE_MAZE = (
    (1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1),
    (1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 1),
    (1, 0, 1, 1, 0, 1, 0, 1, 0, 1, 0, 1),
    (1, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 1),
    (1, 0, 1, 1, 1, 1, 0, 1, 1, 1, 0, 1),
    (1, 0, 0, 1, 0, 1, 0, 0, 0, 0, 0, 1),
    (1, 1, 0, 1, 0, 1, 0, 1, 0, 1, 1, 1),
    (1, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 1),
    (1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1),
)

POINTMAZE_TASKS: dict[str, PointMazeTask] = {
    "pointmaze-umaze": PointMazeTask(
        "pointmaze-umaze", "PointMaze_UMaze-v3", _U_MAZE, (3, 1), (1, 1), 300
    ),
    "pointmaze-medium": PointMazeTask(
        "pointmaze-medium", "PointMaze_Medium-v3", _MEDIUM_MAZE, (1, 1), (6, 6), 600
    ),
    "pointmaze-large": PointMazeTask(
        "pointmaze-large", "PointMaze_Large-v3", _LARGE_MAZE, (1, 1), (7, 10), 800
    ),
}


def get_pointmaze_task(name: str) -> PointMazeTask:
    """Look up a generated point-maze task; unknown names raise a ``ValueError``."""
    try:
        return POINTMAZE_TASKS[name]
    except KeyError:
        raise ValueError(
            f"Unknown point-maze task {name!r}; known: {sorted(POINTMAZE_TASKS)}"
        ) from None
