"""ProbabilisticEnsemble: batched == per-member loop, both elite-sampling paths, errors."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from torchrl_leq.modules import ProbabilisticEnsemble

OBS, ACT = 3, 2


def make_model(dtype=torch.float64, **kwargs) -> ProbabilisticEnsemble:
    torch.manual_seed(0)
    kwargs = {"num_members": 5, "num_elites": 3, "hidden_dims": (16, 16), **kwargs}
    model = ProbabilisticEnsemble(OBS, ACT, dtype=dtype, **kwargs)
    with torch.no_grad():  # non-trivial biases, scaler and elites
        for b in model.biases:
            b.normal_(0, 0.3)
        model.input_mean.normal_()
        model.input_std.uniform_(0.5, 2.0)
    model.set_elites([4, 0, 2])
    return model


def reference_member(model: ProbabilisticEnsemble, m: int, obs, act):
    """Member ``m`` computed alone, with plain matmuls (the ground truth)."""
    h = (torch.cat([obs, act], -1) - model.input_mean) / model.input_std
    n_layers = len(model.weights)
    for i, (w, b) in enumerate(zip(model.weights, model.biases)):
        h = h @ w[m] + b[m, 0]
        if i < n_layers - 1:
            h = F.silu(h)
    mean, logvar = h.split(model.out_dim, -1)
    logvar = model.max_logvar - F.softplus(model.max_logvar - logvar)
    logvar = model.min_logvar + F.softplus(logvar - model.min_logvar)
    return mean, logvar


def test_batched_equals_per_member_loop():
    model = make_model()
    obs, act = torch.randn(11, OBS, dtype=torch.float64), torch.randn(11, ACT, dtype=torch.float64)
    mean, logvar = model(obs, act)
    assert mean.shape == logvar.shape == (5, 11, OBS + 1)
    for m in range(5):
        ref_mean, ref_logvar = reference_member(model, m, obs, act)
        torch.testing.assert_close(mean[m], ref_mean, atol=1e-5, rtol=0)
        torch.testing.assert_close(logvar[m], ref_logvar, atol=1e-5, rtol=0)
    # per-member inputs [E, N, d] (bootstrapped training)
    obs_e, act_e = torch.randn(5, 7, OBS).double(), torch.randn(5, 7, ACT).double()
    mean_e, _ = model(obs_e, act_e)
    for m in range(5):
        torch.testing.assert_close(
            mean_e[m], reference_member(model, m, obs_e[m], act_e[m])[0], atol=1e-5, rtol=0
        )


@pytest.mark.parametrize("sampling", ["gather", "stratified"])
@pytest.mark.parametrize("batch", [12, 13, 2])  # divisible / not divisible / smaller than elites
def test_sampling_matches_reference_for_chosen_members(sampling, batch):
    model = make_model()
    obs = torch.randn(batch, OBS, dtype=torch.float64)
    act = torch.randn(batch, ACT, dtype=torch.float64)
    gen = torch.Generator().manual_seed(3)
    out = model.sample(obs, act, sampling=sampling, deterministic=True, generator=gen)
    assert set(out.members.tolist()) <= {0, 2, 4}
    for i in range(batch):
        ref_mean, _ = reference_member(model, int(out.members[i]), obs[i : i + 1], act[i : i + 1])
        torch.testing.assert_close(out.next_obs[i], obs[i] + ref_mean[0, :OBS], atol=1e-5, rtol=0)
        torch.testing.assert_close(out.reward[i], ref_mean[0, OBS:], atol=1e-5, rtol=0)
    # stochastic: the noise is drawn first, so the same seed + injected members reproduce it
    noisy = model.sample(obs, act, sampling=sampling, generator=gen.manual_seed(5))
    again = model.sample(obs, act, members=noisy.members, generator=gen.manual_seed(5))
    torch.testing.assert_close(noisy.next_obs, again.next_obs, atol=1e-10, rtol=0)
    torch.testing.assert_close(noisy.reward, again.reward, atol=1e-10, rtol=0)
    eps = torch.randn(batch, OBS + 1, generator=gen.manual_seed(5), dtype=torch.float64)
    for i in range(batch):
        mean, logvar = reference_member(
            model, int(noisy.members[i]), obs[i : i + 1], act[i : i + 1]
        )
        sample = mean[0] + torch.exp(0.5 * logvar[0]) * eps[i]
        torch.testing.assert_close(noisy.reward[i], sample[OBS:], atol=1e-5, rtol=0)


def test_stratified_balance_and_uniform_member_frequency():
    model = make_model()
    obs, act = torch.randn(13, OBS).double(), torch.randn(13, ACT).double()
    gen = torch.Generator().manual_seed(0)
    counts = torch.zeros(5)
    for _ in range(300):
        members = model.sample(obs, act, sampling="stratified", generator=gen).members
        per_call = torch.bincount(members, minlength=5)[[0, 2, 4]]
        assert per_call.max() - per_call.min() <= 1  # equal slices up to padding
        counts += torch.bincount(members, minlength=5)
    freq = counts / counts.sum()
    assert freq[[1, 3]].sum() == 0
    torch.testing.assert_close(freq[[0, 2, 4]], torch.full((3,), 1 / 3), atol=0.03, rtol=0)


@pytest.mark.parametrize("sampling", ["gather", "stratified"])
def test_gradients_reach_inputs_and_leading_dims(sampling):
    model = make_model()
    obs = torch.randn(2, 4, OBS, dtype=torch.float64, requires_grad=True)
    act = torch.randn(2, 4, ACT, dtype=torch.float64, requires_grad=True)
    out = model.sample(obs, act, sampling=sampling)
    assert out.next_obs.shape == (2, 4, OBS) and out.reward.shape == (2, 4, 1)
    assert out.members.shape == (2, 4)
    (out.next_obs.sum() + out.reward.sum()).backward()
    assert obs.grad.abs().sum() > 0 and act.grad.abs().sum() > 0


def test_fit_scaler_and_weight_decay():
    model = make_model()
    obs, act = torch.randn(100, OBS).double() * 3 + 1, torch.randn(100, ACT).double()
    act[:, 1] = 0.5  # constant column: std 0 -> 1
    model.fit_scaler(obs, act)
    x = torch.cat([obs, act], -1)
    torch.testing.assert_close(model.input_mean, x.mean(0))
    assert model.input_std[-1] == 1.0
    torch.testing.assert_close(model.input_std[:OBS], obs.std(0, unbiased=False))
    decays = model.weight_decays
    expected = sum(d * 0.5 * (w**2).sum() for d, w in zip(decays, model.weights))
    torch.testing.assert_close(model.weight_decay_loss(), expected)
    assert ProbabilisticEnsemble(OBS, ACT).weight_decays == (2.5e-5, 5e-5, 7.5e-5, 7.5e-5, 1e-4)


def test_logvar_soft_clamped_within_bounds():
    model = make_model()
    with torch.no_grad():
        model.biases[-1][..., OBS + 1 :] = 50.0  # huge raw log-variance
    _, logvar = model(torch.randn(4, OBS).double(), torch.randn(4, ACT).double())
    # the softplus clamp may overshoot the upper bound by softplus(-(max - min)) ~ 5e-5
    assert (logvar <= model.max_logvar + 1e-4).all() and (logvar >= model.min_logvar).all()
    assert (logvar > model.max_logvar - 1e-3).all()


def test_errors_name_the_problem():
    model = make_model()
    with pytest.raises(ValueError, match="obs_dim"):
        model(torch.randn(4, OBS + 1).double(), torch.randn(4, ACT).double())
    with pytest.raises(ValueError, match="action_dim"):
        model.sample(torch.randn(4, OBS).double(), torch.randn(4, ACT + 2).double())
    with pytest.raises(ValueError, match="num_elites"):
        ProbabilisticEnsemble(OBS, ACT, num_members=3, num_elites=4)
    with pytest.raises(ValueError, match="NaN"):
        model.fit_scaler(torch.full((4, OBS), float("nan")), torch.zeros(4, ACT))
    with pytest.raises(ValueError, match="distinct elites"):
        model.set_elites([0, 0, 1])
    with pytest.raises(ValueError, match="sampling"):
        ProbabilisticEnsemble(OBS, ACT, sampling="loop")
    with pytest.raises(ValueError, match="weight decay"):
        ProbabilisticEnsemble(OBS, ACT, hidden_dims=(8,), weight_decays=(1e-4,))


def test_frozen_elite_layers_are_reused_until_weights_or_elites_change():
    """The stratified path caches the elites' layers for a frozen model; edits invalidate it."""
    model = make_model().requires_grad_(False)
    obs, act = torch.randn(13, OBS).double(), torch.randn(13, ACT).double()

    def sample(m):
        return m.sample(obs, act, sampling="stratified", generator=torch.Generator().manual_seed(3))

    first = sample(model)
    assert model._elite_layers() is model._elite_layers()  # reused while nothing changes
    with torch.no_grad():
        model.weights[-1].mul_(2.0)  # in-place edit, as an optimiser step does
    model.set_elites([1, 3, 4])
    fresh = make_model().requires_grad_(False)
    fresh.load_state_dict(model.state_dict())
    edited, want = sample(model), sample(fresh)
    assert not torch.allclose(edited.next_obs, first.next_obs)
    torch.testing.assert_close(edited.next_obs, want.next_obs)
    assert set(edited.members.tolist()) <= {1, 3, 4}
