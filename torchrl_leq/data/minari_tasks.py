"""Minari datasets as ready-to-train tasks: transitions, termination, evaluation env, scores.

:func:`make_minari_task` (``dataset_id``, ``root``) returns a :class:`MinariTask` with everything
an example needs; :func:`check_minari_task` runs the cheap checks (dataset present, metadata,
observation / action widths against the evaluation env) before any heavy work.

**AntMaze** (``D4RL/antmaze/*-v1``: gymnasium-robotics ``AntMaze_*`` collected as a continuing
task, ``reset_target=False``):

- observations ``[achieved_goal, observation]``: D4RL's 29 numbers, ``x, y`` first;
- the maze is the data's (``env_spec.kwargs["maze_map"]``); the start and goal cells are the
  ``r`` / ``g`` cells of ``eval_env_spec``'s map, carried into the data's map: the recorded umaze
  evaluation map is the data map turned by 180° (:func:`antmaze_eval_cells` finds the turn from
  the walls and checks it against the data map's own ``g`` cell and the episodes' goals);
- rewards relabelled against that one goal: ``1`` where the next ``x, y`` lie within
  ``reward_radius`` (0.45, gymnasium-robotics' success radius, checked against the raw rewards)
  of the goal-cell centre, else ``0`` (the paper's ``r - 1`` is ``reward_transform="maze"``);
- ``terminated``: the raw data's are all False (continuing task). By default a relabelled goal
  step is terminated (the evaluation env ends there too); ``terminate_on_goal=False`` keeps them
  all False. Truncations are the data's;
- world-model termination: within ``termination_radius`` (default the reward radius) of the
  goal, in the data's frame;
- evaluation: the collection env id and kwargs, ``continuing_task=False``, the time limit of the
  spec (700 / 1000), fixed start cell and goal
  (:class:`~torchrl_leq.envs.antmaze.AntMazeEnvFactory`), D4RL reference returns 0 / 1.

**MuJoCo** (``mujoco/{hopper,walker2d,halfcheetah}/*-v0``, gymnasium ``*-v5``): flat
observations, the dataset's own terminations; evaluation in ``eval_env_spec`` (else
``env_spec``); normalised with the dataset's ``ref_min_score`` / ``ref_max_score``; reward
transform ``"locomotion"`` (``"none"`` for ``*-random``, as the released code).

Example:
    >>> task = make_minari_task("D4RL/antmaze/umaze-v1", root="/data/minari")  # doctest: +SKIP
    >>> task.transitions["observation"].shape[-1], task.goal_xy  # doctest: +SKIP
    (29, (-4.0, 4.0))
"""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from tensordict import TensorDict

from torchrl_leq.data.minari import _read_episodes, read_minari, read_minari_metadata
from torchrl_leq.data.scores import reference_scores
from torchrl_leq.envs.antmaze import MAZE_SIZE_SCALING, AntMazeEnvFactory, maze_cell_xy
from torchrl_leq.envs.termination import TerminationFn, get_termination_fn, goal_termination

__all__ = [
    "ANTMAZE_OBSERVATION_KEYS",
    "ANTMAZE_REWARD_RADIUS",
    "GymEnvFactory",
    "MinariTask",
    "antmaze_eval_cells",
    "check_minari_task",
    "make_minari_task",
    "minari_task_spec",
    "relabel_goal_rewards",
    "replay_error",
]

ANTMAZE_OBSERVATION_KEYS = ("achieved_goal", "observation")
"""D4RL's AntMaze layout: ``x, y`` then ``qpos[2:]`` and ``qvel`` (29 numbers)."""

ANTMAZE_REWARD_RADIUS = 0.45
"""gymnasium-robotics' maze success radius (its sparse reward and termination)."""

_MUJOCO_FAMILIES = {"Hopper": "hopper", "Walker2d": "walker2d", "HalfCheetah": "halfcheetah"}


