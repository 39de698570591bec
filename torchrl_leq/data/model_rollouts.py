"""Model-rollout transitions for COMBO / MBPO-style training: roll the world model ``h`` steps
with the current policy from D_env states and keep the transitions in TorchRL's transition
layout, in a FIFO replay buffer (D_model of COMBO's Algorithm 1, line 4).

Unlike LEQ's D_model (start states only, :mod:`torchrl_leq.data.model_buffer`), COMBO's critic
backs up model transitions one step, so the buffer stores whole transitions
(``observation``, ``action``, ``("next", "observation"|"reward"|"terminated"|"done")``) and
drops those that start from a state after a predicted termination.

Example:
    >>> import torch
    >>> from tensordict import TensorDict
    >>> from torchrl_leq.envs.analytic import LinearQuadraticEnv
    >>> from torchrl_leq.modules.stochastic_actor import make_tanh_normal_actor
    >>> env = LinearQuadraticEnv(obs_dim=3, action_dim=2)
    >>> policy = make_tanh_normal_actor(3, 2, num_cells=(16,))
    >>> start = TensorDict({"observation": torch.randn(4, 3)}, [4])
    >>> td = rollout_model_transitions(env, policy, start, horizon=5)
    >>> td.batch_size
    torch.Size([20])
    >>> from torchrl_leq.data import make_model_buffer
    >>> rb = make_model_buffer(capacity=1_000, batch_size=8)
    >>> _ = rb.extend(td)
    >>> sorted(rb.sample().keys())
    ['action', 'index', 'next', 'observation']
"""

from __future__ import annotations

import warnings
from typing import Any

import torch
from tensordict import TensorDict, TensorDictBase
from tensordict.nn import TensorDictModuleBase
from torchrl.data import TensorDictReplayBuffer
from torchrl.envs.utils import ExplorationType, set_exploration_type

__all__ = [
    "rollout_model_transitions",
    "sample_mixed_batch",
]


@torch.no_grad()
def rollout_model_transitions(
    model_env: Any,
    policy: TensorDictModuleBase,
    start_td: TensorDictBase,
    horizon: int,
    *,
    exploration_type: ExplorationType = ExplorationType.RANDOM,
    observation_key: str = "observation",
    action_key: str = "action",
) -> TensorDict:
    """Roll ``model_env`` ``horizon`` steps with ``policy`` from ``start_td[observation]``
    ``[N, obs]`` and return the kept transitions, flattened step-major per start state
    (``[N*h]`` when nothing terminates, fewer otherwise), under ``torch.no_grad()``.

    A transition ``(s_t, a_t, r_t, s_{t+1})`` is kept iff ``s_t`` is alive: no predicted
    termination at steps ``< t`` (the model env's ``"alive"`` mask, combined with the
    ``("next", "terminated")`` flags). The transition that terminates is kept, with
    ``terminated=True``. ``exploration_type`` is set during the rollout (``RANDOM``: a
    stochastic actor samples, as COMBO's rollout policy μ = π does).

    ``model_env`` follows the model-env contract: ``reset(td)`` for any batch size ``[N]``,
    ``rollout(h, policy, auto_reset=False, tensordict=td, break_when_any_done=False)``
    returning ``[N, h]`` with ``"alive"`` and ``("next", "reward"|"terminated"|"done")``.

    Returns a tensordict with ``observation``, ``action`` and ``("next", "observation"|"reward"
    |"terminated"|"done")`` (reward ``[K, 1]`` float, flags ``[K, 1]`` bool).
    """
    if not isinstance(horizon, int) or isinstance(horizon, bool) or horizon < 1:
        raise ValueError(f"horizon must be an integer >= 1, got {horizon!r}.")
    if observation_key not in start_td.keys():
        raise KeyError(
            f"start_td has no {observation_key!r} entry (keys: {list(start_td.keys())})."
        )
    if start_td.batch_dims != 1:
        raise ValueError(
            f"start_td must have a 1-d batch size [N], got {tuple(start_td.batch_size)}."
        )
    n = start_td.batch_size[0]
    with set_exploration_type(exploration_type):
        td = model_env.reset(start_td.select(observation_key))
        rollout = model_env.rollout(
            horizon,
            policy,
            auto_reset=False,
            tensordict=td,
            break_when_any_done=False,
        )
    if tuple(rollout.batch_size) != (n, horizon):
        raise RuntimeError(
            f"model_env.rollout returned batch size {tuple(rollout.batch_size)}, expected "
            f"({n}, {horizon}); does the env follow the model-env contract?"
        )
    nxt = rollout.get("next")
    reward = nxt.get("reward").reshape(n, horizon, 1)
    terminated = nxt.get("terminated").reshape(n, horizon, 1).bool()
    done = nxt.get("done", terminated).reshape(n, horizon, 1).bool() | terminated
    # alive of s_t: no termination before t (exclusive cumulative product) ...
    not_term = (~terminated).to(reward.dtype)
    alive = torch.cat([torch.ones_like(not_term[:, :1]), not_term[:, :-1].cumprod(1)], 1)
    # ... and the env's own mask where it carries one.
    env_alive = rollout.get("alive", None)
    if env_alive is not None:
        alive = alive * env_alive.reshape(n, horizon, 1).to(alive.dtype)
    keep = alive.reshape(-1) > 0
    obs = rollout.get(observation_key)
    transitions = TensorDict(
        {
            "observation": obs.reshape(n * horizon, -1),
            "action": rollout.get(action_key).reshape(n * horizon, -1),
            "next": {
                "observation": nxt.get(observation_key).reshape(n * horizon, -1),
                "reward": reward.reshape(n * horizon, 1),
                "terminated": terminated.reshape(n * horizon, 1),
                "done": done.reshape(n * horizon, 1),
            },
        },
        batch_size=[n * horizon],
        device=obs.device,
    )
    return transitions[keep]


