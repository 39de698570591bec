"""A run directory belongs to one run: its manifest (``run.json``: the resolved config, its
hash, the log files the trainer wrote), a lock file against a second process, config
comparison on resume, and one subdirectory per job of a multirun.

:meth:`RunDirectory.claim` decides what a start means:

- empty (or only foreign files, e.g. hydra's ``.hydra/``): ``"new"``;
- another run there and ``resume=False``: one-line ``FileExistsError``;
- ``resume=True`` with a different config: one-line ``ValueError`` naming the differing keys
  (:data:`RESUME_IGNORED_KEYS` may differ);
- ``resume=True`` and a checkpoint: ``"resume"``; no checkpoint yet: ``"restart"`` (with a
  warning); a finished run: ``"finished"``; nothing there: ``"new"`` with a warning.

Only files registered with :meth:`RunDirectory.record` are ever truncated
(:meth:`RunDirectory.truncate_logs`), to the sizes they had at the checkpoint.

Example:
    >>> import tempfile
    >>> d = tempfile.mkdtemp()
    >>> run = RunDirectory(d, {"seed": 0, "loss": {"tau": 0.9}})
    >>> run.claim()
    'new'
    >>> run.release()
    >>> RunDirectory(d, {"seed": 1, "loss": {"tau": 0.7}}).claim(resume=True)
    Traceback (most recent call last):
    ...
    ValueError: resume=true but the run in ... has a different config: loss.tau: 0.9 -> 0.7, seed: 0 -> 1 — resume with the same config, or choose another run_dir.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
import socket
import tempfile
import time
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from torchrl_leq.serialization import atomic_write, first_line, move_aside

from .checkpoint import checkpoint_files

__all__ = [
    "RunDirectory",
    "RunLock",
    "RESUME_IGNORED_KEYS",
    "normalize_config",
    "flatten_config",
    "config_hash",
    "config_diff",
    "job_run_dir",
]

RUN_FILE = "run.json"
LOCK_FILE = ".lock"
CHECKPOINT_FILES = tuple(p.name for p in checkpoint_files("checkpoint.pt"))
EARLIER_RUN_FILES = ("metrics.csv", *CHECKPOINT_FILES)
RESUME_IGNORED_KEYS = ("resume", "progress", "run_dir", "train.stop_after_steps")
"""Config keys that may change between a run and its resume (``train.total_steps`` may not:
the learning-rate schedules depend on it; split a run with ``train.stop_after_steps``)."""


def normalize_config(config: Mapping[str, Any]) -> dict[str, Any]:
    """A plain, JSON-round-tripped dict of ``config`` (an OmegaConf ``DictConfig`` is resolved).

    Example:
        >>> normalize_config({"a": (1, 2), "b": {"c": None}})
        {'a': [1, 2], 'b': {'c': None}}
    """
    try:
        from omegaconf import DictConfig, OmegaConf

        if isinstance(config, DictConfig):
            config = OmegaConf.to_container(config, resolve=True)
    except ImportError:  # pragma: no cover - omegaconf is a dependency
        pass
    return json.loads(json.dumps(dict(config), sort_keys=True, default=str))


def flatten_config(config: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested mappings to dotted keys.

    Example:
        >>> flatten_config({"loss": {"tau": 0.9, "gamma": 0.99}, "seed": 0})
        {'loss.tau': 0.9, 'loss.gamma': 0.99, 'seed': 0}
    """
    flat: dict[str, Any] = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            flat.update(flatten_config(value, prefix=f"{name}."))
        else:
            flat[name] = value
    return flat


def _is_ignored(key: str, ignore: Sequence[str]) -> bool:
    return any(key == k or key.startswith(f"{k}.") for k in ignore)


def _comparable(config: Mapping[str, Any], ignore: Sequence[str]) -> dict[str, Any]:
    flat = flatten_config(normalize_config(config))
    return {k: v for k, v in flat.items() if not _is_ignored(k, ignore)}