@dataclass(frozen=True)
class GymEnvFactory:
    """Picklable zero-argument factory: ``gym.make(env_id, max_episode_steps=..., **kwargs)``.

    Example:
        >>> GymEnvFactory("Hopper-v5", 1000)().observation_space.shape
        (11,)
    """

    env_id: str
    max_episode_steps: int | None = None
    kwargs: Any = None

    def __call__(self) -> gym.Env:
        return gym.make(
            self.env_id, max_episode_steps=self.max_episode_steps, **(self.kwargs or {})
        )


@dataclass
class MinariTask:
    """Everything an example needs for one Minari dataset (see the module docstring).

    ``transitions``: TorchRL layout (``observation``, ``action``, ``episode``,
    ``("next", "observation" | "reward" | "terminated" | "truncated" | "done")``), rewards
    relabelled for AntMaze, raw otherwise. ``termination_fn``: for the world-model env.
    ``env_factory``: picklable, flat observations. ``reward_transform``: what to apply next
    (:func:`~torchrl_leq.data.transforms.apply_reward_transform`). ``reference_scores``:
    ``(R_random, R_expert)``. ``info``: what was derived (goal cell, radii, env id, turn of
    the evaluation map, raw-reward check).
    """

    dataset_id: str
    family: str
    transitions: TensorDict
    termination_fn: TerminationFn
    env_factory: Callable[[], gym.Env]
    reward_transform: str
    reference_scores: tuple[float, float]
    info: dict = field(default_factory=dict)

    @property
    def goal_xy(self) -> tuple[float, float] | None:
        """AntMaze evaluation goal in the data's frame (``None`` for MuJoCo)."""
        return self.info.get("goal_xy")

    def normalized_score(self, returns: Any) -> Any:
        """``100 * (R - R_random) / (R_expert - R_random)`` (floats, arrays or tensors).

        Example:
            >>> task = MinariTask("x", "mujoco", None, None, None, "none", (10.0, 110.0))
            >>> task.normalized_score(60.0)
            50.0
        """
        low, high = self.reference_scores
        if isinstance(returns, torch.Tensor):
            return (returns.double() - low) * (100.0 / (high - low))
        if isinstance(returns, (list, tuple, np.ndarray)):
            return (np.asarray(returns, dtype=np.float64) - low) * (100.0 / (high - low))
        return (float(returns) - low) * (100.0 / (high - low))


def _spec(meta: dict, key: str) -> gym.envs.registration.EnvSpec | None:
    raw = meta.get(key)
    if raw is None:
        return None
    data = json.loads(raw) if isinstance(raw, str) else raw
    data.pop("order_enforce", None)  # gymnasium >= 1.0 has no such field
    return gym.envs.registration.EnvSpec(**data)


def _family(dataset_id: str, spec: gym.envs.registration.EnvSpec | None) -> str:
    if spec is None:
        raise ValueError(f"Minari dataset {dataset_id!r} records no env_spec: cannot evaluate it.")
    if spec.name.startswith("AntMaze"):
        return "antmaze"
    if spec.name in _MUJOCO_FAMILIES:
        return _MUJOCO_FAMILIES[spec.name]
    raise ValueError(
        f"{dataset_id!r} was collected in {spec.id!r}; supported: AntMaze_* and "
        f"{sorted(_MUJOCO_FAMILIES)} (v5)."
    )


def _walls(maze_map: Sequence[Sequence[Any]]) -> tuple[tuple[bool, ...], ...]:
    return tuple(tuple(c == 1 for c in row) for row in maze_map)


def _cells(maze_map: Sequence[Sequence[Any]], tag: str) -> list[tuple[int, int]]:
    return [(i, j) for i, row in enumerate(maze_map) for j, c in enumerate(row) if c == tag]


