"""RunDirectory: one run per directory (manifest, config hash and diff, lock), per-job
subdirectories, and truncation of registered files only."""

import json
import os
import signal
import subprocess
import sys
import time
import warnings

import pytest
from omegaconf import OmegaConf

from torchrl_leq.training.run_dir import (
    RunDirectory,
    RunLock,
    config_diff,
    config_hash,
    flatten_config,
    job_run_dir,
    normalize_config,
)

CFG = {
    "seed": 0,
    "loss": {"tau": 0.9, "gamma": 0.99},
    "network": {"hidden": [256, 256]},
    "train": {"total_steps": 100, "stop_after_steps": None},
    "resume": False,
    "progress": True,
    "run_dir": "x",
}


def with_changes(**dotted):
    cfg = json.loads(json.dumps(CFG))
    for key, value in dotted.items():
        node = cfg
        *parents, leaf = key.split("__")
        for p in parents:
            node = node[p]
        node[leaf] = value
    return cfg


def claimed(path, config=CFG, resume=False):
    run = RunDirectory(path, config)
    status = run.claim(resume=resume)
    return run, status


def one_line(err):
    return "\n" not in str(err.value)


# ------------------------------------------------------------------ config helpers
def test_flatten_config_dotted_keys_and_empty_mappings():
    assert flatten_config({"a": {"b": {"c": 1}, "d": {}}, "e": [1]}) == {
        "a.b.c": 1,
        "a.d": {},
        "e": [1],
    }


def test_normalize_config_resolves_omegaconf_interpolations():
    cfg = OmegaConf.create({"a": 2, "b": "${a}", "c": {"d": (1, 2)}})
    assert normalize_config(cfg) == {"a": 2, "b": 2, "c": {"d": [1, 2]}}


def test_config_hash_ignores_allowed_keys_and_key_order():
    base = config_hash(CFG)
    assert len(base) == 64
    assert (
        config_hash(
            with_changes(resume=True, progress=False, run_dir="y", train__stop_after_steps=20)
        )
        == base
    )
    reordered = dict(reversed(list(CFG.items())))
    assert config_hash(reordered) == base
    assert config_hash(OmegaConf.create(CFG)) == base
    assert config_hash(with_changes(seed=1)) != base
    assert config_hash(with_changes(train__total_steps=200)) != base


def test_config_diff_names_every_differing_key_with_values():
    new = with_changes(seed=1, loss__tau=0.7, network__hidden=[64])
    assert config_diff(CFG, new) == [
        "loss.tau: 0.9 -> 0.7",
        "network.hidden: [256, 256] -> [64]",
        "seed: 0 -> 1",
    ]


def test_config_diff_absent_keys_and_types():
    assert config_diff({"a": 1}, {"b": 1}) == ["a: 1 -> <absent>", "b: <absent> -> 1"]
    assert config_diff({"a": 1}, {"a": 1.0}) == []
    assert config_diff({"a": 1}, {"a": True}) == ["a: 1 -> true"]
    assert config_diff({"a": None}, {"a": 0}) == ["a: null -> 0"]


def test_config_diff_custom_ignore():
    assert config_diff({"seed": 0, "x": 1}, {"seed": 1, "x": 1}, ignore=("seed",)) == []


# ------------------------------------------------------------------ job dirs
def test_job_run_dir_one_subdirectory_per_job_named_by_its_overrides(tmp_path):
    a = job_run_dir(
        tmp_path, multirun=True, overrides=["seed=0", f"run_dir={tmp_path}", "resume=true"]
    )
    b = job_run_dir(tmp_path, multirun=True, overrides=["seed=1", f"run_dir={tmp_path}"])
    assert (a.name, b.name) == ("seed=0", "seed=1")
    assert job_run_dir(tmp_path, multirun=True, overrides=["b=1", "a=2"]).name == "a=2,b=1"
    assert job_run_dir(tmp_path, multirun=False, overrides=["seed=1"]) == tmp_path


def test_job_run_dir_sanitises_paths_and_shortens_long_names(tmp_path):
    d = job_run_dir(tmp_path, multirun=True, overrides=["data.path=/a/b c.hdf5", "+x=1"])
    assert d.name == "data.path=_a_b_c.hdf5,x=1" and d.parent == tmp_path
    long = job_run_dir(tmp_path, multirun=True, overrides=[f"k={'v' * 300}"])
    assert len(long.name) == 113 and long.name.startswith("k=vvv")
    assert job_run_dir(tmp_path, multirun=True, overrides=["resume=true"]).name == "job"


# ------------------------------------------------------------------ claim
def test_claim_of_an_empty_directory_writes_the_manifest(tmp_path):
    run, status = claimed(tmp_path / "new")
    manifest = json.loads((tmp_path / "new/run.json").read_text())
    assert status == "new"
    assert manifest["config"] == normalize_config(CFG)
    assert manifest["config_hash"] == config_hash(CFG)
    assert manifest["files"] == [] and manifest["finished"] is False


