"""D_model: FIFO circular buffer and expansion by model rollouts (Algorithm 1, lines 7-11)."""

from __future__ import annotations

import torch
from data_helpers import LinearModelEnv
from tensordict import TensorDict
from tensordict.nn import TensorDictModule

from torchrl_leq.data import expand_model_buffer, make_model_buffer, make_replay_buffer


def _states(values):
    return TensorDict(
        {"observation": torch.as_tensor(values, dtype=torch.float32)[:, None]}, [len(values)]
    )


def test_fifo_overwrites_oldest():
    rb = make_model_buffer(capacity=5, batch_size=2)
    rb.extend(_states([0.0, 1.0, 2.0]))
    rb.extend(_states([3.0, 4.0, 5.0, 6.0]))
    assert len(rb) == 5
    assert sorted(rb[:]["observation"].flatten().tolist()) == [2.0, 3.0, 4.0, 5.0, 6.0]
    rb.extend(_states([7.0, 8.0]))
    assert sorted(rb[:]["observation"].flatten().tolist()) == [4.0, 5.0, 6.0, 7.0, 8.0]
    assert rb.sample()["observation"].shape == (2, 1)


def _env_buffer(n=20, dim=3):
    obs = torch.randn(n, dim) + 3.0
    td = TensorDict({"observation": obs, "action": torch.zeros(n, 2)}, [n])
    return make_replay_buffer(td, batch_size=4)


def test_expansion_adds_n_times_r_visited_states():
    torch.manual_seed(0)
    env_buffer = _env_buffer()
    model_env = LinearModelEnv()
    policy = TensorDictModule(lambda o: torch.ones_like(o), ["observation"], ["action"])
    d_model = make_model_buffer(capacity=1000)
    rollout = expand_model_buffer(
        d_model, env_buffer, model_env, policy, num_starts=7, rollout_length=4
    )
    assert model_env.rollout_calls == 1
    assert rollout.batch_size == torch.Size([7, 4])
    assert len(d_model) == 28
    stored = d_model[:]["observation"]
    # the stored states are s_0 .. s_{R-1}: a start state from D_env, then +0.1 per step
    starts = stored.reshape(7, 4, 3)[:, 0]
    env_obs = env_buffer[:]["observation"]
    assert all((env_obs == s).all(-1).any() for s in starts)
    for t in range(4):
        torch.testing.assert_close(stored.reshape(7, 4, 3)[:, t], starts + 0.1 * t)
    expand_model_buffer(d_model, env_buffer, model_env, policy, num_starts=5, rollout_length=2)
    assert len(d_model) == 38


def test_expansion_respects_capacity_fifo():
    d_model = make_model_buffer(capacity=10)
    d_model.extend(_states([-1.0] * 10))
    env_buffer = make_replay_buffer(
        TensorDict({"observation": torch.full((4, 1), 5.0)}, [4]), batch_size=2
    )
    policy = TensorDictModule(lambda o: torch.zeros_like(o), ["observation"], ["action"])
    expand_model_buffer(
        d_model, env_buffer, LinearModelEnv(), policy, num_starts=3, rollout_length=2
    )
    values = d_model[:]["observation"].flatten()
    assert len(d_model) == 10 and (values == 5.0).sum() == 6 and (values == -1.0).sum() == 4
