"""TorchRL transitions → the sequence layout of the recurrent world models (V-D4RL / DreamerV3).

An episode of ``T`` transitions becomes ``T + 1`` rows: row ``t`` holds the observation
``o_t``, the action ``a_{t-1}`` that led to it (zeros at row 0), the reward of that transition
(0 at row 0), ``is_first`` (row 0), ``is_last`` (row T), ``is_terminal`` (row T when the episode
ended by termination) and ``episode``. This is the layout
:func:`~torchrl_leq.data.vd4rl.read_vd4rl` returns for pixels, with ``observation`` in place of
``pixels``, so :func:`~torchrl_leq.training.rssm.sample_sequences`,
:func:`~torchrl_leq.training.rssm.split_episodes` and
:func:`~torchrl_leq.data.vd4rl.transition_indices` work on both. The terminal observation is a
row of its own: a termination head sees its positive examples.

Example:
    >>> import torch
    >>> from tensordict import TensorDict
    >>> td = TensorDict({
    ...     "observation": torch.tensor([[0.0], [1.0], [5.0]]),
    ...     "action": torch.tensor([[0.1], [0.2], [0.3]]),
    ...     "episode": torch.tensor([0, 0, 1]),
    ...     "next": {"observation": torch.tensor([[1.0], [2.0], [6.0]]),
    ...              "reward": torch.tensor([[0.0], [1.0], [0.5]]),
    ...              "terminated": torch.tensor([[False], [True], [False]])}}, [3])
    >>> seq = transitions_to_sequences(td)
    >>> seq["observation"].squeeze(-1).tolist()
    [0.0, 1.0, 2.0, 5.0, 6.0]
    >>> seq["action"].squeeze(-1).tolist() == [0.0, *torch.tensor([0.1, 0.2]).tolist(), 0.0,
    ...                                         torch.tensor(0.3).item()]
    True
    >>> seq["reward"].tolist()
    [0.0, 0.0, 1.0, 0.0, 0.5]
    >>> seq["is_first"].tolist(), seq["is_terminal"].tolist()
    ([True, False, False, True, False], [False, False, True, False, False])
"""

from __future__ import annotations

import torch
from tensordict import TensorDict, TensorDictBase

__all__ = ["transitions_to_sequences"]


def transitions_to_sequences(
    transitions: TensorDictBase, observation_key: str = "observation"
) -> TensorDict:
    """Rows of the sequence layout (module docstring) from transitions ``[N]`` ordered by
    episode (``episode`` key; without it, one episode per run of ``next`` observations that
    match the following row's observation)."""
    obs = transitions.get(observation_key)
    next_obs = transitions.get(("next", observation_key))
    n = obs.shape[0]
    if "episode" in transitions.keys():
        episode = transitions.get("episode").reshape(n)
        new = torch.ones(n, dtype=torch.bool)
        new[1:] = episode[1:] != episode[:-1]
    else:
        new = torch.ones(n, dtype=torch.bool)
        new[1:] = (obs[1:] != next_obs[:-1]).flatten(1).any(-1)
    # Transition i is the last of its episode when i + 1 starts a new one (or i is the last).
    last = torch.ones(n, dtype=torch.bool)
    last[:-1] = new[1:]
    segment = torch.cumsum(new.long(), 0) - 1
    # Output row of transition i's observation: i + (segments before i's); the episode's extra
    # terminal/last row follows its last transition.
    row = torch.arange(n) + segment
    extra = row[last] + 1
    total = n + int(last.sum())
    action = transitions.get("action").float()
    reward = transitions.get(("next", "reward")).reshape(n).float()
    terminated = transitions.get(("next", "terminated")).reshape(n).bool()

    out_obs = obs.new_zeros(total, *obs.shape[1:])
    out_obs[row] = obs
    out_obs[extra] = next_obs[last]
    out_action = action.new_zeros(total, action.shape[-1])
    out_reward = reward.new_zeros(total)
    # Row r + 1 (the observation reached by transition i) holds a_i and r_i.
    out_action[row + 1] = action
    out_reward[row + 1] = reward
    is_first = torch.zeros(total, dtype=torch.bool)
    is_first[row[new]] = True
    is_last = torch.zeros(total, dtype=torch.bool)
    is_last[extra] = True
    is_terminal = torch.zeros(total, dtype=torch.bool)
    is_terminal[row + 1] = terminated
    ep = torch.zeros(total, dtype=torch.long)
    ep[row] = segment
    ep[extra] = segment[last]
    return TensorDict(
        {
            observation_key: out_obs,
            "action": out_action,
            "reward": out_reward,
            "is_first": is_first,
            "is_last": is_last,
            "is_terminal": is_terminal,
            "episode": ep,
        },
        batch_size=[total],
    )
