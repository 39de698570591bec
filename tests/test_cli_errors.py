"""Bad input to the example scripts, end to end: every user error is one line
``error: <what> — <how to fix>`` on stderr, exit status 2, no traceback, and it comes before any
heavy work (no data loaded or generated, no world model, no pretraining); run directories of
other runs are refused or resumed as asked, and nothing of the user's is touched.

Most cases run ``train(cfg)`` of the real example in this process, inside the examples' own
``user_errors()``, with the data loader replaced by one that fails the test if it is reached
(cheap: milliseconds each). A handful run the scripts as subprocesses, for the CLI contract
(hydra's entry point, exit status, stderr) and for the multirun."""

from __future__ import annotations

import os
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
from data_helpers import write_d4rl_file
from script_loader import example_config, load_example

from torchrl_leq.training.cli import user_errors
from torchrl_leq.training.datasets import check_data_shapes
from torchrl_leq.training.run_dir import LOCK_FILE, RunDirectory

ROOT = Path(__file__).resolve().parents[1]
TRAIN_MODULE = {  # example config -> the script whose train() runs it
    "leq_pointmaze": "leq_antmaze",
    "mujoco/hopper-medium": "leq_antmaze",
    "iql": "iql",
    "cql": "cql",
    "bc": "bc",
    "combo": "combo",
    "leq_pixels": "leq_pixels",
    "leq_pixels_vd4rl": "leq_pixels",
    "bc_pixels": "bc_pixels",
}


def d4rl_data(n=400, obs=4, act=2, scale=1.0, seed=0):
    rng = np.random.default_rng(seed)
    timeouts = np.zeros(n, bool)
    timeouts[99::100] = True
    return {
        "observations": rng.normal(size=(n, obs)).astype(np.float32),
        "actions": (scale * rng.uniform(-1, 1, size=(n, act))).astype(np.float32),
        "rewards": rng.normal(size=n).astype(np.float32),
        "terminals": np.zeros(n, bool),
        "timeouts": timeouts,
    }


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """Small D4RL-format files, good and bad."""
    d = tmp_path_factory.mktemp("datasets")
    out = {
        "maze": write_d4rl_file(d / "maze.hdf5", d4rl_data()),
        "one_d_actions": write_d4rl_file(d / "one_d.hdf5", d4rl_data(act=1)),
        "big_actions": write_d4rl_file(d / "big.hdf5", d4rl_data(scale=3.0)),
        "pendulum_like": write_d4rl_file(d / "pendulum.hdf5", d4rl_data(obs=3, act=1)),
        "no_actions": write_d4rl_file(
            d / "no_actions.hdf5", {k: v for k, v in d4rl_data().items() if k != "actions"}
        ),
        "empty": write_d4rl_file(d / "empty.hdf5", d4rl_data(n=0)),
        "one_d_obs": write_d4rl_file(
            d / "flat.hdf5", {**d4rl_data(), "observations": np.zeros(400, np.float32)}
        ),
    }
    (d / "corrupt.hdf5").write_bytes(b"\x89HDF\r\n\x1a\n" + b"garbage" * 100)
    (d / "text.hdf5").write_text("observations,actions\n1,2\n")
    truncated = (d / "truncated.hdf5")
    truncated.write_bytes(out["maze"].read_bytes()[:3000])
    out.update(corrupt=d / "corrupt.hdf5", text=d / "text.hdf5", truncated=truncated)
    return out


def config(name, run_dir, *overrides):
    return example_config(name, "smoke=true", "progress=false", f"run_dir={run_dir}", *overrides)


def no_heavy_work(monkeypatch, module):
    def heavy(*args, **kwargs):
        raise AssertionError("heavy work (loading the data) started before the error")

    if hasattr(module, "make_pixel_data"):  # the pixel examples: rendering or reading frames
        monkeypatch.setitem(module.make_pixel_data.__globals__, "load_pixel_sequences", heavy)
    else:
        monkeypatch.setattr(module, "make_offline_data", heavy)


def one_error_line(capsys, module, cfg):
    """Run ``module.train(cfg)`` as the examples do; return its single ``error:`` line."""
    with pytest.raises(SystemExit) as exit_info, user_errors():
        module.train(cfg)
    assert exit_info.value.code == 2
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(lines) == 1, lines
    assert lines[0].startswith("error: ") and " — " in lines[0], lines[0]
    return lines[0]


