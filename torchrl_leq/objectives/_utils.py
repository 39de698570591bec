"""Small helpers shared by the losses: the ``reduction`` argument, nested keys."""

from __future__ import annotations

from torch import Tensor

REDUCTIONS = ("mean", "sum", "none")


def check_reduction(reduction: str) -> None:
    """Raise a ``ValueError`` unless ``reduction`` is one of :data:`REDUCTIONS`."""
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction must be 'mean', 'sum' or 'none', got {reduction!r}.")


def reduce_loss(value: Tensor, reduction: str) -> Tensor:
    """Mean, sum, or the per-sample tensor itself (``"none"``)."""
    if reduction == "mean":
        return value.mean()
    if reduction == "sum":
        return value.sum()
    return value


def flat_key(*parts) -> tuple:
    """Join (possibly nested) tensordict keys into one flat tuple key."""
    out: tuple = ()
    for part in parts:
        out += part if isinstance(part, tuple) else (part,)
    return out
