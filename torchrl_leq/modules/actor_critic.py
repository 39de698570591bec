"""LEQ's deterministic actor and single critic as TensorDictModules.

Both standardise their inputs with statistics fitted on the offline data, squash them with
``symlog`` (robust to the outliers of long model rollouts) and use MLPs (3×256, ReLU). As in
the released code, the critic has LayerNorm after each hidden layer and the actor has none
(``use_norm=False`` there; ``layer_norm=True`` adds it). ``init="orthogonal"`` gives every
Linear layer the released code's orthogonal(√2) weights and zero biases; the default keeps
PyTorch's initialisation.

Example:
    >>> import torch
    >>> from tensordict import TensorDict
    >>> actor = make_deterministic_actor(4, 2, num_cells=(32, 32))
    >>> critic = make_qvalue_network(4, 2, num_cells=(32, 32))
    >>> td = TensorDict({"observation": torch.randn(8, 4)}, [8])
    >>> critic(actor(td))["state_action_value"].shape
    torch.Size([8, 1])
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from tensordict.nn import TensorDictModule, TensorDictSequential
from tensordict.utils import NestedKey
from torch import Tensor, nn
from torchrl.modules import MLP
from torchrl.modules.functional import symlog

__all__ = [
    "INITS",
    "orthogonal_init_",
    "InputScaler",
    "make_deterministic_actor",
    "make_qvalue_network",
    "make_exploration_policy",
    "PreTanhGaussianNoise",
]


class InputScaler(nn.Module):
    """``symlog((x - loc) / scale)`` with ``loc``/``scale`` stored as buffers.

    Example:
        >>> InputScaler(torch.zeros(2), torch.ones(2))(torch.tensor([[0.0, 1.0]]))
        tensor([[0.0000, 0.6931]])
    """

    def __init__(self, loc: Tensor, scale: Tensor, *, use_symlog: bool = True) -> None:
        super().__init__()
        if loc.shape != scale.shape or loc.ndim != 1:
            raise ValueError(
                f"loc and scale must be 1-D of equal length, got {tuple(loc.shape)} "
                f"and {tuple(scale.shape)}."
            )
        if not bool((scale > 0).all()):
            raise ValueError("scale must be strictly positive (add an epsilon to the std).")
        self.register_buffer("loc", loc.detach().clone().float())
        self.register_buffer("scale", scale.detach().clone().float())
        self.use_symlog = use_symlog

    def forward(self, x: Tensor) -> Tensor:
        x = (x - self.loc) / self.scale
        return symlog(x) if self.use_symlog else x


INITS = ("default", "orthogonal")


def orthogonal_init_(module: nn.Module, gain: float = 2.0**0.5) -> nn.Module:
    """Orthogonal(``gain``) weights and zero biases for every ``nn.Linear`` in ``module``
    (the released code's Dense init); returns ``module``.

    Example:
        >>> lin = orthogonal_init_(nn.Linear(4, 4))
        >>> torch.allclose(lin.weight @ lin.weight.T, 2 * torch.eye(4), atol=1e-5)
        True
    """
    for m in module.modules():
        if isinstance(m, nn.Linear):
            nn.init.orthogonal_(m.weight, gain=gain)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
    return module


def _mlp(
    in_features: int,
    out_features: int,
    num_cells: Sequence[int],
    layer_norm: bool,
    init: str = "default",
) -> MLP:
    num_cells = [int(n) for n in num_cells]
    if not num_cells or any(n < 1 for n in num_cells):
        raise ValueError(
            f"num_cells must be a non-empty sequence of positive ints, got {num_cells}."
        )
    norm = {}
    if layer_norm:
        norm = {
            "norm_class": nn.LayerNorm,
            "norm_kwargs": [{"normalized_shape": n} for n in num_cells],
        }
    if init not in INITS:
        raise ValueError(f"init must be one of {INITS}, got {init!r}.")
    mlp = MLP(
        in_features=in_features,
        out_features=out_features,
        num_cells=num_cells,
        activation_class=nn.ReLU,
        **norm,
    )
    return orthogonal_init_(mlp) if init == "orthogonal" else mlp


def _stats(dim: int, loc: Tensor | None, scale: Tensor | None) -> tuple[Tensor, Tensor]:
    loc = torch.zeros(dim) if loc is None else torch.as_tensor(loc, dtype=torch.float32)
    scale = torch.ones(dim) if scale is None else torch.as_tensor(scale, dtype=torch.float32)
    if loc.shape != (dim,) or scale.shape != (dim,):
        raise ValueError(
            f"input statistics must have shape ({dim},), got {tuple(loc.shape)} and "
            f"{tuple(scale.shape)}."
        )
    return loc, scale


class _ActorNet(nn.Module):
    def __init__(self, scaler: InputScaler, mlp: MLP) -> None:
        super().__init__()
        self.scaler, self.mlp = scaler, mlp

    def forward(self, observation: Tensor) -> Tensor:
        return torch.tanh(self.mlp(self.scaler(observation)))


class _CriticNet(nn.Module):
    def __init__(self, scaler: InputScaler, mlp: MLP) -> None:
        super().__init__()
        self.scaler, self.mlp = scaler, mlp

    def forward(self, observation: Tensor, action: Tensor) -> Tensor:
        return self.mlp(self.scaler(torch.cat([observation, action], dim=-1)))


def make_deterministic_actor(
    observation_dim: int,
    action_dim: int,
    *,
    num_cells: Sequence[int] = (256, 256, 256),
    layer_norm: bool = False,
    obs_loc: Tensor | None = None,
    obs_scale: Tensor | None = None,
    use_symlog: bool = True,
    observation_key: NestedKey = "observation",
    action_key: NestedKey = "action",
    init: str = "default",
) -> TensorDictModule:
    """Deterministic tanh actor ``observation -> action`` in ``[-1, 1]``; no LayerNorm by
    default (released code), ``layer_norm=True`` adds one after each hidden layer.

    Example:
        >>> actor = make_deterministic_actor(3, 2, num_cells=(16,))
        >>> actor.out_keys
        ['action']
    """
    loc, scale = _stats(observation_dim, obs_loc, obs_scale)
    net = _ActorNet(
        InputScaler(loc, scale, use_symlog=use_symlog),
        _mlp(observation_dim, action_dim, num_cells, layer_norm, init),
    )
    return TensorDictModule(net, in_keys=[observation_key], out_keys=[action_key])


def make_qvalue_network(
    observation_dim: int,
    action_dim: int,
    *,
    num_cells: Sequence[int] = (256, 256, 256),
    layer_norm: bool = True,
    input_loc: Tensor | None = None,
    input_scale: Tensor | None = None,
    use_symlog: bool = True,
    observation_key: NestedKey = "observation",
    action_key: NestedKey = "action",
    value_key: NestedKey = "state_action_value",
    init: str = "default",
) -> TensorDictModule:
    """Single Q-network ``(observation, action) -> state_action_value``.

    ``input_loc``/``input_scale`` standardise the concatenated ``[observation, action]``.

    Example:
        >>> critic = make_qvalue_network(3, 2, num_cells=(16,))
        >>> critic.in_keys, critic.out_keys
        (['observation', 'action'], ['state_action_value'])
    """
    loc, scale = _stats(observation_dim + action_dim, input_loc, input_scale)
    net = _CriticNet(
        InputScaler(loc, scale, use_symlog=use_symlog),
        _mlp(observation_dim + action_dim, 1, num_cells, layer_norm, init),
    )
    return TensorDictModule(net, in_keys=[observation_key, action_key], out_keys=[value_key])


def make_state_value_network(
    observation_dim: int,
    *,
    num_cells: Sequence[int] = (256, 256, 256),
    obs_loc: Tensor | None = None,
    obs_scale: Tensor | None = None,
    observation_key: NestedKey = "observation",
    value_key: NestedKey = "state_value",
) -> TensorDictModule:
    """State-value network ``observation -> state_value`` ``[..., 1]`` (IQL's V): standardised
    input, plain ReLU MLP.

    Example:
        >>> value = make_state_value_network(3, num_cells=(16,))
        >>> value.in_keys, value.out_keys
        (['observation'], ['state_value'])
    """
    loc, scale = _stats(observation_dim, obs_loc, obs_scale)
    net = nn.Sequential(
        InputScaler(loc, scale, use_symlog=False), _mlp(observation_dim, 1, num_cells, False)
    )
    return TensorDictModule(net, in_keys=[observation_key], out_keys=[value_key])


class PreTanhGaussianNoise(nn.Module):
    """``tanh(atanh(a) + sigma * eps)``: Gaussian noise added before the actor's tanh.

    This is the released code's exploration for D_model expansion (its tanh-Gaussian policy
    with an untrained unit std), applied to our deterministic actor.
    """

    def __init__(self, sigma: float) -> None:
        super().__init__()
        if sigma < 0:
            raise ValueError(f"sigma must be >= 0, got {sigma}.")
        self.sigma = sigma

    def forward(self, action: Tensor) -> Tensor:
        pre_tanh = torch.atanh(action.clamp(-1 + 1e-6, 1 - 1e-6))
        return torch.tanh(pre_tanh + self.sigma * torch.randn_like(pre_tanh))


def make_exploration_policy(
    actor: TensorDictModule, sigma: float = 1.0, *, action_key: NestedKey = "action"
) -> TensorDictSequential:
    """The actor followed by pre-tanh Gaussian noise of std ``sigma`` (σ_exp, Table 9).

    Example:
        >>> policy = make_exploration_policy(make_deterministic_actor(3, 2, num_cells=(8,)), 1.0)
        >>> from tensordict import TensorDict
        >>> policy(TensorDict({"observation": torch.zeros(5, 3)}, [5]))["action"].shape
        torch.Size([5, 2])
    """
    noise = TensorDictModule(
        PreTanhGaussianNoise(sigma), in_keys=[action_key], out_keys=[action_key]
    )
    return TensorDictSequential(actor, noise)