BAD_CONFIGS = [
    # (example config, overrides, part of the message)
    ("leq_pointmaze", ["loss.tau=abc"], "loss.tau must be a number, got 'abc'"),
    ("leq_pointmaze", ["loss.tau=2"], "loss.tau must lie in (0.0, 1.0), got 2"),
    ("leq_pointmaze", ["loss.tau=0"], "loss.tau must lie in (0.0, 1.0), got 0"),
    ("leq_pointmaze", ["loss.beta=2"], "loss.beta must lie in [0.0, 1.0], got 2"),
    ("leq_pointmaze", ["loss.gamma=1.5"], "loss.gamma must lie in [0.0, 1.0]"),
    ("leq_pointmaze", ["loss.horizon=0"], "loss.horizon must be >= 1"),
    ("leq_pointmaze", ["loss.actor_gradient=jacobian"], "loss.actor_gradient must be one of"),
    ("leq_pointmaze", ["loss.include_current=maybe"], "loss.include_current must be true or"),
    ("leq_pointmaze", ["train.total_steps=abc"], "train.total_steps must be an integer"),
    ("leq_pointmaze", ["train.total_steps=-1"], "train.total_steps must be >= 0"),
    ("leq_pointmaze", ["train.eval_every=0"], "train.eval_every must be >= 1"),
    ("leq_pointmaze", ["optim.batch_size_model=-4"], "optim.batch_size_model must be >= 1"),
    ("leq_pointmaze", ["optim.batch_size_env=0"], "optim.batch_size_env must be >= 1"),
    ("leq_pointmaze", ["optim.actor_lr=0"], "optim.actor_lr must be > 0"),
    ("leq_pointmaze", ["optim.critic_lr=nan"], "optim.critic_lr must be finite"),
    ("leq_pointmaze", ["logger.backend=nonsense"], "logger.backend must be one of"),
    ("leq_pointmaze", ["seed=-1"], "seed must be >= 0"),
    ("leq_pointmaze", ["seed=1.5"], "seed must be an integer"),
    ("leq_pointmaze", ["resume=maybe"], "resume must be true or false"),
    ("leq_pointmaze", ["world_model.num_elites=5"], "world_model.num_elites (5) must be <="),
    ("leq_pointmaze", ["world_model.hidden_dims=[32,0]"], "world_model.hidden_dims[1] must be"),
    ("leq_pointmaze", ["network.num_cells=abc"], "network.num_cells must be a non-empty list"),
    ("leq_pointmaze", ["expansion.rollout_length=0"], "expansion.rollout_length must be >= 1"),
    ("leq_pointmaze", ["pretrain.bc_steps=-1"], "pretrain.bc_steps must be >= 0"),
    ("leq_pointmaze", ["data.steps=1"], "data.steps must be >= 2"),
    ("leq_pointmaze", ["data.source=nowhere"], "data.source must be one of"),
    ("leq_pointmaze", ["task=pointmaze-huge"], "Unknown point-maze task 'pointmaze-huge'"),
    ("leq_pointmaze", ["termination={goal:[1]}"], "termination.goal must be a list [x, y]"),
    ("leq_pointmaze", ["termination={goal:[1,2],radius:-1}"], "termination.radius must be > 0"),
    ("leq_pointmaze", ["eval.num_envs=0"], "eval.num_envs must be >= 1"),
    ("leq_pointmaze", ["eval.env_kwargs=3"], "eval.env_kwargs must be a mapping"),
    (
        "leq_pointmaze",
        ["data.source=d4rl_hdf5", "data.path=/nonexistent/antmaze.hdf5"],
        "not found: expected '/nonexistent/antmaze.hdf5'",
    ),
    ("leq_pointmaze", ["data.source=d4rl_hdf5"], "data.path is not set"),
    ("mujoco/hopper-medium", ["eval.env_id=Nope-v0"], "eval.env_id=Nope-v0 cannot be made"),
    ("iql", ["loss.expectile=1"], "loss.expectile must lie in (0.0, 1.0)"),
    ("cql", ["loss.min_q_weight=-1"], "loss.min_q_weight must be >= 0"),
    ("cql", ["loss.with_lagrange=2"], "loss.with_lagrange must be true or false"),
    ("bc", ["network.num_cells=[]"], "network.num_cells must be a non-empty list"),
    ("combo", ["loss.real_ratio=2"], "loss.real_ratio must lie in [0.0, 1.0]"),
    ("combo", ["rollout.length=0"], "rollout.length must be >= 1"),
    ("leq_pixels", ["loss.tau=2"], "loss.tau must lie in (0.0, 1.0), got 2"),
    ("leq_pixels", ["data.source=pointmaze"], "data.source must be one of ['rendered_pointmaze',"),
    ("leq_pixels", ["data.source=vd4rl"], "data.path is not set for data.source=vd4rl"),
    ("leq_pixels", ["world_model.termination=never"], "world_model.termination must be one of"),
    ("leq_pixels", ["task=pointmaze-huge"], "Unknown point-maze task 'pointmaze-huge'"),
    ("leq_pixels_vd4rl", ["data.path=/nonexistent/64px"], "V-D4RL folder not found"),
    ("bc_pixels", ["world_model.channels=0"], "world_model.channels must be >= 1"),
    ("leq_pixels", ["data.view=top"], "data.view must be one of ['interior', 'maze']"),
    ("bc_pixels", ["data.ball_radius=0"], "data.ball_radius must be > 0"),
    ("bc_pixels", ["train.max_eval_steps=0"], "train.max_eval_steps must be >= 1"),
]