def sample_mixed_batch(
    env_buffer: TensorDictReplayBuffer,
    model_buffer: TensorDictReplayBuffer,
    batch_size: int,
    real_ratio: float = 0.5,
    keys: tuple = (
        "observation",
        "action",
        ("next", "observation"),
        ("next", "reward"),
        ("next", "terminated"),
    ),
) -> TensorDict:
    """A COMBOLoss input: ``round(f·B)`` D_env and ``B − round(f·B)`` model transitions
    (each sub-batch at least 1), ``TensorDict(env=..., model=..., batch_size=[])``, restricted
    to ``keys``.

    Example:
        >>> def fake(n):
        ...     return TensorDict({"observation": torch.zeros(n, 3), "action": torch.zeros(n, 2),
        ...                        "next": {"observation": torch.zeros(n, 3),
        ...                                 "reward": torch.zeros(n, 1),
        ...                                 "terminated": torch.zeros(n, 1, dtype=torch.bool)}},
        ...                       [n])
        >>> from torchrl_leq.data import make_model_buffer
        >>> d_env = make_model_buffer(100, batch_size=None)
        >>> d_model = make_model_buffer(100, batch_size=None)
        >>> _ = d_env.extend(fake(50)), d_model.extend(fake(50))
        >>> batch = sample_mixed_batch(d_env, d_model, 256, real_ratio=0.5)
        >>> batch["env"].batch_size, batch["model"].batch_size
        (torch.Size([128]), torch.Size([128]))
    """
    if not 0.0 <= real_ratio <= 1.0:
        raise ValueError(f"real_ratio must lie in [0, 1], got {real_ratio}.")
    if batch_size < 2:
        raise ValueError(f"batch_size must be >= 2 (one sample per sub-batch), got {batch_size}.")
    n_env = min(max(round(real_ratio * batch_size), 1), batch_size - 1)
    with warnings.catch_warnings():  # sample(n) differing from the buffer's batch size is intended
        warnings.filterwarnings("ignore", message=".*conflicting batch_sizes.*")
        env = env_buffer.sample(n_env).select(*keys)
        model = model_buffer.sample(batch_size - n_env).select(*keys)
    return TensorDict({"env": env, "model": model.to(env.device)}, batch_size=[])
