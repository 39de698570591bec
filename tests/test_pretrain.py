"""BC and FQE (Algorithm 2) pretraining losses."""

import pytest
import torch
from tensordict import TensorDict
from torchrl.objectives import SoftUpdate

from torchrl_leq.modules import make_deterministic_actor, make_qvalue_network
from torchrl_leq.objectives.pretrain import BCLoss, FQELoss


def test_bc_loss_value_and_fit():
    torch.manual_seed(0)
    actor = make_deterministic_actor(2, 1, num_cells=(32, 32), layer_norm=False, use_symlog=False)
    loss = BCLoss(actor)
    obs = torch.rand(256, 2) * 2 - 1
    target = torch.tanh(obs[:, :1] - 0.5 * obs[:, 1:])  # a function the tanh actor can represent
    td = TensorDict({"observation": obs, "action": target}, [256])
    with torch.no_grad():
        pred = actor(td.clone())["action"]
    torch.testing.assert_close(loss(td)["loss_actor"], (pred - target).pow(2).sum(-1).mean())
    opt = torch.optim.Adam(loss.parameters(), lr=1e-2)
    for _ in range(300):
        opt.zero_grad()
        loss(td)["loss_actor"].backward()
        opt.step()
    assert loss(td)["loss_actor"].item() < 1e-3
    with pytest.raises(KeyError, match="action"):
        loss(td.exclude("action"))


def test_fqe_reaches_the_fixed_point_of_a_tiny_mdp():
    """Two-state chain s0 -> s1 -> terminal, reward 1 per step, data actions = the evaluated
    policy's actions: Q(s0, π(s0)) = 1 + γ, Q(s1, π(s1)) = 1."""
    torch.manual_seed(0)
    gamma = 0.9
    s0, s1, s_end = torch.tensor([1.0, 0.0]), torch.tensor([0.0, 1.0]), torch.tensor([0.0, 0.0])
    td = TensorDict(
        {
            "observation": torch.stack([s0, s1]).repeat(64, 1),
            "action": torch.zeros(128, 1),
            "next": {
                "observation": torch.stack([s1, s_end]).repeat(64, 1),
                "reward": torch.ones(128, 1),
                "terminated": torch.tensor([[False], [True]]).repeat(64, 1),
            },
        },
        [128],
    )
    actor = make_deterministic_actor(2, 1, num_cells=(8,))
    with torch.no_grad():
        td["action"] = actor(td.select("observation"))["action"]
    critic = make_qvalue_network(2, 1, num_cells=(32, 32))
    loss = FQELoss(actor, critic, gamma=gamma)
    updater = SoftUpdate(loss, eps=0.9)
    params = [p for p in loss.qvalue_network_params.values(True, True) if p.requires_grad]
    opt = torch.optim.Adam(params, lr=3e-3)
    for _ in range(600):
        opt.zero_grad()
        loss(td)["loss_qvalue"].backward()
        opt.step()
        updater.step()
    with loss.qvalue_network_params.to_module(loss.qvalue_network):
        q = loss.qvalue_network(td[:2].select("observation", "action"))["state_action_value"]
    assert q[0].item() == pytest.approx(1 + gamma, abs=0.05)
    assert q[1].item() == pytest.approx(1.0, abs=0.05)
    # The actor is only evaluated: FQE leaves it untouched.
    assert all(p.grad is None for p in loss.actor_network_params.values(True, True))


def test_fqe_rejects_bad_hyperparameters():
    actor, critic = make_deterministic_actor(2, 1, num_cells=(8,)), make_qvalue_network(2, 1, num_cells=(8,))
    with pytest.raises(ValueError, match="gamma"):
        FQELoss(actor, critic, gamma=1.5)
    with pytest.raises(ValueError, match="reduction"):
        BCLoss(actor, reduction="max")