def antmaze_eval_cells(
    data_map: Sequence[Sequence[Any]], eval_map: Sequence[Sequence[Any]] | None
) -> dict[str, Any]:
    """Start and goal cells of the evaluation task in the data's map.

    ``eval_map`` (``eval_env_spec``'s, with one ``"r"`` and one ``"g"`` cell) must have the data
    map's walls, as they are (``"identity"``) or turned by 180° (``"rot180"``: cell ``(i, j)``
    of the evaluation map is ``(H-1-i, W-1-j)`` of the data's). If the data map has its own
    ``"g"`` cell it must be the carried goal. Returns ``start_cell``, ``goal_cell``, ``turn``.

    Example:
        >>> u = [[1, 1, 1, 1, 1], [1, 0, 0, 0, 1], [1, 1, 1, 0, 1], [1, 0, 0, 0, 1], [1] * 5]
        >>> ev = [[1, 1, 1, 1, 1], [1, 0, 0, "r", 1], [1, 0, 1, 1, 1], [1, 0, 0, "g", 1], [1] * 5]
        >>> antmaze_eval_cells(u, ev)
        {'start_cell': (3, 1), 'goal_cell': (1, 1), 'turn': 'rot180'}
    """
    if eval_map is None:
        eval_map = data_map
    walls, n_rows, n_cols = _walls(data_map), len(data_map), len(data_map[0])
    turned = tuple(row[::-1] for row in walls[::-1])
    if _walls(eval_map) == walls:
        turn, carry = "identity", (lambda c: c)
    elif _walls(eval_map) == turned:
        turn, carry = "rot180", (lambda c: (n_rows - 1 - c[0], n_cols - 1 - c[1]))
    else:
        raise ValueError(
            "The evaluation map's walls are neither the data map's nor the data map turned by "
            f"180 degrees: data {list(map(list, data_map))}, eval {list(map(list, eval_map))}."
        )
    goals, starts = _cells(eval_map, "g"), _cells(eval_map, "r")
    if len(goals) != 1 or len(starts) != 1:
        raise ValueError(
            f"The evaluation map needs exactly one 'r' and one 'g' cell, found r={starts}, "
            f"g={goals}: pass the goal explicitly."
        )
    goal, start = carry(goals[0]), carry(starts[0])
    own = _cells(data_map, "g")
    if own and own != [goal]:
        raise ValueError(
            f"The data map's own goal cell {own} differs from the evaluation goal {goal} "
            f"(evaluation map {turn})."
        )
    return {"start_cell": start, "goal_cell": goal, "turn": turn}


def relabel_goal_rewards(
    td: TensorDict, goal_xy: Sequence[float], radius: float, *, terminate: bool = True
) -> TensorDict:
    """Sparse single-goal rewards: ``("next", "reward") = 1`` where ``next_obs[:, :2]`` lies
    within ``radius`` of ``goal_xy``, else ``0``; ``("next", "terminated")`` = that indicator
    (``terminate=True``) or unchanged. ``("next", "done")`` follows. Returns a new TensorDict.

    Example:
        >>> from torchrl_leq.data.buffers import make_transitions
        >>> td = make_transitions(np.zeros((2, 3)), np.zeros((2, 1)),
        ...                       np.array([[1.0, 1.2, 0.0], [3.0, 3.0, 0.0]]), np.zeros(2),
        ...                       np.zeros(2, bool), np.zeros(2, bool), np.zeros(2, int))
        >>> relabel_goal_rewards(td, (1.0, 1.0), 0.45)["next", "reward"].squeeze(-1).tolist()
        [1.0, 0.0]
    """
    nxt = td["next", "observation"][:, :2].double()
    goal = torch.as_tensor(list(goal_xy), dtype=torch.float64)
    hit = (torch.linalg.vector_norm(nxt - goal, dim=-1) <= radius).unsqueeze(-1)
    out = td.clone(False)
    out.set(("next", "reward"), hit.to(td["next", "reward"].dtype))
    if terminate:
        out.set(("next", "terminated"), hit.clone())
    out.set(("next", "done"), out["next", "terminated"] | out["next", "truncated"])
    return out


