"""Content fingerprints for cache keys: a dataset file or a Minari dataset directory
(:func:`dataset_fingerprint`), and a TensorDict of transitions (:func:`transitions_fingerprint`).

A cache keyed by a fingerprint notices a dataset rewritten at the same path, and (for the
TensorDict) every choice that shapes the data a model trains on: observation keys, reward
transform, dropped rows. Cost of :func:`dataset_fingerprint` on a 1M-transition D4RL-format
HDF5 file (29 obs dims, 8 actions, float32; 276 MB) on this 2-core machine: see
``docs/reliability.md`` (``mode="full"`` reads every byte at ~0.8 GB/s of SHA-256;
``mode="quick"`` reads 2 MiB and trusts size + mtime for the rest).

Example:
    >>> import tempfile, torch
    >>> from pathlib import Path
    >>> from tensordict import TensorDict
    >>> p = Path(tempfile.mkdtemp()) / "d.bin"; _ = p.write_bytes(b"abc")
    >>> dataset_fingerprint(p) == dataset_fingerprint(p)
    True
    >>> td = TensorDict({"observation": torch.zeros(4, 2)}, [4])
    >>> a = transitions_fingerprint(td); td["observation"][0, 0] = 1.0
    >>> a == transitions_fingerprint(td)
    False
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

import torch
from tensordict import TensorDictBase

__all__ = ["dataset_fingerprint", "transitions_fingerprint", "FINGERPRINT_MODES"]

FINGERPRINT_MODES = ("full", "quick")
_CHUNK = 8 << 20
_EDGE = 1 << 20


def _hash_file(path: Path, mode: str, h: Any) -> None:
    stat = path.stat()
    h.update(f"size={stat.st_size}\0".encode())
    with path.open("rb") as f:
        if mode == "full":
            while chunk := f.read(_CHUNK):
                h.update(chunk)
            return
        h.update(f"mtime_ns={stat.st_mtime_ns}\0".encode())
        h.update(f.read(_EDGE))
        if stat.st_size > 2 * _EDGE:
            f.seek(stat.st_size - _EDGE)
        h.update(f.read(_EDGE))


def dataset_fingerprint(path: str | os.PathLike, mode: str = "full") -> str:
    """SHA-256 (hex) of a dataset file, or of every file under a dataset directory (relative
    paths and contents, in sorted order; hidden temporary files skipped).

    ``mode="full"`` hashes every byte (any change is seen); ``mode="quick"`` hashes the size,
    the modification time and the first and last MiB of each file (a rewrite is seen through
    its mtime; an in-place edit that keeps size and mtime is not).

    Example:
        >>> import tempfile
        >>> from pathlib import Path
        >>> d = Path(tempfile.mkdtemp()); _ = (d / "data").mkdir()
        >>> _ = (d / "data" / "main_data.hdf5").write_bytes(b"x" * 10)
        >>> before = dataset_fingerprint(d)
        >>> _ = (d / "data" / "main_data.hdf5").write_bytes(b"y" * 10)
        >>> before == dataset_fingerprint(d), len(before)
        (False, 64)
    """
    if mode not in FINGERPRINT_MODES:
        raise ValueError(f"mode must be one of {FINGERPRINT_MODES}, got {mode!r}.")
    path = Path(path).expanduser()
    if not path.exists():
        raise FileNotFoundError(f"No dataset at {path} to fingerprint.")
    h = hashlib.sha256(f"torchrl_leq.dataset.v1\0{mode}\0".encode())
    if path.is_file():
        _hash_file(path, mode, h)
        return h.hexdigest()
    files = sorted(p for p in path.rglob("*") if p.is_file() and not p.name.startswith("."))
    for file in files:
        h.update(f"\0file={file.relative_to(path).as_posix()}\0".encode())
        _hash_file(file, mode, h)
    return h.hexdigest()


def transitions_fingerprint(transitions: TensorDictBase) -> str:
    """SHA-256 (hex) of a TensorDict's contents: every leaf's key, dtype, shape and bytes, in
    sorted key order (device and memory layout do not matter).

    Example:
        >>> import torch
        >>> from tensordict import TensorDict
        >>> a = TensorDict({"x": torch.arange(6.0).view(2, 3)}, [2])
        >>> transitions_fingerprint(a) == transitions_fingerprint(a.clone())
        True
        >>> transitions_fingerprint(a) == transitions_fingerprint(a.double())
        False
    """
    h = hashlib.sha256(b"torchrl_leq.transitions.v1\0")
    h.update(f"batch={list(transitions.batch_size)}\0".encode())
    leaves = transitions.items(include_nested=True, leaves_only=True)
    for key, value in sorted(leaves, key=lambda kv: str(kv[0])):
        if not isinstance(value, torch.Tensor):
            raise TypeError(f"transitions_fingerprint hashes tensors; {key!r} is {type(value)}.")
        tensor = value.detach().cpu().contiguous()
        h.update(f"\0key={key}\0dtype={tensor.dtype}\0shape={list(tensor.shape)}\0".encode())
        if tensor.numel():
            h.update(tensor.reshape(-1).view(torch.uint8).numpy().data)
    return h.hexdigest()
