"""Eq. 1 (expectile loss) and Eq. 8 (normalized λ-return) against brute-force references."""

import pytest
import torch
from reference import brute_force_lambda_return
from tensordict import TensorDict

from torchrl_leq.objectives import (
    NormalizedLambdaReturnEstimator,
    expectile_loss,
    expectile_weight,
    normalized_lambda_return,
)


@pytest.mark.parametrize("horizon", [1, 2, 5])
@pytest.mark.parametrize("gamma", [0.9, 0.997, 1.0])
@pytest.mark.parametrize("lmbda", [0.0, 0.5, 0.95, 1.0])
@pytest.mark.parametrize("with_termination", [False, True])
@pytest.mark.parametrize("include_current", [False, True])
def test_lambda_return_matches_brute_force(
    horizon, gamma, lmbda, with_termination, include_current
):
    gen = torch.Generator().manual_seed(horizon * 7 + int(100 * lmbda))
    shape = (4, horizon, 1)
    reward = torch.randn(shape, generator=gen, dtype=torch.float64)
    next_value = torch.randn(shape, generator=gen, dtype=torch.float64)
    value = None
    if include_current:  # Q(s_t, a_t) for t = 0..T-1, consistent with next_value = Q(s_{t+1}, .)
        first = torch.randn(4, 1, 1, generator=gen, dtype=torch.float64)
        value = torch.cat([first, next_value[:, :-1]], 1)
    terminated = torch.rand(shape, generator=gen) < 0.3 if with_termination else None
    got = normalized_lambda_return(
        reward, next_value, gamma=gamma, lmbda=lmbda, terminated=terminated, value=value
    )
    want = brute_force_lambda_return(reward, next_value, gamma, lmbda, terminated, value)
    torch.testing.assert_close(got, want)


def test_lambda_zero_is_one_step_target():
    reward, next_value = torch.randn(3, 6, 1), torch.randn(3, 6, 1)
    terminated = torch.rand(3, 6, 1) < 0.5
    got = normalized_lambda_return(reward, next_value, gamma=0.9, lmbda=0.0, terminated=terminated)
    torch.testing.assert_close(got, reward + 0.9 * (~terminated) * next_value)


def test_lambda_one_is_mean_of_n_step_returns_and_h_step_at_start():
    # With zero rewards, gamma=1 and lmbda=1 the return at t is the mean of Q(s_{t+1..T}).
    next_value = torch.arange(1.0, 5.0).view(1, 4, 1)
    got = normalized_lambda_return(torch.zeros(1, 4, 1), next_value, gamma=1.0, lmbda=1.0)
    torch.testing.assert_close(got.flatten(), torch.tensor([2.5, 3.0, 3.5, 4.0]))


@pytest.mark.parametrize("include_current", [False, True])
@pytest.mark.parametrize("lmbda", [0.0, 0.3, 0.95, 1.0])
def test_weights_sum_to_one(lmbda, include_current):
    # Every n-step return equals 1 when r = 0, gamma = 1 and Q = 1: a weighted mean gives 1.
    ones = torch.ones(2, 7, 1)
    value = ones if include_current else None
    got = normalized_lambda_return(0 * ones, ones, gamma=1.0, lmbda=lmbda, value=value)
    torch.testing.assert_close(got, ones)


def test_termination_stops_reward_and_bootstrap():
    reward = torch.tensor([[[1.0], [10.0], [100.0]]])
    next_value = torch.full((1, 3, 1), 1000.0)
    terminated = torch.tensor([[[True], [False], [False]]])
    got = normalized_lambda_return(reward, next_value, gamma=0.5, lmbda=0.7, terminated=terminated)
    assert got[0, 0, 0].item() == pytest.approx(1.0)  # terminal after step 0: every G = r_0


def test_lambda_return_validates_inputs():
    r = torch.zeros(2, 3, 1)
    with pytest.raises(ValueError, match="lmbda"):
        normalized_lambda_return(r, r, gamma=0.9, lmbda=1.5)
    with pytest.raises(ValueError, match="gamma"):
        normalized_lambda_return(r, r, gamma=-0.1, lmbda=0.5)
    with pytest.raises(ValueError, match="next_value"):
        normalized_lambda_return(r, torch.zeros(2, 4, 1), gamma=0.9, lmbda=0.5)
    with pytest.raises(ValueError, match="time at dim -2"):
        normalized_lambda_return(torch.zeros(3), torch.zeros(3), gamma=0.9, lmbda=0.5)