def config_hash(config: Mapping[str, Any], ignore: Sequence[str] = RESUME_IGNORED_KEYS) -> str:
    """SHA-256 (hex) of the canonical JSON of ``config`` without the ``ignore`` keys.

    Example:
        >>> config_hash({"seed": 0, "resume": True}) == config_hash({"seed": 0})
        True
        >>> config_hash({"seed": 0}) == config_hash({"seed": 1})
        False
    """
    text = json.dumps(_comparable(config, ignore), sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()


def config_diff(
    old: Mapping[str, Any], new: Mapping[str, Any], ignore: Sequence[str] = RESUME_IGNORED_KEYS
) -> list[str]:
    """``"key: old -> new"`` for every dotted key whose value differs (``<absent>`` when a
    side lacks it), sorted; the ``ignore`` keys are skipped.

    Example:
        >>> config_diff({"seed": 0, "a": {"b": 1}}, {"seed": 1, "a": {"b": 1, "c": 2}})
        ['a.c: <absent> -> 2', 'seed: 0 -> 1']
    """
    a, b = _comparable(old, ignore), _comparable(new, ignore)
    missing = object()
    out = []
    for key in sorted(set(a) | set(b)):
        va, vb = a.get(key, missing), b.get(key, missing)
        if not _same(va, vb):
            show = [("<absent>" if v is missing else json.dumps(v)) for v in (va, vb)]
            out.append(f"{key}: {show[0]} -> {show[1]}")
    return out


def _same(a: Any, b: Any) -> bool:
    """Equal values; ``1`` and ``1.0`` match, ``True`` and ``1`` do not."""
    return a == b and (isinstance(a, bool) == isinstance(b, bool))


def job_run_dir(
    run_dir: str | os.PathLike,
    *,
    multirun: bool,
    overrides: Sequence[str] = (),
    ignore: Sequence[str] = ("run_dir", "resume", "progress"),
) -> Path:
    """The run directory of one job: ``run_dir`` itself for a single run; for a multirun, a
    subdirectory named after the job's own overrides (sorted; ``ignore`` keys left out), so
    the same sweep relaunched with ``resume=true`` finds each job's own run again.

    With hydra: ``job_run_dir(cfg.run_dir, multirun=HydraConfig.get().mode ==
    RunMode.MULTIRUN, overrides=HydraConfig.get().overrides.task)``.

    Example:
        >>> job_run_dir("runs/x", multirun=True, overrides=["seed=1", "run_dir=runs/x",
        ...             "loss.tau=0.7"]).as_posix()
        'runs/x/loss.tau=0.7,seed=1'
        >>> job_run_dir("runs/x", multirun=False, overrides=["seed=1"]).as_posix()
        'runs/x'
    """
    run_dir = Path(run_dir)
    if not multirun:
        return run_dir
    kept = sorted(
        o.lstrip("+~") for o in overrides if o.lstrip("+~").split("=", 1)[0] not in ignore
    )
    name = re.sub(r"[^A-Za-z0-9._=,+@-]", "_", ",".join(kept)) or "job"
    if len(name) > 120:
        name = f"{name[:100]}-{hashlib.sha256(name.encode()).hexdigest()[:12]}"
    return run_dir / name


class RunLock:
    """An exclusive ``flock`` on a lock file: a second process (or a second claim in this one)
    gets a one-line ``FileExistsError``. The OS drops the lock when the holder dies, even by
    SIGKILL, so a stale lock never blocks a resume.

    Example:
        >>> import tempfile, os
        >>> path = os.path.join(tempfile.mkdtemp(), ".lock")
        >>> first = RunLock(path); first.acquire()
        >>> RunLock(path).acquire()
        Traceback (most recent call last):
        ...
        FileExistsError: ... is in use by another process (pid ...) — wait for it to finish, or choose another run_dir.
        >>> first.release(); RunLock(path).acquire()
    """

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        self._fd: int | None = None

    @property
    def locked(self) -> bool:
        return self._fd is not None

    def acquire(self) -> None:
        if self._fd is not None:
            return
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 200, 0).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise FileExistsError(
                f"{self.path.parent} is in use by another process (pid {holder}) — wait for it "
                "to finish, or choose another run_dir."
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()} on {socket.gethostname()}\n".encode(), 0)
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None


