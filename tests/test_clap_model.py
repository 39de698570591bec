"""C-LAP's latent action state-space model and its ELBO (Eq. 4/5): every term against a hand
computation with torch.distributions on tiny tensors, masks, gradient routing, the sequence
layout."""

from __future__ import annotations

import math

import pytest
import torch
from tensordict import TensorDict
from torch.distributions import Bernoulli, Beta, Normal, kl_divergence

from torchrl_leq.data.sequences import transitions_to_sequences
from torchrl_leq.data.vd4rl import transition_indices
from torchrl_leq.modules.latent_action_model import BetaAction, LatentActionModel, gaussian_kl
from torchrl_leq.objectives.clap_model_loss import CLAPModelLoss

B, T, OBS, ACT = 2, 4, 3, 2


def tiny_model(seed=0, **kwargs):
    torch.manual_seed(seed)
    return LatentActionModel(OBS, ACT, stoch_dim=2, deter_dim=3, units=8, embed_dim=3,
                             latent_action_dim=2, **kwargs).double()


def tiny_batch(seed=1):
    g = torch.Generator().manual_seed(seed)
    is_first = torch.zeros(B, T, dtype=torch.bool)
    is_first[:, 0] = True
    is_first[1, 2] = True  # a new episode inside the second window
    is_terminal = torch.zeros(B, T, dtype=torch.bool)
    is_terminal[1, 1] = True
    action = torch.rand(B, T, ACT, generator=g, dtype=torch.float64) * 2 - 1
    action[0, 2, 0] = 1.0  # a clipped action at the bound
    return TensorDict({
        "observation": torch.randn(B, T, OBS, generator=g, dtype=torch.float64),
        "action": action,
        "reward": torch.randn(B, T, generator=g, dtype=torch.float64),
        "is_first": is_first,
        "is_terminal": is_terminal,
    }, [B, T])


def hand_terms(model, td):
    """Eq. 5's per-sequence terms with explicit loops and torch.distributions (posterior means,
    so no sampling)."""
    sums = {k: torch.zeros(B, dtype=torch.float64) for k in (
        "obs", "state_kl", "reward", "term", "action", "action_kl")}
    for b in range(B):
        h = torch.zeros(1, model.deter_dim, dtype=torch.float64)
        s = torch.zeros(1, model.stoch_dim, dtype=torch.float64)
        for t in range(T):
            first = bool(td["is_first"][b, t])
            prev_a = td["action"][b, t : t + 1]
            if first:
                h, s, prev_a = h * 0, s * 0, prev_a * 0
            h = model.gru(model.img_in(torch.cat([s, prev_a], -1)), h)
            p_loc, p_raw = model.prior_head(h).chunk(2, -1)
            p_scale = torch.nn.functional.softplus(p_raw) + model.min_std
            emb = model.encoder(td["observation"][b, t : t + 1])
            q_loc, q_raw = model.posterior_head(torch.cat([h, emb], -1)).chunk(2, -1)
            q_scale = torch.nn.functional.softplus(q_raw) + model.min_std
            s = q_loc
            f = torch.cat([h, s], -1)
            o = td["observation"][b, t]
            sums["obs"][b] += -Normal(model.decoder(f)[0], 1.0).log_prob(o).sum()
            sums["state_kl"][b] += kl_divergence(Normal(q_loc, q_scale), Normal(p_loc, p_scale)).sum()
            if not first:
                sums["reward"][b] += -Normal(model.reward_head(f)[0, 0], 1.0).log_prob(td["reward"][b, t])
            logit = model.termination_head(f)[0, 0]
            sums["term"][b] += -Bernoulli(logits=logit).log_prob(td["is_terminal"][b, t].double())
            if t + 1 < T and not bool(td["is_first"][b, t + 1]):
                a = td["action"][b, t + 1]
                u_loc, u_raw = model.action_posterior_head(torch.cat([f[0], a])).chunk(2, -1)
                u_scale = torch.nn.functional.softplus(u_raw) + model.min_std
                pu_loc, pu_raw = model.action_prior_head(f[0]).chunk(2, -1)
                pu_scale = torch.nn.functional.softplus(pu_raw) + model.min_std
                raw_a, raw_b = model.action_decoder_head(torch.cat([f[0], u_loc])).chunk(2, -1)
                alpha = model.beta_min_concentration + torch.nn.functional.softplus(raw_a)
                beta = model.beta_min_concentration + torch.nn.functional.softplus(raw_b)
                x = ((a + 1) / 2).clamp(1e-4, 1 - 1e-4)
                sums["action"][b] += -(Beta(alpha, beta).log_prob(x) - math.log(2)).sum()
                sums["action_kl"][b] += kl_divergence(
                    Normal(u_loc, u_scale), Normal(pu_loc, pu_scale)).sum()
    return {k: v / T for k, v in sums.items()}


