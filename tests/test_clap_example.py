"""examples/clap.py: the smoke run end to end (JSON summary line, metrics), the ablation switches
through the config, and one-line errors for bad values."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

from script_loader import example_config

ROOT = Path(__file__).resolve().parents[1]


def run_clap(tmp_path, *overrides, timeout=240):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    cmd = [sys.executable, str(ROOT / "examples" / "clap.py"), "smoke=true", "progress=false",
           f"run_dir={tmp_path / 'clap'}", f"hydra.run.dir={tmp_path / 'hydra'}", *overrides]
    return subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=timeout)


def test_smoke_run_prints_the_summary_line(tmp_path):
    proc = run_clap(tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    assert summary["algo"] == "clap" and summary["task"] == "pointmaze-umaze"
    assert math.isfinite(summary["last_score"])
    assert math.isfinite(summary["clap_model_holdout_loss"]) and not summary["clap_model_cached"]
    assert (tmp_path / "clap" / "metrics.csv").stat().st_size > 0


def test_ablation_runs_and_bad_values_fail_in_one_line(tmp_path):
    proc = run_clap(tmp_path, "agent.variant=no_latent_action", "train.total_steps=10")
    assert proc.returncode == 0, proc.stderr[-3000:]
    (tmp_path / "bad").mkdir()
    bad = run_clap(tmp_path / "bad", "loss.horizon=0")
    assert bad.returncode == 2
    assert bad.stderr.strip().splitlines()[-1].startswith("error: loss.horizon must be >= 1")


def test_config_composes_with_table_2_sizes():
    cfg = example_config("clap")
    assert cfg.clap_model.stoch_dim == 30 and cfg.clap_model.deter_dim == 200
    assert cfg.clap_model.latent_action_dim == 12 and cfg.loss.horizon == 5
    assert cfg.optim.actor_lr == 8e-5 and cfg.clap_model.batch_size == 64
    smoke = example_config("clap", "smoke=true")
    assert smoke.train.total_steps == 40 and smoke.clap_model.cache is False
