"""Faults and bad inputs (fast cases): wrong or damaged world-model and checkpoint files,
interrupted writes, full disks, reruns and resumes into the wrong directory. In every case the
user gets a one-line message and nothing already written is lost.

The slow cases (SIGKILL of a real process mid-run, a real full tmpfs, a read-only mount) are in
``scripts/faults_slow.py``; the table of all cases is ``docs/reliability.md``.
"""

import errno
import io
import json
import os
import warnings

import pytest
import torch
from test_trainer import build

from torchrl_leq.modules import ProbabilisticEnsemble
from torchrl_leq.serialization import CorruptFileError, atomic_write, write_verified
from torchrl_leq.training.checkpoint import (
    load_checkpoint,
    load_latest_checkpoint,
    save_checkpoint,
)
from torchrl_leq.training.loggers import make_logger
from torchrl_leq.training.run_dir import RunDirectory, job_run_dir
from torchrl_leq.training.trainer import CheckpointWriteError
from torchrl_leq.training.world_model import load_world_model, save_world_model

CFG = {"seed": 0, "loss": {"tau": 0.9}, "train": {"total_steps": 40}}


def snapshot(folder):
    """Every file's bytes (the lock file aside: it only holds the last claimant's pid)."""
    return {
        p.relative_to(folder).as_posix(): p.read_bytes()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and p.name != ".lock"
    }


def tiny_model(obs_dim=3):
    torch.manual_seed(0)
    return ProbabilisticEnsemble(
        obs_dim, 2, num_members=3, num_elites=2, hidden_dims=(8,), weight_decays=(0.0, 0.0)
    )


class Opaque:
    """A pickled object that is not tensors and containers."""


# ------------------------------------------------------------------ world-model files
def wm_bad_input(tmp_path, kind):
    path = tmp_path / f"{kind}.pt"
    if kind == "text":
        path.write_text("hello world")
    elif kind == "empty":
        path.write_bytes(b"")
    elif kind == "tensor":
        torch.save(torch.ones(3), path)
    elif kind == "other_dict":
        torch.save({"a": 1, "b": 2}, path)
    elif kind == "opaque_object":
        torch.save({"config": Opaque(), "state_dict": {}}, path)
    elif kind == "checkpoint":
        save_checkpoint(path, {"step": 1})
    elif kind == "newer_version":
        write_verified(path, {}, kind="world_model", version=99)
    elif kind == "mismatched_weights":
        model = tiny_model()
        write_verified(
            path,
            {"config": {**model.config, "obs_dim": 7}, "state_dict": model.state_dict()},
            kind="world_model",
            version=1,
        )
    elif kind in ("truncated", "flipped_byte"):
        save_world_model(path, tiny_model())
        data = bytearray(path.read_bytes())
        if kind == "truncated":
            data = data[:-300]
        else:
            data[-300] ^= 0x01
        path.write_bytes(bytes(data))
    return path


WM_CASES = {
    "missing": (FileNotFoundError, "No world model at"),
    "text": (ValueError, "is not a world model saved by save_world_model \\(not a torch file\\)"),
    "empty": (ValueError, "not a torch file"),
    "tensor": (ValueError, "a torch file holding Tensor\\)"),
    "other_dict": (ValueError, "holding dict with keys a, b\\)"),
    "opaque_object": (ValueError, "objects other than tensors and containers"),
    "checkpoint": (ValueError, "holds a torchrl_leq checkpoint, not a world_model"),
    "newer_version": (ValueError, "format v99; this version reads up to v1\\): upgrade"),
    "mismatched_weights": (CorruptFileError, "stored weights do not fit the stored config"),
    "truncated": (CorruptFileError, "is truncated"),
    "flipped_byte": (CorruptFileError, "SHA-256 does not match"),
}


