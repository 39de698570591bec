"""K seeds' networks in one module: parameters stacked along a leading seed dimension.

:func:`stack_seed_modules` turns K structurally identical modules (one per seed, e.g. the actor
each single-seed run would build) into one module whose ``Linear`` / ``LayerNorm`` /
:class:`~torchrl_leq.modules.actor_critic.InputScaler` layers hold ``[K, ...]`` tensors. Its
input is the K seeds' batches concatenated seed-major, ``[K*B, ...]`` (seed k owns rows
``k*B:(k+1)*B``); each layer views it as ``[K, B, ...]`` and applies seed k's weights to seed
k's rows with one ``torch.baddbmm`` (the ensemble's trick), so a loss written for one batch
(LEQLoss) trains K independent seeds when it sees the batch ``K*B``.

Parameter names are those of the single-seed module (``mlp.0.weight`` is ``[K, out, in]``), so
``{name: t[k]}`` of the stacked ``state_dict`` is seed k's single-seed ``state_dict``
(:func:`seed_slice_state`): per-seed checkpoints are the ones a single-seed run writes.

Measured alternative (``benchmarks/speed.py``): ``torch.func.vmap`` of ``functional_call``
over the stacked parameters; the explicit ``baddbmm`` layers were faster on this CPU (SPEED.md).

Example:
    >>> import torch
    >>> from torchrl_leq.modules import make_deterministic_actor
    >>> actors = [make_deterministic_actor(3, 2, num_cells=(8,)) for _ in range(2)]
    >>> stacked = stack_seed_modules(actors)
    >>> x = torch.randn(2 * 5, 3)
    >>> y = stacked.module(x)
    >>> torch.allclose(y[5:], actors[1].module(x[5:]), atol=1e-6)
    True
    >>> seed_slice_state(stacked.state_dict(), 1)["module.mlp.0.weight"].shape
    torch.Size([8, 3])
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F
from tensordict.nn import ProbabilisticTensorDictSequential, TensorDictSequential
from torch import Tensor, nn
from torchrl.modules.functional import symlog

from .actor_critic import InputScaler

__all__ = [
    "SeedBatchedLinear",
    "SeedBatchedLayerNorm",
    "SeedBatchedInputScaler",
    "stack_seed_modules",
    "seed_slice_state",
    "load_seed_slice",
    "num_seeds_of",
]


def _seed_view(x: Tensor, num_seeds: int) -> Tensor:
    """``[K*B, ..., F]`` (seed-major) as ``[K, N, F]``."""
    return x.reshape(num_seeds, -1, x.shape[-1])


class SeedBatchedLinear(nn.Module):
    """K ``nn.Linear`` layers: ``weight [K, out, in]``, ``bias [K, out]``; one ``baddbmm``."""

    def __init__(self, layers: Sequence[nn.Linear]) -> None:
        super().__init__()
        self.num_seeds = len(layers)
        self.weight = nn.Parameter(torch.stack([m.weight.detach() for m in layers]).clone())
        if layers[0].bias is None:
            self.register_parameter("bias", None)
        else:
            self.bias = nn.Parameter(torch.stack([m.bias.detach() for m in layers]).clone())

    def forward(self, x: Tensor) -> Tensor:
        lead, h = x.shape[:-1], _seed_view(x, self.num_seeds)
        w = self.weight.transpose(1, 2)
        out = torch.bmm(h, w) if self.bias is None else torch.baddbmm(self.bias.unsqueeze(1), h, w)
        return out.reshape(*lead, out.shape[-1])


class SeedBatchedLayerNorm(nn.Module):
    """K ``nn.LayerNorm`` layers over the last dim: ``weight``/``bias`` ``[K, D]``."""

    def __init__(self, layers: Sequence[nn.LayerNorm]) -> None:
        super().__init__()
        first = layers[0]
        if len(first.normalized_shape) != 1 or not first.elementwise_affine:
            raise ValueError("SeedBatchedLayerNorm supports affine LayerNorm over the last dim.")
        self.num_seeds, self.eps = len(layers), first.eps
        self.normalized_shape = tuple(first.normalized_shape)
        self.weight = nn.Parameter(torch.stack([m.weight.detach() for m in layers]).clone())
        self.bias = nn.Parameter(torch.stack([m.bias.detach() for m in layers]).clone())

    def forward(self, x: Tensor) -> Tensor:
        lead = x.shape[:-1]
        h = _seed_view(F.layer_norm(x, self.normalized_shape, eps=self.eps), self.num_seeds)
        out = torch.addcmul(self.bias.unsqueeze(1), h, self.weight.unsqueeze(1))
        return out.reshape(*lead, out.shape[-1])


class SeedBatchedInputScaler(nn.Module):
    """K :class:`InputScaler` s: ``loc``/``scale`` buffers ``[K, D]``."""

    def __init__(self, scalers: Sequence[InputScaler]) -> None:
        super().__init__()
        self.num_seeds, self.use_symlog = len(scalers), scalers[0].use_symlog
        self.register_buffer("loc", torch.stack([s.loc for s in scalers]).clone())
        self.register_buffer("scale", torch.stack([s.scale for s in scalers]).clone())

    def forward(self, x: Tensor) -> Tensor:
        lead, h = x.shape[:-1], _seed_view(x, self.num_seeds)
        h = (h - self.loc.unsqueeze(1)) / self.scale.unsqueeze(1)
        if self.use_symlog:
            h = symlog(h)
        return h.reshape(*lead, h.shape[-1])


_STACKERS = {
    nn.Linear: SeedBatchedLinear,
    nn.LayerNorm: SeedBatchedLayerNorm,
    InputScaler: SeedBatchedInputScaler,
}


def _stack(modules: Sequence[nn.Module]) -> nn.Module:
    first = modules[0]
    if any(type(m) is not type(first) for m in modules):
        raise TypeError("stack_seed_modules needs K modules of the same structure.")
    stacker = _STACKERS.get(type(first))
    if stacker is not None:
        return stacker(modules)
    if any(True for _ in first.parameters(recurse=False)) or any(
        True for _ in first.buffers(recurse=False)
    ):
        raise TypeError(
            f"stack_seed_modules cannot stack {type(first).__name__} (own parameters or buffers "
            f"and no seed-batched version; known: {[t.__name__ for t in _STACKERS]})."
        )
    children = [dict(m.named_children()) for m in modules]
    if any(c.keys() != children[0].keys() for c in children):
        raise TypeError("stack_seed_modules needs K modules of the same structure.")
    out = copy.copy(first)
    out._modules = dict(out._modules)
    for name in children[0]:
        out._modules[name] = _stack([c[name] for c in children])
    out._parameters, out._buffers = {}, {}
    if isinstance(out, ProbabilisticTensorDictSequential) and out.det_part is not None:
        # get_dist runs a second container of the same children, kept outside _modules
        # (a SAC actor, ProbabilisticActor): rebuild it around the stacked children.
        out.__dict__["_det_part"] = TensorDictSequential(*list(out.module)[:-1])
    return out


def stack_seed_modules(modules: Sequence[nn.Module]) -> nn.Module:
    """One module running ``len(modules)`` seeds on a seed-major ``[K*B, ...]`` batch.

    ``modules`` must share one structure of containers (TensorDictModule, ProbabilisticActor,
    MLP, Sequential, ...) around ``Linear``, ``LayerNorm`` and ``InputScaler`` layers;
    parameter-free layers (ReLU, tanh) are shared. K = 1 returns ``modules[0]`` itself (the
    single-seed path, unchanged).
    """
    modules = list(modules)
    if not modules:
        raise ValueError("stack_seed_modules needs at least one module.")
    if len(modules) == 1:
        return modules[0]
    return _stack(modules)


def num_seeds_of(module: nn.Module) -> int:
    """K of a module built by :func:`stack_seed_modules` (1 for a plain module)."""
    for m in module.modules():
        if isinstance(m, (SeedBatchedLinear, SeedBatchedLayerNorm, SeedBatchedInputScaler)):
            return m.num_seeds
    return 1


def seed_slice_state(state: Mapping[str, Tensor], k: int) -> dict[str, Tensor]:
    """Seed k's part of a stacked ``state_dict`` (every tensor indexed ``[k]`` and copied: a
    view would save the whole stacked storage)."""
    return {
        name: t[k].clone() if isinstance(t, Tensor) and t.dim() > 0 else t
        for name, t in state.items()
    }


@torch.no_grad()
def load_seed_slice(target: nn.Module, stacked: nn.Module, k: int) -> nn.Module:
    """Copy seed k's parameters and buffers of ``stacked`` into the single-seed ``target``."""
    target.load_state_dict(seed_slice_state(stacked.state_dict(), k))
    return target
