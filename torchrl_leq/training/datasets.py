"""Checks of the D4RL examples' inputs before any heavy work: a clear error when the dataset file
or the evaluation env is missing.

- :func:`check_dataset`: ``data.source=d4rl_hdf5`` with a missing ``data.path`` raises a one-line
  ``FileNotFoundError`` naming the expected path, how to get the file, the Minari alternative and
  ``smoke=true``; ``data.source=minari`` runs
  :func:`~torchrl_leq.data.minari_tasks.check_minari_task` (dataset present, supported env,
  widths match the evaluation env).
- :func:`check_eval_env`: a task that is not a generated point maze or a Minari dataset needs
  ``eval.env_id``.
- :func:`check_data_shapes`: the dataset's observation / action widths (read from the HDF5
  header, not the data) against the evaluation env's spaces and the termination's expected
  width; its actions within [-1, 1] (the tanh policies' range); an unreadable file is one line.

Example:
    >>> check_eval_env({"data": {"source": "pointmaze"}, "eval": {"env_id": None}})
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from torchrl_leq.tasks import POINTMAZE_TASKS

__all__ = [
    "check_data_shapes",
    "dataset_widths",
    "eval_env_widths",
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
        f"D4RL dataset{f' for {task!r}' if task else ''} not found: expected {str(path)!r} — "
        f"download it from {_download_hint(path)} (or let the `d4rl` package fetch it into "
        f"~/.d4rl/datasets: gym.make('{d4rl_id}').get_dataset()), or pass data.path=<file>; "
        "or use a local Minari dataset: data.source=minari data.dataset_id=<id> "
        "data.root=<dir>. smoke=true runs without it (a tiny dataset generated with the "
        "simulator)."
    )


def check_dataset(data_cfg: Any, task: str | None = None) -> None:
    """Raise a one-line ``FileNotFoundError`` when ``data_cfg.source == "d4rl_hdf5"`` and
    ``data_cfg.path`` is not a file (``vd4rl``: not a folder), a ``ValueError`` for an unknown
    point-maze task or a missing path. Other sources are checked by their loaders.

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
    if data_cfg.get("source") == "vd4rl":
        path = data_cfg.get("path")
        how = "pass data.path=<a V-D4RL 64px folder of *.npz episodes>."
        if not path:
            raise ValueError(f"data.path is not set for data.source=vd4rl — {how}")
        if not Path(str(path)).expanduser().is_dir():
            raise FileNotFoundError(f"V-D4RL folder not found: {str(path)!r} — {how}")
        return
    if data_cfg.get("source") in ("pointmaze", "rendered_pointmaze"):
        name = data_cfg.get("task") or task
        if name not in POINTMAZE_TASKS:
            raise ValueError(
                f"Unknown point-maze task {name!r}; known: {sorted(POINTMAZE_TASKS)} — pass "
                "task=<one of them> (or register a custom maze first)."
            )
    if data_cfg.get("source") != "d4rl_hdf5":
        return
    path = data_cfg.get("path")
    if not path:
        raise ValueError(
            "data.path is not set for data.source=d4rl_hdf5 — pass data.path=<a D4RL-format "
            "HDF5 file>."
        )
    if not Path(str(path)).expanduser().is_file():
        raise FileNotFoundError(missing_dataset_message(str(path), task))


def check_eval_env(cfg: Any) -> None:
    """Fail fast (before the world model) when a task that is neither a point maze nor a Minari
    dataset (evaluated in the dataset's own env) nor V-D4RL (not evaluated here) has no
    ``eval.env_id``."""
    source = (cfg.get("data") or {}).get("source")
    if source in ("pointmaze", "minari", "vd4rl") or cfg.get("task") in POINTMAZE_TASKS:
        return
    if (cfg.get("eval") or {}).get("env_id") is None:
        raise ValueError(
            f"eval.env_id is not set for task {cfg.get('task')!r} — name a gymnasium env with "
            "the dataset's observation layout and frame. D4RL AntMaze needs D4RL's own env "
            "(d4rl + mujoco-py), which is not installed here; see docs/antmaze.md."
        )


TERMINATION_WIDTHS = {"hopper": 11, "walker2d": 17, "halfcheetah": 17}
"""Observation widths the built-in locomotion terminations index into (D4RL v2 layouts)."""
ACTION_TOLERANCE = 1e-3
"""How far beyond [-1, 1] a dataset action may lie (float noise) before it is refused."""