def test_claim_removes_temporaries_a_killed_checkpoint_write_left_only(tmp_path):
    stale = tmp_path / ".checkpoint.pt.abc123.tmp"
    stale.write_bytes(b"half a checkpoint")
    (tmp_path / ".notes.abc.tmp").write_text("user")
    claimed(tmp_path)
    assert not stale.exists() and (tmp_path / ".notes.abc.tmp").read_text() == "user"


def test_rerun_without_resume_into_another_runs_directory_stops(tmp_path):
    run, _ = claimed(tmp_path)
    run.release()
    with pytest.raises(FileExistsError, match="already holds a run.*pass resume=true") as err:
        claimed(tmp_path)
    assert one_line(err)


@pytest.mark.parametrize("name", ["metrics.csv", "checkpoint.pt", "checkpoint.prev.pt"])
def test_files_of_a_run_from_before_manifests_are_protected_too(tmp_path, name):
    (tmp_path / name).write_text("step\n10\n")
    with pytest.raises(FileExistsError, match=f"files of an earlier run \\({name}\\)"):
        claimed(tmp_path)
    assert (tmp_path / name).read_text() == "step\n10\n"


def test_foreign_files_do_not_make_a_directory_a_run(tmp_path):
    (tmp_path / ".hydra").mkdir()
    (tmp_path / "notes.csv").write_text("10,a\n")
    _, status = claimed(tmp_path)
    assert status == "new" and (tmp_path / "notes.csv").read_text() == "10,a\n"


def test_resume_with_a_different_config_names_the_differing_keys(tmp_path):
    claimed(tmp_path)[0].release()
    with pytest.raises(
        ValueError, match=r"different config: loss.tau: 0.9 -> 0.7, seed: 0 -> 1 — "
    ) as err:
        claimed(tmp_path, with_changes(seed=1, loss__tau=0.7), resume=True)
    assert one_line(err)


def test_resume_with_a_longer_total_steps_is_refused(tmp_path):
    claimed(tmp_path)[0].release()
    with pytest.raises(ValueError, match="train.total_steps: 100 -> 200"):
        claimed(tmp_path, with_changes(train__total_steps=200), resume=True)


def test_resume_may_change_ignored_keys(tmp_path):
    claimed(tmp_path)[0].release()
    (tmp_path / "checkpoint.pt").write_bytes(b"x")
    run, status = claimed(
        tmp_path,
        with_changes(progress=False, train__stop_after_steps=5, run_dir="elsewhere"),
        resume=True,
    )
    assert status == "resume"


def test_resume_with_nothing_to_resume_says_so_and_starts_new(tmp_path):
    with pytest.warns(RuntimeWarning, match="holds no run to resume; starting a new run"):
        _, status = claimed(tmp_path, resume=True)
    assert status == "new"


def test_resume_before_the_first_checkpoint_restarts_with_a_warning(tmp_path):
    claimed(tmp_path)[0].release()
    with pytest.warns(RuntimeWarning, match="no checkpoint yet; starting it over"):
        _, status = claimed(tmp_path, resume=True)
    assert status == "restart"


def test_resume_of_a_finished_run_is_reported(tmp_path):
    run, _ = claimed(tmp_path)
    run.finish({"last_score": 1.5})
    run.release()
    run, status = claimed(tmp_path, resume=True)
    assert status == "finished" and run.manifest["summary"] == {"last_score": 1.5}


def test_resume_without_a_config_skips_the_comparison_and_adopts_the_new_one(tmp_path):
    claimed(tmp_path, config=None)[0].release()
    (tmp_path / "checkpoint.pt").write_bytes(b"x")
    run, status = claimed(tmp_path, with_changes(seed=5), resume=True)
    assert status == "resume"
    assert json.loads((tmp_path / "run.json").read_text())["config"]["seed"] == 5


def test_legacy_run_is_adopted_on_resume_with_its_metrics_only(tmp_path):
    (tmp_path / "metrics.csv").write_text("step\n")
    (tmp_path / "checkpoint.pt").write_bytes(b"x")
    (tmp_path / "mine.csv").write_text("1\n")
    run, status = claimed(tmp_path, resume=True)
    assert status == "resume" and run.manifest["files"] == ["metrics.csv"]


def test_unreadable_manifest_is_moved_aside_and_reported(tmp_path):
    (tmp_path / "run.json").write_text("{not json")
    with pytest.warns(RuntimeWarning, match="run.json is unreadable.*moved to run.json.corrupt-"):
        _, status = claimed(tmp_path)
    assert status == "new"
    assert [p.read_text() for p in tmp_path.glob("run.json.corrupt-*")] == ["{not json"]


def test_run_dir_that_cannot_be_created_is_a_one_line_error(tmp_path):
    (tmp_path / "file").write_text("")
    with pytest.raises(OSError, match="cannot use run_dir .*choose a writable run_dir") as err:
        claimed(tmp_path / "file" / "run")
    assert one_line(err)


