"""Every C-LAP config of ``examples/clap.py`` (``clap.yaml``, ``clap/mujoco/*``, ``clap_pixels``,
``clap_pixels_vd4rl``, ``clap/vd4rl/*``): it composes, carries the paper's values (Table 2's
sizes, Table 3's / Table 4's ε̃ per dataset) and the data and evaluation of the LEQ config for the
same data; and smoke runs end to end on every kind of data: a MuJoCo task from the command line
(simulator data written as a D4RL file), a Minari stand-in, the rendered maze and a V-D4RL folder.
"""

from __future__ import annotations

import csv
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import h5py
import pytest
import torch
from omegaconf import OmegaConf
from script_loader import CONFIGS, example_config, load_example

from torchrl_leq.data.generate_minari import generate_minari_dataset
from torchrl_leq.data.pixels import render_pointmaze_dataset
from torchrl_leq.data.simulator import smoke_dataset_path
from torchrl_leq.envs.clap_env import CLAPPolicy
from torchrl_leq.modules.latent_action_model import LatentActionModel
from torchrl_leq.objectives.clap import CLAPLoss
from torchrl_leq.objectives.hyperparameters import ConfigError
from torchrl_leq.training import pixel_data
from torchrl_leq.training.checks import check_config
from torchrl_leq.training.clap import load_clap_model
from torchrl_leq.training.clap_builders import CLAP_RULES, MODEL_KEYS

ROOT = Path(__file__).resolve().parents[1]

TABLE_3 = {  # ε̃ per D4RL MuJoCo dataset
    "halfcheetah-medium-replay": 3.0, "halfcheetah-medium": 3.0,
    "halfcheetah-medium-expert": 2.0, "halfcheetah-expert": 2.0,
    "walker2d-medium-replay": 3.0, "walker2d-medium": 1.0,
    "walker2d-medium-expert": 3.0, "walker2d-expert": 2.0,
    "hopper-medium-replay": 2.0, "hopper-medium": 3.0,
    "hopper-medium-expert": 2.0, "hopper-expert": 0.5,
}
RANDOM = {f"{env}-random": 3.0 for env in ("halfcheetah", "walker2d", "hopper")}
"""Not in Table 3 (the paper leaves random data out): the widest ε̃ of its range (docs/clap.md)."""
TABLE_4 = {  # ε̃ per V-D4RL dataset
    "cheetah_run-medium_replay": 3.0, "cheetah_run-medium": 3.0,
    "cheetah_run-medium_expert": 3.0, "cheetah_run-expert": 3.0,
    "walker_walk-medium_replay": 3.0, "walker_walk-medium": 3.0,
    "walker_walk-medium_expert": 0.5, "walker_walk-expert": 0.5,
}
ENV_IDS = {"halfcheetah": "HalfCheetah-v5", "walker2d": "Walker2d-v5", "hopper": "Hopper-v5"}


def assert_table_2(cfg, *, visual: bool) -> None:
    """Table 2: the model (low-dimensional or visual) and the agent."""
    m = cfg.clap_model
    assert (m.stoch_dim, m.hidden_dim, m.latent_action_dim) == (30, 200, 12)
    assert (m.deter_dim, m.embed_dim) == ((512, 1024) if visual else (200, 30))
    assert (m.encoder_units, m.encoder_layers) == (128, 2)
    assert (m.action_encoder_units, m.action_decoder_units, m.action_prior_units) == (512, 512, 256)
    assert (m.lr, m.batch_size, m.seq_len) == (3e-4, 64, 50)
    assert (cfg.agent.units, cfg.agent.layers, cfg.loss.num_value_nets) == (256, 3, 2)
    assert cfg.optim.actor_lr == cfg.optim.value_lr == 8e-5
    assert (cfg.loss.entropy_coef, cfg.loss.horizon) == (0.01, 5)


def composed(name: str, *overrides: str):
    return example_config(name, *overrides), example_config(name, "smoke=true", *overrides)


# --- the configs ------------------------------------------------------------------------------


def test_mujoco_files_cover_table_3_and_every_leq_mujoco_task():
    files = {p.stem for p in (CONFIGS / "clap" / "mujoco").glob("*.yaml")} - {"base"}
    leq = {p.stem for p in (CONFIGS / "mujoco").glob("*.yaml")} - {"base"}
    assert files == set(TABLE_3) | set(RANDOM) and leq <= files
    assert {p.stem for p in (CONFIGS / "clap" / "vd4rl").glob("*.yaml")} == set(TABLE_4)


