"""``data.source=minari`` through the LEQ examples: ``train(cfg)`` from a generated stand-in of a
hosted Minari dataset to a finite normalized score, with the evaluation env, goal, termination,
rewards and reference scores all taken from the dataset."""

from __future__ import annotations

import csv
import math
import warnings

import numpy as np
import pytest
import torch
from script_loader import example_config, load_example

from torchrl_leq.data.generate_minari import generate_minari_dataset
from torchrl_leq.data.minari import read_minari_metadata
from torchrl_leq.data.minari_tasks import ANTMAZE_REWARD_RADIUS, make_minari_task
from torchrl_leq.envs.antmaze import maze_cell_xy
from torchrl_leq.training import builders
from torchrl_leq.training.evaluation import RandomActor

UMAZE = "D4RL/antmaze/umaze-v1"
HOPPER = "mujoco/hopper/medium-v0"
U = [[1, 1, 1, 1, 1], [1, 0, 0, 0, 1], [1, 1, 1, 0, 1], [1, 0, 0, 0, 1], [1, 1, 1, 1, 1]]


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    root = tmp_path_factory.mktemp("minari-examples")
    generate_minari_dataset(UMAZE, root, steps=1500, episode_steps=300)
    generate_minari_dataset(HOPPER, root, steps=800)
    return root


def _overrides(root, tmp_path, *extra):
    return ("smoke=true", "data.source=minari", f"data.root={root}", f"run_dir={tmp_path}",
            "progress=false", *extra)


def _spy_evaluations(monkeypatch):
    """Record the env factory and reference scores every evaluation of the examples uses."""
    calls = []
    real = builders.evaluate

    def spy(actor, env_fn, *args, **kwargs):
        calls.append((env_fn, kwargs.get("reference_scores")))
        return real(actor, env_fn, *args, **kwargs)

    monkeypatch.setattr(builders, "evaluate", spy)
    return calls


def _final_row(result):
    with open(result["metrics_csv"]) as f:
        rows = list(csv.DictReader(f))
    return rows[-1]


def test_antmaze_minari_smoke_run_scores_with_the_data_goal(root, tmp_path, monkeypatch):
    calls = _spy_evaluations(monkeypatch)
    cfg = example_config("antmaze/umaze", *_overrides(root, tmp_path))
    assert cfg.data.dataset_id == UMAZE  # the task file names its Minari dataset
    result = load_example("leq_antmaze").train(cfg)
    assert math.isfinite(result["last_score"]) and 0.0 <= result["last_score"] <= 100.0
    assert _final_row(result)["kind"] == "final"

    task = make_minari_task(UMAZE, root)
    goal = maze_cell_xy(U, (1, 1))
    assert task.goal_xy == goal != (-4.0, -4.0)  # the data's goal cell, not D4RL's on this map
    # every evaluation ran in the dataset's env, with its goal and D4RL's AntMaze references
    assert calls and all(refs == (0.0, 1.0) for _, refs in calls)
    env = calls[-1][0]()
    env.reset(seed=0)
    assert tuple(env.unwrapped.goal.tolist()) == goal
    env.close()
    # D_env: relabelled to that goal (1 within 0.45, before the paper's r - 1), shifted by -1
    data = builders.make_offline_data(cfg.data)
    dist = torch.linalg.vector_norm(data.transitions["next", "observation"][:, :2] - torch.tensor(goal), dim=-1)
    hit = dist <= ANTMAZE_REWARD_RADIUS
    assert hit.any() and not hit.all()
    assert torch.equal(data.transitions["next", "reward"].squeeze(-1), hit.float() - 1.0)
    # the model env's termination: at the data goal, not at the data's start (-4, -4)
    term = builders.make_termination(cfg)
    xy = torch.tensor([[goal[0], goal[1] + 0.3], [-4.0, -4.0]])
    obs = torch.cat([xy, torch.zeros(2, 27)], -1)
    assert term(None, None, obs).squeeze(-1).tolist() == [True, False]


def test_mujoco_minari_smoke_run_scores_with_dataset_references(root, tmp_path, monkeypatch):
    calls = _spy_evaluations(monkeypatch)
    cfg = example_config("mujoco/hopper-medium", *_overrides(root, tmp_path))
    assert cfg.data.dataset_id == HOPPER and cfg.pretrain.enabled
    result = load_example("leq_mujoco").train(cfg)
    assert math.isfinite(result["last_score"])
    meta = read_minari_metadata(HOPPER, root)
    refs = (meta["ref_min_score"], meta["ref_max_score"])
    assert calls and all(r == pytest.approx(refs) for _, r in calls)
    row = _final_row(result)
    expected = 100 * (float(row["mean_return"]) - refs[0]) / (refs[1] - refs[0])
    assert float(row["normalized_score"]) == pytest.approx(expected)
    env = calls[-1][0]()
    assert env.spec.id == "Hopper-v5" and env.observation_space.shape == (11,)
    env.close()


