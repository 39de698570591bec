"""Checks of the D4RL examples' inputs before any heavy work: a clear error when the dataset file
or the evaluation env is missing.

- :func:`check_dataset`: ``data.source=d4rl_hdf5`` with a missing ``data.path`` raises a one-line
  ``FileNotFoundError`` naming the expected path, how to get the file, the Minari alternative and
  ``smoke=true``; ``data.source=minari`` runs
  :func:`~torchrl_leq.data.minari_tasks.check_minari_task` (dataset present, supported env,
  widths match the evaluation env).
- :func:`check_eval_env`: a task that is not a generated point maze or a Minari dataset needs
  ``eval.env_id``.

Example:
    >>> check_eval_env({"data": {"source": "pointmaze"}, "eval": {"env_id": None}})
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

__all__ = [
    "D4RL_DATASET_URL",
    "check_dataset",
    "check_eval_env",
    "missing_dataset_message",
]
D4RL_DATASET_URL = "http://rail.eecs.berkeley.edu/datasets/offline_rl"
"""D4RL's server: ``gym_mujoco_v2/<env>_<dataset>-v2.hdf5``, ``ant_maze_v2/Ant_maze_*.hdf5``."""



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
    if data_cfg.get("source") == "minari":
        from torchrl_leq.data.minari_tasks import check_minari_task

        if not data_cfg.get("dataset_id"):
            raise ValueError(
                "data.dataset_id must name a local Minari dataset for source=minari "
                "(e.g. data.dataset_id=D4RL/antmaze/umaze-v1; `minari download <id>` fetches it)."
            )
        check_minari_task(str(data_cfg.get("dataset_id")), data_cfg.get("root"))
        return
    if data_cfg.get("source") != "d4rl_hdf5":
        return
    path = data_cfg.get("path")
    if not path:
        raise ValueError("data.path must point to a D4RL-format HDF5 file for source=d4rl_hdf5.")
    if not Path(str(path)).expanduser().is_file():
        raise FileNotFoundError(missing_dataset_message(str(path), task))


def check_eval_env(cfg: Any) -> None:
    """Fail fast (before the world model) when a non-point-maze task has no ``eval.env_id``."""
    if (cfg.get("data") or {}).get("source") in ("pointmaze", "minari"):  # minari: the dataset's
        return
    if (cfg.get("eval") or {}).get("env_id") is None:
        raise ValueError(
            f"eval.env_id is not set for task {cfg.get('task')!r}: name a gymnasium env with "
            "the dataset's observation layout and frame. D4RL AntMaze needs D4RL's own env "
            "(d4rl + mujoco-py), which is not installed here; see docs/antmaze.md."
        )