@pytest.mark.parametrize(
    "name, overrides, message", BAD_CONFIGS, ids=[f"{c[0]} {' '.join(c[1])}" for c in BAD_CONFIGS]
)
def test_bad_config_is_one_line_before_any_work(
    name, overrides, message, tmp_path, monkeypatch, capsys
):
    module = load_example(TRAIN_MODULE[name])
    no_heavy_work(monkeypatch, module)
    line = one_error_line(capsys, module, config(name, tmp_path / "run", *overrides))
    assert message in line
    assert not (tmp_path / "run").exists()  # not even the run directory was made


BAD_DATA = [
    # (example config, dataset, extra overrides, part of the message)
    ("mujoco/hopper-medium", "maze", [], "has 4-number observations but the evaluation env "
     "(Hopper-v5) has 11"),
    ("leq_pointmaze", "one_d_actions", [], "has 1-number actions but the evaluation env (the "
     "pointmaze-umaze maze) has 2"),
    ("leq_pointmaze", "big_actions", [], "beyond the [-1, 1] the policy can output"),
    ("leq_pointmaze", "corrupt", [], "as HDF5"),
    ("leq_pointmaze", "text", [], "as HDF5"),
    ("leq_pointmaze", "truncated", [], "as HDF5"),
    ("leq_pointmaze", "no_actions", [], "is not a D4RL dataset: it lacks ['actions']"),
    ("leq_pointmaze", "empty", [], "must be non-empty [N, width] arrays"),
    ("leq_pointmaze", "one_d_obs", [], "must be non-empty [N, width] arrays"),
    ("iql", "one_d_actions", [], "has 1-number actions"),
    (
        "mujoco/hopper-medium",
        "pendulum_like",
        ["eval.env_id=Pendulum-v1"],
        "has 3-number observations but the hopper termination expects 11",
    ),
]


