"""The pixel examples end to end through their ``train(cfg)``: ``leq_pixels.py`` and
``bc_pixels.py`` in smoke mode on the rendered maze (one world model for both), LEQ on a
V-D4RL folder, LEQ's exact resume. Their one-line config errors are in test_cli_errors.py."""

from __future__ import annotations

import csv
import math

import torch
from script_loader import example_config, load_example

from torchrl_leq.data.pixels import render_pointmaze_dataset
from torchrl_leq.training.checkpoint import load_checkpoint


def config(name, run_dir, *overrides):
    return example_config(name, "smoke=true", "progress=false", f"run_dir={run_dir}", *overrides)


def final_row(run_dir):
    with open(run_dir / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    assert rows[-1]["kind"] == "final"
    return rows[-1]


def test_smoke_runs_end_to_end_on_the_same_world_model(tmp_path):
    modules = {name: load_example(name) for name in ("leq_pixels", "bc_pixels")}
    results = {name: m.train(config(name, tmp_path / name)) for name, m in modules.items()}
    for name, result in results.items():
        assert math.isfinite(result["last_score"]), name
        assert float(final_row(tmp_path / name)["normalized_score"]) == result["last_score"]
        assert set(modules["leq_pixels"].SUMMARY_KEYS) <= result.keys(), name
        assert result["leq_step_s"] > 0 and not result["world_model_cached"]
    # BC learns on the features of the world model LEQ uses: the same cache entry
    assert results["leq_pixels"]["world_model"] == results["bc_pixels"]["world_model"]


def test_leq_on_a_vd4rl_folder_trains_and_reports_nan_scores(tmp_path):
    """The rendered dataset is a V-D4RL folder: read it as one (no evaluation env, DMC style)."""
    folder = render_pointmaze_dataset("pointmaze-umaze", 600, 0, episode_length=100)
    cfg = config("leq_pixels_vd4rl", tmp_path / "run", f"data.path={folder}")
    assert cfg.world_model.termination == "none" and cfg.data.reward_shift == 0.0
    result = load_example("leq_pixels").train(cfg)
    assert math.isnan(result["last_score"])
    assert (tmp_path / "run" / "checkpoint.pt").exists()


def test_leq_resume_after_kill_equals_uninterrupted_run(tmp_path):
    """The checkpoint holds the latent env's own generator too: a resumed run imagines the same
    rollouts as an uninterrupted one."""
    leq = load_example("leq_pixels")
    leq.train(config("leq_pixels", tmp_path / "straight"))
    killed = leq.train(config("leq_pixels", tmp_path / "resumed", "train.stop_after_steps=5"))
    assert killed["stopped_at"] == 5
    leq.train(config("leq_pixels", tmp_path / "resumed", "resume=true"))
    straight, resumed = (load_checkpoint(tmp_path / run / "checkpoint.pt")["modules"]["loss"]
                         for run in ("straight", "resumed"))
    assert straight.keys() == resumed.keys()
    for key in straight:
        assert torch.equal(straight[key], resumed[key]), key
