"""D4RL-format HDF5 files → TensorDict transitions / replay buffers (no ``d4rl`` needed).

A D4RL file holds flat arrays ``observations``, ``actions``, ``rewards``, ``terminals``,
optionally ``timeouts`` and ``next_observations``. ``terminals`` become
``("next", "terminated")`` and ``timeouts`` ``("next", "truncated")``: they stay apart, since
bootstrapping depends on the difference.

Next observations: ``next_observations`` when the file has them; otherwise ``observations[i+1]``
inside an episode. The last transition of an episode that ends by timeout (or by the end of the
file) has no recorded next state and is dropped, never zero-filled. A terminal transition
without ``next_observations`` keeps its reward and termination flag (they matter for the critic,
which does not bootstrap there); its ``("next", "observation")`` is a copy of its own
observation, a placeholder. Such rows get ``"model_trainable" = False``: the world model must
not regress them (it would learn "Δs = 0, reward 0" at the goal); :func:`world_model_rows` /
:func:`world_model_transitions` give the rows it may train on. The released pipeline
(OfflineRL-Kit's ``qlearning_dataset``) drops them from its model data likewise.

Users with ``d4rl`` installed can still use TorchRL's own
``torchrl.data.datasets.D4RLExperienceReplay`` (``from_env=True``); note that it zeroes
``("next", "observation")`` where ``done`` is set.

Example:
    >>> rb = load_d4rl_hdf5("hopper_medium-v2.hdf5", batch_size=256)  # doctest: +SKIP
    >>> rb.sample()["next", "reward"].shape  # doctest: +SKIP
    torch.Size([256, 1])
"""

from __future__ import annotations

import os
from pathlib import Path

import h5py
import numpy as np
import torch
from tensordict import TensorDict
from torchrl.data import TensorDictReplayBuffer
from torchrl.data.replay_buffers.samplers import Sampler

from torchrl_leq.data.buffers import make_replay_buffer, make_transitions

__all__ = [
    "read_d4rl_hdf5",
    "load_d4rl_hdf5",
    "world_model_rows",
    "world_model_transitions",
    "REQUIRED_D4RL_KEYS",
]

REQUIRED_D4RL_KEYS = ("observations", "actions", "rewards", "terminals")
_HOW_TO_GET = (
    "D4RL files are downloaded by `d4rl` to ~/.d4rl/datasets (e.g. "
    "`python -c \"import gym, d4rl; gym.make('hopper-medium-v2').get_dataset()\"`), "
    "or generate a local maze dataset with `python -m torchrl_leq.data.generate`."
)


def read_d4rl_hdf5(path: str | os.PathLike) -> TensorDict:
    """Read a D4RL-format HDF5 file into a transition TensorDict (see :mod:`.buffers`).

    Example:
        >>> td = read_d4rl_hdf5("walker2d_medium-v2.hdf5")  # doctest: +SKIP
        >>> td["next", "truncated"].dtype  # doctest: +SKIP
        torch.bool
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"D4RL HDF5 file not found: {str(path)!r}. {_HOW_TO_GET}")
    try:
        with h5py.File(path, "r") as f:
            missing = [k for k in REQUIRED_D4RL_KEYS if k not in f]
            if missing:
                raise KeyError(
                    f"{str(path)!r} lacks required D4RL keys {missing}; "
                    f"found {sorted(f.keys())}, need {list(REQUIRED_D4RL_KEYS)} "
                    "(+ optional 'timeouts', 'next_observations')."
                )
            data = {
                k: f[k][()]
                for k in (*REQUIRED_D4RL_KEYS, "timeouts", "next_observations")
                if k in f
            }
    except OSError as err:
        raise OSError(f"Cannot read {str(path)!r} as HDF5 (corrupt or not HDF5): {err}") from err

    obs = np.asarray(data["observations"])
    n = obs.shape[0]
    lengths = {k: np.asarray(v).shape[0] for k, v in data.items()}
    if any(v != n for v in lengths.values()):
        raise ValueError(f"{str(path)!r}: arrays have different lengths {lengths}.")
    if n == 0:
        raise ValueError(f"{str(path)!r} holds no transitions.")

    terminals = np.asarray(data["terminals"]).astype(bool).reshape(n)
    timeouts = np.asarray(data.get("timeouts", np.zeros(n))).astype(bool).reshape(n)
    timeouts &= ~terminals  # a terminal step is terminated, whatever the time limit says
    # Episode ends: terminal, timeout, or the end of the file.
    ends = terminals | timeouts
    ends[-1] = True
    episode = np.concatenate([[0], np.cumsum(ends[:-1])])
    truncated = ends & ~terminals  # includes the end-of-file cut

    if "next_observations" in data:
        next_obs = np.asarray(data["next_observations"])
        keep = np.ones(n, dtype=bool)
        trainable = np.ones(n, dtype=bool)
    else:
        next_obs = np.empty_like(obs)
        next_obs[:-1] = obs[1:]
        next_obs[terminals] = obs[terminals]  # placeholder: no true next state recorded
        keep = ~truncated  # no recorded next state after a timeout / end of file
        trainable = ~terminals

    td = make_transitions(
        obs[keep],
        np.asarray(data["actions"])[keep],
        next_obs[keep],
        np.asarray(data["rewards"]).reshape(n)[keep],
        terminals[keep],
        truncated[keep],
        episode[keep],
    )
    if td.shape[0] == 0:
        raise ValueError(f"{str(path)!r}: no transition has a next observation.")
    td.set("model_trainable", torch.as_tensor(trainable[keep]))
    return td


def world_model_rows(td: TensorDict) -> torch.Tensor:
    """Bool mask ``[N]`` of the transitions a world model may regress: ``"model_trainable"``
    when present (False on terminal rows of D4RL files without ``next_observations``), else
    all True.

    Example:
        >>> td = TensorDict({"model_trainable": torch.tensor([True, False])}, [2])
        >>> world_model_rows(td).tolist()
        [True, False]
    """
    if "model_trainable" in td.keys():
        return td["model_trainable"].reshape(td.shape[0]).bool()
    return torch.ones(td.shape[0], dtype=torch.bool)


def world_model_transitions(td: TensorDict) -> TensorDict:
    """The rows of ``td`` selected by :func:`world_model_rows` (the world model's training set;
    the critic keeps all rows).

    Example:
        >>> td = TensorDict({"model_trainable": torch.tensor([True, False, True])}, [3])
        >>> world_model_transitions(td).shape
        torch.Size([2])
    """
    mask = world_model_rows(td)
    return td if bool(mask.all()) else td[mask]


def load_d4rl_hdf5(
    path: str | os.PathLike,
    batch_size: int = 256,
    sampler: Sampler | None = None,
    device: torch.device | str | None = None,
) -> TensorDictReplayBuffer:
    """Replay buffer over :func:`read_d4rl_hdf5`'s transitions (``buffer[:]`` gives them all).

    Example:
        >>> rb = load_d4rl_hdf5("antmaze-umaze-v2.hdf5", batch_size=512)  # doctest: +SKIP
    """
    return make_replay_buffer(read_d4rl_hdf5(path), batch_size, sampler, device)
