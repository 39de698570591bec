"""Stand-ins for Minari's AntMaze and MuJoCo datasets, written locally in their on-disk format.

No expert policy is at hand, so the actions are uniformly random; everything else follows the
hosted datasets (Farama's ``minari-dataset-generation-scripts``):

- ``D4RL/antmaze/<maze>-v1``: collected in gymnasium-robotics ``AntMaze_*-v4`` with
  ``continuing_task=True, reset_target=False`` (the goal, drawn with its ±1 uniform noise per
  coordinate at reset, stays for the whole episode; ``terminations`` are all False; episodes end
  by truncation after the env's ``max_episode_steps``, 700 / 1000); dict observations
  (``achieved_goal``, ``observation`` (27), ``desired_goal``); sparse reward within 0.45 of the
  episode's goal; ``infos`` with ``qpos`` (15), ``qvel`` (14), ``goal`` and ``success`` (T + 1
  rows); episode ``k`` reset with seed ``seed + k``. umaze collects on a map with the goal cell
  ``(1, 1)`` and the reset cell ``(3, 1)``; the other sets on the registered maps (random goal
  and reset cells per episode). ``env_spec`` records that env; ``eval_env_spec`` the same spec
  with Farama's evaluation map (fixed ``r`` / ``g`` cells; for umaze that map is the data map
  turned by 180°, as recorded in the hosted datasets).
- ``mujoco/<env>/<level>-v0``: collected in the gymnasium ``*-v5`` env, flat observations, no
  ``infos``; ``ref_min_score`` = the stand-in's own mean episode return (random policy),
  ``ref_max_score`` = D4RL's expert reference return of the env (stand-in values).

Stand-in only: every ``goal_every``-th AntMaze episode starts in the cell of the evaluation goal
(``reset_cell`` option) so that goal states occur in a few thousand random steps.

CLI::

    python -m torchrl_leq.data.generate_minari D4RL/antmaze/umaze-v1 --root DIR --steps 3000

Example:
    >>> generate_minari_dataset("D4RL/antmaze/umaze-v1", "/tmp/m", steps=2000)  # doctest: +SKIP
    PosixPath('/tmp/m/D4RL/antmaze/umaze-v1')
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import shutil
import tempfile
import time
import warnings
from pathlib import Path

import gymnasium as gym
import numpy as np

from torchrl_leq.data.minari import minari_dataset_path, minari_root_env

__all__ = [
    "ANTMAZE_STANDINS",
    "MUJOCO_STANDINS",
    "STANDIN_EVAL_GOAL_CELLS",
    "generate_minari_dataset",
]

_G, _R = "g", "r"
_U = [[1, 1, 1, 1, 1], [1, 0, 0, 0, 1], [1, 1, 1, 0, 1], [1, 0, 0, 0, 1], [1, 1, 1, 1, 1]]

ANTMAZE_STANDINS: dict[str, tuple[str, str]] = {
    # dataset id: (collection env id, maze)
    "D4RL/antmaze/umaze-v1": ("AntMaze_UMaze-v4", "umaze"),
    "D4RL/antmaze/umaze-diverse-v1": ("AntMaze_UMaze-v4", "umaze"),
    "D4RL/antmaze/medium-play-v1": ("AntMaze_Medium-v4", "medium"),
    "D4RL/antmaze/medium-diverse-v1": ("AntMaze_Medium_Diverse_GR-v4", "medium"),
    "D4RL/antmaze/large-play-v1": ("AntMaze_Large-v4", "large"),
    "D4RL/antmaze/large-diverse-v1": ("AntMaze_Large_Diverse_GR-v4", "large"),
}
"""AntMaze dataset ids and the env each was collected in (Farama's generation script)."""

STANDIN_EVAL_GOAL_CELLS: dict[str, tuple[int, int]] = {
    "umaze": (1, 1),
    "medium": (6, 6),
    "large": (7, 9),
}
"""Evaluation goal cell of each maze in the *data's* map (row, col): what the loader must find."""

_MUJOCO_ENVS = {"hopper": "Hopper-v5", "walker2d": "Walker2d-v5", "halfcheetah": "HalfCheetah-v5"}
_D4RL_EXPERT_RETURN = {"hopper": 3234.3, "walker2d": 4592.3, "halfcheetah": 12135.0}
MUJOCO_STANDINS: dict[str, str] = {
    f"mujoco/{name}/{level}-v0": env_id
    for name, env_id in _MUJOCO_ENVS.items()
    for level in ("simple", "medium", "expert")
}
"""MuJoCo dataset ids and their gymnasium v5 env."""


def _with_cells(layout: list[list], cells: dict[tuple[int, int], str]) -> list[list]:
    rows = [list(r) for r in layout]
    for (i, j), tag in cells.items():
        rows[i][j] = tag
    return rows


def _eval_map(maze: str, registered: list[list]) -> list[list]:
    walls = [[1 if c == 1 else 0 for c in row] for row in registered]
    if maze == "umaze":  # recorded as the data map turned by 180 degrees
        turned = [row[::-1] for row in walls[::-1]]
        return _with_cells(turned, {(1, 3): _R, (3, 3): _G})
    goal = STANDIN_EVAL_GOAL_CELLS[maze]
    return _with_cells(walls, {(1, 1): _R, goal: _G})


def _antmaze_envs(dataset_id: str) -> tuple[gym.Env, gym.envs.registration.EnvSpec, str]:
    import torchrl_leq._robotics  # noqa: F401  (registers the maze envs, quietly)

    env_id, maze = ANTMAZE_STANDINS[dataset_id]
    kwargs = {"continuing_task": True, "reset_target": False}
    if dataset_id.endswith("/umaze-v1"):
        kwargs["maze_map"] = _with_cells(_U, {(1, 1): _G, (3, 1): _R})
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*out of date.*")
        env = gym.make(env_id, **kwargs)
    eval_spec = dataclasses.replace(
        env.spec,
        kwargs={**env.spec.kwargs, "maze_map": _eval_map(maze, env.spec.kwargs["maze_map"])},
    )
    return env, eval_spec, maze


def _collect_antmaze(
    env: gym.Env, maze: str, steps: int, seed: int, episode_steps: int, goal_every: int
):
    from minari.data_collector import EpisodeBuffer

    rng = np.random.default_rng(seed)
    ant = env.unwrapped.ant_env
    buffers: list[EpisodeBuffer] = []
    done = 0
    while done < steps:
        k = len(buffers)
        options = None
        if goal_every > 0 and k % goal_every == goal_every - 1:
            options = {"reset_cell": np.asarray(STANDIN_EVAL_GOAL_CELLS[maze])}
        obs, info = env.reset(seed=seed + k, options=options)
        keys = ("achieved_goal", "observation", "desired_goal")
        o = {key: [obs[key]] for key in keys}
        infos = {
            "success": [info["success"]],
            "qpos": [ant.data.qpos.copy()],
            "qvel": [ant.data.qvel.copy()],
            "goal": [obs["desired_goal"]],
        }
        actions, rewards = [], []
        for _ in range(min(episode_steps, steps - done)):
            action = rng.uniform(-1.0, 1.0, 8).astype(np.float32)
            obs, reward, _, _, info = env.step(action)
            actions.append(action)
            rewards.append(float(reward))
            for key in keys:
                o[key].append(obs[key])
            infos["success"].append(info["success"])
            infos["qpos"].append(ant.data.qpos.copy())
            infos["qvel"].append(ant.data.qvel.copy())
            infos["goal"].append(obs["desired_goal"])
        n = len(actions)
        buffers.append(
            EpisodeBuffer(
                id=k,
                seed=seed + k,
                observations={key: np.asarray(v, dtype=np.float64) for key, v in o.items()},
                actions=np.asarray(actions),
                rewards=rewards,
                terminations=[False] * n,
                truncations=[False] * (n - 1) + [True],
                infos={key: np.asarray(v) for key, v in infos.items()},
            )
        )
        done += n
    return buffers


def _collect_mujoco(env: gym.Env, steps: int, seed: int, episode_steps: int):
    from minari.data_collector import EpisodeBuffer

    rng = np.random.default_rng(seed)
    dim = env.action_space.shape[0]
    buffers: list[EpisodeBuffer] = []
    done = 0
    while done < steps:
        k = len(buffers)
        obs, _ = env.reset(seed=seed + k)
        o, actions, rewards, terms = [obs], [], [], []
        for _ in range(min(episode_steps, steps - done)):
            action = rng.uniform(-1.0, 1.0, dim).astype(np.float32)
            obs, reward, terminated, _, _ = env.step(action)
            o.append(obs)
            actions.append(action)
            rewards.append(float(reward))
            terms.append(bool(terminated))
            if terminated:
                break
        n = len(actions)
        buffers.append(
            EpisodeBuffer(
                id=k,
                seed=seed + k,
                observations=np.asarray(o, dtype=np.float64),
                actions=np.asarray(actions),
                rewards=rewards,
                terminations=terms,
                truncations=[False] * (n - 1) + [not terms[-1]],
            )
        )
        done += n
    return buffers


def generate_minari_dataset(
    dataset_id: str,
    root: str | os.PathLike,
    steps: int = 3000,
    seed: int = 123,
    *,
    episode_steps: int | None = None,
    goal_every: int = 3,
    overwrite: bool = False,
) -> Path:
    """Write a random-policy stand-in of ``dataset_id`` under ``root`` (module docstring); returns
    the dataset directory. ``episode_steps`` defaults to the env's ``max_episode_steps``.
    Written atomically; an existing dataset is kept unless ``overwrite``.

    Example:
        >>> generate_minari_dataset("mujoco/hopper/medium-v0", "/tmp/m", 500)  # doctest: +SKIP
    """
    import minari

    if dataset_id not in ANTMAZE_STANDINS and dataset_id not in MUJOCO_STANDINS:
        known = sorted(ANTMAZE_STANDINS) + sorted(MUJOCO_STANDINS)
        raise ValueError(f"No stand-in for {dataset_id!r}; known: {known}")
    if steps <= 0:
        raise ValueError(f"steps must be positive, got {steps}.")
    root = Path(root).expanduser()
    final = minari_dataset_path(dataset_id, root)
    if (final / "data").is_dir() and not overwrite:
        return final

    if dataset_id in ANTMAZE_STANDINS:
        env, eval_spec, maze = _antmaze_envs(dataset_id)
        limit = episode_steps or env.spec.max_episode_steps
        buffers = _collect_antmaze(env, maze, steps, seed, limit, goal_every)
        refs: dict = {}
        what = f"{env.spec.id} (continuing_task=True, reset_target=False), maze {maze}"
    else:
        name = dataset_id.split("/")[1]
        env = gym.make(MUJOCO_STANDINS[dataset_id])
        eval_spec = env.spec
        limit = episode_steps or env.spec.max_episode_steps
        buffers = _collect_mujoco(env, steps, seed, limit)
        returns = [float(np.sum(b.rewards)) for b in buffers]
        refs = {
            "ref_min_score": float(np.mean(returns)),
            "ref_max_score": _D4RL_EXPERT_RETURN[name],
        }
        what = env.spec.id
    root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".tmp-standin-", dir=root))
    try:
        with minari_root_env(tmp), warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*(code_permalink|author|out of date).*")
            minari.create_dataset_from_buffers(
                dataset_id,
                buffers,
                env=env.spec,
                eval_env=eval_spec,
                algorithm_name="uniform-random (torchrl_leq stand-in)",
                description=(
                    f"Stand-in for {dataset_id}: uniform random actions in {what}; seed {seed}, "
                    f"{steps} steps, episodes of at most {limit} steps."
                ),
                **refs,
            )
        if overwrite and final.exists():
            shutil.rmtree(final)
        final.parent.mkdir(parents=True, exist_ok=True)
        os.replace(tmp / dataset_id, final)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        env.close()
    return final


def main(argv: list[str] | None = None) -> None:
    """CLI entry point (see the module docstring)."""
    parser = argparse.ArgumentParser(description="Write a stand-in Minari dataset (random policy).")
    parser.add_argument("dataset_id", choices=sorted(ANTMAZE_STANDINS) + sorted(MUJOCO_STANDINS))
    parser.add_argument("--root", required=True, help="Minari root to write into")
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--seed", type=int, default=123)
    parser.add_argument("--episode-steps", type=int, default=None)
    parser.add_argument("--goal-every", type=int, default=3)
    parser.add_argument("--overwrite", action="store_true")
    args = parser.parse_args(argv)
    t0 = time.perf_counter()
    path = generate_minari_dataset(
        args.dataset_id,
        args.root,
        args.steps,
        args.seed,
        episode_steps=args.episode_steps,
        goal_every=args.goal_every,
        overwrite=args.overwrite,
    )
    size = sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
    print(f"{path}\n  size: {size / 2**20:.1f} MiB\n  time: {time.perf_counter() - t0:.1f} s")


if __name__ == "__main__":
    main()