@pytest.mark.parametrize("kind", sorted(WM_CASES))
def test_load_world_model_wrong_or_damaged_file_is_a_one_line_error(tmp_path, kind):
    path = tmp_path / "missing.pt" if kind == "missing" else wm_bad_input(tmp_path, kind)
    error, message = WM_CASES[kind]
    with pytest.raises(error, match=message) as err:
        load_world_model(path)
    text = str(err.value)
    assert "\n" not in text and str(path) in text
    assert "weights_only" not in text and "KeyError: 101" not in text


def test_world_model_round_trip_and_the_pre_header_format_load_identically(tmp_path):
    model = tiny_model()
    model.elites.copy_(torch.tensor([2, 0]))
    save_world_model(tmp_path / "new.pt", model)
    torch.save({"config": model.config, "state_dict": model.state_dict()}, tmp_path / "old.pt")
    for name in ("new.pt", "old.pt"):
        loaded = load_world_model(tmp_path / name)
        assert loaded.config == model.config
        for key, value in model.state_dict().items():
            assert torch.equal(loaded.state_dict()[key], value), (name, key)


# ------------------------------------------------------------------ checkpoint files
def ckpt_pair(tmp_path):
    path = tmp_path / "checkpoint.pt"
    save_checkpoint(path, {"step": 10})
    save_checkpoint(path, {"step": 20})
    return path, tmp_path / "checkpoint.prev.pt"


def test_save_checkpoint_keeps_the_previous_one(tmp_path):
    path, prev = ckpt_pair(tmp_path)
    assert load_checkpoint(path)["step"] == 20 and load_checkpoint(prev)["step"] == 10
    save_checkpoint(path, {"step": 30})
    assert load_checkpoint(prev)["step"] == 20
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint.prev.pt", "checkpoint.pt"]


@pytest.mark.parametrize("damage", ["garbage_head", "truncated", "flipped_byte", "empty"])
def test_corrupt_newest_checkpoint_falls_back_to_the_previous(tmp_path, damage):
    path, _ = ckpt_pair(tmp_path)
    data = bytearray(path.read_bytes())
    data = {
        "garbage_head": b"garbage" + data[7:],
        "truncated": data[:-50],
        "empty": b"",
        "flipped_byte": data[:-50] + bytes([data[-50] ^ 4]) + data[-49:],
    }[damage]
    path.write_bytes(bytes(data))
    with pytest.warns(RuntimeWarning, match="resuming from .*checkpoint.prev.pt \\(step 10\\)"):
        state, used = load_latest_checkpoint(path)
    assert state["step"] == 10 and used.name == "checkpoint.prev.pt"
    aside = list(tmp_path.glob("checkpoint.pt.corrupt-*"))
    assert len(aside) == 1 and aside[0].read_bytes() == bytes(data)


def test_both_checkpoints_corrupt_is_one_line_and_both_are_kept(tmp_path):
    path, prev = ckpt_pair(tmp_path)
    path.write_bytes(b"x")
    prev.write_bytes(b"y")
    with pytest.raises(CorruptFileError, match="no usable checkpoint in .*restore a backup") as e:
        load_latest_checkpoint(path)
    assert "\n" not in str(e.value)
    assert sorted(p.read_bytes() for p in tmp_path.glob("*.corrupt-*")) == [b"x", b"y"]


def test_no_checkpoint_at_all_is_none(tmp_path):
    assert load_latest_checkpoint(tmp_path / "checkpoint.pt") is None


def test_kill_between_the_two_renames_leaves_the_previous_checkpoint(tmp_path):
    path, prev = ckpt_pair(tmp_path)
    path.unlink()  # what a kill after "checkpoint -> prev" and before "tmp -> checkpoint" leaves
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        state, used = load_latest_checkpoint(path)
    assert state["step"] == 10 and used == prev


def test_checkpoint_from_before_verified_files_still_loads(tmp_path):
    torch.save({"step": 5, "rng": None}, tmp_path / "checkpoint.pt")
    assert load_checkpoint(tmp_path / "checkpoint.pt")["step"] == 5


