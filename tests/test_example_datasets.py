"""The D4RL examples' data side: missing-dataset message, smoke datasets from the real simulator,
the AntMaze D4RL-layout env, goal terminations, and the per-task hydra configs (Table 10's τ)."""

from pathlib import Path

import gymnasium as gym
import h5py
import numpy as np
import pytest
import torch
from omegaconf import OmegaConf
from script_loader import example_config, load_example

from torchrl_leq.data import read_d4rl_hdf5
from torchrl_leq.data.simulator import D4RL_KEYS, generate_smoke_dataset, smoke_dataset_path
from torchrl_leq.data.transforms import released_reward_kind
from torchrl_leq.envs.antmaze import (
    ANTMAZE_LAYOUT_ENV_SPEC,
    antmaze_maze_map,
    gymnasium_goal_xy,
    make_antmaze_eval_env,
    make_goal_termination,
    termination_from_config,
)
from torchrl_leq.envs.termination import get_termination_fn
from torchrl_leq.objectives import LEQLoss
from torchrl_leq.objectives.hyperparameters import check_hyperparameters
from torchrl_leq.training.builders import make_offline_data
from torchrl_leq.training.checks import CONFIG_RULES, check_config, check_value
from torchrl_leq.training.cli import run_example
from torchrl_leq.training.datasets import check_dataset

CONFIG = Path(__file__).resolve().parents[1] / "examples" / "config"

# Table 10 of the paper.
MUJOCO_TAU = {
    "hopper-random": 0.1,
    "hopper-medium": 0.1,
    "hopper-medium-replay": 0.3,
    "hopper-medium-expert": 0.1,
    "walker2d-random": 0.1,
    "walker2d-medium": 0.3,
    "walker2d-medium-replay": 0.5,
    "walker2d-medium-expert": 0.1,
    "halfcheetah-random": 0.3,
    "halfcheetah-medium": 0.3,
    "halfcheetah-medium-replay": 0.4,
    "halfcheetah-medium-expert": 0.1,
}
ANTMAZE_TAU = {
    "umaze": 0.1,
    "umaze-diverse": 0.1,
    "medium-play": 0.3,
    "medium-diverse": 0.1,
    "large-play": 0.3,
    "large-diverse": 0.3,
    "ultra-play": 0.1,
    "ultra-diverse": 0.1,
}
ENV_IDS = {"hopper": "Hopper-v5", "walker2d": "Walker2d-v5", "halfcheetah": "HalfCheetah-v5"}


def _compose(family: str, name: str, overrides=()):
    return example_config(f"{family}/{name}", *overrides)


def _train(cfg):
    return load_example("leq_antmaze").train(cfg)


# --- missing dataset -------------------------------------------------------------------------


def test_missing_dataset_names_path_and_remedies(tmp_path):
    path = tmp_path / "hopper_medium-v2.hdf5"
    with pytest.raises(FileNotFoundError) as info:
        check_dataset({"source": "d4rl_hdf5", "path": str(path)}, "hopper-medium")
    message = str(info.value)
    assert "\n" not in message
    assert str(path) in message
    assert "gym_mujoco_v2/hopper_medium-v2.hdf5" in message
    assert "data.source=minari" in message and "smoke=true" in message
    check_dataset({"source": "pointmaze", "task": "pointmaze-umaze"})  # a known maze passes
    with pytest.raises(ValueError, match="Unknown point-maze task 'pointmaze-x'"):
        check_dataset({"source": "pointmaze", "task": "pointmaze-x"})


def test_missing_file_exits_with_one_line_before_any_work(tmp_path, capsys):
    missing = tmp_path / "nope.hdf5"
    cfg = _compose("mujoco", "hopper-medium", [f"data.path={missing}"])
    with pytest.raises(FileNotFoundError, match="nope.hdf5"):
        check_config(cfg)
    with pytest.raises(SystemExit) as info:
        run_example("leq", _train, cfg)
    assert info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and str(missing) in err[0]


