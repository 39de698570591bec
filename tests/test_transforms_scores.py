"""Reward transforms and normalized scores."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from tensordict import TensorDict

from torchrl_leq.data import (
    REFERENCE_SCORES,
    apply_reward_transform,
    episode_returns,
    locomotion_reward_scale,
    make_replay_buffer,
    make_reward_transform,
    normalized_score,
    reference_scores,
    scale_rewards_by_return_range,
    shift_rewards,
)


def _transitions(rewards, episodes=None, dones=None):
    n = len(rewards)
    td = TensorDict(
        {
            "observation": torch.arange(n, dtype=torch.float32)[:, None],
            "next": {
                "reward": torch.tensor(rewards, dtype=torch.float32)[:, None],
                "done": torch.tensor(dones if dones is not None else [False] * n)[:, None],
            },
        },
        [n],
    )
    if episodes is not None:
        td["episode"] = torch.tensor(episodes)
    return td


def test_shift_rewards_is_r_minus_one_and_pure():
    td = _transitions([0.0, 1.0, 0.0])
    out = shift_rewards(td)
    assert out["next", "reward"].flatten().tolist() == [-1.0, 0.0, -1.0]
    assert td["next", "reward"].flatten().tolist() == [0.0, 1.0, 0.0]  # untouched
    assert out["observation"] is td["observation"]


def test_locomotion_scale_uses_episode_return_range():
    # episode returns: 6, 1, 11 → range 10 → scale 100
    td = _transitions([1.0, 2.0, 3.0, 1.0, 5.0, 6.0], episodes=[0, 0, 0, 1, 2, 2])
    assert episode_returns(td).tolist() == [6.0, 1.0, 11.0]
    assert locomotion_reward_scale(td) == pytest.approx(100.0)
    out = scale_rewards_by_return_range(td)
    torch.testing.assert_close(out["next", "reward"], td["next", "reward"] * 100.0)
    torch.testing.assert_close(
        apply_reward_transform("locomotion", td)["next", "reward"], out["next", "reward"]
    )


def test_episode_returns_from_done_flags_without_episode_key():
    td = _transitions([1.0, 2.0, 3.0, 4.0], dones=[False, True, False, True])
    assert episode_returns(td).tolist() == [3.0, 7.0]


def test_locomotion_scale_needs_different_returns():
    with pytest.raises(ValueError, match="different returns"):
        locomotion_reward_scale(_transitions([1.0, 1.0], episodes=[0, 1]))


def test_reward_transform_on_replay_buffer_leaves_storage_untouched():
    rb = make_replay_buffer(_transitions([0.0, 1.0, 0.0, 1.0]), batch_size=4)
    rb.append_transform(make_reward_transform("maze"))
    assert sorted(rb.sample()["next", "reward"].flatten().tolist()) in (
        sorted(x)
        for x in (
            [-1.0, -1.0, 0.0, 0.0],
            [-1.0] * 4,
            [0.0] * 4,
            [-1.0] * 3 + [0.0],
            [-1.0] + [0.0] * 3,
        )
    )
    assert rb[:]["next", "reward"].flatten().tolist() == [-1.0, 0.0, -1.0, 0.0]
    assert rb[:]["next", "reward"].flatten().tolist() == [-1.0, 0.0, -1.0, 0.0]  # not shifted twice
    td = _transitions([1.0, 3.0], episodes=[0, 1])
    assert make_reward_transform("locomotion", td).scale == pytest.approx(500.0)
    with pytest.raises(ValueError, match="transitions"):
        make_reward_transform("locomotion")
    with pytest.raises(ValueError, match="Unknown reward transform"):
        apply_reward_transform("atari", td)


@pytest.mark.parametrize(
    "task",
    [
        "antmaze-umaze-v2",
        "antmaze-large-diverse-v2",
        "hopper-medium-replay-v2",
        "halfcheetah-medium-expert",
        "walker2d-random-v2",
        "pointmaze-medium",
    ],
)
def test_normalized_score_endpoints(task):
    low, high = reference_scores(task)
    assert normalized_score(task, low) == pytest.approx(0.0)
    assert normalized_score(task, high) == pytest.approx(100.0)


def test_d4rl_reference_values():
    assert reference_scores("antmaze-medium-play-v2") == (0.0, 1.0)
    assert reference_scores("halfcheetah-medium-v2") == (-280.178953, 12135.0)
    assert reference_scores("hopper-medium-v2") == (-20.272305, 3234.3)
    assert reference_scores("walker2d-medium-expert-v2") == (1.629008, 4592.3)
    assert {"antmaze-umaze-diverse", "antmaze-medium-diverse", "antmaze-large-play"} <= set(
        REFERENCE_SCORES
    )


def test_normalized_score_input_types():
    assert isinstance(normalized_score("antmaze-umaze", 0.25), float)
    assert normalized_score("antmaze-umaze", 1) == 100.0
    np.testing.assert_allclose(normalized_score("antmaze-umaze", [0.0, 0.5]), [0.0, 50.0])
    np.testing.assert_allclose(normalized_score("antmaze-umaze", np.array([1.0])), [100.0])
    t = normalized_score("antmaze-umaze", torch.tensor([0.5, 1.0]))
    assert isinstance(t, torch.Tensor) and t.tolist() == [50.0, 100.0]
    assert normalized_score("antmaze-umaze", torch.tensor([1, 0])).tolist() == [100.0, 0.0]


def test_unknown_task_lists_known_tasks():
    with pytest.raises(ValueError, match="known:.*hopper-medium"):
        normalized_score("pong-v5", 1.0)