def test_a_world_model_at_checkpoint_pt_is_a_wrong_file_not_a_corrupt_one(tmp_path):
    save_world_model(tmp_path / "checkpoint.pt", tiny_model())
    with pytest.raises(ValueError, match="holds a torchrl_leq world_model, not a checkpoint"):
        load_latest_checkpoint(tmp_path / "checkpoint.pt")
    assert (tmp_path / "checkpoint.pt").exists() and not list(tmp_path.glob("*.corrupt-*"))


def test_a_torch_file_without_a_step_is_not_a_checkpoint(tmp_path):
    write_verified(tmp_path / "c.pt", [1, 2], kind="checkpoint", version=1)
    with pytest.raises(CorruptFileError, match="not a trainer checkpoint"):
        load_checkpoint(tmp_path / "c.pt")


def test_interrupted_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    path = tmp_path / "f.bin"
    atomic_write(path, [b"old"])
    with pytest.raises(TypeError):  # the second chunk fails after the first was written
        atomic_write(path, [b"new", object()])
    assert path.read_bytes() == b"old" and sorted(os.listdir(tmp_path)) == ["f.bin"]


def test_full_disk_during_a_checkpoint_is_one_line_and_keeps_the_last_one(tmp_path, monkeypatch):
    trainer, _ = build(tmp_path, total_steps=40, stop_after_steps=20)
    trainer.train()
    before = snapshot(tmp_path)

    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    again, _ = build(tmp_path, total_steps=40, resume=True)
    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(
        CheckpointWriteError,
        match="at step 30 .*No space left on device.*"
        "kept: checkpoint.pt, checkpoint.prev.pt.*resume=true",
    ) as err:
        again.train()
    assert "\n" not in str(err.value)
    monkeypatch.undo()
    assert snapshot(tmp_path)["checkpoint.pt"] == before["checkpoint.pt"]
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
    assert load_checkpoint(tmp_path / "checkpoint.pt")["step"] == 20


# ------------------------------------------------------------------ trainer: ownership
def finished_run(tmp_path, **kwargs):
    trainer, _ = build(tmp_path, total_steps=40, config=CFG, **kwargs)
    trainer.train()
    return snapshot(tmp_path)


def killed_run(tmp_path, stop=25, **kwargs):
    trainer, _ = build(tmp_path, total_steps=40, stop_after_steps=stop, config=CFG, **kwargs)
    trainer.train()
    return trainer


def test_rerun_without_resume_into_a_finished_run_stops_and_changes_nothing(tmp_path):
    before = finished_run(tmp_path)
    again, _ = build(tmp_path, total_steps=40, config=CFG)
    with pytest.raises(FileExistsError, match="already holds a run.*pass resume=true"):
        again.train()
    assert snapshot(tmp_path) == before


def test_rerun_without_resume_into_a_killed_run_stops_and_changes_nothing(tmp_path):
    killed_run(tmp_path)
    before = snapshot(tmp_path)
    again, _ = build(tmp_path, total_steps=40, config=CFG)
    with pytest.raises(FileExistsError, match="pass resume=true to continue it"):
        again.train()
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize(
    "change", [{"seed": 1}, {"loss": {"tau": 0.7}}, {"train": {"total_steps": 80}}]
)
def test_resume_with_another_config_stops_and_changes_nothing(tmp_path, change):
    killed_run(tmp_path)
    before = snapshot(tmp_path)
    again, _ = build(tmp_path, total_steps=40, config={**CFG, **change}, resume=True)
    key = next(iter(change))
    with pytest.raises(ValueError, match=f"different config: {key}"):
        again.train()
    assert snapshot(tmp_path) == before


def test_multirun_seed_1_cannot_resume_seed_0s_run_in_a_shared_run_dir(tmp_path):
    finished_run(tmp_path)
    seed1, _ = build(tmp_path, total_steps=40, config={**CFG, "seed": 1}, resume=True)
    with pytest.raises(ValueError, match="seed: 0 -> 1"):
        seed1.train()