# ------------------------------------------------------------------ lock
def test_a_second_claim_of_a_locked_directory_is_refused(tmp_path):
    run, _ = claimed(tmp_path)
    with pytest.raises(
        FileExistsError, match=f"in use by another process \\(pid {os.getpid()} "
    ) as err:
        RunDirectory(tmp_path, CFG).claim(resume=True)
    assert one_line(err)
    run.release()
    (tmp_path / "checkpoint.pt").write_bytes(b"x")
    assert RunDirectory(tmp_path, CFG).claim(resume=True) == "resume"


def test_a_failed_claim_releases_the_lock(tmp_path):
    claimed(tmp_path)[0].release()
    with pytest.raises(FileExistsError):
        claimed(tmp_path)
    lock = RunLock(tmp_path / ".lock")
    lock.acquire()
    assert lock.locked
    lock.release()


HOLD = (
    "import fcntl,os,sys,time; fd=os.open(sys.argv[1],os.O_RDWR|os.O_CREAT); "
    "fcntl.flock(fd,fcntl.LOCK_EX); os.write(fd,b'4242 on other'); print('held',flush=True);"
    " time.sleep(60)"
)


def test_lock_held_by_another_process_and_freed_when_it_is_killed(tmp_path):
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(tmp_path / ".lock")], stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout.readline().strip() == "held"
        with pytest.raises(FileExistsError, match=r"pid 4242 on other"):
            claimed(tmp_path)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    for _ in range(50):  # the kernel drops a dead holder's flock
        try:
            _, status = claimed(tmp_path)
            break
        except FileExistsError:
            time.sleep(0.05)
    assert status == "new"


# ------------------------------------------------------------------ own files
def test_truncate_logs_cuts_only_registered_files_to_their_recorded_sizes(tmp_path):
    run, _ = claimed(tmp_path)
    ours, logger_file = tmp_path / "metrics.csv", tmp_path / "logs/e/scalars/train/loss.csv"
    logger_file.parent.mkdir(parents=True)
    ours.write_text("step,x\n10,1\n")
    logger_file.write_text("5,0.1\n10,0.2\n")
    user = tmp_path / "benchmarks/results/table.csv"
    user.parent.mkdir(parents=True)
    user.write_text("step,x\n10,1\n20,2\n30,3\n")
    run.record(ours)
    run.record(logger_file)
    sizes = run.log_sizes()
    assert sizes == {"metrics.csv": 12, "logs/e/scalars/train/loss.csv": 13}
    with ours.open("a") as f:
        f.write("20,2\n30,")  # a row after the checkpoint and a half-written one
    with logger_file.open("a") as f:
        f.write("15,0.3\n")
    assert run.truncate_logs(sizes) == {"metrics.csv": 8, "logs/e/scalars/train/loss.csv": 7}
    assert ours.read_text() == "step,x\n10,1\n"
    assert logger_file.read_text() == "5,0.1\n10,0.2\n"
    assert user.read_text() == "step,x\n10,1\n20,2\n30,3\n"
    assert json.loads((tmp_path / "run.json").read_text())["files"] == [
        "metrics.csv",
        "logs/e/scalars/train/loss.csv",
    ]


def test_a_file_registered_after_the_checkpoint_is_emptied(tmp_path):
    run, _ = claimed(tmp_path)
    sizes = run.log_sizes()
    late = tmp_path / "late.csv"
    run.record(late)
    late.write_text("11,1\n")
    assert run.truncate_logs(sizes) == {"late.csv": 5} and late.read_text() == ""


def test_a_registered_file_shorter_than_recorded_is_left_alone(tmp_path):
    run, _ = claimed(tmp_path)
    f = tmp_path / "metrics.csv"
    run.record(f)
    f.write_text("abc")
    with pytest.warns(RuntimeWarning, match="shorter than at the checkpoint \\(3 < 10 bytes\\)"):
        assert run.truncate_logs({"metrics.csv": 10}) == {}
    assert f.read_text() == "abc"


def test_set_aside_logs_keeps_the_rows_of_a_restarted_run(tmp_path):
    run, _ = claimed(tmp_path)
    for name, text in (("metrics.csv", "step\n10\n"), ("empty.csv", "")):
        run.record(tmp_path / name)
        (tmp_path / name).write_text(text)
    (tmp_path / "user.csv").write_text("10\n")
    (moved,) = run.set_aside_logs()
    assert moved.name.startswith("metrics.csv.restarted-") and moved.read_text() == "step\n10\n"
    assert not (tmp_path / "metrics.csv").exists() and (tmp_path / "user.csv").exists()


def test_registered_file_outside_the_run_dir_is_tracked_by_absolute_path(tmp_path):
    run, _ = claimed(tmp_path / "run")
    outside = tmp_path / "logs" / "x.csv"
    outside.parent.mkdir()
    run.record(outside)
    outside.write_text("1,1\n")
    sizes = run.log_sizes()
    assert sizes == {str(outside.resolve()): 4}
    outside.write_text("1,1\n2,2\n")
    run.truncate_logs(sizes)
    assert outside.read_text() == "1,1\n"


def test_release_then_claim_decides_again(tmp_path):
    run, _ = claimed(tmp_path)
    run.release()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(FileExistsError):
            run.claim()
