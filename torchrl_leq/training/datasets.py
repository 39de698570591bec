"""Datasets of the D4RL examples: a clear error when a file is missing, and tiny smoke datasets.

- :func:`check_dataset`: before anything heavy, ``data.source=d4rl_hdf5`` with a missing
  ``data.path`` raises a one-line ``FileNotFoundError`` naming the expected path, how to get the
  file, the Minari alternative and ``smoke=true``.
- :func:`generate_smoke_dataset`: a few thousand steps of a uniformly random policy in the REAL
  simulator (``Hopper-v5``, the AntMaze layout env, ...), written in D4RL's HDF5 format
  (``observations, actions, rewards, terminals, timeouts, next_observations``) and cached under
  ``data_root()/smoke/``. ``terminals`` are the env's ``terminated``, ``timeouts`` its
  ``truncated`` (and the cut at the end of the file); they never overlap.
- :func:`prepare_example_data`: what the example scripts call before ``run_example``: in smoke
  mode generate the file from the ``smoke_data`` config node and point ``data`` at it,
  otherwise check that the dataset and an evaluation env are there.

Example:
    >>> path = generate_smoke_dataset("Hopper-v5", steps=2000)  # doctest: +SKIP
    >>> read_d4rl_hdf5(path)["observation"].shape  # doctest: +SKIP
    torch.Size([2000, 11])
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import gymnasium as gym
import h5py
import numpy as np
from omegaconf import DictConfig, OmegaConf, open_dict

from torchrl_leq.data import data_root

from .builders import _get

__all__ = [
    "D4RL_DATASET_URL",
    "D4RL_KEYS",
    "check_dataset",
    "check_eval_env",
    "missing_dataset_message",
    "smoke_dataset_path",
    "generate_smoke_dataset",
    "prepare_example_data",
]
D4RL_DATASET_URL = "http://rail.eecs.berkeley.edu/datasets/offline_rl"
"""D4RL's server: ``gym_mujoco_v2/<env>_<dataset>-v2.hdf5``, ``ant_maze_v2/Ant_maze_*.hdf5``."""

D4RL_KEYS = ("observations", "actions", "rewards", "terminals", "timeouts", "next_observations")


def _download_hint(path: Path) -> str:
    name = path.name
    if name.startswith("Ant_maze_"):
        return f"{D4RL_DATASET_URL}/ant_maze_v2/{name}"
    if name.split("_")[0] in ("hopper", "walker2d", "halfcheetah") and name.endswith("-v2.hdf5"):
        return f"{D4RL_DATASET_URL}/gym_mujoco_v2/{name}"
    return f"D4RL's server ({D4RL_DATASET_URL}/)"


def missing_dataset_message(path: str | os.PathLike, task: str | None = None) -> str:
    """The one-line message of :func:`check_dataset`."""
    path = Path(path).expanduser()
    d4rl_id = f"{task}-v2" if task else "<task>-v2"
    return (
        f"D4RL dataset{f' for {task!r}' if task else ''} not found: expected {str(path)!r}. "
        f"Download it from {_download_hint(path)} (or let the `d4rl` package fetch it into "
        f"~/.d4rl/datasets: gym.make('{d4rl_id}').get_dataset()), or pass data.path=<file>; "
        "or use a local Minari dataset: data.source=minari data.dataset_id=<id> "
        "data.root=<dir>. smoke=true runs without it (a tiny dataset generated with the "
        "simulator)."
    )


def check_dataset(data_cfg: Any, task: str | None = None) -> None:
    """Raise a one-line ``FileNotFoundError`` when ``data_cfg.source == "d4rl_hdf5"`` and
    ``data_cfg.path`` is not a file. Other sources are checked by their loaders.

    Example:
        >>> check_dataset({"source": "d4rl_hdf5", "path": "/nowhere/hopper_medium-v2.hdf5"})
        Traceback (most recent call last):
        ...
        FileNotFoundError: D4RL dataset not found: expected '/nowhere/hopper_medium-v2.hdf5'...
    """
    if _get(data_cfg, "source") != "d4rl_hdf5":
        return
    path = _get(data_cfg, "path")
    if not path:
        raise ValueError("data.path must point to a D4RL-format HDF5 file for source=d4rl_hdf5.")
    if not Path(str(path)).expanduser().is_file():
        raise FileNotFoundError(missing_dataset_message(str(path), task))


def check_eval_env(cfg: Any) -> None:
    """Fail fast (before the world model) when a non-point-maze task has no ``eval.env_id``."""
    if _get(_get(cfg, "data"), "source") == "pointmaze":
        return
    if _get(_get(cfg, "eval"), "env_id") is None:
        raise ValueError(
            f"eval.env_id is not set for task {_get(cfg, 'task')!r}: name a gymnasium env with "
            "the dataset's observation layout and frame. D4RL AntMaze needs D4RL's own env "
            "(d4rl + mujoco-py), which is not installed here; see docs/antmaze.md."
        )


