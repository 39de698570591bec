"""Datasets collected in the real simulator: a uniformly random policy in any gymnasium env with
array observations, written as a D4RL-format HDF5 file (``observations, actions, rewards,
terminals, timeouts, next_observations``) and cached under ``data_root()/smoke/``.

The examples' ``data.source=simulator`` (their ``smoke=true`` data): the real env's dynamics,
spaces and terminations at a few thousand steps. ``terminals`` are the env's ``terminated``,
``timeouts`` its ``truncated`` (and the cut at the end of the file); they never overlap.

Example:
    >>> path = generate_smoke_dataset("Hopper-v5", steps=50)
    >>> import h5py
    >>> with h5py.File(path) as f:
    ...     f["observations"].shape, bool(f["timeouts"][-1])
    ((50, 11), True)
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

from torchrl_leq.data.generate import data_root

__all__ = ["D4RL_KEYS", "smoke_dataset_path", "generate_smoke_dataset"]

D4RL_KEYS = ("observations", "actions", "rewards", "terminals", "timeouts", "next_observations")


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
