"""The example scripts: smoke runs, exact resume, determinism, one-line errors, and the same
runner training LEQ and COMBO with only the config changed."""

import csv
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from script_loader import example_config, load_example

from torchrl_leq.training.checkpoint import load_checkpoint

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ROOT / "examples" / "config"
POINTMAZE_EXAMPLES = ["leq_pointmaze", "iql", "cql", "bc", "combo"]
SIMULATOR_EXAMPLES = ["leq_antmaze", "leq_mujoco"]  # smoke data generated with the real simulator
PIXEL_EXAMPLES = ["leq_pixels", "bc_pixels"]  # the generated maze rendered at 64x64


def run_script(name, tmp_path, *overrides, timeout=300):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    cmd = [
        sys.executable,
        str(ROOT / "examples" / f"{name}.py"),
        "smoke=true",
        "progress=false",
        f"run_dir={tmp_path / name}",
        f"hydra.run.dir={tmp_path / 'hydra'}",
        *overrides,
    ]
    return subprocess.run(
        cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=timeout
    )


def final_row(run_dir):
    with open(run_dir / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    assert rows[-1]["kind"] == "final"
    return rows[-1]


@pytest.mark.parametrize("name", POINTMAZE_EXAMPLES + SIMULATOR_EXAMPLES + PIXEL_EXAMPLES)
def test_example_smoke_run(name, tmp_path):
    proc = run_script(name, tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    row = final_row(tmp_path / name)
    assert math.isfinite(float(row["normalized_score"]))
    assert (tmp_path / name / "learning_curve.png").stat().st_size > 1000
    assert '"last_score"' in proc.stdout


def test_released_recipe_config_runs_through_the_quickstart_script(tmp_path):
    """``--config-name leq_pointmaze_released`` (issue 18: the released recipe beside the example)
    trains through the quickstart's script, with the released actor (no LayerNorm)."""
    proc = run_script("leq_pointmaze", tmp_path, "--config-name", "leq_pointmaze_released")
    assert proc.returncode == 0, proc.stderr[-3000:]
    row = final_row(tmp_path / "leq_pointmaze")
    assert math.isfinite(float(row["normalized_score"]))
    params = load_checkpoint(tmp_path / "leq_pointmaze" / "checkpoint.pt")["modules"]["loss"]
    actor = [k for k in params if k.startswith("actor_network_params.") and k.endswith("weight")]
    # Linear, act, Linear, act, Linear: the released actor has no LayerNorm (the quickstart's has)
    assert [k.split(".")[-2] for k in actor] == ["0", "2", "4"], actor


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["loss.tau=2"], "loss.tau must lie in (0.0, 1.0), got 2"),
        (["task=pointmaze-huge"], "Unknown point-maze task 'pointmaze-huge'"),
        (
            ["data.source=d4rl_hdf5", "data.path=/nonexistent/antmaze.hdf5"],
            "/nonexistent/antmaze.hdf5",
        ),
    ],
)
def test_bad_input_gives_one_clear_error_line(overrides, message, tmp_path):
    proc = run_script("leq_pointmaze", tmp_path, *overrides, timeout=120)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    error_lines = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(error_lines) == 1 and message in error_lines[0], proc.stderr[-2000:]


def smoke_config(name, run_dir, **changes):
    overrides = [f"{key}={value}" for key, value in changes.items()]
    return example_config(name, "smoke=true", f"run_dir={run_dir}", "progress=false", *overrides)


def run_leq(cfg):
    return load_example("leq_antmaze").train(cfg)


def params_of(run_dir):
    return load_checkpoint(run_dir / "checkpoint.pt")["modules"]["loss"]