def test_dataset_id_alone_picks_family_env_termination_and_rewards(root):
    cfg = example_config(
        "antmaze/umaze", "data.source=minari", f"data.dataset_id={HOPPER}", f"data.root={root}"
    )
    with pytest.warns(UserWarning) as record:
        data = builders.make_offline_data(cfg.data)
    messages = " ".join(str(w.message) for w in record)
    assert "hopper-medium" in messages and "'locomotion'" in messages
    raw = make_minari_task(HOPPER, root).transitions["next", "reward"]
    assert not torch.allclose(data.transitions["next", "reward"], raw - 1.0)  # not r - 1
    term = builders.make_termination(cfg)
    healthy = torch.tensor([[1.25] + [0.0] * 10])
    fallen = torch.tensor([[0.5] + [0.0] * 10])
    assert term(None, None, healthy).item() is False and term(None, None, fallen).item() is True
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        evaluator = builders.make_evaluator(cfg, RandomActor(3, seed=0))
    out = evaluator(1, 0)
    assert math.isfinite(out["normalized_score"]) and out["lengths"].item() >= 1


def test_missing_minari_dataset_fails_before_any_work(tmp_path):
    from torchrl_leq.training.checks import check_config

    cfg = example_config("antmaze/umaze", "data.source=minari", f"data.root={tmp_path}")
    with pytest.raises(FileNotFoundError, match="minari download"):
        check_config(cfg)


def test_ultra_maze_evaluation_gives_a_number(tmp_path):
    cfg = example_config(
        "antmaze/ultra-diverse", "smoke=true", "++eval.env_kwargs.max_episode_steps=5"
    )
    out = builders.make_evaluator(cfg, RandomActor(8, seed=0))(2, 0)
    assert isinstance(out["normalized_score"], float) and out["normalized_score"] == 0.0
    cfg.task = "antmaze-nowhere"
    with pytest.raises(ValueError, match="No reference scores"):
        builders.make_evaluator(cfg, RandomActor(8, seed=0))


def test_paper_configs_default_to_released_networks_and_bc(monkeypatch):
    from torch import nn

    from torchrl_leq.data.buffers import make_transitions

    rng = np.random.default_rng(0)
    td = make_transitions(rng.normal(size=(50, 4)), rng.uniform(-1, 1, (50, 2)),
                          rng.normal(size=(50, 4)), np.zeros(50), np.zeros(50, bool),
                          np.zeros(50, bool), np.zeros(50, int))
    data = builders.OfflineData("t", td, builders.make_replay_buffer(td, batch_size=7), "t")
    for name in ("antmaze/umaze", "mujoco/hopper-medium"):
        cfg = example_config(name)
        actor, critic = builders.make_leq_networks(cfg.network, data)
        assert sum(isinstance(m, nn.LayerNorm) for m in actor.modules()) == 0
        assert sum(isinstance(m, nn.LayerNorm) for m in critic.modules()) == 3
        w = next(m for m in actor.modules() if isinstance(m, nn.Linear)).weight.detach()
        torch.testing.assert_close(w.T @ w, 2.0 * torch.eye(4), atol=1e-5, rtol=0)  # orthogonal √2
        assert (cfg.pretrain.bc_batch_size, cfg.pretrain.bc_lr) == (4096, 3e-5)
    quick = example_config("leq_pointmaze")  # the quickstart keeps its own (tuned) choices
    actor, _ = builders.make_leq_networks(quick.network, data)
    assert sum(isinstance(m, nn.LayerNorm) for m in actor.modules()) == 2
    assert quick.pretrain.get("bc_batch_size") is None and quick.pretrain.bc_lr == 3e-4

    sizes = []
    real = builders._loop

    def spy(loss, opt, sample, *args, **kwargs):
        sizes.append(len(sample()))
        assert opt.defaults["lr"] == 3e-5
        return real(loss, opt, sample, *args, **kwargs)

    monkeypatch.setattr(builders, "_loop", spy)
    builders.pretrain_bc(actor, data.buffer, 1, lr=3e-5, batch_size=4096, progress=False)
    builders.pretrain_bc(actor, data.buffer, 1, lr=3e-5, progress=False)
    assert sizes == [4096, 7]
