"""Generate "diverse" point-maze datasets (Minari format, no JAX) and load them back.

A point mass in gymnasium-robotics PointMaze (v3, ``continuing_task=True, reset_target=True``)
follows a BFS-waypoint PD controller (kp 10, kd 1, Gaussian action noise 0.3, clipped to
[-1, 1]) towards random goal cells; a new random goal is drawn by the env each time one is
reached. Each episode starts in a random free cell other than the task's goal cell (with
gymnasium-robotics' ±0.25 position noise). Rewards and terminations are w.r.t. the task's FIXED
evaluation goal: reward 1 and ``terminated`` when the next position is within 0.45 of
``task.goal_xy``, else 0; an episode ends there or after ``episode_length`` steps (truncated).
Stored observation: ``[x, y, vx, vy]`` (float32). Everything is reproducible from ``seed``.

Datasets are cached under ``root`` (default ``$TORCHRL_LEQ_DATA`` or
``~/.cache/torchrl_leq/minari``) with id ``torchrl_leq/<task>/diverse-s<seed>-n<steps>-T<len>-v0``.

CLI::

    python -m torchrl_leq.data.generate pointmaze-medium --steps 1000000 --seed 0

Example:
    >>> rb = load_pointmaze_dataset("pointmaze-umaze", steps=10_000, seed=0)  # doctest: +SKIP
    >>> rb.sample()["observation"].shape  # doctest: +SKIP
    torch.Size([256, 4])
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
import warnings
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch
from tensordict import TensorDict
from torchrl.data import TensorDictReplayBuffer
from torchrl.data.replay_buffers.samplers import Sampler
from tqdm import tqdm

from torchrl_leq.data.buffers import make_replay_buffer
from torchrl_leq.data.minari import minari_dataset_path, minari_root_env, read_minari
from torchrl_leq.data.waypoint_controller import _xy_to_cell, pd_action, waypoint_table
from torchrl_leq.tasks import (
    POINTMAZE_SUCCESS_RADIUS,
    POINTMAZE_TASKS,
    PointMazeTask,
    free_cells,
    resolve_task,
)

__all__ = [
    "ACTION_NOISE",
    "WAYPOINT_JITTER",
    "DEFAULT_EPISODE_LENGTH",
    "data_root",
    "pointmaze_dataset_id",
    "generate_pointmaze_dataset",
    "read_pointmaze_dataset",
    "load_pointmaze_dataset",
]

ACTION_NOISE = 0.3
"""Std of the Gaussian noise added to the controller's actions."""
WAYPOINT_JITTER = 0.5
"""Default half-width of the uniform offset of each waypoint inside its cell: 0.5 = anywhere in
the cell, so the ball also runs into walls (0 = the older centre-line collection, which almost
never touches one: see ``docs/pointmaze.md``)."""
DEFAULT_EPISODE_LENGTH = 1000


def data_root(root: str | os.PathLike | None = None) -> Path:
    """Root of our generated Minari datasets: ``root``, ``$TORCHRL_LEQ_DATA`` or
    ``~/.cache/torchrl_leq/minari``."""
    if root is None:
        root = os.environ.get("TORCHRL_LEQ_DATA", "~/.cache/torchrl_leq/minari")
    return Path(root).expanduser()


def pointmaze_dataset_id(
    task: PointMazeTask | str,
    steps: int,
    seed: int,
    episode_length: int = DEFAULT_EPISODE_LENGTH,
    action_noise: float = ACTION_NOISE,
    waypoint_jitter: float = WAYPOINT_JITTER,
) -> str:
    """Minari id of a generated dataset. The centre-line collection (``waypoint_jitter=0``,
    noise 0.3) keeps its original id; other collections add ``-a<noise>-j<jitter>`` (``.``
    written ``p``); a custom
    maze adds a hash of its definition (two mazes with one name never share a cache entry).

    Example:
        >>> pointmaze_dataset_id("pointmaze-umaze", 1000, 0, waypoint_jitter=0.0)
        'torchrl_leq/pointmaze-umaze/diverse-s0-n1000-T1000-v0'
        >>> pointmaze_dataset_id("pointmaze-umaze", 1000, 0)
        'torchrl_leq/pointmaze-umaze/diverse-s0-n1000-T1000-a0p3-j0p5-v0'
    """
    task = resolve_task(task)
    collection = ""
    if (action_noise, waypoint_jitter) != (ACTION_NOISE, 0.0):
        collection = f"-a{action_noise:g}-j{waypoint_jitter:g}".replace(".", "p")
    name = task.name if task.is_named else f"{task.name}-{task.definition_hash}"
    return f"torchrl_leq/{name}/diverse-s{seed}-n{steps}-T{episode_length}{collection}-v0"


