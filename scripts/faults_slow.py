"""Slow fault cases with real processes and real file systems (the fast ones are in
``tests/test_faults.py``): SIGKILL mid-run and mid-checkpoint, then resume; a full disk (a
size-limited tmpfs); a read-only mount; two processes on one run directory; a cache on a
read-only or full disk. Each case compares the outcome with an uninterrupted run and prints a
Markdown table row: case, what the user sees, whether anything was lost.

Needs root for ``mount -t tmpfs`` (the tmpfs cases are reported as skipped otherwise).

    python scripts/faults_slow.py            # all cases, ~1-2 min on 2 cores
    python scripts/faults_slow.py --only sigkill_mid_run
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TOTAL = 60


# ------------------------------------------------------------------ the child: a toy run
def child(run_dir: str, resume: bool, blob_kb: int, sleep: float, ckpt_every: int) -> int:
    import torch
    from tensordict import TensorDict

    from torchrl_leq.data import make_model_buffer
    from torchrl_leq.training.loggers import make_logger
    from torchrl_leq.training.run_dir import RunDirectory
    from torchrl_leq.training.trainer import OfflineTrainer, PeriodicHook

    torch.set_num_threads(1)
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(2, 16), torch.nn.Dropout(0.2), torch.nn.Linear(16, 1))
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    buffer = make_model_buffer(capacity=64, batch_size=8)

    class Blob:  # makes checkpoints big (slow to write, or larger than a small disk)
        def __init__(self):
            self.data = torch.zeros(blob_kb * 256)

        def state_dict(self):
            return {"data": self.data}

        def load_state_dict(self, state):
            self.data = state["data"]

    def loss(td):
        time.sleep(sleep)
        pred = net(td["observation"])
        return TensorDict(
            {"loss_fit": (pred - td["observation"].sum(-1, keepdim=True)).pow(2).mean()}, []
        )

    warnings.simplefilter("ignore")
    try:  # what the examples should do: claim the run directory first, then make the logger
        run = RunDirectory(run_dir, {"seed": 0, "blob_kb": blob_kb, "ckpt_every": ckpt_every})
        run.claim(resume=resume)
        trainer = OfflineTrainer(
            loss=loss,
            modules={"net": net},
            optimizers={"opt": opt},
            sample_batch=buffer.sample,
            evaluate=lambda e, s: {
                "normalized_score": float(net[0].weight.detach().sum()),
                "success_rate": 0.0,
                "mean_return": 0.0,
            },
            run_dir=run,
            total_steps=TOTAL,
            eval_every=10,
            eval_episodes=1,
            final_eval_episodes=1,
            log_every=3,
            checkpoint_every=ckpt_every,
            hooks=[
                PeriodicHook(
                    7,
                    lambda step: buffer.extend(
                        TensorDict({"observation": torch.randn(10, 2)}, [10])
                    ),
                )
            ],
            stateful={"buffer": buffer, "blob": Blob()},
            logger=make_logger("csv", Path(run_dir) / "logs", "exp"),
            progress=False,
        )
        trainer.train()
    except (ValueError, OSError) as err:  # what the examples' CLI does: one line, exit 2
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


# ------------------------------------------------------------------ helpers
def spawn(run_dir, *, resume=False, blob_kb=1, sleep=0.0, ckpt_every=5):
    cmd = [
        sys.executable,
        __file__,
        "--child",
        str(run_dir),
        "--blob-kb",
        str(blob_kb),
        "--sleep",
        str(sleep),
        "--ckpt-every",
        str(ckpt_every),
    ]
    if resume:
        cmd.append("--resume")
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "OMP_NUM_THREADS": "1",
        "PYTHONWARNINGS": "ignore",
    }
    return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def finish(proc, timeout=300):
    out, err = proc.communicate(timeout=timeout)
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    return proc.returncode, (lines[-1] if lines else "")


def run_to_end(run_dir, **kw):
    return finish(spawn(run_dir, **kw))


def outputs(run_dir: Path) -> dict[str, bytes]:
    """What a user keeps from a run: metrics, logger files, the final weights."""
    import torch

    from torchrl_leq.training.checkpoint import load_checkpoint

    files = {
        p.relative_to(run_dir).as_posix(): p.read_bytes()
        for p in sorted((run_dir / "logs").rglob("*.csv"))
    }
    files["metrics.csv"] = (run_dir / "metrics.csv").read_bytes()
    weights = load_checkpoint(run_dir / "checkpoint.pt")["modules"]["net"]
    files["weights"] = b"".join(v.numpy().tobytes() for v in weights.values())
    assert all(isinstance(v, torch.Tensor) for v in weights.values())
    return files


def kill_after(proc, run_dir: Path, seconds: float) -> int:
    """SIGKILL ``proc`` ``seconds`` after it claimed ``run_dir`` (its pid is in the lock file),
    i.e. after the ~3 s of imports; returns its exit code (-9 when killed)."""
    lock = Path(run_dir) / ".lock"
    while proc.poll() is None:
        if lock.exists() and lock.read_text().startswith(f"{proc.pid} "):
            break
        time.sleep(0.02)
    time.sleep(seconds)
    if proc.poll() is None:
        proc.send_signal(signal.SIGKILL)
    proc.wait()
    return proc.returncode


class Tmpfs:
    """A size-limited tmpfs at a fresh mount point (root only)."""

    def __init__(self, size: str):
        self.path = Path(tempfile.mkdtemp(prefix="faults-tmpfs-"))
        self.ok = (
            subprocess.run(
                ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(self.path)],
                capture_output=True,
            ).returncode
            == 0
        )

    def remount(self, options: str) -> None:
        subprocess.run(["mount", "-o", f"remount,{options}", str(self.path)], check=True)

    def close(self) -> None:
        if self.ok:
            subprocess.run(["umount", str(self.path)], check=False)
        shutil.rmtree(self.path, ignore_errors=True)


# ------------------------------------------------------------------ cases
def case_sigkill_mid_run(work, straight):
    d = work / "killed"
    rng = random.Random(0)
    kills = 0
    for attempt in range(6):
        proc = spawn(d, resume=attempt > 0, sleep=0.01)
        if kill_after(proc, d, rng.uniform(0.0, 0.5)) == -signal.SIGKILL:
            kills += 1
    code, err = run_to_end(d, resume=True, sleep=0.01)
    same = code == 0 and outputs(d) == straight
    return f"{kills} SIGKILLs at random times, then resume=true", f"exit {code} {err}", same


def case_sigkill_during_checkpoints(work, straight_big):
    d = work / "killed_ckpt"
    rng = random.Random(1)
    kills = 0
    for attempt in range(10):  # 8 MB checkpoints every 2 steps: most kills land in a write
        proc = spawn(d, resume=attempt > 0, blob_kb=8192, ckpt_every=2)
        if kill_after(proc, d, rng.uniform(0.0, 1.0)) == -signal.SIGKILL:
            kills += 1
    code, err = run_to_end(d, resume=True, blob_kb=8192, ckpt_every=2)
    stale = [p.name for p in d.iterdir() if p.name.endswith(".tmp")]
    same = code == 0 and outputs(d) == straight_big and not stale
    return (
        f"{kills} SIGKILLs during 8 MB checkpoint writes, then resume=true",
        f"exit {code} {err}; stale temporaries left: {len(stale)}",
        same,
    )


def case_disk_full(work, straight_mid):
    fs = Tmpfs("3m")
    if not fs.ok:
        return "tmpfs 3 MB (needs root)", "skipped: mount not permitted", None
    try:
        d = fs.path / "run"
        code, err = run_to_end(d, blob_kb=1200)
        kept_ok = (d / "checkpoint.pt").exists()
        fs.remount("size=32m")  # the user frees space
        code2, err2 = run_to_end(d, resume=True, blob_kb=1200)
        same = (
            code == 2
            and "No space left on device" in err
            and kept_ok
            and code2 == 0
            and outputs(d) == straight_mid
        )
        return (
            "checkpoint of 1.2 MB on a 3 MB tmpfs (the third does not fit), then more "
            "space and resume=true",
            f"exit {code}: `{err[:150]}...`; resumed exit {code2}",
            same,
        )
    finally:
        fs.close()


def case_read_only_new_run(work):
    fs = Tmpfs("1m")
    if not fs.ok:
        return "read-only mount (needs root)", "skipped", None
    try:
        fs.remount("ro")
        code, err = run_to_end(fs.path / "run")
        return (
            "new run into a read-only file system",
            f"exit {code}: `{err}`",
            code == 2 and "Read-only file system" in err and "choose a writable run_dir" in err,
        )
    finally:
        fs.close()


def case_read_only_resume(work):
    fs = Tmpfs("4m")
    if not fs.ok:
        return "read-only mount (needs root)", "skipped", None
    try:
        d = fs.path / "run"
        proc = spawn(d, sleep=0.01)
        kill_after(proc, d, 0.3)
        before = {p: p.read_bytes() for p in d.rglob("*") if p.is_file()}
        fs.remount("ro")
        code, err = run_to_end(d, resume=True)
        fs.remount("rw")
        after = {p: p.read_bytes() for p in d.rglob("*") if p.is_file()}
        return (
            "resume=true of a killed run whose disk became read-only",
            f"exit {code}: `{err}`",
            code == 2 and "Read-only" in err and before == after,
        )
    finally:
        fs.close()


def case_two_processes(work, straight):
    d = work / "shared"
    first = spawn(d, sleep=0.1)  # ~6 s of training
    lock = d / ".lock"
    while not (lock.exists() and lock.read_text().startswith(f"{first.pid} ")):
        time.sleep(0.02)
    code2, err2 = run_to_end(d, resume=True)
    code1, _ = finish(first)
    same = (
        code1 == 0 and code2 == 2 and "in use by another process" in err2 and outputs(d) == straight
    )
    return (
        "a second process (resume=true) on a running run's directory",
        f"second exits {code2}: `{err2}`; first finishes",
        same,
    )


def case_cache(work, kind):
    import torch

    from torchrl_leq.modules import ProbabilisticEnsemble
    from torchrl_leq.training.cache import cached
    from torchrl_leq.training.world_model import load_world_model, save_world_model

    fs = Tmpfs("64k")
    if not fs.ok:
        return f"world-model cache on a {kind} disk (needs root)", "skipped", None
    try:
        if kind == "read-only":
            fs.remount("ro")
        torch.manual_seed(0)
        build = lambda: ProbabilisticEnsemble(29, 8, hidden_dims=(200, 200))  # noqa: E731
        path = fs.path / "wm.pt"
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            model = cached(
                path, build, load=load_world_model, save=save_world_model, what="cached world model"
            )
        message = str(caught[0].message) if caught else ""
        left = sorted(os.listdir(fs.path))
        return (
            f"world-model cache on a {kind} disk",
            f"warning `{message[:140]}...`; run continues; files left: {left}",
            model.config["obs_dim"] == 29 and "continuing without it" in message and not left,
        )
    finally:
        fs.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--child")
    parser.add_argument("--resume", action="store_true")
    parser.add_argument("--blob-kb", type=int, default=1)
    parser.add_argument("--sleep", type=float, default=0.0)
    parser.add_argument("--ckpt-every", type=int, default=5)
    parser.add_argument("--only", default=None)
    args = parser.parse_args()
    if args.child:
        sys.exit(child(args.child, args.resume, args.blob_kb, args.sleep, args.ckpt_every))
    work = Path(tempfile.mkdtemp(prefix="faults-slow-"))
    t0 = time.time()
    refs = {}

    def reference(name, **kw):
        if name not in refs:
            code, err = run_to_end(work / f"straight_{name}", **kw)
            assert code == 0, err
            refs[name] = outputs(work / f"straight_{name}")
        return refs[name]

    cases = {
        "sigkill_mid_run": lambda: case_sigkill_mid_run(work, reference("small")),
        "sigkill_during_checkpoints": lambda: case_sigkill_during_checkpoints(
            work, reference("big", blob_kb=8192, ckpt_every=2)
        ),
        "disk_full": lambda: case_disk_full(work, reference("mid", blob_kb=1200)),
        "read_only_new_run": lambda: case_read_only_new_run(work),
        "read_only_resume": lambda: case_read_only_resume(work),
        "two_processes": lambda: case_two_processes(work, reference("small")),
        "cache_read_only": lambda: case_cache(work, "read-only"),
        "cache_disk_full": lambda: case_cache(work, "full"),
    }
    print("| case | what happens | what the user sees | nothing lost, result as uninterrupted |")
    print("|---|---|---|---|")
    failures = 0
    for name, fn in cases.items():
        if args.only and name != args.only:
            continue
        what, seen, ok = fn()
        failures += ok is False
        verdict = {True: "yes", False: "**NO**", None: "skipped"}[ok]
        print(f"| {name} | {what} | {seen} | {verdict} |", flush=True)
    print(f"\n{time.time() - t0:.0f} s; work dir {work}")
    shutil.rmtree(work, ignore_errors=True)
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
