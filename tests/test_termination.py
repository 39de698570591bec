"""True termination functions on hand-made states."""

from __future__ import annotations

import pytest
import torch

from torchrl_leq.envs import get_termination_fn
from torchrl_leq.tasks import ANTMAZE_GOALS, POINTMAZE_TASKS


def term(task: str, next_obs: list[list[float]]) -> list[bool]:
    next_obs = torch.tensor(next_obs)
    out = get_termination_fn(task)(next_obs, torch.zeros(len(next_obs), 3), next_obs)
    assert out.shape == (len(next_obs), 1) and out.dtype == torch.bool
    return out.squeeze(-1).tolist()


def test_hopper():
    healthy = [1.25, 0.05, 0.0, 1.0]
    cases = [
        healthy,
        [0.6, 0.0, 0.0, 0.0],  # fallen: height <= 0.7
        [1.25, 0.3, 0.0, 0.0],  # tilted: |angle| >= 0.2
        [1.25, -0.25, 0.0, 0.0],
        [1.25, 0.0, 150.0, 0.0],  # exploding velocity
        [1.25, 0.0, float("nan"), 0.0],
        [1.25, 0.0, 0.0, float("inf")],
    ]
    assert term("hopper", cases) == [False, True, True, True, True, True, True]
    assert term("hopper-medium-replay-v2", [healthy]) == [False]
    assert term("hopper", [[250.0, 0.0, 0.0, 0.0]]) == [False]  # height itself is not bounded


def test_walker2d():
    cases = [
        [1.2, 0.0, 0.0],
        [0.7, 0.0, 0.0],  # too low
        [2.1, 0.0, 0.0],  # too high
        [1.2, 1.1, 0.0],  # angle out of range
        [1.2, -1.1, 0.0],
    ]
    assert term("walker2d-medium-v2", cases) == [False, True, True, True, True]


def test_walker2d_state_bounds():
    cases = [[1.2, 0.0, 99.0], [1.2, 0.0, 100.0], [1.2, 0.0, -100.0], [1.2, 0.0, float("nan")]]
    assert term("walker2d", cases) == [False, True, True, True]
    mbpo = get_termination_fn("walker2d", state_bounds=False)
    out = mbpo(None, None, torch.tensor(cases)).squeeze(-1).tolist()
    assert out == [False, False, False, False]


def test_halfcheetah_state_bounds():
    cases = [
        [0.0] * 3,
        [0.0, 99.9, -99.9],
        [0.0, 100.0, 0.0],
        [-150.0, 0.0, 0.0],
        [0.0, float("nan"), 0.0],
    ]
    assert term("halfcheetah", cases) == [False, False, True, True, True]
    never = get_termination_fn("halfcheetah-medium-v2", state_bounds=False)
    assert not never(None, None, torch.tensor(cases)).any()


@pytest.mark.parametrize("maze", list(ANTMAZE_GOALS))
def test_antmaze_goals(maze):
    gx, gy = ANTMAZE_GOALS[maze]
    cases = [
        [gx, gy, 0.5],
        [gx + 0.2, gy - 0.1, 0.0],  # within 0.25
        [gx + 0.3, gy, 0.0],  # outside 0.25 (inside D4RL's own 0.5)
        [0.0, 0.0, 0.0],
    ]
    expected = [True, True, False, False]
    assert term(f"antmaze-{maze}", cases) == expected
    suffix = "diverse-v2" if maze != "umaze" else "v2"
    assert term(f"antmaze-{maze}-{suffix}", cases) == expected


@pytest.mark.parametrize("name", list(POINTMAZE_TASKS))
def test_pointmaze_goals(name):
    gx, gy = POINTMAZE_TASKS[name].goal_xy
    sx, sy = POINTMAZE_TASKS[name].start_xy
    cases = [[gx, gy, 0, 0], [gx + 0.4, gy, 1, 1], [gx, gy + 0.5, 0, 0], [sx, sy, 0, 0]]
    assert term(name, cases) == [True, True, False, False]


def test_batched_leading_dims():
    next_obs = torch.zeros(2, 5, 4)
    next_obs[1, 3, :2] = torch.tensor(ANTMAZE_GOALS["umaze"])
    out = get_termination_fn("antmaze-umaze")(next_obs, None, next_obs)
    assert out.shape == (2, 5, 1)
    assert out.sum() == 1 and out[1, 3, 0]


def test_unknown_task_lists_known():
    with pytest.raises(ValueError, match="known:.*hopper.*antmaze-umaze.*pointmaze-umaze"):
        get_termination_fn("cartpole")
    with pytest.raises(ValueError, match="Unknown task"):
        get_termination_fn("antmaze-huge-v2")