def test_multirun_jobs_get_their_own_directories_and_resume_their_own_runs(tmp_path):
    dirs = [
        job_run_dir(tmp_path, multirun=True, overrides=[f"seed={s}", "resume=true"]) for s in (0, 1)
    ]
    results = []
    for seed, d in zip((0, 1), dirs):
        trainer, _ = build(d, total_steps=40, config={**CFG, "seed": seed}, resume=True)
        with pytest.warns(RuntimeWarning, match="no run to resume"):
            results.append(trainer.train())
    for seed, d in zip((0, 1), dirs):  # the same sweep relaunched
        trainer, _ = build(d, total_steps=40, config={**CFG, "seed": seed}, resume=True)
        with pytest.warns(RuntimeWarning, match="already finished"):
            assert trainer.train()["last_score"] == results[seed]["last_score"]
    assert [d.name for d in dirs] == ["seed=0", "seed=1"]


def test_resume_of_a_finished_run_returns_its_summary_and_changes_nothing(tmp_path):
    before = finished_run(tmp_path)
    summary = json.loads((tmp_path / "run.json").read_text())["summary"]
    again, _ = build(tmp_path, total_steps=40, config=CFG, resume=True)
    with pytest.warns(RuntimeWarning, match="already finished; nothing to do"):
        result = again.train()
    assert result == summary and result["final"]["kind"] == "final"
    assert snapshot(tmp_path) == before


def test_resume_before_any_checkpoint_restarts_without_duplicate_rows(tmp_path):
    straight, _ = build(tmp_path / "straight", total_steps=40, checkpoint_every=0)
    straight.train()
    d = tmp_path / "resumed"
    killed, _ = build(
        d,
        total_steps=40,
        checkpoint_every=0,
        stop_after_steps=25,
        logger=make_logger("csv", d / "logs", "exp"),
    )
    killed.train()
    assert len(killed.metrics.read()) == 2
    again, _ = build(
        d,
        total_steps=40,
        checkpoint_every=0,
        resume=True,
        logger=make_logger("csv", d / "logs", "exp"),
    )
    with pytest.warns(RuntimeWarning, match="no checkpoint yet; starting it over"):
        again.train()
    assert (d / "metrics.csv").read_text() == (tmp_path / "straight/metrics.csv").read_text()
    loss_log = (d / "logs/exp/scalars/train/loss_fit.csv").read_text().splitlines()
    assert [int(line.split(",")[0]) for line in loss_log] == list(range(5, 41, 5))
    (old,) = (d / "logs/exp/scalars/train").glob("loss_fit.csv.restarted-*")  # kept, not lost
    assert [int(line.split(",")[0]) for line in old.read_text().splitlines()] == [5, 10, 15, 20, 25]
    assert len(list(d.glob("metrics.csv.restarted-*"))) == 1


def test_resume_into_an_empty_directory_says_so_and_trains(tmp_path):
    straight, _ = build(tmp_path / "a", total_steps=40)
    expected = straight.train()["last_score"]
    fresh, _ = build(tmp_path / "b", total_steps=40, resume=True)
    with pytest.warns(RuntimeWarning, match="holds no run to resume"):
        assert fresh.train()["last_score"] == expected


def test_a_second_process_on_the_same_directory_is_refused(tmp_path):
    killed_run(tmp_path)
    before = snapshot(tmp_path)
    other = RunDirectory(tmp_path, CFG)
    other.claim(resume=True)  # another process holding the run
    try:
        again, _ = build(tmp_path, total_steps=40, config=CFG, resume=True)
        with pytest.raises(FileExistsError, match="in use by another process"):
            again.train()
    finally:
        other.release()
    assert snapshot(tmp_path) == before


def test_lock_is_released_after_a_failed_run_so_it_can_be_resumed(tmp_path):
    trainer, _ = build(tmp_path, total_steps=40, nan_at=13)
    with pytest.raises(RuntimeError, match="non-finite"):
        trainer.train()
    again, _ = build(tmp_path, total_steps=40, resume=True)
    assert again.resume() and again.step == 10


