"""Evaluation of pixel policies in the DeepMind Control suite, as V-D4RL's datasets were collected:
64×64 RGB frames from camera 0 (2 for quadruped), every action repeated twice, 1000 simulator
steps (500 policy steps) an episode, no termination.

:func:`evaluate_dmc` scores a filtering pixel policy (it reads ``"pixels"`` uint8 ``[1, 64, 64, 3]``
and ``"is_first"``, like :func:`~torchrl_leq.data.pixels.evaluate_rendered`); the normalized score
is the mean return / 10 (DMC returns lie in ``[0, 1000]``). :func:`dmc_env_name` finds the suite
task of a V-D4RL folder (``.../walker_walk/medium/64px`` → ``walker_walk``).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tensordict.nn import TensorDictModuleBase
from torchrl.envs.utils import ExplorationType, set_exploration_type

from torchrl_leq.data.pixels import act_on_frame

__all__ = ["ACTION_REPEAT", "dmc_suite", "dmc_tasks", "dmc_env_name", "load_dmc", "evaluate_dmc"]

ACTION_REPEAT = 2
"""V-D4RL's action repeat (its datasets hold every second simulator frame)."""


def dmc_suite():
    """``dm_control.suite``, rendering headless (``MUJOCO_GL=egl`` unless the user set one)."""
    os.environ.setdefault("MUJOCO_GL", "egl")
    try:
        from dm_control import suite
    except ImportError as err:  # one line that says what to do
        raise ImportError("V-D4RL evaluation needs dm_control: pip install dm-control") from err
    return suite


def dmc_tasks() -> dict[str, tuple[str, str]]:
    """Every suite task by its V-D4RL name: ``{"walker_walk": ("walker", "walk"), ...}``."""
    return {f"{domain}_{task}": (domain, task) for domain, task in dmc_suite().ALL_TASKS}


def load_dmc(env_name: str, seed: int):
    """The suite task ``env_name`` (``"<domain>_<task>"``, e.g. ``"walker_walk"``), seeded."""
    tasks = dmc_tasks()
    if env_name not in tasks:
        raise ValueError(f"unknown DMC task {env_name!r}: expected <domain>_<task>, "
                         "e.g. walker_walk")
    domain, task = tasks[env_name]
    return dmc_suite().load(domain, task, task_kwargs={"random": seed})


def dmc_env_name(path: str | Path) -> str | None:
    """The ``<domain>_<task>`` named by a folder of ``path`` (V-D4RL's layout), else ``None``.

    Example:
        >>> dmc_env_name("vd4rl_data/main/cheetah_run/medium_replay/64px")
        'cheetah_run'
    """
    names = dmc_tasks()
    return next((part for part in Path(path).parts if part in names), None)


def evaluate_dmc(
    policy: TensorDictModuleBase,
    env_name: str,
    episodes: int = 10,
    seed: int = 0,
    *,
    size: int = 64,
    action_repeat: int = ACTION_REPEAT,
    max_steps: int | None = None,
) -> dict[str, Any]:
    """Run ``episodes`` deterministic episodes of a pixel policy in the DMC task ``env_name``.

    Episode ``i`` is seeded ``seed + i``; ``max_steps`` caps the policy steps of an episode
    (default: the task's time limit / ``action_repeat``). Returns ``returns``, ``lengths``
    (policy steps, lists) and ``mean_return``.

    Example:
        >>> from torchrl_leq.training.evaluation import RandomActor
        >>> actor = RandomActor(6, seed=0)
        >>> actor.in_keys = ["pixels"]
        >>> evaluate_dmc(actor, "walker_walk", episodes=1, max_steps=3)["lengths"]
        [3]
    """
    camera = 2 if env_name.startswith("quadruped") else 0
    limit = max_steps if max_steps is not None else float("inf")  # else: until the time-out
    returns, lengths = [], []
    with set_exploration_type(ExplorationType.DETERMINISTIC), torch.no_grad():
        for i in range(episodes):
            env = load_dmc(env_name, seed + i)
            if hasattr(policy, "reset"):
                policy.reset()
            step = env.reset()
            total, steps = 0.0, 0
            while steps < limit and not step.last():
                frame = env.physics.render(size, size, camera_id=camera)
                action = act_on_frame(policy, frame, steps == 0)
                for _ in range(action_repeat):
                    step = env.step(action.astype(np.float64))
                    total += float(step.reward or 0.0)
                    if step.last():
                        break
                steps += 1
            returns.append(total)
            lengths.append(steps)
    return {"returns": returns, "lengths": lengths, "mean_return": float(np.mean(returns))}