def test_every_elbo_term_matches_a_hand_computation():
    model, td = tiny_model(), tiny_batch()
    out = CLAPModelLoss(model, mode="mean", reduction="none")(td)
    want = hand_terms(model, td)
    pairs = {"loss_obs_reconstruction": "obs", "loss_obs_consistency": "state_kl",
             "loss_reward": "reward", "loss_termination": "term",
             "loss_action_reconstruction": "action", "loss_action_consistency": "action_kl"}
    for key, ref in pairs.items():
        torch.testing.assert_close(out[key], want[ref], msg=key)
    # the ELBO diagnostic is minus the four ELBO terms (per step, batch mean)
    elbo = -(want["obs"] + want["state_kl"] + want["action"] + want["action_kl"]).mean()
    torch.testing.assert_close(out["elbo"], elbo)


def test_kl_scales_free_nats_and_reductions():
    model, td = tiny_model(), tiny_batch()
    base = CLAPModelLoss(model, mode="mean", reduction="none")(td)
    scaled = CLAPModelLoss(model, mode="mean", state_kl_scale=0.5, action_kl_scale=2.0,
                           reduction="none")(td)
    torch.testing.assert_close(scaled["loss_obs_consistency"], 0.5 * base["loss_obs_consistency"])
    torch.testing.assert_close(scaled["loss_action_consistency"],
                               2.0 * base["loss_action_consistency"])
    big = CLAPModelLoss(model, mode="mean", free_nats=100.0, reduction="none")(td)
    # every step's KL is clipped to 100 nats: the state KL is 100 per step (all T rows)
    torch.testing.assert_close(big["loss_obs_consistency"], torch.full((B,), 100.0, dtype=torch.float64))
    mean = CLAPModelLoss(model, mode="mean")(td)
    summed = CLAPModelLoss(model, mode="mean", reduction="sum")(td)
    for key in base.keys():
        if key.startswith("loss"):
            torch.testing.assert_close(mean[key], base[key].mean(), msg=key)
            torch.testing.assert_close(summed[key], base[key].sum(), msg=key)


def test_gaussian_kl_and_beta_action_closed_forms():
    lq, sq, lp, sp = torch.tensor([[0.3, -1.0]]), torch.tensor([[0.5, 2.0]]), \
        torch.tensor([[0.0, 1.0]]), torch.tensor([[1.0, 0.7]])
    ref = kl_divergence(Normal(lq, sq), Normal(lp, sp)).sum(-1)
    torch.testing.assert_close(gaussian_kl(lq, sq, lp, sp), ref)
    d = BetaAction(torch.tensor([[0.2, -1.0]]), torch.tensor([[1.5, 0.0]]))
    alpha = 1 + torch.nn.functional.softplus(torch.tensor([0.2, -1.0]))
    beta = 1 + torch.nn.functional.softplus(torch.tensor([1.5, 0.0]))
    torch.testing.assert_close(d.mean[0], 2 * alpha / (alpha + beta) - 1)
    a = torch.tensor([[0.5, -0.25]])
    ref = (Beta(alpha, beta).log_prob((a[0] + 1) / 2) - math.log(2)).sum()
    torch.testing.assert_close(d.log_prob(a)[0], ref)
    # clipped actions at ±1 have a finite log-density
    assert torch.isfinite(d.log_prob(torch.tensor([[1.0, -1.0]]))).all()
    raw = torch.zeros(1000, 2, requires_grad=True)
    x = BetaAction(raw, raw).rsample()
    assert x.min() >= -1 and x.max() <= 1
    x.sum().backward()
    assert raw.grad is not None and raw.grad.abs().sum() > 0  # reparameterised


def test_model_loss_reaches_every_model_part_and_nothing_else():
    model, td = tiny_model(), tiny_batch()
    other = torch.nn.Linear(2, 2)
    out = CLAPModelLoss(model)(td)
    total = sum(v for k, v in out.items() if k.startswith("loss"))
    total.backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name
    assert other.weight.grad is None
    for key, value in out.items():
        if not key.startswith("loss"):
            assert not value.requires_grad, key


def test_is_first_resets_the_filter():
    model, td = tiny_model(), tiny_batch()
    obs, act, first = td["observation"], td["action"], td["is_first"]
    full = model.observe(obs, act, first, mode="mean")["features"]
    # the second window restarts at row 2: its features from there on ignore rows 0-1
    tail = model.observe(obs[1:, 2:], act[1:, 2:], first[1:, 2:], mode="mean")["features"]
    torch.testing.assert_close(full[1, 2:], tail[0])


