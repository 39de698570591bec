"""The examples' hydra configs: composing them (smoke presets included) and checking them.

Every default lives in the example YAMLs (``examples/config/``), composed with hydra
``defaults:`` lists; this module holds no values. ``smoke=true`` selects the preset that the
config names in ``smoke_preset`` (``examples/config/presets/<name>.yaml``): hydra composes it
under the command-line overrides, which keep the last word.

Example:
    >>> cfg = compose_config("examples/config", "leq_pointmaze", ["smoke=true"])  # doctest: +SKIP
    >>> cfg.train.total_steps  # doctest: +SKIP
    40
"""

from __future__ import annotations

import importlib.util
import os
import random
import sys
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType

import numpy as np
import torch
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

__all__ = [
    "register_config_maze",
    "compose_config",
    "apply_smoke_preset",
    "load_script",
    "seed_everything",
    "PRESET_GROUP",
]

PRESET_GROUP = "presets"
"""The config group of the smoke presets (``presets/<smoke_preset>.yaml``)."""


def _compose(config_name: str, overrides: Sequence[str]) -> DictConfig:
    cfg = compose(config_name, overrides=list(overrides))
    if cfg.get("smoke", False):
        cfg = compose(
            config_name, overrides=[f"+{PRESET_GROUP}={cfg.smoke_preset}", *overrides]
        )
    return cfg


def compose_config(
    config_dir: str | os.PathLike, config_name: str, overrides: Sequence[str] = ()
) -> DictConfig:
    """Compose ``config_name`` from ``config_dir`` with command-line style ``overrides``, as the
    example scripts do (for tests, benchmarks and notebooks)."""
    GlobalHydra.instance().clear()
    with initialize_config_dir(str(Path(config_dir).resolve()), version_base="1.3"):
        return _compose(config_name, overrides)


def apply_smoke_preset(cfg: DictConfig) -> DictConfig:
    """Inside ``@hydra.main``: with ``smoke=true``, compose the run's config again with its smoke
    preset below the run's own command-line overrides; otherwise return ``cfg``."""
    if not cfg.get("smoke", False):
        return cfg
    hydra_cfg = HydraConfig.get()
    return _compose(str(hydra_cfg.job.config_name), list(hydra_cfg.overrides.task))


def seed_everything(seed: int) -> None:
    """Seed python's, numpy's and torch's global RNGs.

    Example:
        >>> seed_everything(0); a = torch.rand(1); seed_everything(0)
        >>> bool(torch.rand(1) == a)
        True
    """
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def resolved(cfg: DictConfig) -> DictConfig:
    """A resolved, writable copy of ``cfg`` (interpolations replaced by their values)."""
    return OmegaConf.create(OmegaConf.to_container(cfg, resolve=True))


def load_script(path: str | os.PathLike, name: str | None = None) -> ModuleType:
    """Import a script (``examples/leq_antmaze.py``, a benchmark) as a module; its folder goes on
    ``sys.path``, as when the script runs (the LEQ examples share ``leq_antmaze.train``)."""
    path = Path(path).resolve()
    if str(path.parent) not in sys.path:
        sys.path.insert(0, str(path.parent))
    spec = importlib.util.spec_from_file_location(name or f"{path.stem}_script", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def register_config_maze(cfg: DictConfig) -> None:
    """Register ``cfg.maze`` (a maze of the user's own: ``maze_map``, ``start_cell``,
    ``goal_cell``, ``max_episode_steps``) under the name ``cfg.task``, so that data generation,
    termination, evaluation, the wall diagnostic and scores treat it as a named point-maze task;
    no-op without ``cfg.maze``. Mistakes raise one-line ``ValueError`` s.

    Example:
        >>> cfg = OmegaConf.create({"task": "pointmaze-corridor", "maze": {
        ...     "maze_map": [[1, 1, 1, 1, 1], [1, 0, 0, 0, 1], [1, 1, 1, 1, 1]],
        ...     "start_cell": [1, 1], "goal_cell": [1, 3], "max_episode_steps": 100}})
        >>> register_config_maze(cfg)
        >>> from torchrl_leq.tasks import get_pointmaze_task, unregister_pointmaze_task
        >>> get_pointmaze_task("pointmaze-corridor").goal_xy
        (1.0, 0.0)
        >>> unregister_pointmaze_task("pointmaze-corridor")
    """
    maze = cfg.get("maze")
    if maze is None:
        return
    from torchrl_leq.tasks import make_pointmaze_task, register_pointmaze_task

    spec = OmegaConf.to_container(maze, resolve=True) if isinstance(maze, DictConfig) else maze
    register_pointmaze_task(make_pointmaze_task({"name": str(cfg.task), **spec}))
