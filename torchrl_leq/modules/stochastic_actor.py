"""The SAC-style stochastic actor (tanh-Gaussian) that COMBO, IQL and CQL use.

It standardises its input with :class:`~torchrl_leq.modules.actor_critic.InputScaler`
(statistics fitted on the offline data; ``symlog`` off by default) and uses a plain ReLU MLP,
3×256 as in the COMBO paper's appendix (B.1). Its critic is
:func:`~torchrl_leq.modules.actor_critic.make_qvalue_network` with ``layer_norm=False,
use_symlog=False`` (twinned by the loss).

Example:
    >>> import torch
    >>> from tensordict import TensorDict
    >>> from torchrl_leq.modules import make_qvalue_network
    >>> actor = make_tanh_normal_actor(4, 2, num_cells=(32, 32))
    >>> critic = make_qvalue_network(4, 2, layer_norm=False, use_symlog=False, num_cells=(32, 32))
    >>> td = TensorDict({"observation": torch.randn(8, 4)}, [8])
    >>> td = actor(td)
    >>> td["action"].shape, td["action_log_prob"].shape
    (torch.Size([8, 2]), torch.Size([8]))
    >>> critic(td)["state_action_value"].shape
    torch.Size([8, 1])
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from tensordict.nn import TensorDictModule
from tensordict.utils import NestedKey
from torch import Tensor, nn
from torchrl.data import Bounded
from torchrl.modules import MLP, ProbabilisticActor, TanhNormal

from .actor_critic import InputScaler, _mlp, _stats

__all__ = ["make_tanh_normal_actor"]


def _scaler(dim: int, loc: Tensor | None, scale: Tensor | None, use_symlog: bool) -> InputScaler:
    return InputScaler(*_stats(dim, loc, scale), use_symlog=use_symlog)


class _GaussianHead(nn.Module):
    """``observation -> (loc, scale)``; log-std squashed smoothly into ``[min, max]``."""

    def __init__(
        self, scaler: InputScaler, mlp: MLP, log_std_min: float, log_std_max: float
    ) -> None:
        super().__init__()
        self.scaler, self.mlp = scaler, mlp
        self.log_std_min, self.log_std_max = float(log_std_min), float(log_std_max)

    def forward(self, observation: Tensor) -> tuple[Tensor, Tensor]:
        loc, raw = self.mlp(self.scaler(observation)).chunk(2, dim=-1)
        span = self.log_std_max - self.log_std_min
        log_std = self.log_std_min + 0.5 * span * (torch.tanh(raw) + 1.0)
        return loc, log_std.exp()


def make_tanh_normal_actor(
    observation_dim: int,
    action_dim: int,
    num_cells: Sequence[int] = (256, 256, 256),
    *,
    layer_norm: bool = False,
    obs_loc: Tensor | None = None,
    obs_scale: Tensor | None = None,
    use_symlog: bool = False,
    log_std_min: float = -5.0,
    log_std_max: float = 2.0,
    observation_key: NestedKey = "observation",
    action_key: NestedKey = "action",
) -> ProbabilisticActor:
    """SAC-style stochastic actor: ``observation -> action ~ TanhNormal(loc, scale)`` in
    ``[-1, 1]^act_dim``, writing ``action`` and ``action_log_prob`` (``return_log_prob=True``).

    The actor's ``spec`` holds the action bounds (``Bounded(-1, 1)``), from which
    :class:`~torchrl_leq.objectives.combo.COMBOLoss` reads |A| and the uniform-action range.
    Under ``ExplorationType.RANDOM`` it samples, otherwise it returns the deterministic mode.

    Args:
        observation_dim: |S|.
        action_dim: |A|.
        num_cells: hidden widths (paper: 3×256).

    Keyword Args:
        layer_norm: LayerNorm after each hidden layer (off in the paper).
        obs_loc, obs_scale: observation standardisation statistics (default 0 / 1).
        use_symlog: apply ``symlog`` after standardising.
        log_std_min, log_std_max: bounds of the (smoothly squashed) log standard deviation.
        observation_key, action_key: tensordict keys.

    Example:
        >>> actor = make_tanh_normal_actor(3, 2, num_cells=(16,))
        >>> actor.out_keys
        ['loc', 'scale', 'action', 'action_log_prob']
    """
    if log_std_min >= log_std_max:
        raise ValueError(f"log_std_min ({log_std_min}) must be < log_std_max ({log_std_max}).")
    head = _GaussianHead(
        _scaler(observation_dim, obs_loc, obs_scale, use_symlog),
        _mlp(observation_dim, 2 * action_dim, num_cells, layer_norm),
        log_std_min,
        log_std_max,
    )
    module = TensorDictModule(head, in_keys=[observation_key], out_keys=["loc", "scale"])
    return ProbabilisticActor(
        module,
        in_keys=["loc", "scale"],
        out_keys=[action_key],
        spec=Bounded(-1.0, 1.0, (action_dim,)),
        distribution_class=TanhNormal,
        distribution_kwargs={"low": -1.0, "high": 1.0},
        return_log_prob=True,
    )
