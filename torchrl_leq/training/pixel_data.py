"""What the pixel examples share (``leq_pixels.py``, ``bc_pixels.py``, ``clap.py`` on frames):
D_env as pixel sequences and the evaluation in the rendered maze.

:func:`load_pixel_sequences` reads ``cfg.data`` (``source: rendered_pointmaze``, the generated
point maze rendered at 64×64 and cached, or ``vd4rl``, a V-D4RL 64px folder) into the V-D4RL
sequence layout (:func:`~torchrl_leq.data.vd4rl.read_vd4rl`); :func:`make_rendered_evaluator`
scores a filtering pixel policy in the rendered maze, or for V-D4RL in its DMC task
(:func:`~torchrl_leq.envs.dmc.evaluate_dmc`).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from pathlib import Path

from omegaconf import DictConfig
from tensordict import TensorDict
from tensordict.nn import TensorDictModuleBase

from torchrl_leq.data.pixels import evaluate_rendered, render_pointmaze_dataset
from torchrl_leq.data.vd4rl import read_vd4rl

__all__ = ["PIXEL_SOURCES", "EVAL_SEED_OFFSET", "load_pixel_sequences", "make_rendered_evaluator"]

PIXEL_SOURCES = ("rendered_pointmaze", "vd4rl")
"""The ``data.source`` values whose observations are 64×64 frames."""
EVAL_SEED_OFFSET = 1000
"""Evaluation episodes are seeded ``1000 + seed + ...``, apart from the data's seeds."""


def load_pixel_sequences(cfg: DictConfig) -> tuple[TensorDict, str]:
    """D_env as pixel sequences (V-D4RL layout) and a description for the cache key."""
    data = cfg.data
    if data.source == "vd4rl":
        path = Path(str(data.path)).expanduser()
    else:  # rendered_pointmaze: the generated dataset, rendered once and cached
        path = render_pointmaze_dataset(data.task, data.steps, data.seed, root=data.root,
                                        episode_length=data.episode_length, progress=cfg.progress,
                                        ball_radius=data.ball_radius, view=data.view)
    seq = read_vd4rl(path)
    seq["reward"] = seq["reward"] + float(data.reward_shift)
    return seq, f"{data.source}:{path}:shift={data.reward_shift}"


def make_rendered_evaluator(
    cfg: DictConfig, policy: TensorDictModuleBase
) -> Callable[[int, int], dict[str, float]]:
    """``(episodes, seed) -> scores`` of ``policy`` (reads ``"pixels"`` and ``"is_first"``) in
    the rendered maze of ``cfg.task``; V-D4RL: in the DMC task ``cfg.data.dmc_env`` (``null``:
    the one its folder names, e.g. ``walker_walk``), normalized score = return / 10; NaN where
    neither names one (a warning says so)."""
    if cfg.data.source == "vd4rl":
        return _vd4rl_evaluator(cfg, policy)

    def evaluate(episodes: int, seed: int) -> dict[str, float]:
        res = evaluate_rendered(policy, cfg.task, episodes, EVAL_SEED_OFFSET + seed,
                                max_steps=cfg.train.max_eval_steps,
                                ball_radius=cfg.data.ball_radius, view=cfg.data.view)
        rate = res["success_rate"]
        return {"normalized_score": 100.0 * rate, "success_rate": rate,
                "mean_return": sum(res["returns"]) / len(res["returns"])}

    return evaluate


def _vd4rl_evaluator(
    cfg: DictConfig, policy: TensorDictModuleBase
) -> Callable[[int, int], dict[str, float]]:
    """:func:`make_rendered_evaluator` for a V-D4RL folder: its DMC task, or NaN scores."""
    from torchrl_leq.envs.dmc import dmc_env_name, evaluate_dmc

    env_name = cfg.data.get("dmc_env") or dmc_env_name(str(cfg.data.path))
    if env_name is None:
        warnings.warn(f"no DMC task named by data.path={cfg.data.path!r}: scores are NaN; "
                      "set data.dmc_env (e.g. walker_walk) to evaluate", stacklevel=3)

        def no_task(episodes: int, seed: int) -> dict[str, float]:
            return {"normalized_score": math.nan, "success_rate": math.nan,
                    "mean_return": math.nan}

        return no_task

    def evaluate(episodes: int, seed: int) -> dict[str, float]:
        res = evaluate_dmc(policy, env_name, episodes, EVAL_SEED_OFFSET + seed,
                           max_steps=cfg.train.max_eval_steps)
        return {"normalized_score": res["mean_return"] / 10.0, "success_rate": math.nan,
                "mean_return": res["mean_return"]}

    return evaluate