@pytest.mark.parametrize(
    "name, dataset, overrides, message", BAD_DATA, ids=[f"{c[0]}-{c[1]}" for c in BAD_DATA]
)
def test_bad_dataset_is_one_line_before_any_work(
    name, dataset, overrides, message, files, tmp_path, monkeypatch, capsys
):
    module = load_example(TRAIN_MODULE[name])
    no_heavy_work(monkeypatch, module)
    cfg = config(
        name, tmp_path / "run", "data.source=d4rl_hdf5", f"data.path={files[dataset]}",
        *overrides,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Pendulum's [-2, 2] actions: its own test below
        line = one_error_line(capsys, module, cfg)
    assert message in line
    assert not (tmp_path / "run").exists()


def test_eval_env_beyond_unit_actions_warns(files):
    cfg = {
        "task": "pendulum",
        "data": {"source": "d4rl_hdf5", "path": str(files["pendulum_like"])},
        "eval": {"env_id": "Pendulum-v1", "env_kwargs": {}},
    }
    with pytest.warns(RuntimeWarning, match=r"actions in \[-2, 2\]; the policy acts in \[-1, 1\]"):
        check_data_shapes(cfg)


def test_a_good_dataset_file_passes_and_trains(files, tmp_path):
    """The checks do not refuse a fitting file: LEQ trains on a D4RL-format point-maze file."""
    cfg = config("leq_pointmaze", tmp_path / "run", "data.source=d4rl_hdf5",
                 f"data.path={files['maze']}", "train.total_steps=2", "train.eval_every=2",
                 "train.checkpoint_every=0")
    result = load_example("leq_antmaze").train(cfg)
    assert result["last_score"] is not None


@pytest.mark.parametrize("where", ["under_a_file", "is_a_file"])
def test_unusable_run_dir_is_one_line_before_any_work(where, tmp_path, monkeypatch, capsys):
    blocker = tmp_path / "a_file"
    blocker.write_text("mine")
    run_dir = blocker / "run" if where == "under_a_file" else blocker
    module = load_example("bc")
    no_heavy_work(monkeypatch, module)
    line = one_error_line(capsys, module, config("bc", run_dir))
    assert f"cannot use run_dir {run_dir}" in line and "choose a writable run_dir" in line
    assert blocker.read_text() == "mine"


def snapshot(root):
    """Every file's bytes, except the lock file (a refused process tries the lock and notes
    its pid there; the file is the package's own, not the run's)."""
    return {p: p.read_bytes() for p in sorted(Path(root).rglob("*"))
            if p.is_file() and p.name != LOCK_FILE}


def test_run_dir_belongs_to_its_run_end_to_end(tmp_path, monkeypatch, capsys):
    """One LEQ run, killed at step 20, then every way of coming back to its directory."""
    leq = load_example("leq_antmaze")
    run = tmp_path / "run"
    leq.train(config("leq_pointmaze", run, "train.stop_after_steps=20"))
    (run / "notes.csv").write_text("my,own\n1,2\n")
    (run / "results").mkdir()
    (run / "results" / "mine.csv").write_text("step,score\n999,1\n")
    before = snapshot(run)

    with monkeypatch.context() as m:
        no_heavy_work(m, leq)
        refused = {
            "rerun without resume": ([], "already holds a run (config"),
            "resume, other seed": (["resume=true", "seed=1"], "different config: seed: 0 -> 1"),
            "resume, other loss.tau": (["resume=true", "loss.tau=0.3"], "loss.tau: 0.1 -> 0.3"),
            "resume, other architecture": (
                ["resume=true", "network.num_cells=[64,64]"], "network.num_cells: [32, 32] ->"
            ),
            "resume, other total_steps": (
                ["resume=true", "train.total_steps=80"], "train.total_steps: 40 -> 80"
            ),
        }
        for case, (overrides, message) in refused.items():
            line = one_error_line(capsys, leq, config("leq_pointmaze", run, *overrides))
            assert message in line, (case, line)
            assert snapshot(run) == before, case

        holder = RunDirectory(run)  # another process holds the run (same-process flock: same)
        holder.claim(resume=True)
        try:
            cfg = config("leq_pointmaze", run, "resume=true")
            line = one_error_line(capsys, leq, cfg)
            assert "is in use by another process" in line and "wait for it to finish" in line
        finally:
            holder.release()

    leq.train(config("leq_pointmaze", run, "resume=true"))  # continues and finishes
    for mine in ("notes.csv", "results/mine.csv"):
        assert (run / mine).read_bytes() == before[run / mine], mine
    finished = snapshot(run)
    with pytest.warns(RuntimeWarning, match="already finished; nothing to do"):
        leq.train(config("leq_pointmaze", run, "resume=true"))
    assert snapshot(run) == finished


def test_resume_with_nothing_to_resume_says_so_and_trains(tmp_path):
    with pytest.warns(RuntimeWarning, match="holds no run to resume; starting a new run"):
        result = load_example("bc").train(config("bc", tmp_path / "run", "resume=true"))
    assert result["last_score"] is not None
    assert (tmp_path / "run" / "checkpoint.pt").exists()


# ---------------------------------------------------------------- the scripts themselves


def script(name, cwd, *overrides, data_root):
    env = {
        **os.environ,
        "OMP_NUM_THREADS": "1",
        "PYTHONWARNINGS": "ignore",
        "TORCHRL_LEQ_DATA": str(data_root),
    }
    flags = [o for o in overrides if o.startswith("-")]  # hydra's flags go before overrides
    cmd = [
        sys.executable, str(ROOT / "examples" / f"{name}.py"), *flags, "smoke=true",
        "progress=false", f"hydra.run.dir={cwd / 'hydra'}", f"hydra.sweep.dir={cwd / 'sweep'}",
        *(o for o in overrides if not o.startswith("-")),
    ]
    return subprocess.Popen(
        cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def test_scripts_give_one_error_line_and_exit_2_before_any_work(files, tmp_path):
    """Seven bad invocations of the real scripts, run side by side: exit 2, one ``error:``
    line, no traceback; no data generated and no world model trained (the data root stays
    empty); the refused run directories are byte-identical afterwards."""
    data_root = tmp_path / "data"
    data_root.mkdir()
    other_run = tmp_path / "other_run"  # a run of another config, killed before a checkpoint
    other_run_2 = tmp_path / "other_run_2"  # the same, for the resume case (runs side by side)
    for path in (other_run, other_run_2):
        foreign = RunDirectory(path, {"seed": 5})
        foreign.claim()
        foreign.release()
        (path / "metrics.csv").write_text("step,kind\n")
    locked = tmp_path / "locked"
    holder = RunDirectory(locked)
    holder.claim()
    refused = {path: snapshot(path) for path in (other_run, other_run_2)}
    cases = {
        "tau=abc": ("leq_pointmaze", ["loss.tau=abc", f"run_dir={tmp_path / 'a'}"],
                    "loss.tau must be a number"),
        "backend": ("bc", ["logger.backend=nonsense", f"run_dir={tmp_path / 'b'}"],
                    "logger.backend must be one of"),
        "corrupt hdf5": ("leq_mujoco", ["data.source=d4rl_hdf5", f"data.path={files['corrupt']}",
                         f"run_dir={tmp_path / 'c'}"], "as HDF5"),
        "1-d actions": ("leq_pointmaze", ["data.source=d4rl_hdf5",
                        f"data.path={files['one_d_actions']}", f"run_dir={tmp_path / 'd'}"],
                        "has 1-number actions"),
        "other run": ("bc", [f"run_dir={other_run}"], "already holds a run"),
        "other config": ("bc", [f"run_dir={other_run_2}", "resume=true"], "different config:"),
        "locked": ("bc", [f"run_dir={locked}", "resume=true"], "in use by another process"),
    }
    try:
        procs = {
            case: script(name, tmp_path, *overrides, data_root=data_root)
            for case, (name, overrides, _) in cases.items()
        }
        results = {case: (p.wait(timeout=240), p.stderr.read()) for case, p in procs.items()}
    finally:
        holder.release()
    for case, (code, stderr) in results.items():
        assert code == 2, (case, stderr[-2000:])
        assert "Traceback" not in stderr, case
        lines = [line for line in stderr.splitlines() if line.strip()]
        assert len(lines) == 1 and lines[0].startswith("error: "), (case, lines)
        assert cases[case][2] in lines[0] and " — " in lines[0], (case, lines[0])
    assert list(data_root.iterdir()) == []  # nothing generated, no world model
    assert {path: snapshot(path) for path in refused} == refused


def test_multirun_with_a_fixed_run_dir_gives_each_job_its_own_dir(tmp_path):
    data_root = tmp_path / "data"
    run_dir = tmp_path / "sweep_runs"
    proc = script("bc", tmp_path, "-m", "seed=0,1", f"run_dir={run_dir}", "train.total_steps=20",
                  data_root=data_root)
    _, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 0, stderr[-2000:]
    jobs = sorted(p.name for p in run_dir.iterdir())  # named by the job's overrides
    assert len(jobs) == 2 and [j.split(",")[0] for j in jobs] == ["seed=0", "seed=1"]
    for job in jobs:
        rows = (run_dir / job / "metrics.csv").read_text().splitlines()
        assert rows[-1].split(",")[1] == "final" or "final" in rows[-1]
    assert not (run_dir / "metrics.csv").exists()
