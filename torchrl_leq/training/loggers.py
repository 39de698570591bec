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

__all__ = ["make_logger", "MetricsCSV", "truncate_csvs_after", "plot_learning_curve"]

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
    """Append-only CSV of evaluation rows with a fixed header (deterministic: no wall times)."""

    def __init__(self, path: str | os.PathLike, fields: Sequence[str]) -> None:
        self.path, self.fields = Path(path), list(fields)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if not self.path.exists():
            with self.path.open("w", newline="") as f:
                csv.writer(f).writerow(self.fields)

    def write(self, row: dict[str, Any]) -> None:
        with self.path.open("a", newline="") as f:
            csv.writer(f).writerow([_fmt(row.get(k, "")) for k in self.fields])

    def read(self) -> list[dict[str, str]]:
        with self.path.open(newline="") as f:
            return list(csv.DictReader(f))


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return repr(value)
    return str(value)


def truncate_csvs_after(folder: str | os.PathLike, step: int) -> None:
    """Drop rows logged after ``step`` from every CSV under ``folder`` (first column = step).

    Used on resume: a killed run may have logged past its last checkpoint.
    """
    for path in Path(folder).rglob("*.csv"):
        lines = path.read_text().splitlines()
        kept = []
        for line in lines:
            head = line.split(",", 1)[0]
            if head.lstrip("-").isdigit() and int(head) > step:
                continue
            kept.append(line)
        if len(kept) != len(lines):
            path.write_text("".join(line + "\n" for line in kept))


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
