"""A maze of the user's own: config → task → data, termination, evaluation, diagnostic, scores."""

from __future__ import annotations

import pytest
import torch

from torchrl_leq.data import normalized_score, pointmaze_dataset_id, read_pointmaze_dataset
from torchrl_leq.data.waypoint_controller import make_controller_actor
from torchrl_leq.envs.maze_diagnostics import MazeWalls
from torchrl_leq.envs.pointmaze import make_pointmaze_env
from torchrl_leq.envs.termination import get_termination_fn
from torchrl_leq.tasks import (
    NAMED_POINTMAZE_TASKS,
    POINTMAZE_TASKS,
    get_pointmaze_task,
    make_pointmaze_task,
    register_pointmaze_task,
    unregister_pointmaze_task,
)
from torchrl_leq.training import RandomActor, evaluate

# a small S-shaped maze: start bottom left, goal top right, two walls to go round
S_MAZE = {
    "name": "pointmaze-s",
    "maze_map": [
        [1, 1, 1, 1, 1, 1],
        [1, 0, 0, 0, 0, 1],
        [1, 1, 1, 1, 0, 1],
        [1, 0, 0, 0, 0, 1],
        [1, 0, 1, 1, 1, 1],
        [1, 0, 0, 0, 0, 1],
        [1, 1, 1, 1, 1, 1],
    ],
    "start_cell": [5, 4],
    "goal_cell": [1, 1],
    "max_episode_steps": 500,
}


@pytest.fixture
def s_maze():
    task = make_pointmaze_task(S_MAZE)
    name = register_pointmaze_task(task)
    yield get_pointmaze_task(name)
    unregister_pointmaze_task(name)
    assert name not in POINTMAZE_TASKS


def _with(**changes):
    return {**S_MAZE, **changes}


@pytest.mark.parametrize(
    "cfg, message",
    [
        (_with(name="S-Maze"), "lower case"),
        (_with(name="pointmaze-s-v1"), "-v<N>"),
        (_with(maze_map=[[1, 1, 1], [1, 0]]), "rectangle"),
        (_with(maze_map=[[1, 1, 1], [1, 2, 1], [1, 1, 1]]), "0 \\(free\\) or 1"),
        (_with(maze_map=[[1, 1, 1], [0, 0, 1], [1, 1, 1]]), "border"),
        (_with(start_cell=[2, 1]), "start_cell \\[2, 1\\] must be a free"),
        (_with(goal_cell=[9, 9]), "goal_cell \\[9, 9\\] must be a free"),
        (_with(goal_cell=[5, 4]), "must differ"),
        (_with(start_cell="a"), "pair of integers"),
        (_with(max_episode_steps=0), "positive integer"),
        ({k: v for k, v in S_MAZE.items() if k != "goal_cell"}, "missing \\['goal_cell'\\]"),
        (_with(goal=[1, 1]), "unknown maze keys \\['goal'\\]"),
    ],
)
def test_config_mistakes_are_one_line_errors(cfg, message):
    with pytest.raises(ValueError, match=message) as err:
        make_pointmaze_task(cfg)
    assert "\n" not in str(err.value)


def test_unreachable_goal():
    maze = [[1, 1, 1, 1, 1], [1, 0, 1, 0, 1], [1, 1, 1, 1, 1]]
    cfg = _with(maze_map=maze, start_cell=[1, 1], goal_cell=[1, 3])
    with pytest.raises(ValueError, match="not reachable"):
        make_pointmaze_task(cfg)


def test_named_tasks_are_unchanged():
    umaze = get_pointmaze_task("pointmaze-umaze")
    assert umaze.is_named and umaze.env_id == "PointMaze_UMaze-v3"
    assert (umaze.start_cell, umaze.goal_cell, umaze.max_episode_steps) == ((3, 1), (1, 1), 300)
    assert umaze.maze_map[2] == (1, 1, 1, 0, 1)
    assert sorted(NAMED_POINTMAZE_TASKS) == [
        "pointmaze-large",
        "pointmaze-medium",
        "pointmaze-umaze",
    ]
    # the centre-line collection keeps its original dataset id (cached datasets stay valid)
    old = pointmaze_dataset_id("pointmaze-umaze", 100000, 0, waypoint_jitter=0.0)
    assert old == "torchrl_leq/pointmaze-umaze/diverse-s0-n100000-T1000-v0"