def _antmaze_setup(dataset_id: str, spec, eval_spec, termination_radius):
    data_map = spec.kwargs.get("maze_map")
    if data_map is None:
        raise ValueError(f"{dataset_id!r}: env_spec.kwargs has no maze_map.")
    cells = antmaze_eval_cells(data_map, eval_spec.kwargs.get("maze_map") if eval_spec else None)
    goal_xy = maze_cell_xy(data_map, cells["goal_cell"])
    walls = [[1 if c == 1 else 0 for c in row] for row in data_map]
    extra = {
        k: v
        for k, v in spec.kwargs.items()
        if k not in ("maze_map", "continuing_task", "reset_target")
    }
    factory = AntMazeEnvFactory(
        spec.id, walls, cells["start_cell"], goal_xy, int(spec.max_episode_steps or 1000), extra
    )
    radius = ANTMAZE_REWARD_RADIUS if termination_radius is None else float(termination_radius)
    name = dataset_id.split("/")[-1].rsplit("-v", 1)[0]
    return factory, {
        **cells,
        "goal_xy": goal_xy,
        "start_xy": maze_cell_xy(data_map, cells["start_cell"]),
        "reward_radius": ANTMAZE_REWARD_RADIUS,
        "termination_radius": radius,
        "env_id": spec.id,
        "max_episode_steps": factory.max_episode_steps,
        "score_task": f"antmaze-{name}",
        "task": f"antmaze-{name}",
    }


def _mujoco_setup(dataset_id: str, meta: dict, spec, eval_spec):
    use = eval_spec or spec
    factory = GymEnvFactory(use.id, use.max_episode_steps, dict(use.kwargs or {}))
    if meta.get("ref_min_score") is None or meta.get("ref_max_score") is None:
        raise ValueError(
            f"{dataset_id!r} records no ref_min_score / ref_max_score: cannot normalise scores."
        )
    _, env_name, level = dataset_id.split("/")[-3:] if dataset_id.count("/") >= 2 else ("", "", "")
    return factory, {
        "task": f"{env_name}-{level.rsplit('-v', 1)[0]}" if env_name else dataset_id,
        "env_id": use.id,
        "max_episode_steps": use.max_episode_steps,
        "reference_scores": (float(meta["ref_min_score"]), float(meta["ref_max_score"])),
    }


def _setup(dataset_id: str, root, termination_radius=None):
    meta = read_minari_metadata(dataset_id, root)
    spec, eval_spec = _spec(meta, "env_spec"), _spec(meta, "eval_env_spec")
    family = _family(dataset_id, spec)
    if family == "antmaze":
        factory, info = _antmaze_setup(dataset_id, spec, eval_spec, termination_radius)
    else:
        factory, info = _mujoco_setup(dataset_id, meta, spec, eval_spec)
    return meta, family, factory, info


def _space_width(meta: dict, key: str, keys: Sequence[str] | None) -> int:
    from minari.serialization import deserialize_space

    space = deserialize_space(meta[key])
    if keys is not None and isinstance(space, gym.spaces.Dict):
        return sum(int(np.prod(space[k].shape)) for k in keys)
    return int(gym.spaces.flatdim(space))


def check_minari_task(dataset_id: str, root: str | os.PathLike | None = None) -> dict[str, Any]:
    """Cheap checks before any heavy work: the dataset exists (one-line error naming
    ``minari download <id>`` and ``data.root``), its metadata names a supported env, and the
    observation / action widths of the data match the evaluation env. Returns the derived
    ``info`` (as :attr:`MinariTask.info`) plus ``observation_dim`` / ``action_dim``.

    Example:
        >>> check_minari_task("mujoco/hopper/medium-v0", root="/nonexistent")
        Traceback (most recent call last):
        ...
        FileNotFoundError: Minari dataset 'mujoco/hopper/medium-v0' not found ... data.root ...
    """
    meta, family, factory, info = _setup(dataset_id, root)
    keys = ANTMAZE_OBSERVATION_KEYS if family == "antmaze" else None
    obs_dim = _space_width(meta, "observation_space", keys)
    act_dim = _space_width(meta, "action_space", None)
    env = factory()
    try:
        env_obs = int(np.prod(env.observation_space.shape))
        env_act = int(np.prod(env.action_space.shape))
    finally:
        env.close()
    if (obs_dim, act_dim) != (env_obs, env_act):
        raise ValueError(
            f"{dataset_id!r}: data observation/action widths ({obs_dim}, {act_dim}) differ from "
            f"the evaluation env {info['env_id']!r} ({env_obs}, {env_act})."
        )
    return {**info, "family": family, "observation_dim": obs_dim, "action_dim": act_dim}


