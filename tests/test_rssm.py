"""RSSM + its DreamerV3 loss: ELBO terms by hand, stop-gradients, learning, save/load, resume."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from tensordict import TensorDict

from torchrl_leq.modules.rssm import RSSM, pixels_to_float, straight_through_sample
from torchrl_leq.objectives.rssm_loss import RSSMLoss, balanced_kl_terms, categorical_kl
from torchrl_leq.training.rssm import (
    load_rssm,
    sample_sequences,
    save_rssm,
    split_episodes,
    train_rssm,
)


def tiny(**kw) -> RSSM:
    torch.manual_seed(0)
    cfg = dict(channels=2, deter_dim=6, hidden_dim=8, groups=2, classes=3, prior_members=2)
    cfg.update(kw)
    return RSSM(2, **cfg)


def sequences(b: int = 2, t: int = 3, seed: int = 0) -> TensorDict:
    g = torch.Generator().manual_seed(seed)
    return TensorDict(
        {
            "pixels": torch.randint(0, 256, (b, t, 3, 64, 64), dtype=torch.uint8, generator=g),
            "action": torch.rand(b, t, 2, generator=g) * 2 - 1,
            "reward": torch.rand(b, t, generator=g) * 3,
            "is_first": torch.tensor([[True] + [False] * (t - 1)] * b),
            "is_terminal": torch.tensor([[False] * (t - 1) + [True]] + [[False] * t] * (b - 1)),
        },
        [b, t],
    )


def test_categorical_kl_matches_loops():
    rng = np.random.default_rng(0)
    p = rng.dirichlet(np.ones(4), size=(2, 3))  # [N=2, G=3, K=4]
    q = rng.dirichlet(np.ones(4), size=(2, 3))
    expected = [sum(p[n, g, k] * math.log(p[n, g, k] / q[n, g, k])
                    for g in range(3) for k in range(4)) for n in range(2)]
    got = categorical_kl(torch.tensor(p), torch.tensor(q))
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-12)


def test_balanced_kl_free_bits_members_and_stop_gradients():
    post = torch.tensor([[[0.7, 0.3]], [[0.5, 0.5]]], dtype=torch.float64,
                        requires_grad=True)  # [N=2, G=1, K=2]
    prior = torch.tensor([[[[0.2, 0.8]], [[0.5, 0.5]]],
                          [[[0.6, 0.4]], [[0.4, 0.6]]]], dtype=torch.float64,
                         requires_grad=True)  # [E=2, N, G, K]

    def kl(a, b):
        return sum(x * math.log(x / y) for x, y in zip(a, b))

    per = [[kl([0.7, 0.3], [0.2, 0.8]), kl([0.5, 0.5], [0.5, 0.5])],
           [kl([0.7, 0.3], [0.6, 0.4]), kl([0.5, 0.5], [0.4, 0.6])]]  # [E][N]
    free = 0.05
    dyn, rep, raw = balanced_kl_terms(post, prior, free)
    clipped = [sum(max(free, per[e][n]) for e in range(2)) / 2 for n in range(2)]
    np.testing.assert_allclose(dyn.detach().numpy(), clipped, rtol=1e-6)
    np.testing.assert_allclose(rep.detach().numpy(), clipped, rtol=1e-6)
    np.testing.assert_allclose(raw.numpy(), [(per[0][n] + per[1][n]) / 2 for n in range(2)],
                               rtol=1e-6)
    # L_dyn trains only the prior, L_rep only the posterior.
    (g_post, g_prior) = torch.autograd.grad(dyn.sum(), [post, prior], allow_unused=True)
    assert g_post is None and g_prior.abs().sum() > 0
    (g_post, g_prior) = torch.autograd.grad(rep.sum(), [post, prior], allow_unused=True)
    assert g_prior is None and g_post.abs().sum() > 0


def test_rssm_loss_terms_against_hand_computation():
    model = tiny()
    td = sequences()
    betas = dict(beta_pred=0.7, beta_dyn=0.5, beta_rep=0.1, free_bits=0.3)
    out = RSSMLoss(model, mode="argmax", **betas)(td)

    x = pixels_to_float(td["pixels"])
    obs = model.observe(x, td["action"], td["is_first"], mode="argmax")
    f = obs["features"]
    image = ((model.decode(f) - x) ** 2).sum(dim=(-3, -2, -1)).mean()
    r_hat = model.reward_head(f).squeeze(-1)
    reward = ((r_hat - torch.log1p(td["reward"])) ** 2).mean()
    y = (~td["is_terminal"]).float()
    s = torch.sigmoid(model.continue_logit(f).squeeze(-1))
    cont = -(y * torch.log(s) + (1 - y) * torch.log(1 - s)).mean()

    def probs(logits):  # DreamerV3 unimix: 0.99 softmax + 0.01 uniform
        return 0.99 * torch.softmax(logits, -1) + 0.01 / 3

    q = probs(obs["post_logits"]).detach().double()
    p = probs(obs["prior_logits"]).detach().double()
    kls = np.zeros((2, 2, 3))  # [E, B, T]
    for e in range(2):
        for b in range(2):
            for t in range(3):
                kls[e, b, t] = sum(float(q[b, t, g, k] * (q[b, t, g, k] / p[e, b, t, g, k]).log())
                                   for g in range(2) for k in range(3))
    kl_clip = np.maximum(kls, 0.3).mean(0).mean()
    assert float(out["loss_image"]) == pytest.approx(0.7 * float(image), rel=1e-5)
    assert float(out["loss_reward"]) == pytest.approx(0.7 * float(reward), rel=1e-5)
    assert float(out["loss_continue"]) == pytest.approx(0.7 * float(cont), rel=1e-5)
    assert float(out["loss_dyn"]) == pytest.approx(0.5 * kl_clip, rel=1e-5)
    assert float(out["loss_rep"]) == pytest.approx(0.1 * kl_clip, rel=1e-5)
    assert float(out["kl"]) == pytest.approx(kls.mean(0).mean(), rel=1e-5)


def test_rssm_loss_gradients_reach_the_right_parts():
    model = tiny()
    # no clip (every KL has a gradient); one step, so that the posterior reaches the prior
    # only through sg(q_t) (over longer sequences z_{t-1} feeds h_t and the prior at t).
    out = RSSMLoss(model, free_bits=0.0)(sequences(t=1))

    def touched(loss):
        model.zero_grad()
        loss.backward(retain_graph=True)
        return {n.split(".")[0] for n, p in model.named_parameters()
                if p.grad is not None and p.grad.abs().sum() > 0}

    assert "prior" in touched(out["loss_dyn"]) and "posterior" not in touched(out["loss_dyn"])
    assert "prior" not in touched(out["loss_rep"]) and "posterior" in touched(out["loss_rep"])
    assert {"encoder", "decoder", "posterior", "gru"} <= touched(out["loss_image"])
    assert "reward_head" in touched(out["loss_reward"])
    assert "continue_head" in touched(out["loss_continue"])


def test_is_first_resets_the_state():
    model = tiny()
    td = sequences(1, 4)
    td["is_first"][0, 2] = True
    full = model.observe(pixels_to_float(td["pixels"]), td["action"], td["is_first"],
                         mode="argmax")["features"]
    tail = td[:, 2:]
    alone = model.observe(pixels_to_float(tail["pixels"]), tail["action"], tail["is_first"],
                          mode="argmax")["features"]
    torch.testing.assert_close(full[:, 2:], alone)


def test_straight_through_sample_is_one_hot_with_probs_gradient():
    probs = torch.tensor([[0.1, 0.6, 0.3]] * 2000, requires_grad=True)
    gen = torch.Generator().manual_seed(0)
    s = straight_through_sample(probs, gen)
    np.testing.assert_allclose(s.detach().sum(-1).numpy(), 1.0, rtol=1e-6)
    assert set(s.detach().max(-1).values.round().tolist()) == {1.0}
    np.testing.assert_allclose(s.detach().mean(0).numpy(), [0.1, 0.6, 0.3], atol=0.03)
    (grad,) = torch.autograd.grad((s * torch.tensor([1.0, 2.0, 3.0])).sum(), probs)
    np.testing.assert_allclose(grad[0].numpy(), [1.0, 2.0, 3.0])


def squares_dataset(n: int = 96, episode: int = 12) -> TensorDict:
    """Frames with a bright 16×16 square in one of 4 quadrants (random per frame)."""
    g = torch.Generator().manual_seed(0)
    q = torch.randint(0, 4, (n,), generator=g)
    pixels = torch.zeros(n, 3, 64, 64, dtype=torch.uint8)
    for i, k in enumerate(q.tolist()):
        r, c = 8 + 32 * (k // 2), 8 + 32 * (k % 2)
        pixels[i, :, r : r + 16, c : c + 16] = 255
    idx = torch.arange(n)
    return TensorDict({"pixels": pixels, "action": torch.zeros(n, 2), "reward": torch.zeros(n),
                       "is_first": idx % episode == 0,
                       "is_terminal": torch.zeros(n, dtype=torch.bool),
                       "episode": idx // episode}, [n])


def test_posterior_reconstructs_better_than_the_mean_image():
    data = squares_dataset()
    model = tiny(channels=4, deter_dim=16, hidden_dim=32, groups=4, classes=4, prior_members=1)
    log = train_rssm(model, data, epochs=3, steps_per_epoch=40, batch_size=4, seq_len=8,
                     lr=3e-3, holdout_fraction=0.25, progress=False)
    x = pixels_to_float(data["pixels"])
    mean_mse = float(((x - x.mean(0)) ** 2).mean())
    with torch.no_grad():
        f = model.observe(x.unsqueeze(0), data["action"].unsqueeze(0),
                          data["is_first"].unsqueeze(0), mode="argmax")["features"]
        recon_mse = float(((model.decode(f[0]) - x) ** 2).mean())
    assert recon_mse < 0.75 * mean_mse, (recon_mse, mean_mse, log["holdout_image_mse"])
    assert log["holdout_image_mse"][-1] < log["holdout_image_mse"][0]


def test_train_rssm_checkpoint_resume_matches_uninterrupted(tmp_path):
    data = squares_dataset(48)
    kw = dict(steps_per_epoch=2, batch_size=2, seq_len=4, holdout_fraction=0.25, progress=False)
    straight = tiny()
    log_a = train_rssm(straight, data, epochs=2, **kw)
    resumed = tiny()
    ckpt = tmp_path / "rssm.ckpt"
    train_rssm(resumed, data, epochs=1, checkpoint_path=ckpt, **kw)
    log_b = train_rssm(tiny(), data, epochs=2, checkpoint_path=ckpt, **kw)
    assert log_b["train_loss"] == pytest.approx(log_a["train_loss"], rel=1e-5)
    assert log_b["holdout_loss"] == pytest.approx(log_a["holdout_loss"], rel=1e-5)


def test_save_load_round_trip(tmp_path):
    model = tiny()
    save_rssm(tmp_path / "m.pt", model)
    loaded = load_rssm(tmp_path / "m.pt")
    td = sequences()
    x = pixels_to_float(td["pixels"])
    a = model.observe(x, td["action"], td["is_first"], mode="argmax")["features"]
    b = loaded.observe(x, td["action"], td["is_first"], mode="argmax")["features"]
    torch.testing.assert_close(a, b)
    with pytest.raises(FileNotFoundError, match="train one"):
        load_rssm(tmp_path / "missing.pt")


def test_windows_and_holdout_split():
    data = squares_dataset(24, episode=6)
    w = sample_sequences(data, torch.tensor([5, 10]), 3)
    assert w["is_first"].tolist() == [[True, True, False], [True, False, True]]
    train, hold = split_episodes(data, 0.25)
    assert torch.unique(hold["episode"]).tolist() == [3]
    assert torch.unique(train["episode"]).tolist() == [0, 1, 2]
    with pytest.raises(ValueError, match="2 episodes"):
        split_episodes(data[:6], 0.5)