def test_register_refuses_another_maze_under_a_taken_name(s_maze):
    assert register_pointmaze_task(make_pointmaze_task(S_MAZE)) == "pointmaze-s"  # same: no-op
    other = make_pointmaze_task(_with(goal_cell=[3, 1]))
    with pytest.raises(ValueError, match="already exists"):
        register_pointmaze_task(other)
    with pytest.raises(ValueError, match="named task"):
        unregister_pointmaze_task("pointmaze-umaze")


def test_custom_maze_everywhere(s_maze, tmp_path):
    assert not s_maze.is_named
    # geometry: (row 1, col 1) is the top-left free cell of a 6 x 7 map
    assert s_maze.goal_xy == (-1.5, 2.0) and s_maze.start_xy == (1.5, -2.0)
    # data: the id carries the maze's hash, rewards refer to its goal
    dataset_id = pointmaze_dataset_id(s_maze, 4000, 0, 200)
    assert f"pointmaze-s-{s_maze.definition_hash}/" in dataset_id
    td = read_pointmaze_dataset(
        "pointmaze-s", steps=4000, seed=0, root=tmp_path, episode_length=200
    )
    goal = torch.tensor(s_maze.goal_xy)
    reached = (td["next", "observation"][:, :2] - goal).norm(dim=-1) <= 0.45
    assert torch.equal(td["next", "reward"].flatten(), reached.float())
    assert reached.any()
    assert not MazeWalls(s_maze).in_wall(td["observation"][:, :2]).any()  # real data: no walls
    # termination by name
    fn = get_termination_fn("pointmaze-s")
    assert fn(None, None, torch.tensor([[-1.5, 2.1], [1.5, -2.0]])).flatten().tolist() == [
        True,
        False,
    ]
    # evaluation env: the task's start, goal and time limit
    env = make_pointmaze_env("pointmaze-s", seed=0)
    obs, _ = env.reset(seed=0)
    assert abs(obs[0] - 1.5) <= 0.25 and abs(obs[1] + 2.0) <= 0.25
    assert env.spec.max_episode_steps == 500
    # evaluation and scores: the controller solves it, a random policy does not
    ctrl = evaluate(make_controller_actor("pointmaze-s"), "pointmaze-s", episodes=3)
    rand = evaluate(RandomActor(2, seed=0), "pointmaze-s", episodes=3)
    assert ctrl["normalized_score"] == 100.0 and rand["normalized_score"] == 0.0
    assert normalized_score("pointmaze-s", 0.5) == 50.0


def _scalars(run_dir, group):
    root = next(run_dir.glob("logs/*/scalars")) / group
    return {p.stem: p.read_text() for p in sorted(root.glob("*.csv"))}


def test_custom_maze_config_runs_the_example_end_to_end_with_the_wall_diagnostic(tmp_path):
    """``maze=s_maze`` (examples/config/maze/s_maze.yaml) through the LEQ example: the data, the
    model's termination and the evaluation are the S-maze's; the diagnostic logs wall/* and
    leaves training's random stream untouched (identical losses with and without it)."""
    from script_loader import example_config, load_example

    train = load_example("leq_pointmaze").train

    def run(name, *extra):
        cfg = example_config("leq_pointmaze", "maze=s_maze", "smoke=true", "progress=false",
                             f"run_dir={tmp_path / name}", *extra)
        return cfg, train(cfg)

    try:
        cfg, plain = run("plain")
        _, diag = run("diag", "diagnostics.wall_every=10")
        task = get_pointmaze_task("pointmaze-s")
    finally:
        unregister_pointmaze_task("pointmaze-s")
    assert cfg.task == "pointmaze-s" and task.goal_cell == (1, 1) and task.max_episode_steps == 500
    assert plain["final"] == diag["final"]
    assert _scalars(tmp_path / "plain", "train") == _scalars(tmp_path / "diag", "train")
    wall = _scalars(tmp_path / "diag", "wall")
    assert {"wall_end_frac", "wall_cross_frac", "lambda_return_model"} <= set(wall)
    rows = [line.split(",") for line in wall["wall_cross_frac"].split()]
    steps = [int(s) for s, _ in rows]
    total = int(cfg.train.total_steps)
    assert steps == list(range(0, total, 10)) and all(0 <= float(v) <= 1 for _, v in rows)
    assert not list((tmp_path / "plain").glob("logs/*/scalars/wall"))