def minari_task_spec(
    dataset_id: str,
    root: str | os.PathLike | None = None,
    *,
    termination_radius: float | None = None,
) -> MinariTask:
    """What :func:`make_minari_task` derives from the dataset's *metadata* alone — evaluation env
    factory, world-model termination, reward transform, reference scores, ``info`` — without
    reading its episodes (``transitions`` is ``None``). The same values as the full task's; the
    examples' evaluator and model termination use it.

    Example:
        >>> spec = minari_task_spec("D4RL/antmaze/umaze-v1", "/data/minari")  # doctest: +SKIP
        >>> spec.goal_xy, spec.transitions  # doctest: +SKIP
        ((-4.0, 4.0), None)
    """
    meta, family, factory, info = _setup(dataset_id, root, termination_radius)
    if family == "antmaze":
        termination = goal_termination(info["goal_xy"], info["termination_radius"])
        return MinariTask(
            dataset_id, family, None, termination, factory, "maze",
            reference_scores(info["score_task"]), info,
        )
    return MinariTask(
        dataset_id, family, None, get_termination_fn(family), factory,
        _locomotion_reward_kind(dataset_id), info["reference_scores"], info,
    )


def _locomotion_reward_kind(dataset_id: str) -> str:
    # The released code keeps raw rewards for ``*-random`` data, scales the others.
    return "none" if dataset_id.rsplit("/", 1)[-1].startswith("random") else "locomotion"


def make_minari_task(
    dataset_id: str,
    root: str | os.PathLike | None = None,
    *,
    terminate_on_goal: bool = True,
    termination_radius: float | None = None,
    observation_keys: Sequence[str] | None = None,
) -> MinariTask:
    """Load ``dataset_id`` from the Minari ``root`` as a :class:`MinariTask` (module docstring).

    Example:
        >>> from torchrl_leq.training.evaluation import evaluate
        >>> task = make_minari_task("mujoco/hopper/medium-v0", "/data")  # doctest: +SKIP
        >>> refs = task.reference_scores  # doctest: +SKIP
        >>> evaluate(actor, task.env_factory, 10, reference_scores=refs)  # doctest: +SKIP
    """
    meta, family, factory, info = _setup(dataset_id, root, termination_radius)
    if family != "antmaze":
        td = read_minari(dataset_id, root, observation_keys=observation_keys)
        kind = _locomotion_reward_kind(dataset_id)
        return MinariTask(
            dataset_id,
            family,
            td,
            get_termination_fn(family),
            factory,
            kind,
            info["reference_scores"],
            info,
        )

    keys = tuple(observation_keys or ANTMAZE_OBSERVATION_KEYS)
    raw = read_minari(dataset_id, root, observation_keys=(*keys, "desired_goal"))
    width = raw["observation"].shape[-1] - 2
    td = raw.exclude("observation", ("next", "observation"))
    td.set("observation", raw["observation"][:, :width].contiguous())
    td.set(("next", "observation"), raw["next", "observation"][:, :width].contiguous())
    goals = raw["next", "observation"][:, width:].double()
    if keys[0] != "achieved_goal":
        raise ValueError("AntMaze tasks need 'achieved_goal' first in observation_keys (x, y).")
    dist = torch.linalg.vector_norm(td["next", "observation"][:, :2].double() - goals, dim=-1)
    expected = (dist <= ANTMAZE_REWARD_RADIUS).double()
    mismatch = float((expected != raw["next", "reward"].squeeze(-1).double()).double().mean())
    if mismatch > 1e-3:
        warnings.warn(
            f"{dataset_id!r}: {mismatch:.2%} of the raw rewards disagree with 'within "
            f"{ANTMAZE_REWARD_RADIUS} of desired_goal'; relabelling uses that radius anyway.",
            stacklevel=2,
        )
    first = torch.ones(len(td), dtype=torch.bool)
    first[1:] = td["episode"][1:] != td["episode"][:-1]
    info["episode_goal_cells"] = _goal_cells(goals[first], factory.maze_map)
    if len(info["episode_goal_cells"]) == 1 and info["episode_goal_cells"][0] != info["goal_cell"]:
        raise ValueError(
            f"{dataset_id!r}: every episode's goal lies in cell {info['episode_goal_cells'][0]}, "
            f"but the evaluation goal was carried to {info['goal_cell']}."
        )
    info["raw_reward_mismatch"] = mismatch
    td = relabel_goal_rewards(
        td, info["goal_xy"], ANTMAZE_REWARD_RADIUS, terminate=terminate_on_goal
    )
    termination = goal_termination(info["goal_xy"], info["termination_radius"])
    return MinariTask(
        dataset_id,
        "antmaze",
        td,
        termination,
        factory,
        "maze",
        reference_scores(info["score_task"]),
        info,
    )


