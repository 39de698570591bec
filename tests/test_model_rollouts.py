"""Model-rollout transitions (COMBO's D_model): layout, shapes, dropping after a predicted
termination (against a plain-torch rollout of the analytic env), FIFO buffer, mixed batches."""

import pytest
import torch
from tensordict import TensorDict
from tensordict.nn import TensorDictModule

from torchrl_leq.data.buffers import make_replay_buffer
from torchrl_leq.data.model_buffer import make_model_buffer
from torchrl_leq.data.model_rollouts import (
    rollout_model_transitions,
    sample_mixed_batch,
)
from torchrl_leq.envs.analytic import LinearQuadraticEnv
from torchrl_leq.modules.stochastic_actor import make_tanh_normal_actor

OBS, ACT = 3, 2


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


class _Linear(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.w = torch.nn.Parameter(torch.tensor([[0.3, -0.2, 0.1], [-0.4, 0.2, 0.5]]))

    def forward(self, obs):
        return torch.tanh(obs @ self.w.T)


def deterministic_policy():
    return TensorDictModule(_Linear(), in_keys=["observation"], out_keys=["action"])


def reference(env, policy, obs0, horizon):
    """Plain-torch rollout: per start state, the list of (s, a, r, s', terminated) it keeps."""
    kept = []
    for s in obs0:
        rows = []
        for _ in range(horizon):
            a = policy.module(s[None])[0].detach()
            s_next = env.dynamics(s[None], a.clamp(-1, 1)[None])[0]
            r = -(s_next.pow(2).sum()) - env.action_cost * a.pow(2).sum()
            term = bool(s_next[0].abs() > env.termination_bound)
            rows.append((s, a, r, s_next, term))
            if term:  # the terminating transition is kept, nothing after it
                break
            s = s_next
        kept.append(rows)
    return kept


@pytest.mark.parametrize("bound", [float("inf"), 1.2])
def test_transitions_match_a_plain_rollout_and_drop_after_termination(bound):
    env = LinearQuadraticEnv(OBS, ACT, termination_bound=bound)
    policy = deterministic_policy()
    obs0 = torch.randn(6, OBS, generator=torch.Generator().manual_seed(0))
    horizon = 4
    td = rollout_model_transitions(env, policy, TensorDict({"observation": obs0}, [6]), horizon)
    want = [row for rows in reference(env, policy, obs0, horizon) for row in rows]
    if bound == float("inf"):
        assert td.batch_size == (6 * horizon,)
    else:
        assert 0 < td.batch_size[0] < 6 * horizon  # terminations happened and were cut
    assert td.batch_size[0] == len(want)
    assert set(td.keys(True, True)) == {
        "observation",
        "action",
        ("next", "observation"),
        ("next", "reward"),
        ("next", "terminated"),
        ("next", "done"),
    }
    assert td["next", "reward"].shape == (len(want), 1)
    assert td["next", "terminated"].dtype == torch.bool
    for key, idx in (("observation", 0), ("action", 1), (("next", "observation"), 3)):
        torch.testing.assert_close(td[key], torch.stack([row[idx] for row in want]), msg=str(key))
    torch.testing.assert_close(td["next", "reward"].squeeze(-1), torch.stack([r[2] for r in want]))
    assert td["next", "terminated"].squeeze(-1).tolist() == [r[4] for r in want]
    assert torch.equal(td["next", "done"], td["next", "terminated"])
    assert not td["observation"].requires_grad and not td["action"].requires_grad


def test_termination_at_first_step_keeps_only_that_transition():
    env = LinearQuadraticEnv(OBS, ACT, termination_bound=0.0)  # every step terminates
    start = TensorDict({"observation": torch.randn(5, OBS)}, [5])
    td = rollout_model_transitions(env, deterministic_policy(), start, horizon=3)
    assert td.batch_size == (5,)
    torch.testing.assert_close(td["observation"], start["observation"])
    assert bool(td["next", "terminated"].all())


def test_stochastic_actor_samples_under_random_exploration():
    env = LinearQuadraticEnv(OBS, ACT)
    torch.manual_seed(0)
    actor = make_tanh_normal_actor(OBS, ACT, num_cells=(8,))
    start = TensorDict({"observation": torch.zeros(4, OBS)}, [4])
    td = rollout_model_transitions(env, actor, start, horizon=2)
    assert td.batch_size == (8,)
    first = td["action"][::2]  # step 0 of every start state: same state, sampled actions differ
    assert not torch.allclose(first[0], first[1])
    assert not td["action"].requires_grad


def test_fifo_buffer_overwrites_oldest_in_order():
    rb = make_model_buffer(capacity=5, batch_size=2)
    rb.extend(TensorDict({"observation": torch.arange(3.0)[:, None]}, [3]))
    assert rb[:]["observation"].flatten().tolist() == [0.0, 1.0, 2.0]
    rb.extend(TensorDict({"observation": torch.arange(3.0, 7.0)[:, None]}, [4]))
    # circular storage: 5, 6 overwrote the two oldest (0, 1); 2, 3, 4 remain
    assert len(rb) == 5
    assert rb[:]["observation"].flatten().tolist() == [5.0, 6.0, 2.0, 3.0, 4.0]
    assert rb.sample()["observation"].shape == (2, 1)


def test_rollouts_fill_the_buffer_and_mix_with_env_data():
    env = LinearQuadraticEnv(OBS, ACT)
    start = TensorDict({"observation": torch.randn(10, OBS)}, [10])
    model_rb = make_model_buffer(capacity=100, batch_size=None)
    model_rb.extend(rollout_model_transitions(env, deterministic_policy(), start, horizon=3))
    assert len(model_rb) == 30
    n = 40
    gen = torch.Generator().manual_seed(0)
    env_td = TensorDict(
        {
            "observation": torch.randn(n, OBS, generator=gen),
            "action": torch.rand(n, ACT, generator=gen) * 2 - 1,
            "episode": torch.zeros(n, dtype=torch.long),
            "next": {
                "observation": torch.randn(n, OBS, generator=gen),
                "reward": torch.randn(n, 1, generator=gen),
                "terminated": torch.zeros(n, 1, dtype=torch.bool),
                "truncated": torch.zeros(n, 1, dtype=torch.bool),
                "done": torch.zeros(n, 1, dtype=torch.bool),
            },
        },
        [n],
    )
    env_rb = make_replay_buffer(env_td, batch_size=16)
    batch = sample_mixed_batch(env_rb, model_rb, 16, real_ratio=0.25)
    assert batch["env"].batch_size == (4,) and batch["model"].batch_size == (12,)
    assert set(batch["env"].keys(True, True)) == set(batch["model"].keys(True, True))
    assert "episode" not in batch["env"].keys()
    extreme = sample_mixed_batch(env_rb, model_rb, 8, real_ratio=1.0)
    assert extreme["env"].batch_size == (7,) and extreme["model"].batch_size == (1,)


def test_bad_arguments_are_rejected():
    env = LinearQuadraticEnv(OBS, ACT)
    start = TensorDict({"observation": torch.randn(2, OBS)}, [2])
    with pytest.raises(ValueError, match="horizon"):
        rollout_model_transitions(env, deterministic_policy(), start, horizon=0)
    with pytest.raises(KeyError, match="observation"):
        rollout_model_transitions(env, deterministic_policy(), TensorDict({}, [2]), horizon=1)
    with pytest.raises(ValueError, match="1-d batch"):
        rollout_model_transitions(env, deterministic_policy(), start.unsqueeze(0), horizon=1)
    with pytest.raises(ValueError, match="capacity"):
        make_model_buffer(0, batch_size=None)
    rb = make_model_buffer(10, batch_size=None)
    with pytest.raises(ValueError, match="real_ratio"):
        sample_mixed_batch(rb, rb, 8, real_ratio=1.5)


def test_docstring_examples_run():
    import doctest

    import torchrl_leq.data.model_rollouts as module

    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert result.failed == 0 and result.attempted > 0
