"""True termination functions per task family, in torch, batched over any leading dims.

Each function maps ``(obs, action, next_obs) -> terminated`` with ``terminated`` a bool tensor
shaped ``[..., 1]``. Locomotion rules follow the released LEQ code (MOBILE's): MBPO's hopper and
walker2d rules, plus state bounds — Walker2d needs every ``-100 < s < 100`` and HalfCheetah
ends a rollout when any ``|s| >= 100``. ``state_bounds=False`` gives MBPO's rules (HalfCheetah
never terminates). AntMaze uses a 0.25 radius around the goal centre (released LEQ code);
the generated point mazes use gymnasium-robotics' success radius 0.45.

Example:
    >>> import torch
    >>> fn = get_termination_fn("hopper-medium-v2")
    >>> fn(None, None, torch.tensor([[1.2, 0.0, 0.0], [0.5, 0.0, 0.0]])).squeeze(-1)
    tensor([False,  True])
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from torchrl_leq.tasks import (
    ANTMAZE_GOAL_RADIUS,
    ANTMAZE_GOALS,
    POINTMAZE_SUCCESS_RADIUS,
    POINTMAZE_TASKS,
)

TerminationFn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]

LOCOMOTION_TASKS = ("hopper", "walker2d", "halfcheetah")
KNOWN_TASKS = (
    *LOCOMOTION_TASKS,
    *(f"antmaze-{m}" for m in ANTMAZE_GOALS),
    *POINTMAZE_TASKS,
)


def hopper_termination(
    obs: torch.Tensor | None, action: torch.Tensor | None, next_obs: torch.Tensor
) -> torch.Tensor:
    """MBPO hopper rule: healthy iff finite, ``|s[1:]| < 100``, height > 0.7, ``|angle| < 0.2``."""
    height, angle = next_obs[..., 0], next_obs[..., 1]
    healthy = (
        torch.isfinite(next_obs).all(-1)
        & (next_obs[..., 1:].abs() < 100).all(-1)
        & (height > 0.7)
        & (angle.abs() < 0.2)
    )
    return (~healthy).unsqueeze(-1)


def walker2d_mbpo_termination(
    obs: torch.Tensor | None, action: torch.Tensor | None, next_obs: torch.Tensor
) -> torch.Tensor:
    """MBPO walker2d rule: healthy iff ``0.8 < height < 2.0`` and ``-1 < angle < 1``."""
    height, angle = next_obs[..., 0], next_obs[..., 1]
    healthy = (height > 0.8) & (height < 2.0) & (angle > -1.0) & (angle < 1.0)
    return (~healthy).unsqueeze(-1)


def walker2d_termination(
    obs: torch.Tensor | None, action: torch.Tensor | None, next_obs: torch.Tensor
) -> torch.Tensor:
    """Released code (MOBILE): MBPO's walker2d rule and every ``-100 < s < 100``.

    Example:
        >>> walker2d_termination(None, None, torch.tensor([[1.2, 0.0, 150.0]])).item()
        True
    """
    bounded = ((next_obs > -100) & (next_obs < 100)).all(-1, keepdim=True)
    return walker2d_mbpo_termination(obs, action, next_obs) | ~bounded


def halfcheetah_never_terminates(
    obs: torch.Tensor | None, action: torch.Tensor | None, next_obs: torch.Tensor
) -> torch.Tensor:
    """MBPO: HalfCheetah never terminates."""
    return torch.zeros(*next_obs.shape[:-1], 1, dtype=torch.bool, device=next_obs.device)


def halfcheetah_termination(
    obs: torch.Tensor | None, action: torch.Tensor | None, next_obs: torch.Tensor
) -> torch.Tensor:
    """Released code (MOBILE): terminated when any ``|s| >= 100`` (or not finite).

    Example:
        >>> halfcheetah_termination(None, None, torch.tensor([[0.0, 99.0], [0.0, -100.0]]))
        tensor([[False],
                [ True]])
    """
    return ~(next_obs.abs() < 100).all(-1, keepdim=True)


def goal_termination(goal_xy: tuple[float, float], radius: float) -> TerminationFn:
    """Terminated when ``next_obs[..., :2]`` lies within ``radius`` of ``goal_xy``."""

    def fn(
        obs: torch.Tensor | None, action: torch.Tensor | None, next_obs: torch.Tensor
    ) -> torch.Tensor:
        goal = torch.as_tensor(goal_xy, dtype=next_obs.dtype, device=next_obs.device)
        return torch.linalg.vector_norm(next_obs[..., :2] - goal, dim=-1, keepdim=True) <= radius

    return fn


def get_termination_fn(task: str, *, state_bounds: bool = True) -> TerminationFn:
    """Termination function for a task name (``state_bounds``: MOBILE's state bounds for
    walker2d / halfcheetah, the released code's choice; ``False`` gives MBPO's rules).

    Accepts ``hopper`` / ``walker2d`` / ``halfcheetah`` (optionally with a D4RL suffix such as
    ``hopper-medium-replay-v2``), ``antmaze-{umaze,medium,large,ultra}`` (also D4RL ids such as
    ``antmaze-large-diverse-v2``) and ``pointmaze-{umaze,medium,large}``.

    Example:
        >>> fn = get_termination_fn("antmaze-umaze-v2")
        >>> bool(fn(None, None, torch.tensor([0.75, 8.8, 0.0])))
        True
    """
    name = task.strip().lower()
    family = name.split("-")[0]
    if family in ("hopper", "walker2d", "halfcheetah"):
        if not state_bounds:
            return {
                "hopper": hopper_termination,
                "walker2d": walker2d_mbpo_termination,
                "halfcheetah": halfcheetah_never_terminates,
            }[family]
        return {
            "hopper": hopper_termination,
            "walker2d": walker2d_termination,
            "halfcheetah": halfcheetah_termination,
        }[family]
    if family == "antmaze":
        maze = name.split("-")[1] if "-" in name else ""
        if maze in ANTMAZE_GOALS:
            return goal_termination(ANTMAZE_GOALS[maze], ANTMAZE_GOAL_RADIUS)
    if name in POINTMAZE_TASKS:
        return goal_termination(POINTMAZE_TASKS[name].goal_xy, POINTMAZE_SUCCESS_RADIUS)
    raise ValueError(
        f"Unknown task {task!r} for a termination function; known: {list(KNOWN_TASKS)} "
        "(locomotion and antmaze names may carry a D4RL suffix, e.g. 'antmaze-large-diverse-v2')"
    )