def smoke_dataset_path(
    env_id: str,
    steps: int,
    seed: int = 0,
    env_kwargs: Mapping[str, Any] | None = None,
    root: str | os.PathLike | None = None,
) -> Path:
    """Cache path ``data_root(root)/smoke/<env>-<kwargs hash>-s<seed>-n<steps>.hdf5``."""
    kwargs = dict(env_kwargs or {})
    digest = hashlib.sha256(json.dumps(kwargs, sort_keys=True, default=str).encode()).hexdigest()
    name = env_id.split(":")[-1].replace("/", "_")
    return data_root(root) / "smoke" / f"{name}-{digest[:8]}-s{seed}-n{steps}.hdf5"


def _collect(env: gym.Env, steps: int, seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    space = env.action_space
    env.action_space.seed(seed)
    obs, _ = env.reset(seed=seed)
    out: dict[str, list] = {k: [] for k in D4RL_KEYS}
    episode = 0
    for _ in range(steps):
        action = rng.uniform(space.low, space.high).astype(np.float32)
        next_obs, reward, terminated, truncated, _ = env.step(action)
        out["observations"].append(obs)
        out["actions"].append(action)
        out["rewards"].append(reward)
        out["terminals"].append(bool(terminated))
        out["timeouts"].append(bool(truncated) and not terminated)
        out["next_observations"].append(next_obs)
        obs = next_obs
        if terminated or truncated:
            episode += 1
            obs, _ = env.reset(seed=seed + episode)
    data = {
        "observations": np.asarray(out["observations"], dtype=np.float32),
        "actions": np.asarray(out["actions"], dtype=np.float32),
        "rewards": np.asarray(out["rewards"], dtype=np.float32),
        "terminals": np.asarray(out["terminals"], dtype=bool),
        "timeouts": np.asarray(out["timeouts"], dtype=bool),
        "next_observations": np.asarray(out["next_observations"], dtype=np.float32),
    }
    # The file ends mid-episode: mark the cut as a timeout (not terminal), as D4RL does.
    if not data["terminals"][-1]:
        data["timeouts"][-1] = True
    return data


def generate_smoke_dataset(
    env_id: str,
    path: str | os.PathLike | None = None,
    *,
    steps: int = 3000,
    seed: int = 0,
    env_kwargs: Mapping[str, Any] | None = None,
    overwrite: bool = False,
) -> Path:
    """Run a uniformly random policy for ``steps`` steps in ``gym.make(env_id, **env_kwargs)``
    (array observations) and write a D4RL-format HDF5 file; returns its path (default
    :func:`smoke_dataset_path`). An existing file is reused unless ``overwrite``."""
    if steps < 2:
        raise ValueError(f"steps must be >= 2, got {steps}.")
    env_kwargs = dict(env_kwargs or {})
    path = (
        Path(path).expanduser()
        if path is not None
        else smoke_dataset_path(env_id, steps, seed, env_kwargs)
    )
    if path.is_file() and not overwrite:
        return path
    env = gym.make(env_id, **env_kwargs)
    try:
        if not isinstance(env.observation_space, gym.spaces.Box):
            raise TypeError(
                f"{env_id} has {type(env.observation_space).__name__} observations; the smoke "
                "dataset needs a flat Box (wrap dict observations, e.g. the AntMaze layout env)."
            )
        data = _collect(env, int(steps), int(seed))
    finally:
        env.close()
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-smoke-", suffix=".hdf5", dir=path.parent)
    os.close(fd)
    try:
        with h5py.File(tmp, "w") as f:
            for key in D4RL_KEYS:
                f.create_dataset(key, data=data[key])
            f.attrs["env_id"] = env_id
            f.attrs["env_kwargs"] = json.dumps(env_kwargs, sort_keys=True, default=str)
            f.attrs["policy"] = "uniform random"
            f.attrs["seed"] = int(seed)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return path


def prepare_example_data(cfg: DictConfig) -> DictConfig:
    """The D4RL example scripts' ``prepare`` step: ``run_example(cfg, prepare_example_data)``.

    ``smoke=true``: generate (or reuse) the smoke dataset described by ``cfg.smoke_data``
    (``env_id``, ``env_kwargs``, ``steps``, ``seed``; read after merging ``smoke_overrides``)
    and set ``data.source=d4rl_hdf5``, ``data.path=<file>``. Otherwise check the dataset
    (:func:`check_dataset`) and the evaluation env (:func:`check_eval_env`); user errors are
    raised (``run_example`` turns them into one ``error: ...`` line and exit status 2)."""
    smoke = bool(cfg.get("smoke", False))
    if smoke and cfg.get("smoke_data") is not None:
        view = OmegaConf.create(OmegaConf.to_container(cfg))  # a copy without struct
        if view.get("smoke_overrides") is not None:
            view = OmegaConf.merge(view, view.smoke_overrides)
        spec = OmegaConf.to_container(view.smoke_data, resolve=True)
        path = generate_smoke_dataset(
            str(spec["env_id"]),
            steps=int(spec.get("steps", 3000)),
            seed=int(spec.get("seed", 0)),
            env_kwargs=spec.get("env_kwargs") or {},
        )
        with open_dict(cfg):
            cfg.data.source = "d4rl_hdf5"
            cfg.data.path = str(path)
    elif not smoke:
        check_dataset(cfg.get("data"), cfg.get("task"))
        check_eval_env(cfg)
    return cfg
