"""benchmarks/speed.py: the naive reference computes the same LEQ losses and gradients as ours."""

import copy

import pytest
import torch
from script_loader import load_benchmark

from torchrl_leq.envs import LEQModelEnv
from torchrl_leq.modules import ProbabilisticEnsemble, make_deterministic_actor, make_qvalue_network
from torchrl_leq.objectives import LEQLoss


@pytest.fixture(scope="module")
def speed():
    return load_benchmark("speed")


def _never_terminates(obs, action, next_obs):
    return torch.zeros(*obs.shape[:-1], 1, dtype=torch.bool, device=obs.device)


@pytest.mark.parametrize("actor_gradient", ["per_step", "backprop"])
def test_naive_reference_matches_leq_loss(speed, actor_gradient):
    """Same work in both timed steps: with a one-member, (almost) noise-free model, the naive
    reference's critic loss and both gradients equal LEQLoss's."""
    torch.manual_seed(0)
    obs, act = speed.OBS, speed.ACT
    ensemble = ProbabilisticEnsemble(obs, act, num_members=1, num_elites=1, hidden_dims=(32, 32))
    with torch.no_grad():  # σ ≈ 1e-6: the two implementations draw their noise differently
        ensemble.min_logvar.fill_(-30.0)
        ensemble.max_logvar.fill_(-30.0)
    actor, critic = (
        make_deterministic_actor(obs, act, num_cells=(32,)),
        make_qvalue_network(obs, act, num_cells=(32,)),
    )
    naive = speed.NaiveLEQ(
        ensemble, torch.device("cpu"), copy.deepcopy(actor.module), copy.deepcopy(critic.module)
    )
    env = LEQModelEnv(ensemble, _never_terminates)
    loss = LEQLoss(actor, critic, env, horizon=speed.H, actor_gradient=actor_gradient)
    batch = speed.make_batch(torch.device("cpu"))

    out = loss(batch)
    actor_params = [p for p in loss.actor_network_params.values(True, True) if p.requires_grad]
    critic_params = [p for p in loss.qvalue_network_params.values(True, True) if p.requires_grad]
    ours_actor = torch.autograd.grad(out["loss_actor"], actor_params)
    ours_critic = torch.autograd.grad(out["loss_qvalue"], critic_params)

    actor_loss, critic_loss = naive.losses(batch)
    naive_actor = torch.autograd.grad(actor_loss, list(naive.actor.parameters()))
    naive_critic = torch.autograd.grad(critic_loss, list(naive.critic.parameters()))

    tol = dict(rtol=1e-4, atol=1e-5)
    # the naive actor loss is a surrogate (value Σ w·J·π, not Σ w·Q^λ): compare its gradient only
    torch.testing.assert_close(out["loss_qvalue"], critic_loss, **tol)
    if actor_gradient == "per_step":  # the naive reference's estimator (backprop differs)
        for got, want in zip(ours_actor, naive_actor, strict=True):
            torch.testing.assert_close(got, want, **tol)
    else:
        assert any(not torch.allclose(g, w, **tol) for g, w in zip(ours_actor, naive_actor))
    for got, want in zip(ours_critic, naive_critic, strict=True):
        torch.testing.assert_close(got, want, **tol)