def _goal_cells(goals: torch.Tensor, maze_map: Sequence[Sequence[Any]]) -> list[tuple[int, int]]:
    n_rows, n_cols, s = len(maze_map), len(maze_map[0]), MAZE_SIZE_SCALING
    rows = torch.floor((n_rows * s / 2 - goals[:, 1]) / s).long()
    cols = torch.floor((goals[:, 0] + n_cols * s / 2) / s).long()
    return sorted({(int(r), int(c)) for r, c in zip(rows.tolist(), cols.tolist())})


def _mujoco_inner(env: gym.Env):
    inner = env.unwrapped
    return getattr(inner, "ant_env", inner)


def replay_error(
    dataset_id: str,
    root: str | os.PathLike | None = None,
    *,
    episodes: int = 3,
    max_steps: int = 100,
) -> dict[str, float]:
    """Replay stored transitions in the collection env: set the simulator to the stored state
    (``infos["qpos"]`` / ``infos["qvel"]`` when recorded, else the observation itself: AntMaze's
    29 numbers are ``qpos, qvel``; MuJoCo's are ``qpos[1:], qvel`` with ``x = 0``, the dynamics
    do not depend on it), step the stored action, compare with the stored next observation.
    Hopper / Walker2d observations clip velocities to ±10, so without ``infos`` a step whose
    stored velocities reach the clip cannot be restored: it is skipped and counted.
    Returns ``max_abs`` / ``mean_abs`` (over steps and observation entries), ``steps`` and
    ``skipped``.

    Example:
        >>> replay_error("D4RL/antmaze/umaze-v1", root="/data/minari")["max_abs"]  # doctest: +SKIP
    """
    meta = read_minari_metadata(dataset_id, root)
    spec = _spec(meta, "env_spec")
    family = _family(dataset_id, spec)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*out of date.*")
        import torchrl_leq._robotics  # noqa: F401

        env = gym.make(spec)
    env.reset(seed=0)
    sim = _mujoco_inner(env)
    nq = sim.model.nq
    errors, skipped = [], 0
    for episode in _read_episodes(dataset_id, root)[:episodes]:
        obs = episode.observations
        flat = (
            np.concatenate([obs[k] for k in ANTMAZE_OBSERVATION_KEYS], -1)
            if family == "antmaze"
            else np.asarray(obs)
        )
        infos = episode.infos or {}
        for t in range(min(len(episode.actions), max_steps)):
            if "qpos" in infos and "qvel" in infos:
                qpos, qvel = infos["qpos"][t], infos["qvel"][t]
            elif family == "antmaze":
                qpos, qvel = flat[t, :nq], flat[t, nq:]
            else:
                qpos = np.concatenate([[0.0], flat[t, : nq - 1]])
                qvel = flat[t, nq - 1 :]
                if family in ("hopper", "walker2d") and np.abs(qvel).max() >= 10.0:
                    skipped += 1
                    continue
            sim.set_state(np.asarray(qpos, np.float64), np.asarray(qvel, np.float64))
            out = sim.step(np.asarray(episode.actions[t]))[0]
            errors.append(np.abs(np.asarray(out) - flat[t + 1]))
    env.close()
    if not errors:
        raise ValueError(f"{dataset_id!r}: no replayable step in the first {episodes} episodes.")
    err = np.stack(errors)
    return {
        "max_abs": float(err.max()),
        "mean_abs": float(err.mean()),
        "steps": len(errors),
        "skipped": skipped,
    }
