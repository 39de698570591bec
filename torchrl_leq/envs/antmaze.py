"""AntMaze in gymnasium-robotics with D4RL's 29-dim observation layout, and goal terminations.

D4RL AntMaze observations are the ant's ``[qpos (15), qvel (14)]``: ``x, y`` first. The
gymnasium-robotics ``AntMaze_*-v5`` envs return a dict: ``achieved_goal`` (= ``x, y``),
``observation`` (``qpos[2:]``, ``qvel``: 27 values, 105 with contact forces, which we switch
off) and ``desired_goal``. :class:`AntMazeD4RLLayout` flattens the dict to
``[x, y, *observation]`` — the same order as D4RL's.

**Frames differ.** D4RL puts the start cell at the origin and ``y`` grows with the maze row
(``xy = 4 · (col − col_start, row − row_start)``); gymnasium-robotics centres the maze and ``y``
*falls* with the row (``xy = (4 (col + ½) − W·2, H·2 − 4 (row + ½))``). The two mazes are mirror
images of each other (a reflection, not a rigid motion), so a policy or a dataset from one
frame does not transfer to the other by translating ``x, y``. Goal-based terminations must be
given in the frame of the data: :func:`make_goal_termination` takes the goal explicitly; the
``antmaze-*`` task names of :func:`~torchrl_leq.envs.termination.get_termination_fn` use the
D4RL goal centres. See ``docs/antmaze.md``.

**Minari data** (``D4RL/antmaze/*-v1``) are evaluated with :class:`AntMazeEnvFactory` (the
collection env, the dataset's own start and goal, see
:func:`torchrl_leq.data.minari_tasks.make_minari_task`), never with
:func:`make_antmaze_eval_env`: that env puts D4RL's umaze cells on gymnasium-robotics' map, so
its umaze goal (−4, −4) is the Minari umaze data's *start*. It serves the smoke runs, whose data
are generated in it.

The smoke env factory is registered with gymnasium as :data:`ANTMAZE_LAYOUT_ENV_ID`. Name it as
``"torchrl_leq.envs.antmaze:torchrl_leq/AntMazeD4RLLayout-v0"`` (gymnasium imports the module
first) so that a config's ``eval.env_id`` works in any process.

Example:
    >>> import torch
    >>> env = make_antmaze_eval_env("umaze")
    >>> obs, _ = env.reset(seed=0)
    >>> obs.shape
    (29,)
    >>> fn = make_goal_termination(gymnasium_goal_xy("umaze"), 0.5)
    >>> bool(fn(None, None, torch.tensor([-4.0, -3.6])))
    True
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np

from torchrl_leq.envs.termination import TerminationFn, goal_termination
from torchrl_leq.tasks import ANTMAZE_GOAL_RADIUS, POINTMAZE_TASKS

__all__ = [
    "AntMazeEnvFactory",
    "AntMazeFixedTask",
    "maze_cell_xy",
    "ANTMAZE_LAYOUT_ENV_ID",
    "ANTMAZE_LAYOUT_ENV_SPEC",
    "ANTMAZE_MAZES",
    "AntMazeD4RLLayout",
    "antmaze_maze_map",
    "antmaze_time_limit",
    "gymnasium_goal_xy",
    "make_antmaze_eval_env",
    "make_goal_termination",
    "termination_from_config",
]

ANTMAZE_LAYOUT_ENV_ID = "torchrl_leq/AntMazeD4RLLayout-v0"
"""Gymnasium id of :func:`make_antmaze_eval_env` (kwargs: ``maze`` and the env's own)."""

ANTMAZE_LAYOUT_ENV_SPEC = f"torchrl_leq.envs.antmaze:{ANTMAZE_LAYOUT_ENV_ID}"
"""The id with its module prefix: ``gym.make`` imports the module, which registers the id."""

MAZE_SIZE_SCALING = 4.0

# D4RL's evaluation mazes (U_MAZE_TEST, BIG_MAZE_TEST, HARDEST_MAZE_TEST): the same layouts as
# our generated point mazes, with D4RL's fixed start ("r") and goal ("g") cells.
_D4RL_CELLS: dict[str, tuple[str, tuple[int, int], tuple[int, int], int]] = {
    # maze: (layout, start cell (row, col), goal cell (row, col), D4RL time limit)
    "umaze": ("pointmaze-umaze", (1, 1), (3, 1), 700),
    "medium": ("pointmaze-medium", (1, 1), (6, 6), 1000),
    "large": ("pointmaze-large", (1, 1), (7, 9), 1000),
}
ANTMAZE_MAZES = tuple(_D4RL_CELLS)
"""Mazes :func:`make_antmaze_eval_env` builds (gymnasium-robotics has no ``ultra`` maze)."""


def _maze_entry(maze: str) -> tuple[str, tuple[int, int], tuple[int, int], int]:
    name = maze.removeprefix("antmaze-").split("-")[0]
    if name not in _D4RL_CELLS:
        raise ValueError(
            f"Unknown AntMaze maze {maze!r}; gymnasium-robotics provides {list(ANTMAZE_MAZES)} "
            "(the 'ultra' maze of Jiang et al. is not available there)."
        )
    return _D4RL_CELLS[name]


def antmaze_maze_map(maze: str) -> list[list[int | str]]:
    """D4RL's evaluation map of ``maze`` for gymnasium-robotics: 1 wall, 0 free, ``"r"``
    start cell, ``"g"`` goal cell."""
    layout, start, goal, _ = _maze_entry(maze)
    rows: list[list[int | str]] = [list(r) for r in POINTMAZE_TASKS[layout].maze_map]
    rows[start[0]][start[1]] = "r"
    rows[goal[0]][goal[1]] = "g"
    return rows


def gymnasium_goal_xy(maze: str) -> tuple[float, float]:
    """Centre of D4RL's goal cell in gymnasium-robotics' frame (the env adds ±1 uniform noise
    per coordinate at reset). E.g. umaze: ``(-4.0, -4.0)``; D4RL's frame puts it at ``(0, 8)``."""
    layout, _, (row, col), _ = _maze_entry(maze)
    n_rows, n_cols = len(POINTMAZE_TASKS[layout].maze_map), len(POINTMAZE_TASKS[layout].maze_map[0])
    s = MAZE_SIZE_SCALING
    return ((col + 0.5) * s - n_cols * s / 2.0, n_rows * s / 2.0 - (row + 0.5) * s)


class AntMazeD4RLLayout(gym.ObservationWrapper):
    """Flatten gymnasium-robotics' AntMaze dict observation to D4RL's ``[x, y, *observation]``
    (``x, y`` = ``achieved_goal``). The goal is not part of the observation (as in D4RL)."""

    def __init__(self, env: gym.Env) -> None:
        super().__init__(env)
        space = env.observation_space
        if not isinstance(space, gym.spaces.Dict) or "achieved_goal" not in space.spaces:
            raise TypeError(f"Expected an AntMaze dict observation space, got {space}.")
        dim = space["achieved_goal"].shape[0] + space["observation"].shape[0]
        self.observation_space = gym.spaces.Box(-np.inf, np.inf, shape=(dim,), dtype=np.float64)

    def observation(self, observation: dict) -> np.ndarray:
        return np.concatenate([observation["achieved_goal"], observation["observation"]]).astype(
            np.float64
        )


def maze_cell_xy(
    maze_map: Sequence[Sequence[Any]], cell: Sequence[int], scaling: float = MAZE_SIZE_SCALING
) -> tuple[float, float]:
    """Centre of ``cell`` (row, col) in gymnasium-robotics' frame for ``maze_map`` (the map
    centred, ``y`` falling with the row), as ``Maze.cell_rowcol_to_xy``.

    Example:
        >>> maze_cell_xy([[1] * 5] * 5, (1, 1))
        (-4.0, 4.0)
    """
    n_rows, n_cols = len(maze_map), len(maze_map[0])
    row, col = int(cell[0]), int(cell[1])
    return (
        (col + 0.5) * scaling - n_cols * scaling / 2.0,
        n_rows * scaling / 2.0 - (row + 0.5) * scaling,
    )


class AntMazeFixedTask(gym.Wrapper):
    """One start cell, one goal: every reset starts in ``start_cell`` (with the env's position
    noise) and puts the goal exactly at ``goal_xy`` (gymnasium-robotics would add ±1 noise per
    coordinate), so that the env's reward and termination (within 0.45) agree with relabelled
    dataset rewards."""

    def __init__(self, env: gym.Env, start_cell: Sequence[int], goal_xy: Sequence[float]) -> None:
        super().__init__(env)
        self.start_cell = np.asarray(start_cell, dtype=np.int64)
        self.goal_xy = np.asarray(goal_xy, dtype=np.float64)

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        options = {"reset_cell": self.start_cell, **(options or {})}
        obs, info = self.env.reset(seed=seed, options=options)
        maze_env = self.env.unwrapped
        maze_env.goal = self.goal_xy.copy()
        maze_env.update_target_site_pos()
        obs = {**obs, "desired_goal": self.goal_xy.copy()}
        info["success"] = bool(np.linalg.norm(obs["achieved_goal"] - self.goal_xy) <= 0.45)
        return obs, info


@dataclass(frozen=True)
class AntMazeEnvFactory:
    """Picklable zero-argument factory of an AntMaze evaluation env: ``gym.make(env_id,
    maze_map=..., continuing_task=False, **kwargs)`` (episodes end at the goal), time limit
    ``max_episode_steps``, fixed start cell and goal (:class:`AntMazeFixedTask`), observations
    flattened to D4RL's 29 numbers (:class:`AntMazeD4RLLayout`).

    Example:
        >>> maze = [[1, 1, 1, 1, 1], [1, 0, 0, 0, 1], [1, 1, 1, 0, 1], [1, 0, 0, 0, 1], [1] * 5]
        >>> make = AntMazeEnvFactory("AntMaze_UMaze-v4", maze, (3, 1), (-4.0, 4.0), 700)
        >>> env = make()
        >>> obs, _ = env.reset(seed=0)
        >>> obs.shape, env.unwrapped.goal.tolist()
        ((29,), [-4.0, 4.0])
    """

    env_id: str
    maze_map: Any
    start_cell: tuple[int, int]
    goal_xy: tuple[float, float]
    max_episode_steps: int
    kwargs: Any = None

    def __call__(self) -> gym.Env:
        import warnings

        import torchrl_leq._robotics  # noqa: F401  (registers the maze envs, quietly)

        kwargs = dict(self.kwargs or {})
        kwargs.update(
            maze_map=[list(r) for r in self.maze_map], continuing_task=False, reset_target=False
        )
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*out of date.*")
            env = gym.make(self.env_id, max_episode_steps=self.max_episode_steps, **kwargs)
        return AntMazeD4RLLayout(AntMazeFixedTask(env, self.start_cell, self.goal_xy))


def make_antmaze_eval_env(
    maze: str = "umaze", *, continuing_task: bool = False, **kwargs
) -> AntMazeD4RLLayout:
    """Gymnasium-robotics AntMaze (v5) on D4RL's evaluation map of ``maze`` (fixed start and
    goal cells), ``continuing_task=False`` (reaching the goal terminates), no contact forces,
    observation flattened by :class:`AntMazeD4RLLayout` (29 dims). No time limit here: the
    registered id adds one (``max_episode_steps``, default 1000; D4RL uses 700 for umaze).
    Positions are in gymnasium-robotics' frame, not D4RL's (module docstring)."""
    from gymnasium_robotics.envs.maze.ant_maze_v5 import AntMazeEnv

    import torchrl_leq._robotics  # noqa: F401  (registers the maze envs, quietly)

    kwargs.setdefault("include_cfrc_ext_in_observation", False)
    env = AntMazeEnv(maze_map=antmaze_maze_map(maze), continuing_task=continuing_task, **kwargs)
    return AntMazeD4RLLayout(env)


def antmaze_time_limit(maze: str) -> int:
    """D4RL's episode length for ``maze``: 700 (umaze) or 1000."""
    return _maze_entry(maze)[3]


def make_goal_termination(
    goal: Sequence[float], radius: float = ANTMAZE_GOAL_RADIUS
) -> TerminationFn:
    """``(obs, action, next_obs) -> terminated [..., 1]``: ``next_obs[..., :2]`` within ``radius``
    of ``goal`` (given in the frame of the data). For configs: ``termination: {goal: [x, y],
    radius: r}``.

    Example:
        >>> import torch
        >>> fn = make_goal_termination([0.75, 8.75], 0.25)
        >>> fn(None, None, torch.tensor([[0.75, 8.9, 1.0], [0.75, 9.1, 1.0]])).squeeze(-1)
        tensor([ True, False])
    """
    values = [float(v) for v in goal]
    if len(values) != 2 or not all(np.isfinite(values)):
        raise ValueError(f"termination.goal must be two finite numbers [x, y], got {goal!r}.")
    radius = float(radius)
    if not radius > 0:
        raise ValueError(f"termination.radius must be > 0, got {radius}.")
    return goal_termination((values[0], values[1]), radius)


def termination_from_config(node: Any, task: str) -> str | TerminationFn:
    """What ``LEQModelEnv`` takes as termination: ``task`` (its built-in termination) when ``node`` is
    ``None``, else :func:`make_goal_termination` of ``node.goal`` / ``node.radius`` (default
    0.25). ``node`` is a config's ``termination`` entry (mapping or ``DictConfig``).

    Example:
        >>> termination_from_config(None, "antmaze-umaze")
        'antmaze-umaze'
        >>> callable(termination_from_config({"goal": [-4.0, -4.0], "radius": 0.5}, "antmaze-umaze"))
        True
    """
    if node is None:
        return task
    if not isinstance(node, Mapping):
        node = dict(node)
    if node.get("goal") is None:
        raise ValueError(f"termination needs a goal [x, y] (and optionally radius), got {node!r}.")
    return make_goal_termination(node["goal"], node.get("radius", ANTMAZE_GOAL_RADIUS))


if ANTMAZE_LAYOUT_ENV_ID not in gym.registry:
    gym.register(
        id=ANTMAZE_LAYOUT_ENV_ID,
        entry_point=make_antmaze_eval_env,
        max_episode_steps=1000,
    )