def test_antmaze_without_eval_env_fails_fast(tmp_path):
    present = tmp_path / "antmaze.hdf5"
    present.write_bytes(b"")
    cfg = _compose("antmaze", "umaze", [f"data.path={present}"])
    with pytest.raises(ValueError, match="eval.env_id"):
        check_config(cfg)


# --- smoke datasets --------------------------------------------------------------------------


def _check_d4rl_file(path: Path, obs_dim: int, act_dim: int, steps: int) -> dict:
    with h5py.File(path, "r") as f:
        assert sorted(f.keys()) == sorted(D4RL_KEYS)
        data = {k: f[k][()] for k in f}
    assert data["observations"].shape == data["next_observations"].shape == (steps, obs_dim)
    assert data["actions"].shape == (steps, act_dim)
    for key in ("rewards", "terminals", "timeouts"):
        assert data[key].shape == (steps,)
    assert data["terminals"].dtype == data["timeouts"].dtype == np.bool_
    assert np.abs(data["actions"]).max() <= 1.0 and data["actions"].std() > 0.1
    ends = data["terminals"] | data["timeouts"]
    assert not (data["terminals"] & data["timeouts"]).any()
    assert ends[-1]
    # Inside an episode the next observation is the following row.
    inside = ~ends[:-1]
    np.testing.assert_array_equal(
        data["next_observations"][:-1][inside], data["observations"][1:][inside]
    )
    td = read_d4rl_hdf5(path)
    assert td.shape[0] == steps
    assert int(td["next", "terminated"].sum()) == int(data["terminals"].sum())
    assert int(td["next", "truncated"].sum()) == int(data["timeouts"].sum())
    assert int(td["next", "done"].sum()) == int(ends.sum())
    torch.testing.assert_close(td["action"], torch.as_tensor(data["actions"]))
    return data


def test_smoke_dataset_hopper_terminations(tmp_path):
    path = generate_smoke_dataset("Hopper-v5", tmp_path / "hopper.hdf5", steps=300, seed=1)
    data = _check_d4rl_file(path, 11, 3, 300)
    # A random hopper falls within ~20-60 steps: the env's own `terminated` gives terminals,
    # and the MBPO rule agrees on them.
    assert data["terminals"].sum() >= 3
    rule = get_termination_fn("hopper")(None, None, torch.as_tensor(data["next_observations"]))
    assert rule.squeeze(-1).numpy()[data["terminals"]].all()
    # Cached: a second call reuses the file.
    mtime = path.stat().st_mtime_ns
    assert generate_smoke_dataset("Hopper-v5", path, steps=300, seed=1) == path
    assert path.stat().st_mtime_ns == mtime


def test_smoke_dataset_antmaze_layout_with_timeouts(tmp_path):
    kwargs = {"maze": "umaze", "max_episode_steps": 60}
    path = generate_smoke_dataset(ANTMAZE_LAYOUT_ENV_SPEC, steps=150, env_kwargs=kwargs)
    assert path == smoke_dataset_path(ANTMAZE_LAYOUT_ENV_SPEC, 150, 0, kwargs)
    assert path.parent.name == "smoke"
    data = _check_d4rl_file(path, 29, 8, 150)
    np.testing.assert_array_equal(np.flatnonzero(data["timeouts"]), [59, 119, 149])
    assert not data["terminals"].any()


def test_smoke_data_come_from_the_simulator():
    cfg = _compose("mujoco", "walker2d-medium", ["smoke=true", "data.steps=100"])
    assert cfg.data.source == "simulator" and cfg.data.env_id == "Walker2d-v5"
    data = make_offline_data(cfg.data)
    path = Path(data.description.split("+")[0])
    assert path.is_file() and path.parent.name == "smoke"
    with h5py.File(path, "r") as f:
        assert f.attrs["env_id"] == "Walker2d-v5" and f["observations"].shape == (100, 17)
    # AntMaze smoke: the smoke eval env (from the task's smoke preset) generates the data.
    cfg = _compose("antmaze", "medium-play", ["smoke=true", "data.steps=50"])
    path = Path(make_offline_data(cfg.data).description.split("+")[0])
    with h5py.File(path, "r") as f:
        assert f.attrs["env_id"] == ANTMAZE_LAYOUT_ENV_SPEC and "medium" in f.attrs["env_kwargs"]
        assert f["observations"].shape == (50, 29)


