"""Content-keyed cache entries that heal themselves: a corrupt or unfitting entry is reported
with its path, moved aside (``<name>.corrupt-<time>``, never deleted) and rebuilt; an entry
that cannot be written (read-only or full disk) is reported and the run goes on without it.

- :func:`cache_key`: a short hash of everything that shapes a cached result (put a content
  fingerprint from :mod:`torchrl_leq.data.fingerprint` in it, not just a path).
- :func:`cached`: objects (e.g. world models) with ``load`` / ``save`` functions.
- :func:`ensure_built`: files or directories a builder writes itself (e.g. generated
  datasets), checked with a reader.

Example:
    >>> import tempfile, warnings
    >>> from pathlib import Path
    >>> entry = Path(tempfile.mkdtemp()) / f"{cache_key({'n': 3})}.txt"
    >>> def save(path, value): _ = path.write_text(str(value))
    >>> def load(path): return int(path.read_text())
    >>> cached(entry, lambda: 3, load=load, save=save)
    3
    >>> _ = entry.write_text("garbage")
    >>> with warnings.catch_warnings(record=True) as caught:
    ...     warnings.simplefilter("always")
    ...     cached(entry, lambda: 3, load=load, save=save)
    3
    >>> "moved to" in str(caught[0].message), len(list(entry.parent.glob("*.corrupt-*")))
    (True, 1)
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import warnings
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

from torchrl_leq.serialization import first_line, move_aside

__all__ = ["cache_key", "cached", "ensure_built", "CORRUPT_ERRORS"]

T = TypeVar("T")

CORRUPT_ERRORS: tuple[type[BaseException], ...] = (
    ValueError,
    KeyError,
    EOFError,
    OSError,
    RuntimeError,
    pickle.UnpicklingError,
)
"""What a ``load``/``check`` raising means "this entry is unusable" (``PermissionError``
excepted: it is re-raised; a ``FileNotFoundError`` after the entry itself vanished, e.g. set
aside by another process, just rebuilds)."""


def cache_key(payload: Mapping[str, Any], length: int = 24) -> str:
    """The first ``length`` hex digits of the SHA-256 of ``payload`` as canonical JSON.

    Example:
        >>> cache_key({"a": 1, "b": [2, 3]}) == cache_key({"b": [2, 3], "a": 1})
        True
        >>> cache_key({"a": 1}) == cache_key({"a": 2}), len(cache_key({"a": 1}))
        (False, 24)
    """
    text = json.dumps(payload, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:length]


def _set_aside(path: Path, what: str, err: BaseException) -> None:
    if not path.exists():  # another process set it aside meanwhile
        return
    aside = move_aside(path)
    warnings.warn(
        f"{what} at {path} is unusable ({first_line(err)}); moved to {aside.name}, rebuilding.",
        RuntimeWarning,
        stacklevel=3,
    )


def _unusable(err: BaseException) -> bool:
    return isinstance(err, CORRUPT_ERRORS) and not isinstance(err, PermissionError)


def cached(
    path: str | os.PathLike,
    build: Callable[[], T],
    *,
    load: Callable[[Path], T],
    save: Callable[[Path, T], Any],
    check: Callable[[T], Any] | None = None,
    what: str = "cache entry",
    enabled: bool = True,
) -> T:
    """``load(path)`` if it works (and ``check(obj)`` does not raise), else ``build()`` and
    ``save(path, obj)`` (``save`` should write atomically). A corrupt or unfitting entry is
    moved aside with a warning naming it; a failed save warns and returns the built object.
    ``enabled=False`` just builds.
    """
    path = Path(path)
    if not enabled:
        return build()
    if path.exists():
        try:
            obj = load(path)
            if check is not None:
                check(obj)
            return obj
        except Exception as err:
            if not _unusable(err):
                raise
            _set_aside(path, what, err)
    obj = build()
    try:
        save(path, obj)
    except OSError as err:
        warnings.warn(
            f"could not write {what} to {path} ({first_line(err)}); continuing without it.",
            RuntimeWarning,
            stacklevel=2,
        )
    return obj


def ensure_built(
    path: str | os.PathLike,
    build: Callable[[Path], Any],
    *,
    check: Callable[[Path], Any],
    what: str = "cache entry",
) -> Path:
    """Make sure ``path`` (a file or directory) exists and passes ``check(path)``: an entry
    that fails is moved aside with a warning and ``build(path)`` writes it again. A rebuilt
    entry that still fails raises a one-line ``RuntimeError``.

    Example:
        >>> import tempfile
        >>> from pathlib import Path
        >>> p = Path(tempfile.mkdtemp()) / "data.txt"
        >>> def build(path): _ = path.write_text("ok")
        >>> def check(path):
        ...     if path.read_text() != "ok": raise ValueError("bad contents")
        >>> ensure_built(p, build, check=check).read_text()
        'ok'
    """
    path = Path(path)
    if path.exists():
        try:
            check(path)
            return path
        except Exception as err:
            if not _unusable(err):
                raise
            _set_aside(path, what, err)
    build(path)
    try:
        check(path)
    except Exception as err:
        raise RuntimeError(
            f"{what} rebuilt at {path} still fails its check ({first_line(err)})."
        ) from err
    return path