def test_trainer_accepts_a_claimed_run_directory_and_rejects_two_configs(tmp_path):
    run = RunDirectory(tmp_path / "r", CFG)
    assert run.claim() == "new"
    trainer, _ = build(run, total_steps=20)
    trainer.train()
    assert json.loads((tmp_path / "r/run.json").read_text())["finished"] is True
    with pytest.raises(ValueError, match="pass config to the RunDirectory"):
        build(RunDirectory(tmp_path / "s", CFG), total_steps=20, config=CFG)


def test_checkpoint_of_another_config_is_refused_even_without_a_manifest(tmp_path):
    killed_run(tmp_path)
    (tmp_path / "run.json").unlink()
    again, _ = build(tmp_path, total_steps=40, config={**CFG, "seed": 3}, resume=True)
    with pytest.raises(ValueError, match="checkpoint in .* different config: seed: 0 -> 3"):
        again.train()


# ------------------------------------------------------------------ trainer: resume data
def test_resume_truncates_only_the_trainers_own_files(tmp_path):
    d = tmp_path / "run"
    d.mkdir()
    user_files = {
        "notes.csv": "30,mine\n40,mine\n",
        "benchmarks/results/speed.csv": "step,x\n25,1\n39,2\n",
    }
    for name, text in user_files.items():
        (d / name).parent.mkdir(parents=True, exist_ok=True)
        (d / name).write_text(text)
    killed_run(d, logger=make_logger("csv", d / "logs", "exp"))
    again, _ = build(
        d, total_steps=40, config=CFG, resume=True, logger=make_logger("csv", d / "logs", "exp")
    )
    again.train()
    assert {name: (d / name).read_text() for name in user_files} == user_files


def test_resumed_logs_are_byte_identical_to_an_uninterrupted_run(tmp_path):
    def logger(d):
        return make_logger("csv", d / "logs", "exp")

    a, b = tmp_path / "straight", tmp_path / "resumed"
    build(a, total_steps=40, logger=logger(a))[0].train()
    build(b, total_steps=40, stop_after_steps=25, logger=logger(b))[0].train()
    with (b / "metrics.csv").open("a") as f:
        f.write("24,eval,1,0.")  # a row cut by the kill
    with (b / "logs/exp/scalars/train/loss_fit.csv").open("a") as f:
        f.write("26,0.1")
    build(b, total_steps=40, resume=True, logger=logger(b))[0].train()
    logs_a, logs_b = snapshot(a / "logs"), snapshot(b / "logs")
    assert sorted(logs_a) == sorted(logs_b) and len(logs_a) == 5  # 3 eval, 2 train
    assert logs_a == logs_b
    assert (a / "metrics.csv").read_bytes() == (b / "metrics.csv").read_bytes()


def test_corrupt_newest_checkpoint_resumes_from_the_previous_bit_exactly(tmp_path):
    a, b = tmp_path / "straight", tmp_path / "resumed"
    trainer_a, loss_a = build(a, total_steps=40)
    trainer_a.train()
    build(b, total_steps=40, stop_after_steps=30)[0].train()  # checkpoints at 20 and 30
    (b / "checkpoint.pt").write_bytes(b"\x00" * 64)
    resumed, loss_b = build(b, total_steps=40, resume=True)
    with pytest.warns(
        RuntimeWarning,
        match="checkpoint.pt is not a readable checkpoint.*"
        "resuming from .*checkpoint.prev.pt \\(step 20\\)",
    ):
        resumed.train()
    for key, value in loss_a.state_dict().items():
        assert torch.equal(value, loss_b.state_dict()[key]), key
    assert (a / "metrics.csv").read_bytes() == (b / "metrics.csv").read_bytes()
    assert [p.read_bytes() for p in b.glob("checkpoint.pt.corrupt-*")] == [b"\x00" * 64]