# --- AntMaze layout env and terminations ----------------------------------------------------


def test_antmaze_layout_obs_is_xy_first_29_dims():
    env = gym.make(ANTMAZE_LAYOUT_ENV_SPEC, maze="umaze", max_episode_steps=700)
    assert env.observation_space.shape == (29,) and env.spec.max_episode_steps == 700
    obs, _ = env.reset(seed=3)
    ant = env.unwrapped.ant_env.data
    assert obs.shape == (29,)
    np.testing.assert_allclose(obs, np.concatenate([ant.qpos, ant.qvel]))  # D4RL's layout
    for _ in range(3):
        obs, *_ = env.step(env.action_space.sample())
    np.testing.assert_allclose(obs[:2], env.unwrapped.ant_env.data.qpos[:2])
    # Start and goal are D4RL's fixed cells; goal noise is within ±1 of the cell centre.
    np.testing.assert_allclose(obs[:2], [-4.0, 4.0], atol=1.5)
    np.testing.assert_allclose(env.unwrapped.goal, gymnasium_goal_xy("umaze"), atol=1.0)
    env.close()


def test_antmaze_maps_and_goals():
    assert antmaze_maze_map("umaze")[1][1] == "r" and antmaze_maze_map("umaze")[3][1] == "g"
    assert gymnasium_goal_xy("antmaze-umaze-diverse") == (-4.0, -4.0)
    assert gymnasium_goal_xy("medium") == (10.0, -10.0)
    assert gymnasium_goal_xy("large") == (14.0, -12.0)
    with pytest.raises(ValueError, match="ultra"):
        make_antmaze_eval_env("ultra")


def test_make_goal_termination_hand_cases():
    fn = make_goal_termination([-4.0, -4.0], 0.5)
    next_obs = torch.tensor(
        [[-4.0, -4.0, 9.0], [-4.0, -3.5, 9.0], [-4.0, -3.49, 9.0], [-3.6, -3.6, 9.0]]
    )
    assert fn(None, None, next_obs).squeeze(-1).tolist() == [True, True, False, False]
    batch = fn(None, None, torch.zeros(2, 5, 29))
    assert batch.shape == (2, 5, 1) and batch.dtype == torch.bool and not batch.any()
    assert make_goal_termination([0.75, 8.75])(None, None, torch.tensor([0.75, 9.0])).item()
    assert not make_goal_termination([0.75, 8.75])(None, None, torch.tensor([0.75, 9.1])).item()
    for goal, radius in (([1.0], 0.5), ([1.0, float("nan")], 0.5), ([0.0, 0.0], 0.0)):
        with pytest.raises(ValueError):
            make_goal_termination(goal, radius)
    assert termination_from_config(None, "antmaze-umaze") == "antmaze-umaze"
    node = OmegaConf.create({"goal": [-4.0, -4.0], "radius": 0.5})
    assert termination_from_config(node, "antmaze-umaze")(None, None, next_obs[:1]).item()
    with pytest.raises(ValueError, match="goal"):
        termination_from_config({"radius": 0.5}, "antmaze-umaze")


# --- per-task configs ------------------------------------------------------------------------


