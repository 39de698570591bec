"""Catch device→host synchronisations in a training step (a capture-ready update has none).

:class:`NoHostSync` is a ``TorchDispatchMode`` that sees every aten op and flags those that
force the host to wait for the device: reading a value (``.item()``, ``bool(t)``,
``float(t)``, ``.tolist()``: ``aten._local_scalar_dense``), outputs whose *shape* depends on
the data (``nonzero``, ``masked_select``, boolean-mask indexing, ``unique``,
``repeat_interleave`` without ``output_size``), value comparisons returning a Python bool
(``equal``, ``is_nonzero``) and copies from an accelerator to the CPU. On a CPU-only machine
nothing actually waits, but the same ops would sync on a GPU, so the check runs anywhere.

Example:
    >>> import torch
    >>> from torchrl_leq.objectives.host_sync import HostSyncError, NoHostSync
    >>> with NoHostSync():
    ...     y = (torch.ones(3) * 2).sum()
    >>> try:
    ...     with NoHostSync():
    ...         bool(torch.ones(3).sum() > 0)
    ... except HostSyncError as err:
    ...     print(str(err).splitlines()[0])
    aten._local_scalar_dense.default: reads a tensor value on the host (.item(), bool(), float())
    >>> with NoHostSync(raise_on_sync=False) as mode:
    ...     _ = torch.arange(4)[torch.arange(4) > 1]
    >>> [op for op, _ in mode.syncs]
    ['aten.index.Tensor']
"""

from __future__ import annotations

import traceback
from collections.abc import Callable
from typing import Any

import torch
from torch.utils._python_dispatch import TorchDispatchMode

__all__ = ["HostSyncError", "NoHostSync"]

aten = torch.ops.aten

_SYNC_OPS: dict[Any, str] = {
    aten._local_scalar_dense.default: "reads a tensor value on the host (.item(), bool(), float())",
    aten.nonzero.default: "output shape depends on the data",
    aten.argwhere.default: "output shape depends on the data",
    aten.masked_select.default: "output shape depends on the data",
    aten.unique_dim.default: "output shape depends on the data",
    aten._unique2.default: "output shape depends on the data",
    aten.unique_consecutive.default: "output shape depends on the data",
    aten.equal.default: "returns a Python bool computed from the values",
    aten.is_nonzero.default: "returns a Python bool computed from the values",
}


def _bool_index(args: tuple, kwargs: dict) -> bool:
    indices = args[1] if len(args) > 1 else kwargs.get("indices", ())
    return any(
        isinstance(i, torch.Tensor) and i.dtype in (torch.bool, torch.uint8) for i in indices
    )


def _repeat_without_size(args: tuple, kwargs: dict) -> bool:
    return kwargs.get("output_size") is None


def _to_host(args: tuple, kwargs: dict) -> bool:
    src = args[0] if args else None
    device = kwargs.get("device")
    return (
        isinstance(src, torch.Tensor)
        and src.device.type != "cpu"
        and device is not None
        and torch.device(device).type == "cpu"
    )


_CONDITIONAL_OPS: dict[Any, tuple[Callable[[tuple, dict], bool], str]] = {
    aten.index.Tensor: (_bool_index, "boolean-mask indexing: output shape depends on the data"),
    aten.repeat_interleave.Tensor: (_repeat_without_size, "output shape depends on the data"),
    aten._to_copy.default: (_to_host, "copies from the device to the host"),
}


class HostSyncError(RuntimeError):
    """An op that forces a device→host synchronisation ran under :class:`NoHostSync`."""


def _caller() -> str:
    """The innermost stack frame outside torch (where the op was called from)."""
    for frame in reversed(traceback.extract_stack()[:-3]):
        if "/torch/" not in frame.filename and not frame.filename.endswith("host_sync.py"):
            return f"{frame.filename}:{frame.lineno} ({frame.name}): {frame.line}"
    return "?"


class NoHostSync(TorchDispatchMode):
    """Dispatch mode that raises :class:`HostSyncError` on ops forcing a host sync.

    Args:
        raise_on_sync: raise at the first such op (default); with ``False`` every one is
            recorded in :attr:`syncs` as ``(op name, caller)`` and execution continues.

    Attributes:
        syncs: the flagged ops (op name, ``file:line (function): code`` of the caller).
        num_ops: how many aten ops ran under the mode (to check that it saw the work).
    """

    def __init__(self, raise_on_sync: bool = True) -> None:
        super().__init__()
        self.raise_on_sync = raise_on_sync
        self.syncs: list[tuple[str, str]] = []
        self.num_ops = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        self.num_ops += 1
        reason = _SYNC_OPS.get(func)
        if reason is None and func in _CONDITIONAL_OPS:
            applies, why = _CONDITIONAL_OPS[func]
            reason = why if applies(args, kwargs) else None
        if reason is not None:
            name = str(func)
            where = _caller()
            if self.raise_on_sync:
                raise HostSyncError(f"{name}: {reason}\n  at {where}")
            self.syncs.append((name, where))
        return func(*args, **kwargs)