class RunDirectory:
    """One run's directory: claim it (:meth:`claim`), register the log files the trainer
    writes (:meth:`record`), cut them back to a checkpoint's sizes (:meth:`truncate_logs`),
    mark the run finished (:meth:`finish`), release the lock (:meth:`release`).

    Args:
        path: the directory (created on claim).
        config: the run's resolved config (mapping or ``DictConfig``); None skips comparisons.
        ignore: keys that may differ on resume.
    """

    def __init__(
        self,
        path: str | os.PathLike,
        config: Mapping[str, Any] | None = None,
        *,
        ignore: Sequence[str] = RESUME_IGNORED_KEYS,
    ) -> None:
        self.path = Path(path)
        self.config = None if config is None else normalize_config(config)
        self.ignore = tuple(ignore)
        self.config_hash = None if config is None else config_hash(self.config, self.ignore)
        self.status: str | None = None
        self.manifest: dict[str, Any] = {}
        self._lock = RunLock(self.path / LOCK_FILE)

    @property
    def manifest_path(self) -> Path:
        return self.path / RUN_FILE

    def has_checkpoint(self) -> bool:
        return any((self.path / name).exists() for name in CHECKPOINT_FILES)

    # ------------------------------------------------------------------ claim
    def claim(self, resume: bool = False) -> str:
        """Lock the directory and decide: ``"new"``, ``"resume"``, ``"restart"`` (resume asked,
        no checkpoint yet) or ``"finished"``; raises as described in the module docstring."""
        if self.status is not None:
            return self.status
        self._acquire(write_test=False)
        try:
            self.status = self._decide(resume)
        except BaseException:
            self._lock.release()
            raise
        return self.status

    def _acquire(self, *, write_test: bool) -> None:
        """Create the directory and take its lock (``write_test``: also create and delete a
        probe file, releasing the lock if that fails); an unusable directory is one line."""
        try:
            self.path.mkdir(parents=True, exist_ok=True)
            self._lock.acquire()
            if write_test:
                try:
                    fd, probe = tempfile.mkstemp(prefix=".write-test-", dir=self.path)
                    os.close(fd)
                    os.unlink(probe)
                except BaseException:
                    self._lock.release()
                    raise
        except OSError as err:
            if isinstance(err, FileExistsError) and "in use" in str(err):
                raise
            raise type(err)(
                f"cannot use run_dir {self.path} ({first_line(err)}) — choose a writable run_dir."
            ) from err

    def _remove_stale_temporaries(self) -> None:
        """Temporary files of our atomic writes that a kill left behind (we hold the lock, so
        no write of ours is in progress)."""
        for name in (RUN_FILE, *CHECKPOINT_FILES):
            for tmp in self.path.glob(f".{name}.*.tmp"):
                tmp.unlink()

    def check(self, resume: bool = False) -> str:
        """What :meth:`claim` would decide, with the same one-line errors (another run there,
        a different config, a process holding the lock, a directory that cannot be written),
        but nothing claimed: the lock is tried and released, no manifest is written and no
        warning is given (:meth:`claim` gives them). For the checks before any heavy work."""
        if self.status is not None:
            return self.status
        self._acquire(write_test=True)
        try:
            return self._assess(resume, self._peek_manifest(), self._earlier_files())
        finally:
            self._lock.release()

    def _earlier_files(self) -> list[str]:
        return [name for name in EARLIER_RUN_FILES if (self.path / name).exists()]

    def _assess(self, resume: bool, manifest: dict[str, Any] | None, earlier: list[str]) -> str:
        """The decision of :meth:`claim` from what is in the directory; raises, writes nothing."""
        if manifest is None and not earlier:
            return "new"
        if not resume:
            what = (
                f"a run (config {str(manifest.get('config_hash'))[:12]})"
                if manifest is not None
                else f"files of an earlier run ({', '.join(earlier)})"
            )
            raise FileExistsError(
                f"{self.path} already holds {what} — pass resume=true to continue it, or choose "
                "another run_dir."
            )
        old = None if manifest is None else manifest.get("config")
        if old is not None and self.config is not None:
            diff = config_diff(old, self.config, self.ignore)
            if diff:
                raise ValueError(
                    f"resume=true but the run in {self.path} has a different config: "
                    f"{', '.join(diff)} — resume with the same config, or choose another run_dir."
                )
        if manifest is not None and manifest.get("finished"):
            return "finished"
        return "resume" if self.has_checkpoint() else "restart"

    def _decide(self, resume: bool) -> str:
        self._remove_stale_temporaries()
        manifest = self._read_manifest()
        earlier = self._earlier_files()
        status = self._assess(resume, manifest, earlier)
        if manifest is None:  # a new run, or one from before manifests: adopt its metrics.csv
            if status == "new" and resume:
                warnings.warn(
                    f"resume=true but {self.path} holds no run to resume; starting a new run.",
                    RuntimeWarning,
                    stacklevel=3,
                )
            self._write_new_manifest(["metrics.csv"] if "metrics.csv" in earlier else [])
        else:
            self.manifest = manifest
            if self.config is not None and manifest.get("config") is None:
                self.manifest.update(config=self.config, config_hash=self.config_hash)
                self._save_manifest()
        if status == "restart":
            warnings.warn(
                f"resume=true but the run in {self.path} has no checkpoint yet; starting it "
                "over (the files it logged are kept as <name>.restarted-<time>).",
                RuntimeWarning,
                stacklevel=3,
            )
        return status

    def _peek_manifest(self) -> dict[str, Any] | None:
        """The manifest if it is readable, else None (:meth:`_read_manifest` moves a bad one
        aside, with a warning, when the directory is claimed)."""
        try:
            manifest = json.loads(self.manifest_path.read_text())
        except (OSError, ValueError, UnicodeDecodeError):
            return None
        ok = isinstance(manifest, dict) and manifest.get("format") == "torchrl_leq.run"
        return manifest if ok else None

    def _read_manifest(self) -> dict[str, Any] | None:
        if not self.manifest_path.exists():
            return None
        try:
            manifest = json.loads(self.manifest_path.read_text())
            if not isinstance(manifest, dict) or manifest.get("format") != "torchrl_leq.run":
                raise ValueError("not a torchrl_leq run manifest")
        except (ValueError, UnicodeDecodeError) as err:
            aside = move_aside(self.manifest_path)
            warnings.warn(
                f"{self.manifest_path} is unreadable ({first_line(err)}); moved to {aside.name}.",
                RuntimeWarning,
                stacklevel=4,
            )
            return None
        return manifest

    def _write_new_manifest(self, files: list[str]) -> None:
        self.manifest = {
            "format": "torchrl_leq.run",
            "version": 1,
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "config_hash": self.config_hash,
            "config": self.config,
            "files": files,
            "finished": False,
        }
        self._save_manifest()

    def _save_manifest(self) -> None:
        text = json.dumps(self.manifest, indent=1, sort_keys=True, default=str)
        atomic_write(self.manifest_path, [text.encode()])

    # ------------------------------------------------------------------ own files
    def _rel(self, file: str | os.PathLike) -> str:
        file = Path(file)
        try:
            return file.resolve().relative_to(self.path.resolve()).as_posix()
        except ValueError:
            return str(file.resolve())

    def _abs(self, rel: str) -> Path:
        return Path(rel) if os.path.isabs(rel) else self.path / rel

    def record(self, file: str | os.PathLike) -> None:
        """Register an append-only log file the trainer writes (saved before its first row)."""
        rel = self._rel(file)
        if rel not in self.manifest.setdefault("files", []):
            self.manifest["files"].append(rel)
            self._save_manifest()

    def log_sizes(self) -> dict[str, int]:
        """Byte size of every registered file that exists (stored with each checkpoint)."""
        sizes = {}
        for rel in self.manifest.get("files", []):
            path = self._abs(rel)
            if path.is_file():
                sizes[rel] = path.stat().st_size
        return sizes

    def truncate_logs(self, sizes: Mapping[str, int] | None = None) -> dict[str, int]:
        """Cut every registered file back to its size in ``sizes`` (absent: 0 bytes, i.e. written
        after the checkpoint); returns ``{file: bytes removed}``. Unregistered files are never
        touched; a registered file shorter than recorded is left as is, with a warning."""
        sizes = dict(sizes or {})
        removed = {}
        for rel in self.manifest.get("files", []):
            path = self._abs(rel)
            if not path.is_file():
                continue
            size, target = path.stat().st_size, int(sizes.get(rel, 0))
            if size > target:
                os.truncate(path, target)
                removed[rel] = size - target
            elif size < target:
                warnings.warn(
                    f"{path} is shorter than at the checkpoint ({size} < {target} bytes); "
                    "left as is.",
                    RuntimeWarning,
                    stacklevel=2,
                )
        return removed

    def set_aside_logs(self) -> list[Path]:
        """Rename every non-empty registered file to ``<name>.restarted-<time>`` (a run started
        over keeps its earlier rows, out of the way of the new ones); returns the new paths."""
        moved = []
        for rel in self.manifest.get("files", []):
            path = self._abs(rel)
            if path.is_file() and path.stat().st_size > 0:
                moved.append(move_aside(path, label="restarted"))
        return moved

    def finish(self, summary: Mapping[str, Any]) -> None:
        """Mark the run finished; ``summary`` is what a later ``resume=true`` returns."""
        self.manifest.update(finished=True, summary=dict(summary))
        self._save_manifest()

    def release(self) -> None:
        """Release the lock (the manifest stays: the directory still belongs to this run); a
        later :meth:`claim` decides afresh."""
        self._lock.release()
        self.status = None
