"""Minari AntMaze / MuJoCo tasks on locally generated stand-ins in the hosted datasets' format."""

from __future__ import annotations

import json
import pickle
import shutil

import numpy as np
import pytest
import torch
from minari import MinariDataset

from torchrl_leq.data.generate_minari import STANDIN_EVAL_GOAL_CELLS, generate_minari_dataset
from torchrl_leq.data.minari import read_minari, read_minari_metadata
from torchrl_leq.data.minari_tasks import (
    antmaze_eval_cells,
    check_minari_task,
    make_minari_task,
    replay_error,
)
from torchrl_leq.envs.antmaze import maze_cell_xy
from torchrl_leq.training.evaluation import RandomActor, evaluate

UMAZE = "D4RL/antmaze/umaze-v1"
MEDIUM = "D4RL/antmaze/medium-diverse-v1"
U = [[1, 1, 1, 1, 1], [1, 0, 0, 0, 1], [1, 1, 1, 0, 1], [1, 0, 0, 0, 1], [1, 1, 1, 1, 1]]


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    root = tmp_path_factory.mktemp("minari")
    generate_minari_dataset(UMAZE, root, steps=3000, episode_steps=300)
    generate_minari_dataset(MEDIUM, root, steps=1200, episode_steps=200)
    for name in ("hopper", "walker2d", "halfcheetah"):
        generate_minari_dataset(f"mujoco/{name}/medium-v0", root, steps=1000)
    return root


def _episodes(root, dataset_id):
    return list(MinariDataset(str(root / dataset_id / "data")).iterate_episodes())


def _raw_next_xy(root, dataset_id):
    return np.concatenate(
        [ep.observations["achieved_goal"][1:] for ep in _episodes(root, dataset_id)]
    )