def _collect(
    task: PointMazeTask,
    steps: int,
    seed: int,
    episode_length: int,
    progress: bool,
    action_noise: float = ACTION_NOISE,
    waypoint_jitter: float = WAYPOINT_JITTER,
):
    from minari.data_collector import EpisodeBuffer

    import torchrl_leq._robotics  # noqa: F401  (registers the maze envs when nothing else did)

    env = gym.make(
        task.env_id,
        maze_map=[list(row) for row in task.maze_map],
        continuing_task=True,
        reset_target=True,
    ).unwrapped  # no time limit: episodes are cut here
    rng = np.random.default_rng(seed)
    table = waypoint_table(task)
    cells = free_cells(task)
    starts = [c for c in cells if c != task.goal_cell]
    eval_goal = np.asarray(task.goal_xy)

    buffers: list[EpisodeBuffer] = []
    done_steps = 0
    bar = tqdm(total=steps, desc=f"{task.name} seed {seed}", unit="step", disable=not progress)
    while done_steps < steps:
        start = starts[rng.integers(len(starts))]
        goal = cells[rng.integers(len(cells))]
        while goal == start:
            goal = cells[rng.integers(len(cells))]
        obs_dict, _ = env.reset(
            seed=seed if not buffers else None, options={"reset_cell": start, "goal_cell": goal}
        )
        obs = [obs_dict["observation"]]
        actions, rewards, terms = [], [], []
        limit = min(episode_length, steps - done_steps)
        offset, cell = np.zeros(2), None
        for _ in range(limit):
            row, col = _xy_to_cell(task, env.goal)
            if waypoint_jitter > 0:  # a new uniform offset for every cell the ball enters
                here = _xy_to_cell(task, obs[-1][:2])
                if here != cell:
                    cell, offset = here, rng.uniform(-waypoint_jitter, waypoint_jitter, 2)
            action = pd_action(task, table + offset, obs[-1], env.goal, (int(row), int(col)))
            action = np.clip(action + action_noise * rng.standard_normal(2), -1.0, 1.0)
            obs_dict, _, _, _, _ = env.step(action)
            obs.append(obs_dict["observation"])
            actions.append(action)
            reached = np.linalg.norm(obs[-1][:2] - eval_goal) <= POINTMAZE_SUCCESS_RADIUS
            rewards.append(float(reached))
            terms.append(bool(reached))
            if reached:
                break
        n = len(actions)
        buffers.append(
            EpisodeBuffer(
                id=len(buffers),
                observations=np.asarray(obs, dtype=np.float32),
                actions=np.asarray(actions, dtype=np.float32),
                rewards=np.asarray(rewards, dtype=np.float64),
                terminations=np.asarray(terms),
                truncations=np.asarray([False] * (n - 1) + [not terms[-1]]),
            )
        )
        done_steps += n
        bar.update(n)
    bar.close()
    env.close()
    return buffers


def generate_pointmaze_dataset(
    task: PointMazeTask | str,
    steps: int = 1_000_000,
    seed: int = 0,
    root: str | os.PathLike | None = None,
    episode_length: int = DEFAULT_EPISODE_LENGTH,
    progress: bool = False,
    action_noise: float = ACTION_NOISE,
    waypoint_jitter: float = WAYPOINT_JITTER,
) -> str:
    """Generate (or reuse the cached) dataset; returns its Minari id (path:
    ``data_root(root) / id``). Written atomically: a half-written dataset is never reused.

    ``action_noise`` is the controller's Gaussian action noise; ``waypoint_jitter`` the
    half-width of each waypoint's uniform offset inside its cell (0: the centre-line
    collection of earlier versions, kept for their cached datasets).

    Example:
        >>> dataset_id = generate_pointmaze_dataset("pointmaze-umaze", 5_000, seed=1)  # doctest: +SKIP
    """
    import minari
    from gymnasium.spaces import Box

    task = resolve_task(task)
    if steps <= 0:
        raise ValueError(f"steps must be positive, got {steps}")
    if action_noise < 0 or not 0 <= waypoint_jitter <= 0.5:
        raise ValueError(
            f"need action_noise >= 0 and waypoint_jitter in [0, 0.5], got {action_noise}, "
            f"{waypoint_jitter}"
        )
    dataset_id = pointmaze_dataset_id(
        task, steps, seed, episode_length, action_noise, waypoint_jitter
    )
    root = data_root(root)
    final = minari_dataset_path(dataset_id, root)
    if (final / "data").is_dir():
        return dataset_id

    buffers = _collect(task, steps, seed, episode_length, progress, action_noise, waypoint_jitter)
    root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".tmp-generate-", dir=root))
    try:
        with minari_root_env(tmp), warnings.catch_warnings():
            warnings.filterwarnings(
                "ignore", message=".*(code_permalink|author|eval_env|env_spec).*"
            )
            minari.create_dataset_from_buffers(
                dataset_id,
                buffers,
                observation_space=Box(-np.inf, np.inf, (4,), np.float32),
                action_space=Box(-1.0, 1.0, (2,), np.float32),
                algorithm_name="bfs-waypoint-pd-controller",
                description=(
                    f"{task.name} ({task.env_id}, continuing_task=True, reset_target=True): "
                    f"BFS-waypoint PD controller (kp 10, kd 1, noise {action_noise}, waypoint "
                    f"offsets uniform in +-{waypoint_jitter} of the cell centre) to random "
                    f"goals; reward/termination within {POINTMAZE_SUCCESS_RADIUS} of the fixed goal "
                    f"{task.goal_xy}; seed {seed}, {steps} steps, episode length {episode_length}."
                ),
            )
        final.parent.mkdir(parents=True, exist_ok=True)
        if not (final / "data").is_dir():
            os.replace(tmp / dataset_id, final)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return dataset_id


