"""Loggers (TorchRL's ``get_logger``), the per-run ``metrics.csv`` and its learning-curve PNG.

Example:
    >>> import tempfile, os
    >>> d = tempfile.mkdtemp()
    >>> m = MetricsCSV(os.path.join(d, "metrics.csv"), ["step", "score"])
    >>> m.write({"step": 10, "score": 1.5})
    >>> open(os.path.join(d, "metrics.csv")).read().splitlines()
    ['step,score', '10,1.5']
"""

from __future__ import annotations

import csv
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from torchrl.record.loggers import Logger, get_logger

__all__ = [
    "make_logger",
    "MetricsCSV",
    "truncate_csv_after",
    "logger_files",
    "plot_learning_curve",
]

LOGGER_BACKENDS = ("csv", "tensorboard", "wandb", "none")


def make_logger(
    backend: str,
    log_dir: str | os.PathLike,
    exp_name: str,
    *,
    wandb_mode: str = "offline",
    **kwargs,
) -> Logger | None:
    """A TorchRL logger writing under ``log_dir``. ``backend``: csv | tensorboard | wandb | none.

    wandb runs in ``offline`` mode by default, so it needs no network (sync later with
    ``wandb sync``).
    """
    if backend not in LOGGER_BACKENDS:
        raise ValueError(f"logger must be one of {LOGGER_BACKENDS}, got {backend!r}.")
    if backend == "none":
        return None
    if backend == "wandb":
        os.environ.setdefault("WANDB_MODE", wandb_mode)
        kwargs = {"offline": wandb_mode == "offline", "save_dir": str(log_dir), **kwargs}
    else:
        kwargs = {"log_dir": str(log_dir), **kwargs}
    return get_logger(backend, logger_name=str(log_dir), experiment_name=exp_name, **kwargs)


class MetricsCSV:
    """Append-only CSV of evaluation rows with a fixed header (deterministic: no wall times).

    The file (with its header) is created by the first :meth:`write`, so constructing one
    touches nothing on disk.
    """

    def __init__(self, path: str | os.PathLike, fields: Sequence[str]) -> None:
        self.path, self.fields = Path(path), list(fields)

    def write(self, row: dict[str, Any]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        new = not self.path.exists() or self.path.stat().st_size == 0
        with self.path.open("a", newline="") as f:
            writer = csv.writer(f)
            if new:
                writer.writerow(self.fields)
            writer.writerow([_fmt(row.get(k, "")) for k in self.fields])

    def read(self) -> list[dict[str, str]]:
        if not self.path.exists():
            return []
        with self.path.open(newline="") as f:
            return list(csv.DictReader(f))


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return repr(value)
    return str(value)


def truncate_csv_after(path: str | os.PathLike, step: int) -> int:
    r"""Drop the rows of ONE csv file whose first column is an integer above ``step`` (the
    header and other lines stay); returns how many were dropped. Only for ``metrics.csv`` of
    runs checkpointed before run manifests (newer runs cut their files back to byte sizes).

    Example:
        >>> import tempfile, os
        >>> p = os.path.join(tempfile.mkdtemp(), "m.csv")
        >>> _ = open(p, "w").write("step,x\n10,1\n20,2\n30,3\n")
        >>> truncate_csv_after(p, 20), open(p).read().splitlines()
        (1, ['step,x', '10,1', '20,2'])
    """
    path = Path(path)
    lines = path.read_text().splitlines()
    kept = [
        line
        for line in lines
        if not ((head := line.split(",", 1)[0]).lstrip("-").isdigit() and int(head) > step)
    ]
    if len(kept) != len(lines):
        path.write_text("".join(line + "\n" for line in kept))
    return len(lines) - len(kept)


def logger_files(logger: Logger | None, name: str) -> list[Path]:
    """The files ``logger.log_scalar(name, ...)`` appends to: TorchRL's ``CSVLogger`` writes
    ``<log_dir>/<exp_name>/scalars/<name>.csv`` (``step,value`` lines, no header); other
    backends (TensorBoard events, W&B) are not plain row files, so none are listed.

    Example:
        >>> import tempfile
        >>> logger = make_logger("csv", tempfile.mkdtemp(), "exp")
        >>> logger_files(logger, "train/loss").pop().as_posix().endswith("exp/scalars/train/loss.csv")
        True
    """
    from torchrl.record.loggers.csv import CSVLogger

    if isinstance(logger, CSVLogger):
        return [Path(logger.experiment.log_dir) / "scalars" / f"{name}.csv"]
    return []


def plot_learning_curve(
    csv_path: str | os.PathLike,
    png_path: str | os.PathLike,
    *,
    y: str = "normalized_score",
    title: str = "",
) -> Path:
    """Plot ``y`` against ``step`` from a :class:`MetricsCSV` file into a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = MetricsCSV(csv_path, [y]).read()
    rows = [r for r in rows if r.get(y) not in (None, "")]
    steps = [int(r["step"]) for r in rows]
    values = [float(r[y]) for r in rows]
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.plot(steps, values, marker="o")
    ax.set_xlabel("gradient step")
    ax.set_ylabel(y.replace("_", " "))
    ax.set_title(title)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    png_path = Path(png_path)
    fig.savefig(png_path, dpi=100)
    plt.close(fig)
    return png_path
