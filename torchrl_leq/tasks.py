"""Task registry shared by data generation, termination functions and evaluation.

The generated point-maze tasks are our download-free stand-in for D4RL AntMaze: a
gymnasium-robotics PointMaze (v3) maze, a fixed start cell and a fixed goal cell, sparse
reward within :data:`POINTMAZE_SUCCESS_RADIUS` of the goal. The observation is the 4-dim
``[x, y, vx, vy]`` (the goal is fixed, as in AntMaze, so it is not part of the observation).

A maze of your own: :func:`make_pointmaze_task` builds a :class:`PointMazeTask` from a config
mapping (``maze_map``, ``start_cell``, ``goal_cell``, ``max_episode_steps``, ``name``) and
:func:`register_pointmaze_task` makes its name work wherever a named task's does.

Example:
    >>> from torchrl_leq.tasks import POINTMAZE_TASKS
    >>> POINTMAZE_TASKS["pointmaze-umaze"].goal_xy
    (-1.0, 1.0)
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

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

    @property
    def is_named(self) -> bool:
        """Whether this is one of the built-in named tasks (:data:`NAMED_POINTMAZE_TASKS`)."""
        return NAMED_POINTMAZE_TASKS.get(self.name) == self

    @property
    def definition_hash(self) -> str:
        """8 hex digits identifying the maze, start and goal (data depend on nothing else)."""
        text = repr((self.maze_map, self.start_cell, self.goal_cell))
        return hashlib.sha256(text.encode()).hexdigest()[:8]


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

NAMED_POINTMAZE_TASKS: dict[str, PointMazeTask] = {
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
"""The built-in generated point-maze tasks."""

POINTMAZE_TASKS: dict[str, PointMazeTask] = dict(NAMED_POINTMAZE_TASKS)
"""Every known point-maze task by name: the named ones and custom ones registered with
:func:`register_pointmaze_task`."""


CUSTOM_ENV_ID = "PointMaze_UMaze-v3"
"""gymnasium-robotics id used for custom mazes (its ``maze_map`` is replaced by the task's)."""

_NAME = re.compile(r"^pointmaze-[a-z0-9_-]+$")


def _cell(value: Any, key: str) -> tuple[int, int]:
    try:
        row, col = (int(v) for v in value)
    except (TypeError, ValueError):
        raise ValueError(
            f"maze.{key} must be a [row, col] pair of integers, got {value!r}."
        ) from None
    return row, col


def _reachable(maze: tuple[tuple[int, ...], ...], start: tuple[int, int]) -> set[tuple[int, int]]:
    seen, stack = {start}, [start]
    while stack:
        r, c = stack.pop()
        for nxt in ((r + 1, c), (r - 1, c), (r, c + 1), (r, c - 1)):
            if maze[nxt[0]][nxt[1]] != 1 and nxt not in seen:
                seen.add(nxt)
                stack.append(nxt)
    return seen


def make_pointmaze_task(cfg: Mapping[str, Any]) -> PointMazeTask:
    """A custom point-maze task from a config mapping; every mistake raises a one-line
    ``ValueError``.

    Keys: ``maze_map`` (rows of ``0`` free / ``1`` wall, rectangular, walls all round the
    border), ``start_cell`` and ``goal_cell`` (``[row, col]`` of free cells, the goal reachable
    from the start), ``max_episode_steps`` (> 0) and optionally ``name`` (lower case, starting
    with ``pointmaze-``; default ``pointmaze-custom``).

    Example:
        >>> task = make_pointmaze_task({
        ...     "name": "pointmaze-corridor",
        ...     "maze_map": [[1, 1, 1, 1, 1], [1, 0, 0, 0, 1], [1, 1, 1, 1, 1]],
        ...     "start_cell": [1, 1], "goal_cell": [1, 3], "max_episode_steps": 100})
        >>> task.goal_xy, task.start_xy
        ((1.0, 0.0), (-1.0, 0.0))
    """
    known = {"name", "maze_map", "start_cell", "goal_cell", "max_episode_steps"}
    unknown = set(cfg) - known
    if unknown:
        raise ValueError(f"unknown maze keys {sorted(unknown)}; expected {sorted(known)}.")
    missing = {"maze_map", "start_cell", "goal_cell", "max_episode_steps"} - set(cfg)
    if missing:
        raise ValueError(f"maze config is missing {sorted(missing)}.")
    name = str(cfg.get("name", "pointmaze-custom"))
    if not _NAME.match(name) or re.search(r"-v\d+$", name):
        raise ValueError(
            f"maze.name must be lower case, start with 'pointmaze-' and not end in -v<N>, "
            f"got {name!r}."
        )
    try:
        maze = tuple(tuple(int(v) for v in row) for row in cfg["maze_map"])
    except (TypeError, ValueError):
        raise ValueError("maze.maze_map must be a list of rows of 0 (free) / 1 (wall).") from None
    if not maze or len({len(row) for row in maze}) != 1 or len(maze[0]) < 3 or len(maze) < 3:
        raise ValueError("maze.maze_map must be a rectangle of at least 3 x 3 cells.")
    if any(v not in (0, 1) for row in maze for v in row):
        raise ValueError("maze.maze_map entries must be 0 (free) or 1 (wall).")
    n_rows, n_cols = len(maze), len(maze[0])
    border = [*maze[0], *maze[-1], *(row[0] for row in maze), *(row[-1] for row in maze)]
    if any(v != 1 for v in border):
        raise ValueError("maze.maze_map must have walls (1) all round its border.")
    start, goal = _cell(cfg["start_cell"], "start_cell"), _cell(cfg["goal_cell"], "goal_cell")
    for key, (r, c) in (("start_cell", start), ("goal_cell", goal)):
        if not (0 <= r < n_rows and 0 <= c < n_cols) or maze[r][c] != 0:
            raise ValueError(f"maze.{key} {[r, c]} must be a free (0) cell of the map.")
    if start == goal:
        raise ValueError("maze.start_cell and maze.goal_cell must differ.")
    if goal not in _reachable(maze, start):
        raise ValueError(f"maze.goal_cell {list(goal)} is not reachable from {list(start)}.")
    steps = cfg["max_episode_steps"]
    if not isinstance(steps, int) or isinstance(steps, bool) or steps < 1:
        raise ValueError(f"maze.max_episode_steps must be a positive integer, got {steps!r}.")
    return PointMazeTask(name, CUSTOM_ENV_ID, maze, start, goal, steps)


def register_pointmaze_task(task: PointMazeTask) -> str:
    """Make ``task`` known by its name everywhere a named point-maze task is (data generation,
    termination, evaluation, scores: ``R_random, R_expert = 0, 1``, i.e. 100 × success rate);
    returns the name. Re-registering the same definition is a no-op; another definition under
    a taken name raises a ``ValueError``.

    Example:
        >>> task = make_pointmaze_task({
        ...     "name": "pointmaze-corridor",
        ...     "maze_map": [[1, 1, 1, 1, 1], [1, 0, 0, 0, 1], [1, 1, 1, 1, 1]],
        ...     "start_cell": [1, 1], "goal_cell": [1, 3], "max_episode_steps": 100})
        >>> register_pointmaze_task(task)
        'pointmaze-corridor'
        >>> get_pointmaze_task("pointmaze-corridor") == task
        True
        >>> unregister_pointmaze_task("pointmaze-corridor")
    """
    from torchrl_leq.data.scores import REFERENCE_SCORES

    taken = POINTMAZE_TASKS.get(task.name)
    if taken is not None and taken != task:
        raise ValueError(f"point-maze task {task.name!r} already exists; choose another maze.name.")
    POINTMAZE_TASKS[task.name] = task
    REFERENCE_SCORES.setdefault(task.name, (0.0, 1.0))
    return task.name


def unregister_pointmaze_task(name: str) -> None:
    """Forget a custom task registered with :func:`register_pointmaze_task` (named tasks stay).

    Example:
        >>> unregister_pointmaze_task("pointmaze-umaze")
        Traceback (most recent call last):
        ...
        ValueError: 'pointmaze-umaze' is a named task and cannot be unregistered.
    """
    from torchrl_leq.data.scores import REFERENCE_SCORES

    if name in NAMED_POINTMAZE_TASKS:
        raise ValueError(f"{name!r} is a named task and cannot be unregistered.")
    if POINTMAZE_TASKS.pop(name, None) is not None:
        REFERENCE_SCORES.pop(name, None)


def get_pointmaze_task(name: str) -> PointMazeTask:
    """Look up a generated point-maze task; unknown names raise a ``ValueError``."""
    try:
        return POINTMAZE_TASKS[name]
    except KeyError:
        raise ValueError(
            f"Unknown point-maze task {name!r}; known: {sorted(POINTMAZE_TASKS)}"
        ) from None


def resolve_task(task: PointMazeTask | str) -> PointMazeTask:
    """A :class:`PointMazeTask` from itself or its registry name."""
    return task if isinstance(task, PointMazeTask) else get_pointmaze_task(task)


def free_cells(task: PointMazeTask) -> list[tuple[int, int]]:
    """All non-wall ``(row, col)`` cells of the task's maze, row-major."""
    return [(r, c) for r, row in enumerate(task.maze_map) for c, v in enumerate(row) if v != 1]
