"""Normalized scores: ``100 * (R - R_random) / (R_expert - R_random)``.

Reference returns:

- D4RL AntMaze (``REF_MIN_SCORE`` 0, ``REF_MAX_SCORE`` 1 in D4RL's ``infos``): umaze,
  umaze-diverse, medium-play/-diverse, large-play/-diverse; the same 0 / 1 (success rate) for
  Jiang et al.'s ultra maze (``antmaze-ultra``, ``-ultra-play``, ``-ultra-diverse``), which D4RL
  does not ship, so that its evaluation reports a score instead of ``None``.
- Minari datasets carry their own ``ref_min_score`` / ``ref_max_score``: see
  :class:`~torchrl_leq.data.minari_tasks.MinariTask`.
- D4RL MuJoCo locomotion (halfcheetah / hopper / walker2d; random, medium, medium-replay,
  medium-expert, expert): D4RL's per-environment reference returns.
- Our generated point-maze tasks: the sparse-reward return (= success rate) of a uniform random
  policy and of the BFS-waypoint PD controller (noise-free) in :func:`make_pointmaze_env`,
  measured with ``evaluate(actor, task, episodes=100, seed=0)`` (see ``docs/data.md``).

Task names may carry a version suffix (``"hopper-medium-v2"`` == ``"hopper-medium"``).

Example:
    >>> normalized_score("antmaze-umaze-v2", 0.5)
    50.0
    >>> normalized_score("antmaze-ultra-diverse-v0", 0.25)
    25.0
    >>> normalized_score("hopper-medium", [-20.272305, 3234.3]).round().tolist()
    [0.0, 100.0]
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np
import torch

__all__ = ["REFERENCE_SCORES", "POINTMAZE_REFERENCE_SCORES", "reference_scores", "normalized_score"]

_ANTMAZE = (
    "ultra",
    "ultra-play",
    "ultra-diverse",
    "umaze",
    "umaze-diverse",
    "medium-play",
    "medium-diverse",
    "large-play",
    "large-diverse",
)
_MUJOCO_REF = {
    "halfcheetah": (-280.178953, 12135.0),
    "hopper": (-20.272305, 3234.3),
    "walker2d": (1.629008, 4592.3),
}
_MUJOCO_DATASETS = ("random", "medium", "medium-replay", "medium-expert", "expert")

POINTMAZE_REFERENCE_SCORES: dict[str, tuple[float, float]] = {
    # (uniform random policy (seed 0), noise-free waypoint controller): mean return over 100
    # episodes, evaluate(..., episodes=100, seed=0). Mean episode lengths of the controller:
    # 120 / 197 / 299 steps; the random policy reached the medium goal once in 100 episodes.
    "pointmaze-umaze": (0.0, 1.0),
    "pointmaze-medium": (0.01, 1.0),
    "pointmaze-large": (0.0, 1.0),
}

REFERENCE_SCORES: dict[str, tuple[float, float]] = {
    **{f"antmaze-{name}": (0.0, 1.0) for name in _ANTMAZE},
    **{f"{env}-{data}": ref for env, ref in _MUJOCO_REF.items() for data in _MUJOCO_DATASETS},
    **POINTMAZE_REFERENCE_SCORES,
}
"""``task -> (R_random, R_expert)``."""


def reference_scores(task: str) -> tuple[float, float]:
    """``(R_random, R_expert)`` of ``task``; unknown tasks raise a ``ValueError``."""
    key = re.sub(r"-v\d+$", "", task)
    if key not in REFERENCE_SCORES:
        raise ValueError(
            f"No reference scores for task {task!r}; known: {sorted(REFERENCE_SCORES)}"
        )
    return REFERENCE_SCORES[key]


def normalized_score(task: str, returns: Any) -> Any:
    """``100 * (R - R_random) / (R_expert - R_random)`` for a float (→ float), a list or numpy
    array (→ numpy array) or a tensor (→ tensor, same dtype if floating).

    Example:
        >>> normalized_score("pointmaze-umaze", torch.tensor([0.0, 1.0]))
        tensor([  0., 100.])
    """
    low, high = reference_scores(task)
    scale = 100.0 / (high - low)
    if isinstance(returns, torch.Tensor):
        dtype = returns.dtype if returns.is_floating_point() else torch.get_default_dtype()
        return (returns.to(dtype) - low) * scale
    if isinstance(returns, (list, tuple, np.ndarray)):
        return (np.asarray(returns, dtype=np.float64) - low) * scale
    return (float(returns) - low) * scale
