"""What the example scripts share around their ``train(cfg)``: the smoke preset, one-line user
errors and the final JSON line (:func:`run_example`).

Example:
    >>> with user_errors():
    ...     pass
    >>> summary_line("leq", {"task": "pointmaze-umaze", "seed": 0}, {"last_score": 1.0,
    ...              "best_score": 1.0, "metrics_csv": "metrics.csv"})
    '{"algo": "leq", "task": "pointmaze-umaze", "seed": 0, "last_score": 1.0, "best_score": 1.0, "metrics_csv": "metrics.csv"}'
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from functools import partial
from typing import Any

from omegaconf import DictConfig

from .allocator import keep_freed_memory
from .config import apply_smoke_preset
from .trainer import NonFiniteLossError

__all__ = ["run_example", "user_errors", "summary_line", "USER_ERRORS"]

USER_ERRORS = (ValueError, KeyError, OSError, NonFiniteLossError)
"""What a user can fix (a bad override, an unknown task, a missing or unwritable file, a
diverging run)."""


@contextmanager
def user_errors() -> Iterator[None]:
    """Turn a user error raised inside into one line, ``error: <message>``, on stderr and exit
    status 2 (no traceback); anything else propagates as a bug."""
    try:
        yield
    except USER_ERRORS as err:
        message = err.args[0] if isinstance(err, KeyError) and err.args else err
        print(f"error: {message}", file=sys.stderr)
        sys.exit(2)


def summary_line(
    algo: str, cfg: Mapping[str, Any], result: Mapping[str, Any], extra_keys: Sequence[str] = ()
) -> str:
    """The JSON line an example prints last: task, seed, last and best score, metrics file, and
    the ``extra_keys`` of ``result`` (an example's own measurements)."""
    keys = ("last_score", "best_score", "metrics_csv", *extra_keys)
    return json.dumps(
        {"algo": algo, "task": cfg["task"], "seed": cfg["seed"], **{k: result[k] for k in keys}}
    )


def run_example(
    algo: str,
    train: Callable[[DictConfig], Mapping[str, Any]],
    cfg: DictConfig,
    extra_keys: Sequence[str] = (),
) -> None:
    """The body of every example's ``@hydra.main``: apply the smoke preset (``smoke=true``),
    ``train(cfg)`` (for every seed of ``seeds=[...]``), print :func:`summary_line` (one per
    seed, with ``extra_keys`` of the result); user errors become one ``error:`` line."""
    with user_errors():
        cfg = apply_smoke_preset(cfg)
        keep_freed_memory()  # large activations reuse heap pages (training/allocator.py)
        # seeds=[...]: stacked by a train marked stacks_seeds (LEQ), else one after another
        from .multi_seed import run_seeds, summary_lines

        line = partial(summary_line, extra_keys=extra_keys)
        for text in summary_lines(algo, cfg, run_seeds(train, cfg), line):
            print(text)