def read_pointmaze_dataset(
    task: PointMazeTask | str,
    steps: int = 1_000_000,
    seed: int = 0,
    root: str | os.PathLike | None = None,
    episode_length: int = DEFAULT_EPISODE_LENGTH,
    action_noise: float = ACTION_NOISE,
    waypoint_jitter: float = WAYPOINT_JITTER,
) -> TensorDict:
    """All transitions of the (generated on first use) dataset as one TensorDict.

    Example:
        >>> td = read_pointmaze_dataset("pointmaze-umaze", 10_000)  # doctest: +SKIP
    """
    dataset_id = generate_pointmaze_dataset(
        task,
        steps,
        seed,
        root,
        episode_length,
        action_noise=action_noise,
        waypoint_jitter=waypoint_jitter,
    )
    return read_minari(dataset_id, root=data_root(root))


def load_pointmaze_dataset(
    task: PointMazeTask | str,
    steps: int = 1_000_000,
    seed: int = 0,
    root: str | os.PathLike | None = None,
    episode_length: int = DEFAULT_EPISODE_LENGTH,
    batch_size: int = 256,
    sampler: Sampler | None = None,
    device: torch.device | str | None = None,
    action_noise: float = ACTION_NOISE,
    waypoint_jitter: float = WAYPOINT_JITTER,
) -> TensorDictReplayBuffer:
    """Replay buffer over :func:`read_pointmaze_dataset` (generates on first use).

    Example:
        >>> rb = load_pointmaze_dataset("pointmaze-large", 1_000_000, seed=0)  # doctest: +SKIP
    """
    td = read_pointmaze_dataset(
        task, steps, seed, root, episode_length, action_noise, waypoint_jitter
    )
    return make_replay_buffer(td, batch_size, sampler, device)


def main(argv: list[str] | None = None) -> None:
    """CLI entry point (see module docstring)."""
    parser = argparse.ArgumentParser(description="Generate a diverse point-maze Minari dataset.")
    parser.add_argument("task", choices=sorted(POINTMAZE_TASKS))
    parser.add_argument("--steps", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--root",
        default=None,
        help="data dir (default $TORCHRL_LEQ_DATA or ~/.cache/torchrl_leq/minari)",
    )
    parser.add_argument("--episode-length", type=int, default=DEFAULT_EPISODE_LENGTH)
    parser.add_argument("--action-noise", type=float, default=ACTION_NOISE)
    parser.add_argument(
        "--waypoint-jitter", type=float, default=WAYPOINT_JITTER, help="0: centre-line data"
    )
    args = parser.parse_args(argv)
    t0 = time.perf_counter()
    dataset_id = generate_pointmaze_dataset(
        args.task,
        args.steps,
        args.seed,
        args.root,
        args.episode_length,
        progress=True,
        action_noise=args.action_noise,
        waypoint_jitter=args.waypoint_jitter,
    )
    path = minari_dataset_path(dataset_id, data_root(args.root))
    size = sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
    print(
        f"{dataset_id}\n  path: {path}\n  size: {size / 2**20:.1f} MiB\n"
        f"  time: {time.perf_counter() - t0:.1f} s"
    )


if __name__ == "__main__":
    main()
