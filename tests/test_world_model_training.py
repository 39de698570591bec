"""World-model loss, training loop (fit, elites, early stopping) and save / load."""

from __future__ import annotations

import pytest
import torch

from torchrl_leq.modules import ProbabilisticEnsemble
from torchrl_leq.objectives.world_model import gaussian_nll_ensemble_loss, world_model_loss
from torchrl_leq.training.world_model import (
    load_world_model,
    save_world_model,
    train_world_model,
)

OBS, ACT = 2, 1
A = torch.tensor([[0.1, -0.2], [0.3, 0.05]])
B = torch.tensor([[0.5, -0.4]])
C = torch.tensor([1.0, -0.5])
SIGMA_S = torch.tensor([0.1, 0.2])
SIGMA_R = 0.1


def linear_gaussian(n: int, seed: int = 0):
    """Δs = A s + B a + N(0, σ_s²), r = C·s + N(0, σ_r²)."""
    g = torch.Generator().manual_seed(seed)
    obs = torch.randn(n, OBS, generator=g)
    act = torch.rand(n, ACT, generator=g) * 2 - 1
    next_obs = obs + obs @ A + act @ B + SIGMA_S * torch.randn(n, OBS, generator=g)
    reward = obs @ C + SIGMA_R * torch.randn(n, generator=g)
    return obs, act, next_obs, reward


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny nets: 2 threads only add sync overhead (60x slower on a loaded 2-core box)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def small_model(**kwargs) -> ProbabilisticEnsemble:
    torch.manual_seed(0)
    kwargs = {"num_members": 4, "num_elites": 2, "hidden_dims": (32, 32), **kwargs}
    return ProbabilisticEnsemble(OBS, ACT, **kwargs)


@pytest.fixture(scope="module")
def fitted(one_thread):
    model = small_model()
    data = linear_gaussian(4000)
    log = train_world_model(
        model, *data, batch_size=128, lr=3e-3, max_epochs=60, patience=60, progress=False
    )
    return model, log, data


def test_fits_linear_gaussian_mean_and_std(fitted):
    model, log, _ = fitted
    obs, act, _, _ = linear_gaussian(500, seed=1)
    mean, logvar = model(obs, act)
    true_mean = torch.cat([obs @ A + act @ B, (obs @ C)[:, None]], -1)
    true_std = torch.cat([SIGMA_S, torch.tensor([SIGMA_R])])
    for m in model.elites.tolist():
        err = (mean[m] - true_mean).abs().mean(0)
        assert (err < 0.25 * true_std + 0.01).all(), err
        std = torch.exp(0.5 * logvar[m]).mean(0)
        torch.testing.assert_close(std, true_std, rtol=0.25, atol=0.0)
    assert log["train_loss"][-1] < log["train_loss"][0]


def test_elites_are_lowest_holdout_and_best_weights_kept(fitted):
    model, log, (obs, act, next_obs, reward) = fitted
    best = torch.tensor(log["best_holdout_mse"])
    assert log["elites"] == torch.argsort(best)[:2].tolist() == model.elites.tolist()
    hold = log["holdout_indices"]
    assert len(hold) == 800  # min(20 %, 1000)
    with torch.no_grad():
        mean, _ = model(obs[hold], act[hold])
    target = torch.cat([next_obs - obs, reward[:, None]], -1)[hold]
    mse = (mean - target).square().mean(dim=(1, 2))
    torch.testing.assert_close(mse, best, rtol=1e-4, atol=1e-6)
    epochs = torch.tensor(log["holdout_mse"])
    assert epochs.shape == (log["epochs"], 4)
    # replay the rule: a member's best moves only on a > 1 % relative improvement
    replay = torch.full((4,), float("inf"))
    for row in epochs:
        replay = torch.where(row < replay * 0.99, row, replay)
    torch.testing.assert_close(replay, best)


def test_early_stopping_on_pure_noise():
    g = torch.Generator().manual_seed(0)
    obs, act = torch.randn(600, OBS, generator=g), torch.randn(600, ACT, generator=g)
    next_obs = obs + torch.randn(600, OBS, generator=g)  # Δs independent of (s, a)
    reward = torch.randn(600, generator=g)
    log = train_world_model(
        small_model(hidden_dims=(16,)),
        obs,
        act,
        next_obs,
        reward,
        max_epochs=200,
        progress=False,
    )
    assert log["stopped_early"] and log["epochs"] < 40
    # stopped exactly `patience` epochs after the last epoch in which any member improved
    hist, best, last_improved = torch.tensor(log["holdout_mse"]), torch.full((4,), 1e9), 0
    for epoch, row in enumerate(hist, start=1):
        if (row < best * 0.99).any():
            last_improved = epoch
        best = torch.where(row < best * 0.99, row, best)
    assert log["epochs"] == last_improved + 5


def test_loss_by_hand():
    mean = torch.tensor([[[0.0, 1.0]], [[2.0, 0.0]]])  # [E=2, N=1, D=2]
    logvar = torch.tensor([[[0.0, 0.0]], [[1.0, -1.0]]])
    target = torch.tensor([[1.0, 1.0]])
    m0 = ((1.0 + 0.0) + 0.0) / 2  # mean over D of (μ-y)² e^{-lv} + lv
    m1 = (
        (1.0 * torch.exp(torch.tensor(-1.0)) + 1.0) + (1.0 * torch.exp(torch.tensor(1.0)) - 1.0)
    ) / 2
    torch.testing.assert_close(gaussian_nll_ensemble_loss(mean, logvar, target), m0 + m1)

    model = small_model()
    obs, act, next_obs, reward = linear_gaussian(16)
    target = torch.cat([next_obs - obs, reward[:, None]], -1)
    mu, lv = model(obs, act)
    expected = (
        gaussian_nll_ensemble_loss(mu, lv, target)
        + 0.01 * (model.max_logvar.sum() - model.min_logvar.sum())
        + model.weight_decay_loss()
    )
    torch.testing.assert_close(world_model_loss(model, obs, act, target), expected)


def test_save_load_roundtrip(tmp_path, fitted):
    model, _, _ = fitted
    path = tmp_path / "sub" / "wm.pt"
    save_world_model(path, model)
    assert [p.name for p in path.parent.iterdir()] == ["wm.pt"]  # no tmp file left behind
    loaded = load_world_model(path)
    assert loaded.config == model.config
    assert torch.equal(loaded.elites, model.elites)
    assert torch.equal(loaded.input_mean, model.input_mean)
    obs, act, _, _ = linear_gaussian(32, seed=2)
    for sampling in ("gather", "stratified"):
        a = model.sample(obs, act, sampling=sampling, generator=torch.Generator().manual_seed(0))
        b = loaded.sample(obs, act, sampling=sampling, generator=torch.Generator().manual_seed(0))
        assert torch.equal(a.next_obs, b.next_obs) and torch.equal(a.reward, b.reward)


def test_bad_training_data_errors():
    obs, act, next_obs, reward = linear_gaussian(100)
    model = small_model()
    bad = next_obs.clone()
    bad[3, 1] = float("nan")
    with pytest.raises(ValueError, match="NaN.*next_obs"):
        train_world_model(model, obs, act, bad, reward, max_epochs=1, progress=False)
    with pytest.raises(ValueError, match="obs_dim"):
        train_world_model(
            model, obs[:, :1], act, next_obs[:, :1], reward, max_epochs=1, progress=False
        )
    with pytest.raises(ValueError, match="action_dim"):
        train_world_model(
            model, obs, torch.zeros(100, 3), next_obs, reward, max_epochs=1, progress=False
        )