def test_antmaze_observations_are_d4rl_29_numbers_xy_first(root):
    task = make_minari_task(UMAZE, root)
    obs = task.transitions["observation"]
    assert obs.shape == (3000, 29)
    eps = _episodes(root, UMAZE)
    xy = np.concatenate([ep.observations["achieved_goal"][:-1] for ep in eps])
    body = np.concatenate([ep.observations["observation"][:-1] for ep in eps])
    qpos = np.concatenate([ep.infos["qpos"][:-1] for ep in eps])
    np.testing.assert_allclose(obs[:, :2].numpy(), xy, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(obs[:, 2:].numpy(), body, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(obs[:, :15].numpy(), qpos, rtol=1e-6, atol=1e-6)  # = qpos, qvel
    assert float(obs[:, :2].abs().max()) > 3.0  # really x, y (the maze spans +-6), not z / quat
    # the old default concatenates sorted keys: 31 numbers, goal included
    assert read_minari(UMAZE, root)["observation"].shape[-1] == 31
    assert (
        read_minari(UMAZE, root, observation_keys=("observation",))["observation"].shape[-1] == 27
    )


def test_umaze_goal_is_data_goal_cell_not_the_start(root):
    task = make_minari_task(UMAZE, root)
    assert task.info["turn"] == "rot180"  # the recorded eval map is the data map turned
    assert task.info["goal_cell"] == STANDIN_EVAL_GOAL_CELLS["umaze"] == (1, 1)
    assert task.goal_xy == (-4.0, 4.0) and task.info["start_xy"] == (-4.0, -4.0)
    assert task.info["episode_goal_cells"] == [(1, 1)]  # every episode's own goal is there too
    desired = np.stack([ep.observations["desired_goal"][0] for ep in _episodes(root, UMAZE)])
    assert np.abs(desired - np.array([-4.0, 4.0])).max() <= 1.0  # same frame, +-1 goal noise
    assert np.abs(desired - np.array([-4.0, 4.0])).max() > 0.0  # and noisy per episode


def test_goal_termination_fires_on_goal_states_not_on_start_states(root):
    task = make_minari_task(UMAZE, root)
    td = task.transitions
    nxt = td["next", "observation"]
    dist = torch.linalg.vector_norm(
        nxt[:, :2].double() - torch.tensor([-4.0, 4.0]).double(), dim=-1
    )
    at_goal = dist <= 0.45
    assert int(at_goal.sum()) > 20
    fired = task.termination_fn(td["observation"], td["action"], nxt).squeeze(-1)
    assert torch.equal(fired, at_goal)
    starts = td["observation"][
        torch.cat([torch.tensor([True]), td["episode"][1:] != td["episode"][:-1]])
    ]
    near_start = torch.linalg.vector_norm(starts[:, :2] - torch.tensor([-4.0, -4.0]), dim=-1) <= 1.5
    assert int(near_start.sum()) >= 5
    assert not task.termination_fn(None, None, starts[near_start]).any()


def test_relabelled_rewards_are_one_exactly_within_radius(root):
    task = make_minari_task(UMAZE, root)
    xy = _raw_next_xy(root, UMAZE)
    expected = (np.linalg.norm(xy - np.array([-4.0, 4.0]), axis=-1) <= 0.45).astype(np.float32)
    reward = task.transitions["next", "reward"].squeeze(-1).numpy()
    np.testing.assert_array_equal(reward, expected)
    assert 0 < expected.sum() < len(expected)
    assert torch.equal(
        task.transitions["next", "terminated"].squeeze(-1), torch.from_numpy(expected > 0)
    )
    raw = read_minari(UMAZE, root)
    assert not raw["next", "terminated"].any()  # the data's own terminations: all False
    keep = make_minari_task(UMAZE, root, terminate_on_goal=False)
    assert not keep.transitions["next", "terminated"].any()
    np.testing.assert_array_equal(keep.transitions["next", "reward"].squeeze(-1).numpy(), expected)
    assert task.reward_transform == "maze" and task.reference_scores == (0.0, 1.0)


def test_medium_diverse_goal_from_eval_spec_and_relabelled(root):
    task = make_minari_task(MEDIUM, root)
    assert task.info["turn"] == "identity" and task.info["goal_cell"] == (6, 6)
    assert task.goal_xy == (10.0, -10.0) and task.info["start_cell"] == (1, 1)
    assert len(task.info["episode_goal_cells"]) > 1  # per-episode random goals in the raw data
    xy = _raw_next_xy(root, MEDIUM)
    expected = np.linalg.norm(xy - np.array([10.0, -10.0]), axis=-1) <= 0.45
    np.testing.assert_array_equal(
        task.transitions["next", "reward"].squeeze(-1).numpy() > 0, expected
    )
    assert task.info["max_episode_steps"] == 1000


def test_eval_env_goal_equals_data_goal_and_terminates_there(root):
    task = make_minari_task(UMAZE, root)
    make = pickle.loads(pickle.dumps(task.env_factory))
    env = make()
    obs, _ = env.reset(seed=3)
    assert obs.shape == (29,) and env.spec.max_episode_steps == 700
    assert env.unwrapped.goal.tolist() == list(task.goal_xy)
    assert task.goal_xy == maze_cell_xy(U, (1, 1))
    assert np.abs(obs[:2] - np.array([-4.0, -4.0])).max() <= 1.0  # starts in the data's start
    assert not env.unwrapped.continuing_task
    ant = env.unwrapped.ant_env
    qpos, qvel = ant.data.qpos.copy(), ant.data.qvel.copy() * 0
    qpos[:2] = [-4.0, 4.1]
    ant.set_state(qpos, qvel)
    obs, reward, terminated, truncated, _ = env.step(np.zeros(8, np.float32))
    assert terminated and reward == 1.0
    assert bool(task.termination_fn(None, None, torch.as_tensor(obs)[None]).item())
    env.close()


def test_replay_error_is_small(root):
    for dataset_id in (UMAZE, "mujoco/hopper/medium-v0", "mujoco/halfcheetah/medium-v0"):
        out = replay_error(dataset_id, root, episodes=2, max_steps=60)
        assert out["steps"] > 10 and out["max_abs"] < 1e-9, (dataset_id, out)
    walker = replay_error("mujoco/walker2d/medium-v0", root, episodes=5, max_steps=60)
    assert walker["max_abs"] < 1e-9 and walker["steps"] > 0  # steps at the velocity clip skipped


def test_eval_cells_rules():
    ev = [[1, 1, 1, 1, 1], [1, 0, 0, "r", 1], [1, 0, 1, 1, 1], [1, 0, 0, "g", 1], [1] * 5]
    data = [[1, 1, 1, 1, 1], [1, "g", 0, 0, 1], [1, 1, 1, 0, 1], [1, "r", 0, 0, 1], [1] * 5]
    assert antmaze_eval_cells(data, ev) == {
        "start_cell": (3, 1),
        "goal_cell": (1, 1),
        "turn": "rot180",
    }
    same = [[1, 1, 1, 1, 1], [1, "r", 0, 0, 1], [1, 1, 1, 0, 1], [1, "g", 0, 0, 1], [1] * 5]
    assert antmaze_eval_cells(U, same)["goal_cell"] == (3, 1)
    with pytest.raises(ValueError, match="own goal cell"):
        antmaze_eval_cells(data, same)
    with pytest.raises(ValueError, match="exactly one"):
        antmaze_eval_cells(U, U)
    other = [[1, 1, 1, 1, 1], [1, 0, 1, 0, 1], [1, 0, 1, 0, 1], [1, 0, 0, 0, 1], [1] * 5]
    with pytest.raises(ValueError, match="walls"):
        antmaze_eval_cells(U, other)


def test_checks_before_heavy_work(root, tmp_path):
    info = check_minari_task(UMAZE, root)
    assert (info["observation_dim"], info["action_dim"]) == (29, 8)
    assert check_minari_task("mujoco/hopper/medium-v0", root)["observation_dim"] == 11
    with pytest.raises(
        FileNotFoundError, match="minari download D4RL/antmaze/large-play-v1.*data.root"
    ):
        check_minari_task("D4RL/antmaze/large-play-v1", root)
    bad = tmp_path / "mujoco/hopper/medium-v0"
    shutil.copytree(root / "mujoco/hopper/medium-v0", bad)
    meta_path = bad / "data" / "metadata.json"
    meta = json.loads(meta_path.read_text())
    space = json.loads(meta["action_space"])
    space.update(shape=[2], low=[-1.0, -1.0], high=[1.0, 1.0])
    meta["action_space"] = json.dumps(space)
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(ValueError, match=r"widths \(11, 2\) differ"):
        check_minari_task("mujoco/hopper/medium-v0", tmp_path)


def test_mujoco_task_scores_with_dataset_references(root):
    dataset_id = "mujoco/hopper/medium-v0"
    task = make_minari_task(dataset_id, root)
    meta = read_minari_metadata(dataset_id, root)
    assert task.reference_scores == (meta["ref_min_score"], meta["ref_max_score"])
    assert task.reward_transform == "locomotion" and task.info["env_id"] == "Hopper-v5"
    raw = read_minari(dataset_id, root)
    assert torch.equal(task.transitions["next", "terminated"], raw["next", "terminated"])
    assert raw["next", "terminated"].any()
    out = evaluate(
        RandomActor(3, seed=0),
        task.env_factory,
        episodes=3,
        reference_scores=task.reference_scores,
    )
    low, high = task.reference_scores
    assert out["normalized_score"] == pytest.approx(100 * (out["mean_return"] - low) / (high - low))
    assert task.normalized_score(high) == pytest.approx(100.0)


def test_antmaze_eval_env_runs_in_evaluate(root):
    task = make_minari_task(UMAZE, root)
    out = evaluate(
        RandomActor(8, seed=0),
        task.env_factory,
        episodes=2,
        num_envs=2,
        max_steps=20,
        reference_scores=task.reference_scores,
    )
    assert out["lengths"].tolist() == [20, 20] and out["normalized_score"] == 0.0


def test_standin_format_matches_hosted_datasets(root, tmp_path):
    meta = read_minari_metadata(UMAZE, root)
    spec, eval_spec = json.loads(meta["env_spec"]), json.loads(meta["eval_env_spec"])
    assert spec["id"] == "AntMaze_UMaze-v4" and spec["max_episode_steps"] == 700
    assert spec["kwargs"]["continuing_task"] is True and spec["kwargs"]["reset_target"] is False
    assert eval_spec["kwargs"]["maze_map"][3][3] == "g"  # the recorded, turned evaluation map
    eps = _episodes(root, UMAZE)
    for ep in eps:
        t = len(ep.actions)
        assert ep.infos["qpos"].shape == (t + 1, 15) and ep.infos["qvel"].shape == (t + 1, 14)
        assert not ep.terminations.any() and ep.truncations[-1] and not ep.truncations[:-1].any()
        assert (ep.observations["desired_goal"] == ep.observations["desired_goal"][0]).all()
    again = generate_minari_dataset(UMAZE, tmp_path, steps=3000, episode_steps=300)
    first = _episodes(root, UMAZE)[0].observations["observation"]
    np.testing.assert_array_equal(_episodes(tmp_path, UMAZE)[0].observations["observation"], first)
    assert again == tmp_path / UMAZE