def test_resume_after_kill_equals_uninterrupted_run(tmp_path):
    run_leq(smoke_config("leq_pointmaze", tmp_path / "straight"))
    killed = run_leq(
        smoke_config("leq_pointmaze", tmp_path / "resumed", **{"train.stop_after_steps": 20})
    )
    assert killed["stopped_at"] == 20
    run_leq(smoke_config("leq_pointmaze", tmp_path / "resumed", resume=True))
    straight, resumed = params_of(tmp_path / "straight"), params_of(tmp_path / "resumed")
    assert straight.keys() == resumed.keys()
    for key in straight:
        assert torch.equal(straight[key], resumed[key]), key
    assert (tmp_path / "straight/metrics.csv").read_text() == (
        tmp_path / "resumed/metrics.csv"
    ).read_text()


def test_same_seed_gives_identical_csv(tmp_path):
    for run in ("a", "b"):
        run_leq(smoke_config("leq_pointmaze", tmp_path / run))
    assert (tmp_path / "a/metrics.csv").read_text() == (tmp_path / "b/metrics.csv").read_text()
    logs_a = sorted((tmp_path / "a/logs").rglob("*.csv"))
    assert logs_a, "the TorchRL csv logger wrote nothing"
    for path in logs_a:
        twin = tmp_path / "b" / path.relative_to(tmp_path / "a")
        assert path.read_text() == twin.read_text(), path.name


def test_leq_and_combo_share_data_and_world_model(tmp_path, monkeypatch):
    """COMBO is built from LEQ's parts: the same generated data and the same cached world model."""
    monkeypatch.setenv("TORCHRL_LEQ_DATA", str(tmp_path / "data"))
    leq = run_leq(smoke_config("leq_pointmaze", tmp_path / "leq"))
    models = sorted((tmp_path / "data" / "world_models").glob("*.pt"))
    assert len(models) == 1
    stamp = models[0].stat().st_mtime_ns
    combo = load_example("combo").train(smoke_config("combo", tmp_path / "combo"))
    assert sorted((tmp_path / "data" / "world_models").glob("*.pt")) == models
    assert models[0].stat().st_mtime_ns == stamp  # loaded from the cache, not retrained
    assert all(math.isfinite(r["last_score"]) for r in (leq, combo))
    assert "qvalue_network_params" in str(params_of(tmp_path / "combo").keys())


@pytest.mark.parametrize(
    "backend, produced", [("tensorboard", "events.out.tfevents"), ("wandb", "offline-run")]
)
def test_logger_backends_work_offline(backend, produced, tmp_path):
    proc = run_script("bc", tmp_path, f"logger.backend={backend}", "train.total_steps=20")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert any(produced in path.name for path in (tmp_path / "bc" / "logs").rglob("*"))
    assert final_row(tmp_path / "bc")["kind"] == "final"


def test_hydra_multirun_over_seeds(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    cmd = [
        sys.executable,
        str(ROOT / "examples" / "bc.py"),
        "-m",
        "seed=0,1",
        "smoke=true",
        "progress=false",
        f"hydra.sweep.dir={tmp_path / 'sweep'}",
    ]
    proc = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    runs = sorted((tmp_path / "sweep").glob("*/metrics.csv"))
    assert len(runs) == 2
    assert [final_row(r.parent)["kind"] for r in runs] == ["final", "final"]


def test_joblib_launcher_multirun_writes_each_job_to_its_own_dir(tmp_path):
    """hydra/launcher=seeds_joblib (the [launchers] extra, part of [dev]): 2 parallel jobs."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    cmd = [
        sys.executable,
        str(ROOT / "examples" / "bc.py"),
        "-m",
        "seed=0,1",
        "hydra/launcher=seeds_joblib",
        "smoke=true",
        "progress=false",
        f"hydra.sweep.dir={tmp_path / 'sweep'}",
    ]
    proc = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "Joblib.Parallel(n_jobs=2" in proc.stderr + proc.stdout
    runs = sorted((tmp_path / "sweep").glob("*/metrics.csv"))
    assert [r.parent.name for r in runs] == ["0", "1"]
    assert [final_row(r.parent)["kind"] for r in runs] == ["final", "final"]
    seeds = sorted(
        json.loads(line)["seed"] for line in proc.stdout.splitlines() if line.startswith("{")
    )
    assert seeds == [0, 1]