def test_no_latent_action_model_has_no_action_terms():
    model = tiny_model(latent_action=False)
    out = CLAPModelLoss(model)(tiny_batch())
    assert "loss_action_reconstruction" not in out.keys()
    assert set(out.keys()) == set(CLAPModelLoss(model).out_keys)
    with pytest.raises(RuntimeError, match="latent_action=False"):
        model.action_prior(torch.zeros(1, model.feature_dim, dtype=torch.float64))


def test_set_keys_remaps_the_model_loss():
    model, td = tiny_model(), tiny_batch()
    want = CLAPModelLoss(model, mode="mean")(td)
    loss = CLAPModelLoss(model, mode="mean")
    loss.set_keys(observation="pixels_or_state", reward="rew")
    renamed = td.clone()
    renamed.rename_key_("observation", "pixels_or_state")
    renamed.rename_key_("reward", "rew")
    got = loss(renamed)
    torch.testing.assert_close(got["loss_reward"], want["loss_reward"])
    with pytest.raises(KeyError):
        loss(td)


def test_pixel_model_runs_the_elbo():
    torch.manual_seed(0)
    model = LatentActionModel(None, ACT, stoch_dim=2, deter_dim=3, units=8, channels=2,
                              latent_action_dim=2)
    td = tiny_batch().float()
    td["observation"] = torch.randint(0, 256, (B, T, 3, 64, 64), dtype=torch.uint8)
    out = CLAPModelLoss(model)(td)
    assert torch.isfinite(out["loss_obs_reconstruction"])
    assert out["loss_obs_reconstruction"] > 3 * 64 * 64 * 0.9  # ≥ ½ log 2π per pixel entry


def test_sequences_from_transitions_round_trip():
    g = torch.Generator().manual_seed(0)
    n = 7
    episode = torch.tensor([0, 0, 0, 1, 1, 2, 2])
    obs = torch.randn(n, 2, generator=g)
    next_obs = torch.randn(n, 2, generator=g)
    td = TensorDict({
        "observation": obs, "action": torch.randn(n, 1, generator=g), "episode": episode,
        "next": {"observation": next_obs, "reward": torch.randn(n, 1, generator=g),
                 "terminated": torch.tensor([[0], [0], [1], [0], [0], [0], [1]]).bool()}}, [n])
    seq = transitions_to_sequences(td)
    assert seq.shape == (n + 3,)
    src, nxt = transition_indices(seq)
    assert len(src) == n
    torch.testing.assert_close(seq["observation"][src], obs)
    torch.testing.assert_close(seq["action"][nxt], td["action"])
    torch.testing.assert_close(seq["reward"][nxt], td["next", "reward"][:, 0])
    assert seq["is_terminal"][nxt].tolist() == td["next", "terminated"][:, 0].tolist()
    assert seq["is_first"].sum() == 3 and seq["is_last"].sum() == 3


def test_train_clap_model_checkpoint_resume_is_exact(tmp_path):
    from torchrl_leq.training.clap import train_clap_model

    n = 60
    gen = torch.Generator().manual_seed(3)
    seq = TensorDict({"observation": torch.randn(n, 3, generator=gen),
                      "action": torch.rand(n, 2, generator=gen) * 2 - 1,
                      "reward": torch.randn(n, generator=gen),
                      "is_first": torch.arange(n) % 15 == 0,
                      "is_terminal": torch.zeros(n, dtype=torch.bool),
                      "episode": torch.arange(n) // 15}, [n])
    kw = dict(steps_per_epoch=3, batch_size=2, seq_len=5, holdout_fraction=0.25, progress=False)
    torch.manual_seed(0)
    straight = tiny_model()
    log_a = train_clap_model(straight, seq, epochs=3, **kw)
    ckpt = tmp_path / "clap.ckpt"
    torch.manual_seed(0)
    train_clap_model(tiny_model(), seq, epochs=2, checkpoint_path=ckpt, **kw)  # "killed" here
    torch.manual_seed(123)  # a rerun's global RNG: restored from the checkpoint
    resumed = tiny_model(seed=5)
    log_b = train_clap_model(resumed, seq, epochs=3, checkpoint_path=ckpt, **kw)
    assert log_b["holdout_loss"] == log_a["holdout_loss"]
    assert log_b["train_loss"] == log_a["train_loss"]
    for k, v in straight.state_dict().items():
        assert torch.equal(v, resumed.state_dict()[k]), k