def test_lambda_return_is_differentiable():
    reward = torch.randn(2, 4, 1, requires_grad=True)
    next_value = torch.randn(2, 4, 1, requires_grad=True)
    normalized_lambda_return(reward, next_value, gamma=0.9, lmbda=0.9).sum().backward()
    assert reward.grad.abs().sum() > 0 and next_value.grad.abs().sum() > 0


@pytest.mark.parametrize("tau", [0.1, 0.3, 0.5, 0.9])
def test_expectile_loss_minimiser_is_the_tau_expectile(tau):
    torch.manual_seed(0)
    y = torch.distributions.Gamma(2.0, 1.0).sample((4000,)).double()  # skewed sample
    x = torch.zeros(1, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([x], max_iter=200, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = expectile_loss(x - y, tau).mean()
        loss.backward()
        return loss

    opt.step(closure)
    # First-order condition of the tau-expectile: tau E[(y-x)+] = (1-tau) E[(x-y)+].
    above = (y - x.detach()).clamp_min(0).mean()
    below = (x.detach() - y).clamp_min(0).mean()
    assert (tau * above).item() == pytest.approx(((1 - tau) * below).item(), rel=1e-4)
    if tau < 0.5:
        assert x.item() < y.mean().item() - 0.05
    elif tau == 0.5:
        assert x.item() == pytest.approx(y.mean().item(), abs=1e-6)
    else:
        assert x.item() > y.mean().item() + 0.05


def test_expectile_weight_and_loss_values():
    diff = torch.tensor([2.0, -2.0, 0.0])
    torch.testing.assert_close(expectile_weight(diff, 0.1), torch.tensor([0.9, 0.1, 0.1]))
    torch.testing.assert_close(expectile_loss(diff, 0.1), torch.tensor([3.6, 0.4, 0.0]))
    with pytest.raises(ValueError, match="tau"):
        expectile_loss(diff, 1.5)


def _rollout_td(batch=3, horizon=4, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return TensorDict(
        {
            "state_action_value": torch.randn(batch, horizon, 1, generator=gen),
            "next": {
                "state_action_value": torch.randn(batch, horizon, 1, generator=gen),
                "reward": torch.randn(batch, horizon, 1, generator=gen),
                "terminated": torch.rand(batch, horizon, 1, generator=gen) < 0.2,
            },
        },
        [batch, horizon],
    )


@pytest.mark.parametrize("include_current", [False, True])
def test_estimator_matches_function_and_writes_keys(include_current):
    td = _rollout_td()
    est = NormalizedLambdaReturnEstimator(gamma=0.9, lmbda=0.8, include_current=include_current)
    out = est(td.clone())
    want = normalized_lambda_return(
        td["next", "reward"],
        td["next", "state_action_value"],
        gamma=0.9,
        lmbda=0.8,
        terminated=td["next", "terminated"],
        value=td["state_action_value"] if include_current else None,
    )
    torch.testing.assert_close(out["value_target"], want)
    torch.testing.assert_close(out["advantage"], want - td["state_action_value"])


def test_estimator_set_keys_and_value_network():
    td = _rollout_td()
    td.rename_key_(("next", "reward"), ("next", "rew"))
    est = NormalizedLambdaReturnEstimator(gamma=0.9, lmbda=0.8)
    est.set_keys(reward="rew", value_target="target")
    out = est(td.clone())
    assert "target" in out.keys()
    # A value network computes missing values.
    from tensordict.nn import TensorDictModule

    net = TensorDictModule(
        lambda o: o.sum(-1, keepdim=True), in_keys=["observation"], out_keys=["state_action_value"]
    )
    td2 = TensorDict(
        {
            "observation": torch.randn(2, 3, 4),
            "next": {
                "observation": torch.randn(2, 3, 4),
                "reward": torch.zeros(2, 3, 1),
                "terminated": torch.zeros(2, 3, 1, dtype=torch.bool),
            },
        },
        [2, 3],
    )
    est2 = NormalizedLambdaReturnEstimator(gamma=1.0, lmbda=0.0, value_network=net)
    with pytest.raises(KeyError, match="state_action_value"):
        NormalizedLambdaReturnEstimator(gamma=1.0, lmbda=0.0).value_estimate(td2.clone())
    got = est2.value_estimate(td2)
    torch.testing.assert_close(got, td2["next", "observation"].sum(-1, keepdim=True))
