"""Evaluation in the real env: batched episodes, masking, seeding, scores."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch
from tensordict.nn import TensorDictModule

from torchrl_leq.data import make_controller_actor
from torchrl_leq.envs import make_pointmaze_env
from torchrl_leq.tasks import get_pointmaze_task
from torchrl_leq.training import RandomActor, evaluate

UMAZE = get_pointmaze_task("pointmaze-umaze")


def _zero_actor():
    return TensorDictModule(
        lambda o: torch.zeros(*o.shape[:-1], 2), in_keys=["observation"], out_keys=["action"]
    )


def test_controller_beats_zero_and_random_actors():
    ctrl = evaluate(make_controller_actor(UMAZE), "pointmaze-umaze", episodes=3, seed=0)
    zero = evaluate(_zero_actor(), "pointmaze-umaze", episodes=3, seed=0)
    rand = evaluate(RandomActor(2, seed=0), UMAZE, episodes=3, seed=0)
    for out in (ctrl, zero, rand):
        assert out["returns"].shape == (3,) and out["success"].shape == (3,)
    assert ctrl["success"].all() and ctrl["mean_return"] == 1.0
    assert ctrl["normalized_score"] == pytest.approx(100.0)
    assert zero["mean_return"] == 0.0 and (zero["lengths"] == UMAZE.max_episode_steps).all()
    assert ctrl["mean_return"] > rand["mean_return"]
    # episodes end at different times; no step is counted after the goal
    assert (ctrl["lengths"] < UMAZE.max_episode_steps).all()


def test_results_do_not_depend_on_batching():
    actor = make_controller_actor(UMAZE)
    a = evaluate(actor, UMAZE, episodes=5, seed=7, num_envs=5)
    b = evaluate(actor, UMAZE, episodes=5, seed=7, num_envs=2)
    assert torch.equal(a["lengths"], b["lengths"]) and torch.equal(a["returns"], b["returns"])


class _CountingEnv(gym.Env):
    """Episode i lasts 2 + (seed % 3) steps, reward 1 per step; terminated at the end."""

    observation_space = gym.spaces.Box(-np.inf, np.inf, (1,), np.float32)
    action_space = gym.spaces.Box(-1.0, 1.0, (2,), np.float32)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.length, self.t = 2 + (seed or 0) % 3, 0
        return np.zeros(1, np.float32), {}

    def step(self, action):
        self.t += 1
        return np.zeros(1, np.float32), 1.0, self.t >= self.length, False, {}


def test_masks_steps_after_the_end_and_seeds_each_episode():
    out = evaluate(_zero_actor(), _CountingEnv, episodes=6, seed=0, num_envs=4, max_steps=50)
    assert out["lengths"].tolist() == [2, 3, 4, 2, 3, 4]
    assert out["returns"].tolist() == [2.0, 3.0, 4.0, 2.0, 3.0, 4.0]
    assert out["success"].all() and out["normalized_score"] is None
    with pytest.raises(ValueError, match="max_steps"):
        evaluate(_zero_actor(), _CountingEnv, episodes=1)


def test_env_factory_and_score_task():
    out = evaluate(
        make_controller_actor(UMAZE),
        lambda: make_pointmaze_env(UMAZE),
        episodes=2,
        task="pointmaze-umaze",
    )
    assert out["normalized_score"] == pytest.approx(100.0)


def test_reference_scores_given_directly():
    out = evaluate(
        _zero_actor(),
        _CountingEnv,
        episodes=3,
        num_envs=3,
        max_steps=50,
        reference_scores=(1.0, 5.0),
    )
    mean = float(np.mean(out["returns"].numpy()))  # returns 2, 3, 4
    assert out["normalized_score"] == pytest.approx(100 * (mean - 1.0) / 4.0) == 50.0
    with pytest.raises(ValueError, match="R_expert > R_random"):
        evaluate(_zero_actor(), _CountingEnv, episodes=1, max_steps=5, reference_scores=(1, 1))


def test_ultra_maze_task_gets_a_score_not_none():
    out = evaluate(
        _zero_actor(),
        _CountingEnv,
        episodes=2,
        num_envs=2,
        max_steps=50,
        task="antmaze-ultra-diverse-v0",
    )
    assert out["normalized_score"] == pytest.approx(100 * float(out["returns"].mean()))