def dataset_widths(data_cfg: Any) -> tuple[int, int, float] | None:
    """``(observation width, action width, largest |action|)`` of a ``source=d4rl_hdf5`` file,
    from its HDF5 header and its ``actions`` array only (milliseconds, no transitions built);
    None for the other sources (generated data has the env's widths by construction; Minari
    datasets are checked by their loader). A file that cannot be read is one ``OSError`` line.

    Example:
        >>> dataset_widths({"source": "pointmaze"}) is None
        True
    """
    if data_cfg.get("source") != "d4rl_hdf5" or not data_cfg.get("path"):
        return None
    import h5py

    path = Path(str(data_cfg.get("path"))).expanduser()
    how = "check the file (or download it again), or pass data.path=<a D4RL-format HDF5 file>"
    try:
        with h5py.File(path, "r") as f:
            missing = [k for k in ("observations", "actions", "rewards", "terminals") if k not in f]
            if missing:
                raise ValueError(
                    f"{str(path)!r} is not a D4RL dataset: it lacks {missing} (found "
                    f"{sorted(f.keys())}) — {how}."
                )
            obs, act = f["observations"], f["actions"]
            if obs.ndim != 2 or act.ndim != 2 or obs.shape[0] == 0:
                raise ValueError(
                    f"{str(path)!r}: observations {obs.shape} and actions {act.shape} must be "
                    f"non-empty [N, width] arrays — {how}."
                )
            actions, widths = act[()], (int(obs.shape[1]), int(act.shape[1]))
    except OSError as err:
        reason = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise OSError(f"cannot read {str(path)!r} as HDF5 ({reason}) — {how}.") from err
    bound = float(np.abs(actions).max()) if actions.size else 0.0
    return *widths, bound


def eval_env_widths(cfg: Any) -> tuple[int, int, float, float] | None:
    """``(observation width, action width, action low, action high)`` of the evaluation env
    (the generated point maze of a point-maze task, else ``gym.make(eval.env_id, **env_kwargs)``);
    None without an env or for non-box spaces. An id gymnasium does not know is one line."""
    task, ev = cfg.get("task"), cfg.get("eval") or {}
    env_id = ev.get("env_id")
    if env_id is None:
        return (4, 2, -1.0, 1.0) if task in POINTMAZE_TASKS else None
    import gymnasium as gym

    try:
        env = gym.make(str(env_id), **dict(ev.get("env_kwargs") or {}))
    except gym.error.Error as err:
        raise ValueError(
            f"eval.env_id={env_id} cannot be made ({type(err).__name__}: "
            f"{str(err).splitlines()[0]}) — name a registered gymnasium env (e.g. Hopper-v5)."
        ) from err
    try:
        obs, act = env.observation_space, env.action_space
        if not isinstance(obs, gym.spaces.Box) or not isinstance(act, gym.spaces.Box):
            return None
        return (
            int(np.prod(obs.shape)),
            int(np.prod(act.shape)),
            float(np.min(act.low)),
            float(np.max(act.high)),
        )
    finally:
        env.close()


def check_data_shapes(cfg: Any) -> None:
    """The dataset against the evaluation env and the termination, before any heavy work:
    observation and action widths must match the env's spaces (and the locomotion termination's
    expected width); actions must lie in [-1, 1] (the policies are tanh-squashed); an env whose
    actions reach beyond [-1, 1] gets a warning (the policy never leaves [-1, 1]).

    Example:
        >>> check_data_shapes({"task": "pointmaze-umaze", "data": {"source": "pointmaze"},
        ...                    "eval": {"env_id": None}})
    """
    import warnings

    data_cfg = cfg.get("data") or {}
    widths = dataset_widths(data_cfg)
    env = eval_env_widths(cfg)
    if env is not None and (env[2] < -1.0 - ACTION_TOLERANCE or env[3] > 1.0 + ACTION_TOLERANCE):
        warnings.warn(
            f"eval env {(cfg.get('eval') or {}).get('env_id')} has actions in "
            f"[{env[2]:g}, {env[3]:g}]; the policy acts in [-1, 1] (actions are clipped to the "
            "env's bounds, not rescaled).",
            RuntimeWarning,
            stacklevel=2,
        )
    if widths is None:
        return
    obs_dim, act_dim, bound = widths
    path = data_cfg.get("path")
    if env is not None:
        where = (cfg.get("eval") or {}).get("env_id") or f"the {cfg.get('task')} maze"
        for what, have, want in (("observation", obs_dim, env[0]), ("action", act_dim, env[1])):
            if have != want:
                raise ValueError(
                    f"dataset {path} has {have}-number {what}s but the evaluation env ({where}) "
                    f"has {want} — pass the dataset of this task (data.path=...) or the env of "
                    "this dataset (eval.env_id=...)."
                )
    family = str(cfg.get("task") or "").split("-")[0]
    if cfg.get("termination") is None and family in TERMINATION_WIDTHS:
        want = TERMINATION_WIDTHS[family]
        if obs_dim != want:
            raise ValueError(
                f"dataset {path} has {obs_dim}-number observations but the {family} termination "
                f"expects {want} (D4RL's {family} layout) — pass a {family} dataset, or the task "
                "of this dataset (task=...)."
            )
    if bound > 1.0 + ACTION_TOLERANCE:
        raise ValueError(
            f"dataset {path} has actions up to {bound:g} in magnitude, beyond the [-1, 1] the "
            "policy can output — rescale the dataset's actions to [-1, 1]."
        )