def test_both_checkpoints_corrupt_at_resume_is_one_line_and_releases_the_lock(tmp_path):
    killed_run(tmp_path, stop=30)
    (tmp_path / "checkpoint.pt").write_bytes(b"1")
    (tmp_path / "checkpoint.prev.pt").write_bytes(b"2")
    again, _ = build(tmp_path, total_steps=40, config=CFG, resume=True)
    with pytest.raises(CorruptFileError, match="no usable checkpoint"):
        again.train()
    with pytest.warns(RuntimeWarning, match="no checkpoint yet"):  # both were moved aside
        assert RunDirectory(tmp_path, CFG).claim(resume=True) == "restart"  # and not locked


def test_checkpoint_stores_the_config_its_hash_and_the_log_sizes(tmp_path):
    killed_run(tmp_path)
    state = load_checkpoint(tmp_path / "checkpoint.pt")
    manifest = json.loads((tmp_path / "run.json").read_text())
    assert state["config"] == CFG and state["config_hash"] == manifest["config_hash"]
    assert state["step"] == 20
    metrics = (tmp_path / "metrics.csv").read_bytes()  # rows 10 and 20; the kill came at 25
    assert metrics.count(b"\r\n") == 3 and state["log_sizes"] == {"metrics.csv": len(metrics)}


def test_legacy_run_without_manifest_resumes_dropping_only_late_metrics_rows(tmp_path):
    killed_run(tmp_path)
    state = load_checkpoint(tmp_path / "checkpoint.pt")
    for key in ("log_sizes", "config", "config_hash"):
        state.pop(key)
    buf = io.BytesIO()
    torch.save(state, buf)  # a checkpoint from before verified files and manifests
    (tmp_path / "checkpoint.pt").write_bytes(buf.getvalue())
    (tmp_path / "checkpoint.prev.pt").unlink()
    (tmp_path / "run.json").unlink()
    with (tmp_path / "metrics.csv").open("a") as f:
        f.write("24,eval,1,9.0,0.0,0.0\n")
    (tmp_path / "mine.csv").write_text("99,x\n")
    again, _ = build(tmp_path, total_steps=40, config=CFG, resume=True)
    assert again.resume() and again.step == 20
    assert [int(r["step"]) for r in again.metrics.read()] == [10, 20]
    assert (tmp_path / "mine.csv").read_text() == "99,x\n"


def test_resume_flag_equals_calling_resume_first(tmp_path):
    killed_run(tmp_path / "a")
    killed_run(tmp_path / "b")
    by_flag, loss_flag = build(tmp_path / "a", total_steps=40, config=CFG, resume=True)
    by_flag.train()  # one at a time: the runs share the global RNG
    by_call, loss_call = build(tmp_path / "b", total_steps=40, config=CFG)
    assert by_call.resume() and by_call.step == 20
    by_call.train()
    for key, value in loss_flag.state_dict().items():
        assert torch.equal(value, loss_call.state_dict()[key]), key


def test_manifest_is_plain_json_a_user_can_read(tmp_path):
    finished_run(tmp_path)
    manifest = json.loads((tmp_path / "run.json").read_text())
    assert manifest["format"] == "torchrl_leq.run" and manifest["files"] == ["metrics.csv"]
    assert manifest["config"] == CFG and manifest["finished"] is True
    assert manifest["summary"]["final"]["step"] == 40


def test_kill_after_the_final_checkpoint_does_not_repeat_the_final_evaluation(
    tmp_path, monkeypatch
):
    a, b = tmp_path / "straight", tmp_path / "killed"
    build(a, total_steps=40)[0].train()

    def killed(self, summary):
        raise KeyboardInterrupt  # a kill after the final checkpoint, before run.json says done

    monkeypatch.setattr(RunDirectory, "finish", killed)
    with pytest.raises(KeyboardInterrupt):
        build(b, total_steps=40)[0].train()
    monkeypatch.undo()
    build(b, total_steps=40, resume=True)[0].train()
    assert (a / "metrics.csv").read_bytes() == (b / "metrics.csv").read_bytes()
    assert [r["kind"] for r in build(b)[0].metrics.read()].count("final") == 1
