"""Verified files: a header (magic, kind, format version, payload length, SHA-256) in front of a
``torch.save`` payload, written atomically; and moving a bad file aside instead of deleting it.

A reader tells apart, each with a one-line message: a file that is not ours
(:class:`UnknownFormatError`), one of another kind (a checkpoint passed as a world model), one
written by a newer format version, and a truncated or altered one (:class:`CorruptFileError`).

Example:
    >>> import tempfile, torch
    >>> from pathlib import Path
    >>> p = Path(tempfile.mkdtemp()) / "x.pt"
    >>> write_verified(p, {"w": torch.ones(2)}, kind="example", version=1)
    >>> obj, version = read_verified(p, kind="example", max_version=1)
    >>> obj["w"].tolist(), version
    ([1.0, 1.0], 1)
"""

from __future__ import annotations

import hashlib
import io
import os
import struct
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

__all__ = [
    "CorruptFileError",
    "UnknownFormatError",
    "atomic_write",
    "write_verified",
    "read_verified",
    "move_aside",
    "first_line",
]

MAGIC = b"TRLEQ\x00v1"
_HEADER = struct.Struct("<8s16sIQ32s")  # magic, kind, version, payload length, sha256


class CorruptFileError(ValueError):
    """A file is truncated, or its bytes do not match the checksum written with it."""


class UnknownFormatError(ValueError):
    """A file does not start with the torchrl_leq header (not ours, or an older plain file)."""


def atomic_write(
    path: str | os.PathLike,
    chunks: Sequence[bytes | memoryview],
    *,
    keep_previous: str | os.PathLike | None = None,
) -> None:
    """Write ``chunks`` to a temporary file next to ``path``, fsync, then rename over ``path``.

    A crash, a kill or a full disk leaves the old ``path`` intact (the temporary file is removed
    on errors). With ``keep_previous``, the old ``path`` is first renamed to it.

    Example:
        >>> import tempfile
        >>> from pathlib import Path
        >>> p = Path(tempfile.mkdtemp()) / "a.txt"
        >>> atomic_write(p, [b"one"]); atomic_write(p, [b"two"], keep_previous=f"{p}.prev")
        >>> p.read_text(), Path(f"{p}.prev").read_text()
        ('two', 'one')
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            for chunk in chunks:
                f.write(chunk)
            f.flush()
            os.fsync(f.fileno())
        if keep_previous is not None and path.exists():
            os.replace(path, keep_previous)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    _fsync_dir(path.parent)


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def write_verified(
    path: str | os.PathLike,
    obj: Any,
    *,
    kind: str,
    version: int,
    keep_previous: str | os.PathLike | None = None,
) -> None:
    """``torch.save(obj)`` behind a header naming ``kind`` and ``version``, with the payload's
    length and SHA-256; written with :func:`atomic_write`."""
    kind_bytes = kind.encode()
    if len(kind_bytes) > 16:
        raise ValueError(f"kind must be at most 16 bytes, got {kind!r}.")
    buf = io.BytesIO()
    torch.save(obj, buf)
    payload = buf.getbuffer()
    header = _HEADER.pack(
        MAGIC, kind_bytes, version, len(payload), hashlib.sha256(payload).digest()
    )
    atomic_write(path, [header, payload], keep_previous=keep_previous)


def read_verified(
    path: str | os.PathLike,
    *,
    kind: str,
    max_version: int,
    weights_only: bool = True,
    map_location: str | torch.device = "cpu",
) -> tuple[Any, int]:
    """Load what :func:`write_verified` wrote; returns ``(object, format version)``.

    Raises ``FileNotFoundError`` (no file), :class:`UnknownFormatError` (no header),
    ``ValueError`` (another kind, or a newer version) or :class:`CorruptFileError`.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"No file at {path}.")
    data = path.read_bytes()
    if len(data) < _HEADER.size or not data.startswith(MAGIC):
        raise UnknownFormatError(f"{path} is not a torchrl_leq file (no header).")
    _, kind_bytes, version, length, digest = _HEADER.unpack_from(data)
    found = kind_bytes.rstrip(b"\x00").decode(errors="replace")
    if found != kind:
        raise ValueError(f"{path} holds a torchrl_leq {found}, not a {kind}.")
    if version > max_version:
        raise ValueError(
            f"{path} was written by a newer torchrl_leq ({kind} format v{version}; this version "
            f"reads up to v{max_version}): upgrade torchrl_leq."
        )
    payload = memoryview(data)[_HEADER.size :]
    if len(payload) != length:
        raise CorruptFileError(f"{path} is truncated ({len(payload)} of {length} payload bytes).")
    if hashlib.sha256(payload).digest() != digest:
        raise CorruptFileError(f"{path} is corrupt: its SHA-256 does not match its contents.")
    try:
        obj = torch.load(io.BytesIO(payload), map_location=map_location, weights_only=weights_only)
    except Exception as err:  # the checksum matched: a payload we cannot decode is corrupt too
        raise CorruptFileError(f"{path} could not be decoded ({first_line(err)}).") from err
    return obj, version


def move_aside(path: str | os.PathLike, label: str = "corrupt") -> Path:
    """Rename ``path`` (file or folder) to ``<path>.<label>-<UTC time>`` (never overwriting)
    and return the new path: bad or superseded files are kept, not deleted.

    Example:
        >>> import tempfile
        >>> from pathlib import Path
        >>> p = Path(tempfile.mkdtemp()) / "bad.pt"; _ = p.write_bytes(b"?")
        >>> q = move_aside(p)
        >>> p.exists(), q.name.startswith("bad.pt.corrupt-"), q.read_bytes()
        (False, True, b'?')
    """
    path = Path(path)
    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
    target = path.with_name(f"{path.name}.{label}-{stamp}")
    n = 1
    while target.exists():
        target = path.with_name(f"{path.name}.{label}-{stamp}-{n}")
        n += 1
    os.replace(path, target)
    return target


def first_line(err: BaseException, limit: int = 160) -> str:
    """``"Type: first line of the message"``, cut to ``limit`` characters (for one-line errors).

    Example:
        >>> first_line(KeyError(101))
        'KeyError: 101'
    """
    text = str(err).strip().splitlines()
    line = f"{type(err).__name__}: {text[0]}" if text else type(err).__name__
    return line if len(line) <= limit else line[: limit - 3] + "..."
