"""Minari datasets → TensorDict transitions / replay buffers, via ``minari`` itself.

TorchRL 0.14.1's ``MinariExperienceReplay`` returns all-zero tensors (it calls
``memmap_like`` on the filled TensorDict), so we read episodes with the Minari API instead.
Minari stores ``T + 1`` observations per ``T``-step episode, so every transition has its
recorded next observation. Dict observations are reduced to one array by ``observation_keys``
(an ordered list of entries, concatenated in that order: AntMaze's D4RL layout is
``("achieved_goal", "observation")``), by ``observation_key`` (one entry) or, when both are
``None``, by concatenating all leaves in sorted key order.

:func:`read_minari_metadata` reads ``data/metadata.json`` (env specs, reference scores) without
touching the episodes, and :func:`require_minari_dataset` is the one-line "dataset missing"
check to run before any heavy work.

Example:
    >>> rb = load_minari("D4RL/pointmaze/umaze-v2", observation_key="observation")  # doctest: +SKIP
    >>> td = read_minari("D4RL/pointmaze/umaze-v2", observation_key="observation")  # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tensordict import TensorDict
from torchrl.data import TensorDictReplayBuffer
from torchrl.data.replay_buffers.samplers import Sampler

from torchrl_leq.data.buffers import make_replay_buffer, make_transitions

__all__ = [
    "minari_root",
    "minari_dataset_path",
    "require_minari_dataset",
    "read_minari_metadata",
    "read_minari",
    "load_minari",
    "minari_root_env",
]


def minari_root(root: str | os.PathLike | None = None) -> Path:
    """The Minari datasets directory: ``root``, else ``$MINARI_DATASETS_PATH``, else
    ``~/.minari/datasets`` (Minari's own default)."""
    if root is None:
        root = os.environ.get("MINARI_DATASETS_PATH", Path("~/.minari/datasets"))
    return Path(root).expanduser()


def minari_dataset_path(dataset_id: str, root: str | os.PathLike | None = None) -> Path:
    """Directory of ``dataset_id`` under :func:`minari_root` (it holds ``data/``)."""
    return minari_root(root) / dataset_id


@contextlib.contextmanager
def minari_root_env(root: str | os.PathLike) -> Iterator[None]:
    """Point ``$MINARI_DATASETS_PATH`` at ``root`` for the duration (Minari's writers read it)."""
    old = os.environ.get("MINARI_DATASETS_PATH")
    os.environ["MINARI_DATASETS_PATH"] = str(Path(root).expanduser())
    try:
        yield
    finally:
        if old is None:
            del os.environ["MINARI_DATASETS_PATH"]
        else:
            os.environ["MINARI_DATASETS_PATH"] = old


def _flatten_obs(obs: Any, key: str | None) -> np.ndarray:
    if isinstance(obs, Mapping):
        if key is not None:
            if key not in obs:
                raise KeyError(f"observation_key {key!r} not in observation keys {sorted(obs)}")
            return _flatten_obs(obs[key], None)
        parts = [_flatten_obs(obs[k], None) for k in sorted(obs)]
        return np.concatenate([p.reshape(p.shape[0], -1) for p in parts], axis=-1)
    if isinstance(obs, (tuple, list)):
        parts = [_flatten_obs(o, None) for o in obs]
        return np.concatenate([p.reshape(p.shape[0], -1) for p in parts], axis=-1)
    obs = np.asarray(obs)
    return obs.reshape(obs.shape[0], -1)


def _select_obs(obs: Any, keys: Sequence[str] | None, key: str | None) -> np.ndarray:
    if keys is None:
        return _flatten_obs(obs, key)
    if not isinstance(obs, Mapping):
        raise ValueError(
            f"observation_keys={list(keys)} needs dict observations; this dataset stores "
            f"{type(obs).__name__} observations (drop observation_keys)."
        )
    return np.concatenate([_flatten_obs(obs, k) for k in keys], axis=-1)


def require_minari_dataset(dataset_id: str, root: str | os.PathLike | None = None) -> Path:
    """The dataset's ``data/`` directory, or a one-line ``FileNotFoundError`` saying how to get it.

    Example:
        >>> require_minari_dataset("D4RL/antmaze/umaze-v1", root="/nonexistent")
        Traceback (most recent call last):
        ...
        FileNotFoundError: Minari dataset 'D4RL/antmaze/umaze-v1' not found ... data.root ...
    """
    data_path = minari_dataset_path(dataset_id, root) / "data"
    if not data_path.is_dir():
        raise FileNotFoundError(
            f"Minari dataset {dataset_id!r} not found in {str(data_path)!r}: run "
            f"`minari download {dataset_id}` (needs internet; MINARI_DATASETS_PATH=<root> to "
            "download into <root>) or point data.root at the directory holding it (searched "
            f"root {str(minari_root(root))!r})."
        )
    return data_path


def read_minari_metadata(dataset_id: str, root: str | os.PathLike | None = None) -> dict:
    """The dataset's ``data/metadata.json`` as a dict (``env_spec`` / ``eval_env_spec`` are JSON
    strings, as Minari stores them; ``ref_min_score`` / ``ref_max_score`` when recorded).

    Example:
        >>> meta = read_minari_metadata("mujoco/hopper/medium-v0")  # doctest: +SKIP
        >>> meta["ref_min_score"], meta["ref_max_score"]  # doctest: +SKIP
    """
    path = require_minari_dataset(dataset_id, root) / "metadata.json"
    if not path.is_file():
        raise FileNotFoundError(
            f"{str(path)!r} is missing: {dataset_id!r} is not a complete Minari dataset "
            f"(re-download it with `minari download {dataset_id}`)."
        )
    try:
        return json.loads(path.read_text())
    except ValueError as err:
        raise OSError(f"Cannot parse {str(path)!r} as JSON (corrupt?): {err}") from err


def _read_episodes(dataset_id: str, root: str | os.PathLike | None) -> list:
    from minari import MinariDataset

    data_path = require_minari_dataset(dataset_id, root)
    try:
        dataset = MinariDataset(str(data_path))
        episodes = list(dataset.iterate_episodes())
    except (OSError, KeyError, ValueError) as err:
        raise OSError(
            f"Cannot read Minari dataset at {str(data_path)!r} (corrupt?): {err}"
        ) from err
    if not episodes:
        raise ValueError(f"Minari dataset {dataset_id!r} at {str(data_path)!r} has no episodes.")
    return episodes


def read_minari(
    dataset_id: str,
    root: str | os.PathLike | None = None,
    observation_key: str | None = None,
    *,
    observation_keys: Sequence[str] | None = None,
) -> TensorDict:
    """Read every episode of a local Minari dataset into a transition TensorDict.

    ``observation_keys`` (ordered) takes precedence over ``observation_key``.

    Example:
        >>> td = read_minari("D4RL/antmaze/umaze-v1",
        ...                  observation_keys=("achieved_goal", "observation"))  # doctest: +SKIP
        >>> td["observation"].shape[-1]  # doctest: +SKIP
        29
    """
    if observation_keys is not None:
        observation_keys = [str(k) for k in observation_keys]
        if not observation_keys:
            raise ValueError("observation_keys must name at least one observation entry.")
    episodes = _read_episodes(dataset_id, root)
    obs, next_obs, act, rew, term, trunc, ep = [], [], [], [], [], [], []
    for i, episode in enumerate(episodes):
        o = _select_obs(episode.observations, observation_keys, observation_key)
        t = len(episode.rewards)
        obs.append(o[:t])
        next_obs.append(o[1 : t + 1])
        act.append(_flatten_obs(episode.actions, None))
        rew.append(np.asarray(episode.rewards).reshape(t))
        term.append(np.asarray(episode.terminations).reshape(t))
        trunc.append(np.asarray(episode.truncations).reshape(t))
        ep.append(np.full(t, i))
    return make_transitions(
        *(np.concatenate(x) for x in (obs, act, next_obs, rew, term, trunc, ep))
    )


def load_minari(
    dataset_id: str,
    root: str | os.PathLike | None = None,
    observation_key: str | None = None,
    batch_size: int = 256,
    sampler: Sampler | None = None,
    device: torch.device | str | None = None,
) -> TensorDictReplayBuffer:
    """Replay buffer over :func:`read_minari`'s transitions (``buffer[:]`` gives them all).

    Example:
        >>> rb = load_minari("mujoco/hopper/medium-v0", batch_size=256)  # doctest: +SKIP
    """
    td = read_minari(dataset_id, root, observation_key)
    return make_replay_buffer(td, batch_size, sampler, device)