def _common_paper_values(cfg, config_name):
    assert (cfg.optim.actor_lr, cfg.optim.critic_lr, cfg.optim.ema_decay) == (3e-5, 1e-4, 0.995)
    assert (cfg.optim.batch_size_env, cfg.optim.batch_size_model) == (256, 256)
    assert (cfg.loss.horizon, cfg.loss.gamma, cfg.loss.lmbda) == (10, 0.997, 0.95)
    assert (cfg.loss.beta, cfg.loss.ema_weight, cfg.loss.actor_gradient) == (0.25, 1.0, "per_step")
    assert (cfg.expansion.num_starts, cfg.expansion.rollout_length, cfg.expansion.noise) == (
        50000,
        5,
        1.0,
    )
    assert (cfg.world_model.num_members, cfg.world_model.num_elites) == (7, 5)
    assert list(cfg.world_model.hidden_dims) == [200] * 4
    assert list(cfg.network.num_cells) == [256] * 3 and cfg.network.layer_norm
    assert cfg.train.total_steps == 1_000_000 and cfg.train.eval_every == 50_000
    for key in CONFIG_RULES:  # every shipped value passes its range check
        value = OmegaConf.select(cfg, key, default="<absent>")
        if value != "<absent>":
            check_value(key, value)
    check_hyperparameters(LEQLoss.hyperparameter_rules, "loss.", **cfg.loss)
    smoke = example_config(config_name, "smoke=true")
    assert smoke.train.total_steps < 100 and smoke.data.source == "simulator"
    return cfg, smoke


@pytest.mark.parametrize("name", sorted(MUJOCO_TAU))
def test_mujoco_config(name):
    cfg = _compose("mujoco", name)
    assert cfg.task == name and cfg.loss.tau == MUJOCO_TAU[name]
    env, dataset = name.split("-", 1)
    assert cfg.data.path == f"~/.d4rl/datasets/{env}_{dataset.replace('-', '_')}-v2.hdf5"
    assert cfg.eval.env_id == ENV_IDS[env]
    # the released code's reward rule: *-random keeps raw rewards, the others are scaled
    assert cfg.data.reward_transform == released_reward_kind(name)
    assert cfg.data.reward_transform == ("none" if dataset == "random" else "locomotion")
    assert cfg.pretrain.enabled and cfg.pretrain.bc_steps == cfg.pretrain.fqe_steps == 200_000
    _common_paper_values(cfg, f"mujoco/{name}")


@pytest.mark.parametrize("name", sorted(ANTMAZE_TAU))
def test_antmaze_config(name):
    cfg = _compose("antmaze", name)
    assert cfg.task == f"antmaze-{name}" and cfg.loss.tau == ANTMAZE_TAU[name]
    assert cfg.data.path.startswith("~/.d4rl/datasets/") and cfg.data.reward_transform == "maze"
    assert not cfg.pretrain.enabled and cfg.termination is None and cfg.eval.env_id is None
    _, smoke = _common_paper_values(cfg, f"antmaze/{name}")
    maze = smoke.eval.env_kwargs.maze
    assert smoke.eval.env_id == ANTMAZE_LAYOUT_ENV_SPEC
    assert maze == (name.split("-")[0] if not name.startswith("ultra") else "umaze")
    assert tuple(smoke.termination.goal) == gymnasium_goal_xy(maze)


def test_mujoco_example_default_and_task_files_cover_table10():
    assert {p.stem for p in (CONFIG / "mujoco").glob("*.yaml")} == {*MUJOCO_TAU, "base"}
    assert {p.stem for p in (CONFIG / "antmaze").glob("*.yaml")} == {*ANTMAZE_TAU, "base"}


# --- the examples end to end (smoke) ---------------------------------------------------------


@pytest.mark.parametrize(("family", "name"), [("mujoco", "hopper-medium"), ("antmaze", "umaze")])
def test_example_smoke_runs(family, name, tmp_path):
    overrides = ["smoke=true", f"run_dir={tmp_path}", "progress=false", "data.steps=500"]
    cfg = _compose(family, name, overrides)
    result = _train(cfg)
    assert Path(result["metrics_csv"]).is_file()
    assert result["last_score"] is not None