@pytest.mark.parametrize("name", sorted({**TABLE_3, **RANDOM}))
def test_mujoco_config(name):
    cfg, smoke = composed(f"clap/mujoco/{name}")
    env, dataset = name.split("-", 1)
    assert cfg.task == name and cfg.agent.epsilon == {**TABLE_3, **RANDOM}[name]
    assert cfg.agent.variant == "clap"
    assert_table_2(cfg, visual=False)
    assert cfg.data.source == "d4rl_hdf5" and cfg.eval.env_id == ENV_IDS[env]
    assert cfg.data.path == f"~/.d4rl/datasets/{env}_{dataset.replace('-', '_')}-v2.hdf5"
    assert cfg.data.reward_transform == ("none" if dataset == "random" else "locomotion")
    if dataset in ("medium", "expert"):
        assert cfg.data.dataset_id == f"mujoco/{env}/{dataset}-v0"
    # the task's termination: the head learnt from the data's falls; halfcheetah never ends
    assert cfg.imagination.termination == (None if env == "halfcheetah" else "model")
    if (CONFIGS / "mujoco" / f"{name}.yaml").exists():  # LEQ's data and evaluation, the same
        leq = example_config(f"mujoco/{name}")
        for key in ("path", "dataset_id", "reward_transform"):
            assert cfg.data[key] == leq.data[key], key
        assert cfg.eval == leq.eval
    # smoke=true: no download, random-policy data in the evaluation env, tiny sizes
    assert smoke.data.source == "simulator" and smoke.data.env_id == ENV_IDS[env]
    assert smoke.train.total_steps < 100 and smoke.agent.epsilon == cfg.agent.epsilon


@pytest.mark.parametrize("name", sorted(TABLE_4))
def test_vd4rl_config(name):
    cfg, smoke = composed(f"clap/vd4rl/{name}")
    env, dataset = name.split("-")
    assert cfg.task == name and cfg.agent.epsilon == TABLE_4[name]
    assert_table_2(cfg, visual=True)
    assert cfg.data.source == "vd4rl" and cfg.data.path == f"vd4rl_data/main/{env}/{dataset}/64px"
    assert cfg.data.reward_shift == 0.0 and cfg.imagination.termination is None  # DMC
    assert smoke.clap_model.channels < cfg.clap_model.channels == 32
    assert smoke.agent.epsilon == cfg.agent.epsilon


def test_pixel_configs_use_leq_pixels_data_and_table_2_visual_sizes():
    cfg = example_config("clap_pixels")
    assert_table_2(cfg, visual=True)
    assert cfg.data == example_config("leq_pixels").data  # same frames, same rendered maze
    assert cfg.world_model is None and cfg.network is None  # base/pixels' RSSM and LEQ nets
    assert cfg.train.max_eval_steps is None and cfg.imagination.termination == "model"
    vd4rl = example_config("clap_pixels_vd4rl")
    assert vd4rl.data.source == "vd4rl" and vd4rl.imagination.termination is None
    # Table 2's CNNs: encoder channels 32-64-128-256 (kernel 4, stride 2) to a 1024 embedding,
    # decoder 128-64-32-3 (kernels 5, 5, 6, 6)
    node = OmegaConf.to_container(cfg.clap_model)
    model = LatentActionModel(None, 2, **{k: node[k] for k in MODEL_KEYS if k in node})
    convs = [m for m in model.encoder.modules() if isinstance(m, torch.nn.Conv2d)]
    deconvs = [m for m in model.decoder.modules() if isinstance(m, torch.nn.ConvTranspose2d)]
    assert [(c.out_channels, c.kernel_size[0], c.stride[0]) for c in convs] == [
        (32, 4, 2), (64, 4, 2), (128, 4, 2), (256, 4, 2)]
    assert [(c.out_channels, c.kernel_size[0]) for c in deconvs] == [
        (128, 5), (64, 5), (32, 6), (3, 6)]
    assert model.embed_dim == cfg.clap_model.embed_dim == 1024
    assert model.encode(torch.zeros(1, 3, 64, 64, dtype=torch.uint8)).shape == (1, 1024)


def test_point_maze_config_keeps_table_2_and_bad_epsilon_fails_before_any_work(tmp_path):
    assert_table_2(example_config("clap"), visual=False)
    for name in ("clap", "clap_pixels"):
        cfg = example_config(name, "smoke=true", "agent.epsilon=0", f"run_dir={tmp_path}")
        with pytest.raises(ConfigError, match="agent.epsilon must be > 0"):
            check_config(cfg, CLAPLoss.hyperparameter_rules, CLAP_RULES)
    cfg = example_config("clap_pixels", "smoke=true", "data.view=top", f"run_dir={tmp_path}")
    with pytest.raises(ConfigError, match=r"data.view must be one of \['interior', 'maze'\]"):
        check_config(cfg, CLAPLoss.hyperparameter_rules, CLAP_RULES)


# --- smoke runs -------------------------------------------------------------------------------


def final_row(metrics_csv) -> dict:
    with open(metrics_csv) as f:
        rows = list(csv.DictReader(f))
    assert rows[-1]["kind"] == "final"
    return rows[-1]


