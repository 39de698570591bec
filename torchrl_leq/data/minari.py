"""Minari datasets → TensorDict transitions / replay buffers, via ``minari`` itself.

TorchRL 0.14.1's ``MinariExperienceReplay`` returns all-zero tensors (it calls
``memmap_like`` on the filled TensorDict), so we read episodes with the Minari API instead.
Minari stores ``T + 1`` observations per ``T``-step episode, so every transition has its
recorded next observation. Dict observations are reduced to one array by ``observation_key``
(e.g. ``"observation"``) or, when it is ``None``, by concatenating all leaves in sorted key order.

Example:
    >>> rb = load_minari("D4RL/pointmaze/umaze-v2", observation_key="observation")  # doctest: +SKIP
    >>> td = read_minari("D4RL/pointmaze/umaze-v2", observation_key="observation")  # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tensordict import TensorDict
from torchrl.data import TensorDictReplayBuffer
from torchrl.data.replay_buffers.samplers import Sampler

from torchrl_leq.data.buffers import make_replay_buffer, make_transitions

__all__ = ["minari_root", "minari_dataset_path", "read_minari", "load_minari", "minari_root_env"]


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


def read_minari(
    dataset_id: str,
    root: str | os.PathLike | None = None,
    observation_key: str | None = None,
) -> TensorDict:
    """Read every episode of a local Minari dataset into a transition TensorDict.

    Example:
        >>> td = read_minari("torchrl_leq/pointmaze-umaze/diverse-s0-n10000-v0",
        ...                  root="~/.cache/torchrl_leq/minari")  # doctest: +SKIP
    """
    from minari import MinariDataset

    path = minari_dataset_path(dataset_id, root)
    data_path = path / "data"
    if not data_path.is_dir():
        raise FileNotFoundError(
            f"Minari dataset {dataset_id!r} not found: looked in {str(data_path)!r} "
            f"(root {str(minari_root(root))!r}). Download it with `minari download {dataset_id}` "
            "(needs internet), pass root=..., or generate a local maze dataset with "
            "`python -m torchrl_leq.data.generate pointmaze-umaze`."
        )
    try:
        dataset = MinariDataset(str(data_path))
        episodes = list(dataset.iterate_episodes())
    except (OSError, KeyError, ValueError) as err:
        raise OSError(
            f"Cannot read Minari dataset at {str(data_path)!r} (corrupt?): {err}"
        ) from err
    if not episodes:
        raise ValueError(f"Minari dataset {dataset_id!r} at {str(data_path)!r} has no episodes.")

    obs, next_obs, act, rew, term, trunc, ep = [], [], [], [], [], [], []
    for i, episode in enumerate(episodes):
        o = _flatten_obs(episode.observations, observation_key)
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
