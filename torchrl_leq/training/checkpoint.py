"""Checkpoints that resume bit-exactly: states of modules, optimisers, schedulers, replay
buffers, counters and every RNG (python, numpy, torch).

Files are verified (:mod:`torchrl_leq.serialization`: header, length, SHA-256) and written
atomically; :func:`save_checkpoint` keeps the previous one as ``<name>.prev.pt``, and
:func:`load_latest_checkpoint` falls back to it, with a message, when the newest is corrupt
(the corrupt file is moved aside, never deleted).

Example:
    >>> import tempfile, os
    >>> path = os.path.join(tempfile.mkdtemp(), "ckpt.pt")
    >>> save_checkpoint(path, {"step": 3, "rng": capture_rng_state()})
    >>> save_checkpoint(path, {"step": 4})
    >>> load_checkpoint(path)["step"], load_checkpoint(previous_checkpoint_path(path))["step"]
    (4, 3)
"""

from __future__ import annotations

import os
import random
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

from torchrl_leq.serialization import (
    CorruptFileError,
    UnknownFormatError,
    first_line,
    move_aside,
    read_verified,
    write_verified,
)

__all__ = [
    "capture_rng_state",
    "restore_rng_state",
    "save_checkpoint",
    "load_checkpoint",
    "load_latest_checkpoint",
    "checkpoint_files",
    "previous_checkpoint_path",
    "CHECKPOINT_VERSION",
    "GeneratorState",
]

CHECKPOINT_KIND = "checkpoint"
CHECKPOINT_VERSION = 1


def capture_rng_state() -> dict[str, Any]:
    """The state of python's, numpy's and torch's global RNGs (CUDA too when present)."""
    state = {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: dict[str, Any]) -> None:
    """Restore what :func:`capture_rng_state` captured."""
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


class GeneratorState:
    """A ``torch.Generator`` as a checkpoint entry (``OfflineTrainer(stateful={...})``): a
    resumed run continues its draws (e.g. a model env's own generator after ``set_seed``).

    Example:
        >>> g = torch.Generator().manual_seed(0)
        >>> saved = GeneratorState(g).state_dict()
        >>> a = torch.rand(1, generator=g)
        >>> GeneratorState(g).load_state_dict(saved)
        >>> bool(torch.rand(1, generator=g) == a)
        True
    """

    def __init__(self, generator: torch.Generator) -> None:
        self.generator = generator

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {"state": self.generator.get_state()}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        self.generator.set_state(state["state"])


def previous_checkpoint_path(path: str | os.PathLike) -> Path:
    """Where :func:`save_checkpoint` keeps the previous checkpoint: ``a/checkpoint.pt`` →
    ``a/checkpoint.prev.pt``.

    Example:
        >>> previous_checkpoint_path("run/checkpoint.pt").as_posix()
        'run/checkpoint.prev.pt'
    """
    path = Path(path)
    return path.with_name(f"{path.stem}.prev{path.suffix}")


def checkpoint_files(path: str | os.PathLike) -> tuple[Path, Path]:
    """The files a run may resume from, newest first: ``path`` and its
    :func:`previous_checkpoint_path`.

    Example:
        >>> [p.name for p in checkpoint_files("run/checkpoint.pt")]
        ['checkpoint.pt', 'checkpoint.prev.pt']
    """
    return Path(path), previous_checkpoint_path(path)


def save_checkpoint(
    path: str | os.PathLike, state: dict[str, Any], keep_previous: bool = True
) -> None:
    """Write ``state`` verified and atomically (a run killed mid-write, or a full disk, leaves
    the existing files intact); the checkpoint it replaces becomes
    :func:`previous_checkpoint_path` when ``keep_previous``."""
    keep = previous_checkpoint_path(path) if keep_previous else None
    write_verified(
        path, state, kind=CHECKPOINT_KIND, version=CHECKPOINT_VERSION, keep_previous=keep
    )


def load_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """Load a checkpoint written by :func:`save_checkpoint` (or a plain ``torch.save`` one from
    before verified files). Raises ``FileNotFoundError``, :class:`CorruptFileError`, or
    ``ValueError`` for a file of another kind."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"No checkpoint at {path}.")
    try:
        state, _ = read_verified(
            path, kind=CHECKPOINT_KIND, max_version=CHECKPOINT_VERSION, weights_only=False
        )
    except UnknownFormatError:
        try:  # a checkpoint from before verified files
            state = torch.load(path, map_location="cpu", weights_only=False)
        except Exception as err:
            raise CorruptFileError(
                f"{path} is not a readable checkpoint ({first_line(err)})."
            ) from err
    if not isinstance(state, dict) or "step" not in state:
        raise CorruptFileError(f"{path} is not a trainer checkpoint (no 'step' entry).")
    return state


def load_latest_checkpoint(path: str | os.PathLike) -> tuple[dict[str, Any], Path] | None:
    """The newest readable of ``path`` and its previous checkpoint, as ``(state, file)``; None
    when neither exists. A corrupt file is moved aside (``<name>.corrupt-<time>``) with a
    warning naming both files; when none is usable a one-line ``CorruptFileError`` says so.

    Example:
        >>> import tempfile, os, warnings
        >>> path = os.path.join(tempfile.mkdtemp(), "checkpoint.pt")
        >>> save_checkpoint(path, {"step": 1}); save_checkpoint(path, {"step": 2})
        >>> _ = open(path, "r+b").write(b"garbage")
        >>> with warnings.catch_warnings(record=True):
        ...     state, used = load_latest_checkpoint(path)
        >>> state["step"], used.name
        (1, 'checkpoint.prev.pt')
    """
    problems = []
    for candidate in checkpoint_files(path):
        if not candidate.exists():
            continue
        try:
            state = load_checkpoint(candidate)
        except CorruptFileError as err:
            aside = move_aside(candidate)
            problems.append(f"{err} (moved to {aside.name})")
            continue
        if problems:
            warnings.warn(
                f"{'; '.join(problems)}; resuming from {candidate} (step {state['step']}).",
                RuntimeWarning,
                stacklevel=2,
            )
        return state, candidate
    if problems:
        raise CorruptFileError(
            f"no usable checkpoint in {Path(path).parent}: {'; '.join(problems)}. Start a new "
            "run (another run_dir, or without resume) or restore a backup."
        )
    return None