def assert_finite_losses(run_dir: Path) -> None:
    for name in ("loss_actor", "loss_value"):
        (path,) = run_dir.glob(f"logs/*/scalars/train/{name}.csv")
        with open(path) as f:
            values = [float(row[1]) for row in csv.reader(f)]
        assert values and all(math.isfinite(v) for v in values), name


def test_mujoco_smoke_from_the_command_line_without_a_download(tmp_path):
    """``python examples/clap.py --config-name clap/mujoco/hopper-medium smoke=true``: random
    Hopper-v5 data written as a D4RL HDF5 file, the model, the agent, evaluation in Hopper-v5."""
    run = tmp_path / "run"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    cmd = [sys.executable, str(ROOT / "examples" / "clap.py"),
           "--config-name", "clap/mujoco/hopper-medium", "smoke=true", "progress=false",
           f"run_dir={run}", f"hydra.run.dir={tmp_path / 'hydra'}"]
    proc = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    assert summary["algo"] == "clap" and summary["task"] == "hopper-medium"
    assert math.isfinite(summary["last_score"]) and not summary["clap_model_cached"]
    assert math.isfinite(summary["clap_model_holdout_loss"])
    assert 0.0 < summary["clap_model_holdout_action_mae"] < 2.0
    row = final_row(summary["metrics_csv"])
    assert math.isfinite(float(row["mean_return"])) and float(row["mean_return"]) != 0.0
    assert_finite_losses(run)
    with h5py.File(smoke_dataset_path("Hopper-v5", 3000, 0)) as f:  # the smoke run's D4RL file
        assert {"observations", "actions", "rewards", "terminals", "timeouts"} <= set(f)
        assert f["observations"].shape == (3000, 11) and f["terminals"][()].any()


def test_minari_smoke_run(tmp_path):
    """``data.source=minari`` (the task file's ``dataset_id``): a local stand-in of Minari's
    hopper medium dataset, evaluated in the env the dataset names."""
    root = tmp_path / "minari"
    generate_minari_dataset("mujoco/hopper/medium-v0", root, steps=800)
    cfg = example_config("clap/mujoco/hopper-medium", "smoke=true", "progress=false",
                         "data.source=minari", f"data.root={root}", f"run_dir={tmp_path / 'run'}")
    result = load_example("clap").train(cfg)
    assert math.isfinite(result["last_score"]) and math.isfinite(result["clap_model_holdout_loss"])
    assert math.isfinite(float(final_row(result["metrics_csv"])["mean_return"]))
    assert_finite_losses(tmp_path / "run")


def test_rendered_maze_smoke_run_learns_from_frames(tmp_path, monkeypatch):
    """``clap_pixels``: the model sees 64×64 frames (conv encoder/decoder), the policy filters
    frames of the rendered maze (the data's ball radius and view)."""
    calls = []
    real = pixel_data.evaluate_rendered

    def spy(policy, task, *args, **kwargs):
        calls.append((policy, task, kwargs))
        return real(policy, task, *args, **kwargs)

    monkeypatch.setattr(pixel_data, "evaluate_rendered", spy)
    cfg = example_config("clap_pixels", "smoke=true", "progress=false", "clap_model.cache=true",
                         f"run_dir={tmp_path / 'run'}")
    result = load_example("clap").train(cfg)
    assert math.isfinite(result["last_score"]) and math.isfinite(result["clap_model_holdout_loss"])
    row = final_row(result["metrics_csv"])
    assert 0.0 <= float(row["success_rate"]) <= 1.0 and math.isfinite(float(row["mean_return"]))
    assert_finite_losses(tmp_path / "run")
    model = load_clap_model(result["clap_model"])
    assert model.pixels and model.config["obs_dim"] is None
    assert model.decode(torch.zeros(1, model.feature_dim)).shape == (1, 3, 64, 64)
    policy, task, kwargs = calls[-1]
    assert isinstance(policy, CLAPPolicy) and policy.in_keys == ["pixels"]
    assert task == "pointmaze-umaze" and kwargs["ball_radius"] == cfg.data.ball_radius
    assert kwargs["view"] == cfg.data.view and kwargs["max_steps"] == 20


def test_vd4rl_smoke_run_on_a_folder(tmp_path):
    """``clap/vd4rl/walker_walk-medium_expert`` (ε̃ 0.5) on a V-D4RL-format folder (the rendered
    maze written as one): trains; no DMC here, so the scores are NaN."""
    folder = render_pointmaze_dataset("pointmaze-umaze", 600, 0, episode_length=100)
    cfg = example_config("clap/vd4rl/walker_walk-medium_expert", "smoke=true", "progress=false",
                         f"data.path={folder}", f"run_dir={tmp_path / 'run'}")
    assert cfg.agent.epsilon == 0.5 and cfg.imagination.termination is None
    result = load_example("clap").train(cfg)
    assert math.isnan(result["last_score"]) and math.isfinite(result["clap_model_holdout_loss"])
    assert_finite_losses(tmp_path / "run")
    assert (tmp_path / "run" / "checkpoint.pt").exists()
