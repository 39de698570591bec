"""The ``compile.*`` config node (TorchRL sota-implementations style) applied to an update step.

``compile.compile`` wraps the whole update (loss, backward, optimiser steps, EMA) in
``torch.compile`` (``compile.compile_mode``, ``compile.backend``); ``compile.cudagraphs``
captures it with ``tensordict.nn.CudaGraphModule`` and makes the optimisers capturable. CUDA
graphs need a CUDA device: on a CPU run the config is refused with one line (CudaGraphModule
would silently run eagerly there). The update must not sync with the host, which
``tests/test_no_host_sync.py`` checks for the single- and the K-seed update.

Example:
    >>> from omegaconf import OmegaConf
    >>> step = wrap_update(lambda batch: batch, OmegaConf.create({"compile": False}))
    >>> step(3)
    3
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

import torch

__all__ = ["wrap_update", "check_compile_config"]


def _get(cfg: Any, key: str, default: Any) -> Any:
    if cfg is None:
        return default
    value = cfg.get(key, default) if hasattr(cfg, "get") else getattr(cfg, key, default)
    return default if value is None else value


def check_compile_config(cfg: Any, device: torch.device | str | None = None) -> None:
    """Refuse ``compile.cudagraphs=true`` without CUDA (one line, a ``ValueError``)."""
    if not bool(_get(cfg, "cudagraphs", False)):
        return
    device = torch.device(device) if device is not None else None
    if not torch.cuda.is_available() or (device is not None and device.type != "cuda"):
        raise ValueError(
            "compile.cudagraphs=true needs a CUDA device (CUDA graphs capture GPU kernels); "
            "this run is on the CPU: set compile.cudagraphs=false."
        )


def wrap_update(
    update: Callable,
    cfg: Any,
    *,
    optimizers: Iterable[torch.optim.Optimizer] = (),
    schedulers: Mapping[str, Any] | None = None,
    device: torch.device | str | None = None,
) -> Callable:
    """``update`` compiled (``cfg.compile``) and/or captured as a CUDA graph (``cfg.cudagraphs``)
    as the ``compile`` config node says; unchanged when both are off (or ``cfg`` is None)."""
    check_compile_config(cfg, device)
    cudagraphs = bool(_get(cfg, "cudagraphs", False))
    if cudagraphs and schedulers:
        raise ValueError(
            "compile.cudagraphs=true captures the learning rate; turn the lr schedules off "
            f"({', '.join(schedulers)}, e.g. optim.cosine_actor_lr=false)."
        )
    if bool(_get(cfg, "compile", False)):
        mode = _get(cfg, "compile_mode", None)
        backend = _get(cfg, "backend", "inductor")
        if backend == "inductor":  # an inductor bug in torch 2.13 (CONVENTIONS.md, known traps)
            import torch._inductor.config as inductor_config

            inductor_config.pattern_matcher = False
        update = torch.compile(update, mode=mode, backend=backend)
    if cudagraphs:
        from tensordict.nn import CudaGraphModule

        for opt in optimizers:
            for group in opt.param_groups:
                group["capturable"] = True
        update = CudaGraphModule(update, in_keys=[], out_keys=[], warmup=int(_get(cfg, "warmup", 5)))
    return update
