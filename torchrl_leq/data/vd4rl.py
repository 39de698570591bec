"""V-D4RL episode files (the 64 px ``*.npz`` format of Offline DV2) → TensorDicts.

V-D4RL (Lu et al., 2023) releases each dataset as a folder of episodes,
``vd4rl_data/main/<env>/<quality>/64px/<timestamp>-<hex id>-<length>.npz``, one file per
episode (``np.savez_compressed``; ``length = len(action)``), in DreamerV2's layout: ``T + 1``
rows (501 for DMC), row ``t`` holding

* ``image`` uint8 ``[T+1, 64, 64, 3]`` — the frame ``x_t``;
* ``action`` float ``[T+1, A]`` — the action ``a_{t-1}`` that led to ``x_t`` (zeros at row 0);
* ``reward`` ``[T+1]`` — the reward of that transition (0 at row 0); ``discount`` ``[T+1]``;
* ``is_first``, ``is_last``, ``is_terminal`` bool ``[T+1]`` (older files lack ``is_terminal``:
  it is then ``discount == 0``, as in V-D4RL's own loader).

:func:`read_vd4rl` keeps that sequence layout (frames channel-first) for world-model training;
:func:`vd4rl_transitions` turns it into TorchRL's transition layout. :func:`write_vd4rl_episode`
writes the same format (used by the rendered point-maze cache and the tests).

Example:
    >>> import tempfile, numpy as np
    >>> d = tempfile.mkdtemp()
    >>> ep = {"image": np.zeros((3, 64, 64, 3), np.uint8), "action": np.ones((3, 2), np.float32),
    ...       "reward": np.array([0.0, 1.0, 2.0], np.float32)}
    >>> _ = write_vd4rl_episode(d, ep, index=0)
    >>> td = read_vd4rl(d)
    >>> td["pixels"].shape, td["is_first"].tolist()
    (torch.Size([3, 3, 64, 64]), [True, False, False])
    >>> vd4rl_transitions(td)["next", "reward"].tolist()
    [[1.0], [2.0]]
"""

from __future__ import annotations

import datetime
import io
import os
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tensordict import TensorDict

__all__ = [
    "write_vd4rl_episode",
    "read_vd4rl_episodes",
    "read_vd4rl",
    "transition_indices",
    "vd4rl_transitions",
]

_REQUIRED = ("image", "action", "reward")


def write_vd4rl_episode(
    directory: str | os.PathLike, episode: dict[str, Any], *, index: int | None = None
) -> Path:
    """Write one episode as V-D4RL/DreamerV2 ``<timestamp>-<id>-<length>.npz``; returns its path.

    ``episode`` needs ``image`` ``[T+1, 64, 64, 3]`` uint8, ``action`` ``[T+1, A]``, ``reward``
    ``[T+1]``; missing ``discount`` (ones), ``is_first`` (row 0), ``is_last`` (last row),
    ``is_terminal`` (none) are filled in. ``index`` makes the id ``index`` in 32 hex digits
    (files then sort in index order, as V-D4RL's loader expects); default: a random uuid.
    """
    for key in _REQUIRED:
        if key not in episode:
            raise ValueError(f"episode is missing {key!r} (needs {', '.join(_REQUIRED)})")
    n = len(episode["action"])
    ep = {k: np.asarray(v) for k, v in episode.items()}
    ep.setdefault("discount", np.ones(n, np.float32))
    ep.setdefault("is_first", np.arange(n) == 0)
    ep.setdefault("is_last", np.arange(n) == n - 1)
    ep.setdefault("is_terminal", np.zeros(n, bool))
    for key, value in ep.items():
        if len(value) != n:
            raise ValueError(f"episode[{key!r}] has {len(value)} rows, action has {n}")
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    stamp = datetime.datetime.now().strftime("%Y%m%dT%H%M%S")
    ident = uuid.uuid4().hex if index is None else f"{index:032x}"
    path = directory / f"{stamp}-{ident}-{n}.npz"
    with io.BytesIO() as buf:
        np.savez_compressed(buf, **ep)
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_bytes(buf.getvalue())
    os.replace(tmp, path)
    return path


