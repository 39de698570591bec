"""Wall geometry of the point mazes and the model-exploitation diagnostic."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch
from tensordict import TensorDict
from tensordict.nn import TensorDictModule

from torchrl_leq.envs import LEQModelEnv
from torchrl_leq.envs.maze_diagnostics import (
    BALL_RADIUS,
    MazeWalls,
    discounted_return,
    make_wall_diagnostic,
    real_rollout,
    value_calibration,
    wall_contact_fraction,
    wall_diagnostic,
)
from torchrl_leq.envs.termination import get_termination_fn
from torchrl_leq.modules import ProbabilisticEnsemble
from torchrl_leq.tasks import POINTMAZE_TASKS, get_pointmaze_task

UMAZE = get_pointmaze_task("pointmaze-umaze")


@pytest.mark.parametrize("name", ["pointmaze-umaze", "pointmaze-medium", "pointmaze-large"])
def test_cell_centres_and_off_map_points(name):
    task = POINTMAZE_TASKS[name]
    walls = MazeWalls(task)
    cells = [(r, c) for r in range(len(task.maze_map)) for c in range(len(task.maze_map[0]))]
    centres = torch.tensor([task.cell_to_xy(cell) for cell in cells])
    expected = torch.tensor([task.maze_map[r][c] == 1 for r, c in cells])
    assert torch.equal(walls.in_wall(centres), expected)
    n_rows, n_cols = len(task.maze_map), len(task.maze_map[0])
    off = torch.tensor([[n_cols / 2 + 0.1, 0.0], [0.0, -n_rows / 2 - 0.1]])
    assert walls.in_wall(off).all()
    assert walls.crosses_wall(off, off).all()


def test_margin_inflates_walls_by_the_ball_radius():
    # the umaze start cell (3, 1) lies below wall (2, 1), whose bottom face is y = -0.5
    points = torch.tensor([[-1.0, -0.55], [-1.0, -0.65], [-1.0, -1.0]])
    assert MazeWalls(UMAZE).in_wall(points).tolist() == [False, False, False]
    assert MazeWalls(UMAZE, margin=BALL_RADIUS).in_wall(points).tolist() == [True, False, False]


def test_hand_segments():
    walls = MazeWalls(UMAZE)
    seg = torch.tensor
    cases = [
        ((-1.0, -1.0), (-1.0, 1.0), True),  # start → goal straight up through wall (2, 1)
        ((-1.0, -1.0), (1.0, -1.0), False),  # along the bottom corridor
        ((1.0, -1.0), (1.0, 1.0), False),  # up the right column (2, 3) is free
        ((0.6, -0.6), (0.4, -0.4), True),  # through the corner (0.5, -0.5) of wall (2, 2)
        ((0.6, -0.4), (0.9, -0.4), False),  # horizontal, inside free cell (2, 3)
        ((-1.0, -0.9), (-1.0, -0.6), False),  # vertical, stops short of the wall face
        ((-1.0, -0.9), (-1.0, -0.5), True),  # vertical, touches the (closed) wall face
        ((-1.0, 0.0), (-1.0, 0.0), True),  # zero-length, inside a wall
    ]
    got = walls.crosses_wall(seg([c[0] for c in cases]), seg([c[1] for c in cases]))
    assert got.tolist() == [c[2] for c in cases]


@pytest.mark.parametrize("name", ["pointmaze-umaze", "pointmaze-medium"])
def test_segments_agree_with_dense_sampling(name):
    task = POINTMAZE_TASKS[name]
    walls = MazeWalls(task)
    gen = torch.Generator().manual_seed(0)
    n_rows, n_cols = len(task.maze_map), len(task.maze_map[0])
    half = torch.tensor([n_cols / 2.0 - 1.0, n_rows / 2.0 - 1.0], dtype=torch.float64)
    p0 = (torch.rand(3000, 2, generator=gen, dtype=torch.float64) * 2 - 1) * half
    p1 = p0 + (torch.rand(3000, 2, generator=gen, dtype=torch.float64) * 2 - 1) * 0.8
    s = torch.linspace(0, 1, 4001, dtype=torch.float64)[:, None, None]
    dense = walls.in_wall(p0 + s * (p1 - p0)).any(0)
    exact = walls.crosses_wall(p0, p1)
    assert exact.any() and (~exact).any()
    # dense sampling can only miss grazing contacts: at most a handful, never false hits
    assert not (dense & ~exact).any()
    assert int((exact & ~dense).sum()) <= 3


def test_wall_contact_fraction_by_hand():
    obs = torch.tensor(
        [[-1.0, -1.0, 0, 0], [-1.0, -0.61, 0, 0], [-1.0, -0.7, 0, 0], [1.39, 0.0, 0, 0]]
    )
    # touching: within 0.1 + 0.02 of a wall square: rows 2 (0.11 below the face) and 4 (0.11)
    assert wall_contact_fraction(UMAZE, obs) == 0.5


def test_real_rollout_stops_at_the_wall_and_terminates_at_the_goal():
    up = lambda obs: torch.tensor([[0.0, 1.0]]).expand(obs.shape[0], 2)  # noqa: E731
    start = torch.tensor([[-1.0, -1.0, 0.0, 0.0], [-1.0, 0.7, 0.0, 0.0]])
    obs, term = real_rollout(UMAZE, up, start, 40)
    assert obs.shape == (2, 41, 4) and term.shape == (2, 40, 1)
    # first ball: pushed into wall (2, 1): its centre stops one radius below the face y = -0.5
    assert abs(float(obs[0, -1, 1]) - (-0.5 - BALL_RADIUS)) < 0.01
    assert not term[0].any()
    # second ball: starts 0.3 below the goal (−1, 1), already within 0.45 → terminates at t = 0
    assert term[1, 0, 0] and term[1].sum() == 1
    assert torch.equal(obs[1, 1], obs[1, -1])  # frozen after termination


class _StepUp(torch.nn.Module):
    """A fake 3-member ensemble: every member moves the ball 0.4 up, reward −1."""

    def __init__(self):
        super().__init__()
        self.elites = torch.tensor([0, 2])
        self.max_logvar = torch.zeros(5)

    def forward(self, obs, action):
        delta = torch.tensor([0.0, 0.4, 0.0, 0.0, -1.0]).expand(*obs.shape[:-1], 5)
        return delta.expand(3, *delta.shape), torch.zeros(3, *delta.shape)

    def sample(self, obs, action, generator=None):
        return SimpleNamespace(
            next_obs=obs + torch.tensor([0.0, 0.4, 0.0, 0.0]),
            reward=-torch.ones(*obs.shape[:-1], 1),
        )


class _Const(torch.nn.Module):
    def __init__(self, value):
        super().__init__()
        self.value = torch.tensor(value)

    def forward(self, *inputs):
        return self.value.expand(*inputs[0].shape[:-1], self.value.numel())


def test_wall_diagnostic_hand_computed():
    model_env = SimpleNamespace(
        ensemble=_StepUp(), termination_fn=get_termination_fn("pointmaze-umaze")
    )
    actor = TensorDictModule(_Const([0.0, 1.0]), ["observation"], ["action"])
    critic = TensorDictModule(_Const([0.0]), ["observation", "action"], ["state_action_value"])
    start = torch.tensor([[-1.0, -1.0, 0.0, 0.0]])
    out = wall_diagnostic(
        UMAZE, model_env, actor, start, horizon=5, critic=critic, gamma=1.0, lmbda=0.5
    )
    # imagined y: -1 → -0.6 → -0.2 → 0.2 → 0.6 (within 0.45 of the goal: terminated at t = 3)
    # alive transitions t = 0..3: ends in wall at t = 1, 2; crosses at t = 1, 2, 3
    assert out["wall_end_frac"] == 0.5
    assert out["wall_cross_frac"] == 0.75
    assert out["rollout_cross_frac"] == 1.0
    assert out["imagined_success_frac"] == 1.0 and out["real_success_frac"] == 0.0
    assert out["disagreement_cross"] == 0.0 and out["disagreement_clean"] == 0.0
    # Q ≡ 0, γ = 1, λ = 0.5: Q^λ_0 = Σ_i λ^i G_{0:i} / Σ_i λ^i over i = 0..5
    w = 0.5 ** np.arange(6)
    model = (w * -np.array([0, 1, 2, 3, 4, 4])).sum() / w.sum()  # no reward after termination
    real = (w * -np.array([0, 1, 2, 3, 4, 5])).sum() / w.sum()  # the real ball is stopped
    assert out["lambda_return_model"] == pytest.approx(model)
    assert out["lambda_return_real"] == pytest.approx(real)
    assert out["lambda_gap_cross"] == pytest.approx(model - real, abs=1e-6)  # float32
    assert np.isnan(out["lambda_gap_clean"])


def test_wall_diagnostic_hook_is_repeatable_and_leaves_the_global_rng_alone():
    torch.manual_seed(0)
    model = ProbabilisticEnsemble(
        4, 2, num_members=3, num_elites=2, hidden_dims=(16,), weight_decays=(0.0, 0.0)
    )
    env = LEQModelEnv(model, "pointmaze-umaze")
    actor = TensorDictModule(torch.nn.Linear(4, 2), ["observation"], ["action"])
    starts = TensorDict({"observation": torch.rand(50, 4) * 2 - 1}, [50])
    hook = make_wall_diagnostic(UMAZE, env, actor, starts, num_starts=8, horizon=3)
    state = torch.get_rng_state()
    first, second = hook(0), hook(1)
    assert torch.equal(state, torch.get_rng_state())
    assert first == second
    assert 0.0 <= first["wall/wall_end_frac"] <= first["wall/wall_cross_frac"] <= 1.0
    assert "wall/real_success_frac" in first and "wall/lambda_gap_cross" not in first


def test_discounted_return_matches_a_step_by_step_sum():
    gen = torch.Generator().manual_seed(0)
    terminated = torch.rand(64, 30, 1, generator=gen) < 0.05
    gamma, shift = 0.9, -1.0
    expected = []
    for row in terminated.squeeze(-1).tolist():
        total = 0.0
        for t, term in enumerate(row):
            total += gamma**t * (float(term) + shift)
            if term:
                break
        expected.append(total)
    torch.testing.assert_close(discounted_return(terminated, gamma, shift),
                               torch.tensor(expected, dtype=torch.float64))


def test_value_calibration_against_the_true_returns():
    """A still actor solves the start at the goal (return 0) and not the maze's start
    (return -(1 - γ^H) / (1 - γ)); a constant critic c is off by c - G on each."""
    still = TensorDictModule(lambda o: torch.zeros(o.shape[0], 2), ["observation"], ["action"])
    const = TensorDictModule(lambda o, a: torch.full((o.shape[0], 1), -7.0),
                             ["observation", "action"], ["state_action_value"])
    starts = torch.tensor([[*UMAZE.goal_xy, 0.0, 0.0], [*UMAZE.start_xy, 0.0, 0.0]])
    gamma, horizon = 0.9, 40
    out = value_calibration(UMAZE, still, const, starts, gamma=gamma, horizon=horizon)
    never = -(1 - gamma**horizon) / (1 - gamma)
    assert out["real_success_frac"] == 0.5
    assert out["q_mean"] == -7.0
    assert out["real_return_mean"] == pytest.approx(never / 2)
    assert out["q_minus_real_success"] == pytest.approx(-7.0)
    assert out["q_minus_real_failure"] == pytest.approx(-7.0 - never)
    assert out["q_minus_real"] == pytest.approx(-7.0 - never / 2)
    for sign in (1.0, -1.0):  # Q = ±y: the goal (y = 1, G = 0) above / below the start (y = -1)
        by_y = TensorDictModule(lambda o, a, sign=sign: sign * o[:, 1:2],
                                ["observation", "action"], ["state_action_value"])
        out = value_calibration(UMAZE, still, by_y, starts, gamma=gamma, horizon=horizon)
        assert out["q_real_corr"] == pytest.approx(sign)
