"""Small helpers shared by the losses: the ``reduction`` argument, nested keys, module calls."""

from __future__ import annotations

from collections.abc import Mapping

from tensordict import TensorDict
from tensordict.nn import TensorDictModule
from tensordict.utils import NestedKey, unravel_key
from torch import Tensor
from torch.nn import Module

REDUCTIONS = ("mean", "sum", "none")


def check_reduction(reduction: str) -> None:
    """Raise a ``ValueError`` unless ``reduction`` is one of :data:`REDUCTIONS`."""
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction must be 'mean', 'sum' or 'none', got {reduction!r}.")


def reduce_loss(value: Tensor, reduction: str, num_groups: int = 1) -> Tensor:
    """Mean, sum, or the per-sample tensor itself (``"none"``).

    With ``num_groups`` K > 1 the leading dim holds K seed-major groups (K stacked seeds,
    :mod:`~torchrl_leq.modules.seed_batched`): mean/sum per group, a ``[K]`` tensor.
    """
    if num_groups > 1 and reduction != "none":
        grouped = value.reshape(num_groups, -1)
        return grouped.mean(1) if reduction == "mean" else grouped.sum(1)
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


def _is_plain(module: Module) -> bool:
    return (
        type(module) is TensorDictModule
        and module._kwargs is None
        and module.method is None
        and not module.method_kwargs
        and not module._forward_hooks
        and not module._forward_pre_hooks
    )


def call_module(
    module: Module, inputs: Mapping[NestedKey, Tensor], out_key: NestedKey, batch_size
) -> Tensor:
    """``module(TensorDict(inputs, batch_size)).get(out_key)``, without the TensorDict where possible.

    A plain :class:`~tensordict.nn.TensorDictModule` (no hooks, no ``method``) whose in-keys are
    all in ``inputs`` is called on its tensors directly: tensordict 0.14 writes each output
    through ``TensorDict.from_any``, which asks ``importlib`` for pandas on every call
    (~0.15 ms, paid ~30 times per LEQ step). Anything else gets a TensorDict.

    Example:
        >>> import torch
        >>> from tensordict.nn import TensorDictModule
        >>> m = TensorDictModule(torch.nn.Linear(3, 1), in_keys=["x"], out_keys=["y"])
        >>> call_module(m, {"x": torch.ones(2, 3)}, "y", [2]).shape
        torch.Size([2, 1])
    """
    out_key = unravel_key(out_key)
    if _is_plain(module) and out_key in module.out_keys:
        keys = [unravel_key(k) for k in module.in_keys]
        if all(k in inputs for k in keys):
            outs = module.module(*(inputs[k] for k in keys))
            outs = outs if isinstance(outs, tuple) else (outs,)
            return outs[module.out_keys.index(out_key)]
    return module(TensorDict(dict(inputs), batch_size)).get(out_key)