def read_vd4rl_episodes(directory: str | os.PathLike) -> list[dict[str, np.ndarray]]:
    """Every ``*.npz`` episode of a V-D4RL folder, sorted by file name (i.e. by time)."""
    directory = Path(directory).expanduser()
    if not directory.is_dir():
        raise FileNotFoundError(
            f"V-D4RL folder {str(directory)!r} not found: download the dataset (e.g. "
            "vd4rl_data/main/walker_walk/medium_replay/64px from huggingface.co/datasets/conglu/"
            "vd4rl) and pass its 64px folder."
        )
    files = sorted(directory.glob("*.npz"))
    if not files:
        raise FileNotFoundError(f"no *.npz episode files in {str(directory)!r}")
    episodes = []
    for f in files:
        with np.load(f) as data:
            ep = {k: data[k] for k in data.files}
        missing = [k for k in _REQUIRED if k not in ep]
        if missing:
            raise ValueError(f"{f.name} lacks {missing}: not a V-D4RL 64px episode file")
        if "is_terminal" not in ep:
            ep["is_terminal"] = ep["discount"] == 0.0
        episodes.append(ep)
    return episodes


def read_vd4rl(directory: str | os.PathLike) -> TensorDict:
    """All episodes of a V-D4RL folder as one sequence TensorDict ``[N]`` (rows concatenated).

    Keys: ``pixels`` uint8 ``[N, 3, 64, 64]``, ``action`` ``[N, A]`` (previous action),
    ``reward``, ``discount`` float32 ``[N]``, ``is_first``, ``is_last``, ``is_terminal`` bool
    ``[N]``, ``episode`` int64 ``[N]``. Row 0 of every episode is forced ``is_first``.
    """
    episodes = read_vd4rl_episodes(directory)
    cols: dict[str, list[np.ndarray]] = {
        k: [] for k in ("pixels", "action", "reward", "discount", "is_first", "is_last",
                        "is_terminal", "episode")
    }
    for i, ep in enumerate(episodes):
        image = ep["image"]
        if image.ndim != 4 or image.shape[-1] != 3:
            raise ValueError(f"episode {i}: image must be [T+1, H, W, 3], got {image.shape}")
        n = len(image)
        first = np.asarray(ep.get("is_first", np.arange(n) == 0), bool).copy()
        first[0] = True
        cols["pixels"].append(np.ascontiguousarray(image.transpose(0, 3, 1, 2)))
        cols["action"].append(np.asarray(ep["action"], np.float32).reshape(n, -1))
        cols["reward"].append(np.asarray(ep["reward"], np.float32).reshape(n))
        cols["discount"].append(np.asarray(ep.get("discount", np.ones(n)), np.float32))
        cols["is_first"].append(first)
        cols["is_last"].append(np.asarray(ep.get("is_last", np.arange(n) == n - 1), bool))
        cols["is_terminal"].append(np.asarray(ep["is_terminal"], bool).reshape(n))
        cols["episode"].append(np.full(n, i, np.int64))
    data = {k: torch.from_numpy(np.concatenate(v)) for k, v in cols.items()}
    return TensorDict(data, batch_size=[len(data["reward"])])


def transition_indices(sequences: TensorDict) -> tuple[torch.Tensor, torch.Tensor]:
    """Row pairs ``(t, t + 1)`` of the sequence layout that are one transition (same episode,
    row ``t + 1`` not ``is_first``).

    Example:
        >>> td = TensorDict({"episode": torch.tensor([0, 0, 0, 1, 1]),
        ...                  "is_first": torch.tensor([True, False, False, True, False])}, [5])
        >>> [x.tolist() for x in transition_indices(td)]
        [[0, 1, 3], [1, 2, 4]]
    """
    episode = sequences["episode"]
    valid = (episode[1:] == episode[:-1]) & ~sequences["is_first"][1:]
    src = torch.nonzero(valid).squeeze(-1)
    return src, src + 1


def vd4rl_transitions(sequences: TensorDict) -> TensorDict:
    """Sequence layout → TorchRL transitions ``[M]`` (``M = N − episodes``).

    Transition ``t`` of an episode: ``pixels`` = x_t, ``action`` = a_t (row t+1's previous
    action), ``("next", "pixels")`` = x_{t+1}, ``("next", "reward")`` = row t+1's reward,
    ``("next", "terminated")`` = row t+1's ``is_terminal``, ``("next", "truncated")`` = row
    t+1's ``is_last`` and not terminal; plus ``episode``.
    """
    episode = sequences["episode"]
    src, nxt = transition_indices(sequences)
    terminated = sequences["is_terminal"][nxt].unsqueeze(-1)
    truncated = sequences["is_last"][nxt].unsqueeze(-1) & ~terminated
    return TensorDict(
        {
            "pixels": sequences["pixels"][src],
            "action": sequences["action"][nxt],
            "episode": episode[src],
            "next": {
                "pixels": sequences["pixels"][nxt],
                "reward": sequences["reward"][nxt].unsqueeze(-1),
                "terminated": terminated,
                "truncated": truncated,
                "done": terminated | truncated,
            },
        },
        batch_size=[len(src)],
    )
