"""V-D4RL evaluation in the DeepMind Control suite (``torchrl_leq/envs/dmc.py``): the evaluator
against a hand-written dm_control loop, the task found from a V-D4RL path, and an example run on
a V-D4RL folder written from real walker frames, scored in walker_walk."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from script_loader import example_config, load_example
from tensordict import TensorDict
from tensordict.nn import TensorDictModuleBase

from torchrl_leq.data.vd4rl import write_vd4rl_episode
from torchrl_leq.envs.dmc import dmc_env_name, dmc_suite, dmc_tasks, evaluate_dmc
from torchrl_leq.training.checks import dmc_task


class ScriptedPolicy(TensorDictModuleBase):
    """Action ``sin(k · t)`` per dimension at policy step t; records what it was given."""

    in_keys = ["pixels", "is_first"]
    out_keys = ["action"]

    def __init__(self, action_dim: int) -> None:
        super().__init__()
        self.k = torch.arange(1, action_dim + 1, dtype=torch.float32)
        self.t, self.seen = 0, []

    def reset(self) -> None:
        self.t = 0

    def forward(self, td: TensorDict) -> TensorDict:
        self.seen.append((td["pixels"].shape, td["pixels"].dtype, bool(td["is_first"][0])))
        td["action"] = torch.sin(self.k * self.t)[None]
        self.t += 1
        return td


def test_evaluate_dmc_equals_a_hand_loop_with_action_repeat_2():
    policy = ScriptedPolicy(6)
    res = evaluate_dmc(policy, "walker_walk", episodes=2, seed=7, max_steps=15)
    assert res["lengths"] == [15, 15]
    assert policy.seen[0] == (torch.Size([1, 64, 64, 3]), torch.uint8, True)
    assert [first for *_, first in policy.seen] == ([True] + [False] * 14) * 2
    for i, got in enumerate(res["returns"]):
        env = dmc_suite().load("walker", "walk", task_kwargs={"random": 7 + i})
        env.reset()
        want = 0.0
        for t in range(15):
            action = np.sin(np.arange(1, 7) * t).astype(np.float32).astype(np.float64)
            for _ in range(2):
                want += env.step(action).reward
        assert got == pytest.approx(want, abs=1e-9), (i, got, want)
    assert res["mean_return"] == pytest.approx(np.mean(res["returns"]))
    assert res["returns"][0] != res["returns"][1]  # the episodes' seeds differ


def test_dmc_task_names():
    assert dmc_tasks()["walker_walk"] == ("walker", "walk")
    assert dmc_tasks()["cheetah_run"] == ("cheetah", "run")
    assert dmc_env_name("vd4rl_data/main/walker_walk/medium_replay/64px") == "walker_walk"
    assert dmc_env_name("/tmp/rendered/pointmaze-umaze") is None
    dmc_task("data.dmc_env", "cheetah_run")
    with pytest.raises(ValueError, match="not a DMC suite task"):
        dmc_task("data.dmc_env", "walker-walk")


def _walker_folder(root, episodes: int = 2, steps: int = 40) -> str:
    """A V-D4RL folder (``.../walker_walk/medium/64px``) of random walker episodes, 64 px."""
    folder = root / "walker_walk" / "medium" / "64px"
    rng = np.random.default_rng(0)
    for i in range(episodes):
        env = dmc_suite().load("walker", "walk", task_kwargs={"random": i})
        env.reset()
        images = [env.physics.render(64, 64, camera_id=0)]
        actions, rewards = [np.zeros(6, np.float32)], [0.0]
        for _ in range(steps):
            a = rng.uniform(-1, 1, 6).astype(np.float32)
            rewards.append(sum(env.step(a.astype(np.float64)).reward for _ in range(2)))
            actions.append(a)
            images.append(env.physics.render(64, 64, camera_id=0))
        write_vd4rl_episode(folder, {"image": np.stack(images), "action": np.stack(actions),
                                     "reward": np.asarray(rewards, np.float32)}, index=i)
    return str(folder)


def test_clap_on_a_walker_vd4rl_folder_is_scored_in_walker_walk(tmp_path):
    folder = _walker_folder(tmp_path)
    cfg = example_config("clap/vd4rl/walker_walk-medium", "smoke=true", "progress=false",
                         f"data.path={folder}", f"run_dir={tmp_path / 'run'}",
                         "train.max_eval_steps=10")
    result = load_example("clap").train(cfg)
    assert math.isfinite(result["last_score"])
    # the score is return / 10 of 10 policy steps (20 simulator steps, rewards in [0, 1])
    assert 0.0 <= result["last_score"] <= 2.0
