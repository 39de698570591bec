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
from tensordict import TensorDict
from tensordict.nn import TensorDictModuleBase
from torchrl.envs.utils import ExplorationType, set_exploration_type

__all__ = ["ACTION_REPEAT", "dmc_suite", "dmc_env_name", "load_dmc", "evaluate_dmc"]

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


def load_dmc(env_name: str, seed: int):
    """The suite task ``env_name`` (``"<domain>_<task>"``, e.g. ``"walker_walk"``), seeded."""
    suite = dmc_suite()
    for domain, task in suite.ALL_TASKS:
        if f"{domain}_{task}" == env_name:
            return suite.load(domain, task, task_kwargs={"random": seed})
    raise ValueError(f"unknown DMC task {env_name!r}: expected <domain>_<task>, e.g. walker_walk")


def dmc_env_name(path: str | Path) -> str | None:
    """The ``<domain>_<task>`` named by a folder of ``path`` (V-D4RL's layout), else ``None``.

    Example:
        >>> dmc_env_name("vd4rl_data/main/cheetah_run/medium_replay/64px")
        'cheetah_run'
    """
    names = {f"{d}_{t}" for d, t in dmc_suite().ALL_TASKS}
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
    returns, lengths = [], []
    with set_exploration_type(ExplorationType.DETERMINISTIC), torch.no_grad():
        for i in range(episodes):
            env = load_dmc(env_name, seed + i)
            if hasattr(policy, "reset"):
                policy.reset()
            step = env.reset()
            limit = max_steps if max_steps is not None else float("inf")  # until time-out
            total, steps = 0.0, 0
            while steps < limit and not step.last():
                frame = env.physics.render(size, size, camera_id=camera)
                td = TensorDict({"pixels": torch.from_numpy(frame.copy()).unsqueeze(0),
                                 "is_first": torch.tensor([steps == 0])}, [1])
                action = policy(td).get("action")[0].clamp(-1.0, 1.0).cpu().numpy()
                for _ in range(action_repeat):
                    step = env.step(action.astype(np.float64))
                    total += float(step.reward or 0.0)
                    if step.last():
                        break
                steps += 1
            returns.append(total)
            lengths.append(steps)
    return {"returns": returns, "lengths": lengths, "mean_return": float(np.mean(returns))}
