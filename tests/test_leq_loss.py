"""LEQLoss against an independent re-computation of Eqs. 5-11 on short analytic rollouts."""

import copy

import pytest
import torch
from reference import brute_force_lambda_return
from tensordict import TensorDict

from torchrl_leq.envs.analytic import LinearQuadraticEnv
from torchrl_leq.modules.actor_critic import make_deterministic_actor, make_qvalue_network
from torchrl_leq.objectives import LEQLoss

OBS, ACT = 3, 2


def make_parts(termination_bound=float("inf"), seed=0):
    torch.manual_seed(seed)
    env = LinearQuadraticEnv(OBS, ACT, termination_bound=termination_bound, dtype=torch.float64)
    actor = make_deterministic_actor(OBS, ACT, num_cells=(16, 16)).double()
    critic = make_qvalue_network(OBS, ACT, num_cells=(16, 16)).double()
    return env, actor, critic


def make_batch(b_env=6, b_model=6, seed=1):
    gen = torch.Generator().manual_seed(seed)

    def randn(*shape):
        return torch.randn(*shape, generator=gen, dtype=torch.float64)

    env_td = TensorDict(
        {
            "observation": randn(b_env, OBS),
            "action": torch.rand(b_env, ACT, generator=gen, dtype=torch.float64) * 2 - 1,
            "next": {
                "observation": randn(b_env, OBS),
                "reward": randn(b_env, 1),
                "terminated": torch.arange(b_env).view(-1, 1) % 3 == 0,
            },
        },
        [b_env],
    )
    model_td = TensorDict({"observation": randn(b_model, OBS)}, [b_model])
    return TensorDict({"env": env_td, "model": model_td}, [])


def perturb_target(loss):
    gen = torch.Generator().manual_seed(5)
    online = loss.qvalue_network_params
    for key, p in loss.target_qvalue_network_params.items(True, True):
        if online.get(key).requires_grad:  # weights only, not the input-scaler buffers
            p.data.add_(0.05 * torch.randn(p.shape, generator=gen, dtype=p.dtype))


def q_fn(loss, params, obs, act):
    td = TensorDict({"observation": obs, "action": act}, obs.shape[:-1])
    with params.to_module(loss.qvalue_network):
        return loss.qvalue_network(td)["state_action_value"]


def pi_fn(loss, params, obs):
    with params.to_module(loss.actor_network):
        return loss.actor_network(TensorDict({"observation": obs}, obs.shape[:-1]))["action"]


def reference_rollout(loss, env, obs0, actor_params, deltas=None):
    """Plain-torch rollout of the analytic env (no TorchRL env machinery)."""
    obs, acts, rews, terms = [obs0], [], [], []
    s = obs0
    for t in range(loss.horizon + 1):
        a = pi_fn(loss, actor_params, s)
        if deltas is not None:
            a = a + deltas[t]
        acts.append(a)
        if t == loss.horizon:
            break
        a_c = a.clamp(-1, 1)
        s = env.dynamics(s, a_c)
        rews.append(
            -(s.pow(2).sum(-1, keepdim=True)) - env.action_cost * a_c.pow(2).sum(-1, keepdim=True)
        )
        terms.append(s[..., :1].abs() > env.termination_bound)
        obs.append(s)
    obs, acts = torch.stack(obs, 1), torch.stack(acts, 1)
    rews, terms = torch.stack(rews, 1), torch.stack(terms, 1)
    alive = torch.cat([torch.ones_like(rews[:, :1]), (~terms).double().cumprod(1)], 1)
    return obs, acts, rews, terms, alive


def reference_lambda_returns(loss, q, rews, terms):
    lam = brute_force_lambda_return(
        rews,
        q[:, 1:],
        loss.gamma,
        loss.lmbda,
        terms,
        q[:, :-1] if loss.include_current else None,
    )
    return torch.cat([lam, q[:, -1:]], 1)


def reference_losses(loss, env, batch):
    """Eqs. 5, 6, 7, 9, 11 computed by hand (released-code weighting)."""
    tau, beta, gamma, H = loss.tau, loss.beta, loss.gamma, loss.horizon
    cp, tp, ap = (
        loss.qvalue_network_params.detach(),
        loss.target_qvalue_network_params,
        loss.actor_network_params,
    )
    obs, acts, rews, terms, alive = reference_rollout(loss, env, batch["model", "observation"], ap)
    q = q_fn(loss, cp, obs, acts)
    lam = reference_lambda_returns(loss, q, rews, terms)
    # Eq. 9 with γ^t·alive_t weights, mean over (B, H).
    step_w = alive[:, :-1] * gamma ** torch.arange(H, dtype=torch.float64).view(1, -1, 1)
    diff = q[:, :-1] - lam[:, :-1]
    w_exp = torch.where(diff > 0, 1 - tau, tau)
    model = (step_w * w_exp * diff**2).mean()
    # Eq. 5: ½ squared TD error with the online critic and actor at s'.
    e = batch["env"]
    nobs = e["next", "observation"]
    y = e["next", "reward"] + gamma * (~e["next", "terminated"]).double() * q_fn(
        loss, cp, nobs, pi_fn(loss, ap, nobs)
    )
    q_env = q_fn(loss, cp, e["observation"], e["action"])
    env_term = 0.5 * ((q_env - y) ** 2).mean()
    # Eq. 6 on D_env and the rollout, β-mixed.
    ema_env = ((q_env - q_fn(loss, tp, e["observation"], e["action"])) ** 2).mean()
    q_tgt_model = q_fn(loss, tp, obs[:, :-1], acts[:, :-1])
    ema_model = (step_w * (q[:, :-1] - q_tgt_model) ** 2).mean()
    ema = beta * ema_model + (1 - beta) * ema_env
    qvalue = beta * model + (1 - beta) * env_term + loss.ema_weight * ema
    # Eq. 11: weights τ where Q^λ >= Q, 1-τ where Q > Q^λ, ½ at t = H; alive mask.
    w = torch.where(q > lam, 1 - loss.actor_tau, loss.actor_tau)
    w[:, -1] = 0.5
    actor = -(w * alive * lam).sum((1, 2)).mean()
    return {
        "loss_qvalue": qvalue,
        "loss_actor": actor,
        "critic_model": model,
        "critic_env": env_term,
        "critic_ema": ema,
        "lower_expectile_fraction": ((q > lam)[:, :-1].double() * alive[:, :-1]).sum()
        / alive[:, :-1].sum(),
        "rollout_alive_fraction": alive[:, 1:].mean(),
    }


@pytest.mark.parametrize("horizon", [2, 3])
@pytest.mark.parametrize("termination_bound", [float("inf"), 2.0])
@pytest.mark.parametrize("include_current", [True, False])
def test_each_term_matches_hand_computation(horizon, termination_bound, include_current):
    env, actor, critic = make_parts(termination_bound)
    loss = LEQLoss(
        actor, critic, env, horizon=horizon, tau=0.2, beta=0.4, include_current=include_current
    )
    perturb_target(loss)
    batch = make_batch()
    out = loss(batch)
    want = reference_losses(loss, env, batch)
    for key, value in want.items():
        torch.testing.assert_close(out[key], value.detach(), msg=key)
    if termination_bound < float("inf"):
        assert 0 < out["rollout_alive_fraction"] < 1  # terminations really happened


@pytest.mark.parametrize("beta", [0.0, 1.0])
def test_beta_extremes_reduce_to_one_term(beta):
    env, actor, critic = make_parts()
    loss = LEQLoss(actor, critic, env, horizon=2, beta=beta, ema_weight=0.0)
    out = loss(make_batch())
    single = out["critic_model"] if beta == 1.0 else out["critic_env"]
    torch.testing.assert_close(out["loss_qvalue"], single)


def test_expectile_on_env_term():
    env, actor, critic = make_parts()
    batch = make_batch()
    plain = LEQLoss(actor, critic, env, horizon=2)
    lower = LEQLoss(actor, critic, env, horizon=2, env_tau=0.1)
    lower.load_state_dict(plain.state_dict())
    want = reference_losses(plain, env, batch)["critic_env"]  # ½ (Q - y)², Eq. 5
    torch.testing.assert_close(plain(batch)["critic_env"], want.detach())
    # Recompute with the asymmetric weights |0.1 - 1(Q > y)| instead of ½.
    cp, ap = plain.qvalue_network_params.detach(), plain.actor_network_params
    e = batch["env"]
    nobs = e["next", "observation"]
    y = e["next", "reward"] + plain.gamma * (~e["next", "terminated"]).double() * q_fn(
        plain, cp, nobs, pi_fn(plain, ap, nobs)
    )
    diff = q_fn(plain, cp, e["observation"], e["action"]) - y
    expected = (torch.where(diff > 0, 0.9, 0.1) * diff**2).mean()
    torch.testing.assert_close(lower(batch)["critic_env"], expected.detach())


def test_ema_term_vanishes_when_target_equals_online():
    env, actor, critic = make_parts()
    loss = LEQLoss(actor, critic, env, horizon=2)
    # Zero up to float32 rounding: on rollout states the online Q comes from the rollout's per-step
    # passes and the EMA Q from one pass over all steps, and BLAS may block the two batch shapes
    # differently (measured 8.7e-34 on one CPU, exactly 0 on another).
    assert loss(make_batch())["critic_ema"].item() < 1e-12
    perturb_target(loss)
    assert loss(make_batch())["critic_ema"].item() > 1e-6


def _grads(params):
    return [p.grad for p in params.values(True, True) if p.requires_grad]


@pytest.mark.parametrize("include_current", [True, False])
@pytest.mark.parametrize("actor_gradient", ["per_step", "backprop"])
def test_gradients_reach_only_their_network(actor_gradient, include_current):
    env, actor, critic = make_parts()
    loss = LEQLoss(
        actor,
        critic,
        env,
        horizon=3,
        actor_gradient=actor_gradient,
        include_current=include_current,
    )
    perturb_target(loss)
    out = loss(make_batch())
    out["loss_actor"].backward()
    assert all(g is not None and g.abs().sum() > 0 for g in _grads(loss.actor_network_params))
    assert all(g is None or g.abs().sum() == 0 for g in _grads(loss.qvalue_network_params))
    assert all(g is None for g in _grads(loss.target_qvalue_network_params))
    loss.zero_grad()
    out = loss(make_batch())
    (out["loss_actor"] + out["loss_qvalue"]).backward()  # one backward for both, as trainers do
    loss.zero_grad()
    out = loss(make_batch())
    out["loss_qvalue"].backward()
    assert all(g is None or g.abs().sum() == 0 for g in _grads(loss.actor_network_params))
    critic_grads = _grads(loss.qvalue_network_params)
    assert sum(g.abs().sum() for g in critic_grads if g is not None) > 0
    assert all(g is None for g in _grads(loss.target_qvalue_network_params))


def _actor_grad(loss, objective):
    params = [p for p in loss.actor_network_params.values(True, True) if p.requires_grad]
    return torch.autograd.grad(objective, params)


def test_backprop_actor_gradient_matches_full_derivative():
    env, actor, critic = make_parts(termination_bound=2.0)
    loss = LEQLoss(actor, critic, env, horizon=3, actor_gradient="backprop")
    batch = make_batch()
    got = _actor_grad(loss, loss(batch)["loss_actor"])
    want = _actor_grad(loss, reference_losses(loss, env, batch)["loss_actor"])
    for g, w in zip(got, want):
        torch.testing.assert_close(g, w)


def test_per_step_actor_gradient_matches_finite_difference_jacobians():
    """∂Q^λ_t/∂a_t by central differences, then the chain rule through a_t = π_θ(s_t)."""
    env, actor, critic = make_parts(termination_bound=2.0)
    loss = LEQLoss(actor, critic, env, horizon=3, actor_gradient="per_step", tau=0.3)
    batch = make_batch()
    got = _actor_grad(loss, loss(batch)["loss_actor"])

    ap, cp = loss.actor_network_params.detach(), loss.qvalue_network_params.detach()
    obs0 = batch["model", "observation"]
    H, B = loss.horizon, obs0.shape[0]

    def lambda_returns(deltas):
        obs, acts, rews, terms, alive = reference_rollout(loss, env, obs0, ap, deltas)
        q = q_fn(loss, cp, obs, acts)
        return reference_lambda_returns(loss, q, rews, terms), q, obs, alive

    zeros = [torch.zeros(B, ACT, dtype=torch.float64) for _ in range(H + 1)]
    lam, q, obs, alive = lambda_returns(zeros)
    eps = 1e-6
    jac = torch.zeros(B, H + 1, ACT, dtype=torch.float64)
    for t in range(H + 1):
        for j in range(ACT):
            plus = [d.clone() for d in zeros]
            minus = [d.clone() for d in zeros]
            plus[t][:, j] += eps
            minus[t][:, j] -= eps
            jac[:, t, j] = (
                lambda_returns(plus)[0][:, t, 0] - lambda_returns(minus)[0][:, t, 0]
            ) / (2 * eps)
    w = torch.where(q > lam, 1 - loss.actor_tau, loss.actor_tau)
    w[:, -1] = 0.5
    policy_action = pi_fn(loss, loss.actor_network_params, obs.reshape(-1, OBS)).reshape(
        B, H + 1, ACT
    )
    surrogate = -(w * alive * (jac * policy_action).sum(-1, keepdim=True)).sum((1, 2)).mean()
    want = _actor_grad(loss, surrogate)
    for g, w_ in zip(got, want):
        torch.testing.assert_close(g, w_, rtol=1e-5, atol=1e-7)


def test_actor_variants_differ_but_share_the_loss_value():
    env, actor, critic = make_parts()
    batch = make_batch()
    per_step = LEQLoss(actor, critic, env, horizon=3, actor_gradient="per_step")
    backprop = LEQLoss(actor, critic, env, horizon=3, actor_gradient="backprop")
    backprop.load_state_dict(per_step.state_dict())
    a, b = per_step(batch)["loss_actor"], backprop(batch)["loss_actor"]
    torch.testing.assert_close(a, b)
    ga, gb = _actor_grad(per_step, a), _actor_grad(backprop, b)
    assert any(not torch.allclose(x, y) for x, y in zip(ga, gb))


@pytest.mark.parametrize("include_current", [True, False])
def test_per_step_critic_gradient_matches_a_separate_critic_pass(include_current):
    """per_step reuses the rollout's Q(s_t, a_t) for the model loss; backprop re-evaluates it."""
    env, actor, critic = make_parts(termination_bound=2.0)
    batch = make_batch()
    kw = dict(horizon=3, include_current=include_current)
    per_step = LEQLoss(actor, critic, env, actor_gradient="per_step", **kw)
    backprop = LEQLoss(actor, critic, env, actor_gradient="backprop", **kw)
    backprop.load_state_dict(per_step.state_dict())
    perturb_target(per_step)
    backprop.load_state_dict(per_step.state_dict())

    def critic_grad(loss):
        params = [p for p in loss.qvalue_network_params.values(True, True) if p.requires_grad]
        out = loss(batch)
        return out["loss_qvalue"], torch.autograd.grad(out["loss_qvalue"], params)

    (va, ga), (vb, gb) = critic_grad(per_step), critic_grad(backprop)
    torch.testing.assert_close(va, vb)
    for x, y in zip(ga, gb):
        torch.testing.assert_close(x, y)


def test_reductions_are_consistent():
    env, actor, critic = make_parts()
    batch = make_batch()
    losses = {}
    for red in ("none", "mean", "sum"):
        loss = LEQLoss(actor, critic, env, horizon=2, reduction=red)
        perturb_target(loss)
        losses[red] = loss(batch)
    for key in ("loss_actor", "loss_qvalue"):
        per_sample = losses["none"][key]
        assert per_sample.shape == (6,)
        torch.testing.assert_close(per_sample.mean(), losses["mean"][key])
        torch.testing.assert_close(per_sample.sum(), losses["sum"][key])
    with pytest.raises(ValueError, match="B_env == B_model"):
        LEQLoss(actor, critic, env, horizon=2, reduction="none")(make_batch(b_env=4, b_model=6))


@pytest.mark.parametrize("include_current", [True, False])
@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_per_step_actor_gradient_is_the_same_for_every_reduction(reduction, include_current):
    """mean/sum accumulate ∂loss_actor/∂θ inside the sweep; 'none' goes through a surrogate."""
    env, actor, critic = make_parts(termination_bound=2.0)
    batch = make_batch()
    kw = dict(horizon=3, include_current=include_current, tau=0.3)
    reduced = LEQLoss(actor, critic, env, reduction=reduction, **kw)
    per_sample = LEQLoss(actor, critic, env, reduction="none", **kw)
    per_sample.load_state_dict(reduced.state_dict())
    out = reduced(batch)
    alive = out["rollout_alive_fraction"].item()
    assert 0.0 < alive < 1.0  # some samples terminate: their zero weights are exercised
    got = _actor_grad(reduced, 3.0 * out["loss_actor"])  # upstream gradient 3
    none = per_sample(batch)["loss_actor"]
    want = _actor_grad(per_sample, 3.0 * (none.mean() if reduction == "mean" else none.sum()))
    torch.testing.assert_close(
        out["loss_actor"].detach(), (none.mean() if reduction == "mean" else none.sum()).detach()
    )
    for g, w in zip(got, want):
        torch.testing.assert_close(g, w)


def test_set_keys_remaps_batches_and_transition_keys():
    env, actor, critic = make_parts()
    loss = LEQLoss(actor, critic, env, horizon=2)
    batch = make_batch()
    want = loss(batch)
    renamed = TensorDict({"data": batch["env"].clone(), "imagined": batch["model"]}, [])
    renamed["data"].rename_key_(("next", "reward"), ("next", "rew"))
    renamed["data"].rename_key_(("next", "terminated"), ("next", "term"))
    loss.set_keys(env_batch="data", model_batch="imagined", reward="rew", terminated="term")
    got = loss(renamed)
    torch.testing.assert_close(got["loss_qvalue"], want["loss_qvalue"])
    torch.testing.assert_close(got["loss_actor"], want["loss_actor"])
    assert ("data", "next", "rew") in loss.in_keys
    with pytest.raises(KeyError, match="data"):
        loss(batch)


def test_state_dict_round_trip():
    env, actor, critic = make_parts()
    loss = LEQLoss(actor, critic, env, horizon=2)
    perturb_target(loss)
    _, actor2, critic2 = make_parts(seed=3)
    other = LEQLoss(actor2, critic2, env, horizon=2)
    batch = make_batch()
    assert not torch.allclose(loss(batch)["loss_qvalue"], other(batch)["loss_qvalue"])
    other.load_state_dict(loss.state_dict())
    for key in ("loss_qvalue", "loss_actor", "critic_ema"):
        torch.testing.assert_close(other(batch)[key], loss(batch)[key])
    assert not any(k.startswith("model_env") for k in loss.state_dict())


def test_soft_update_moves_target_towards_online():
    from torchrl.objectives import SoftUpdate

    env, actor, critic = make_parts()
    loss = LEQLoss(actor, critic, env, horizon=2)
    updater = SoftUpdate(loss, eps=0.5)
    perturb_target(loss)
    before = copy.deepcopy(loss.target_qvalue_network_params.data)
    online = loss.qvalue_network_params.data
    updater.step()
    after = loss.target_qvalue_network_params.data
    torch.testing.assert_close(after, 0.5 * before + 0.5 * online)


def test_value_estimator_selection():
    from torchrl.objectives import ValueEstimators

    from torchrl_leq.objectives import NormalizedLambdaReturnEstimator

    env, actor, critic = make_parts()
    loss = LEQLoss(actor, critic, env, horizon=3, lmbda=0.9)
    assert isinstance(loss._value_estimator, NormalizedLambdaReturnEstimator)
    assert loss._value_estimator.lmbda == 0.9 and loss._value_estimator.include_current
    loss.make_value_estimator(ValueEstimators.TD0)
    assert loss._value_estimator.lmbda == 0.0 and not loss._value_estimator.include_current
    # TD0 targets: r + γ Q(s', a') — check against the reference with λ = 0, no 0-step term
    # (the reference reads γ, λ and the 0-step switch from the loss, i.e. from its estimator).
    assert loss.lmbda == 0.0 and not loss.include_current
    batch = make_batch()
    torch.testing.assert_close(
        loss(batch)["critic_model"], reference_losses(loss, env, batch)["critic_model"].detach()
    )
    with pytest.raises(NotImplementedError):
        loss.make_value_estimator(ValueEstimators.GAE)


def test_torch_compile_agrees_with_eager():
    env, actor, critic = make_parts()
    loss = LEQLoss(actor, critic, env, horizon=2, actor_gradient="backprop", validate_inputs=False)
    perturb_target(loss)
    batch = make_batch()
    eager = loss(batch)
    compiled = torch.compile(loss, backend="aot_eager")(batch)
    for key in ("loss_actor", "loss_qvalue", "lambda_return_mean"):
        torch.testing.assert_close(compiled[key], eager[key])


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"tau": 0.0}, "tau"),
        ({"tau": 1.0}, "tau"),
        ({"env_tau": 0.0}, "env_tau"),
        ({"lmbda": 1.2}, "lmbda"),
        ({"lmbda": -0.1}, "lmbda"),
        ({"horizon": 0}, "horizon"),
        ({"horizon": 2.5}, "horizon"),
        ({"beta": 2.0}, "beta"),
        ({"gamma": 1.5}, "gamma"),
        ({"ema_weight": -1.0}, "ema_weight"),
        ({"actor_gradient": "jacobian"}, "actor_gradient"),
        ({"reduction": "max"}, "reduction"),
    ],
)
def test_invalid_hyperparameters(kwargs, match):
    env, actor, critic = make_parts()
    with pytest.raises(ValueError, match=match):
        LEQLoss(actor, critic, env, **kwargs)


def test_bad_inputs_name_the_problem():
    env, actor, critic = make_parts()
    loss = LEQLoss(actor, critic, env, horizon=2)
    batch = make_batch()
    with pytest.raises(KeyError, match="model"):
        loss(batch.exclude("model"))
    with pytest.raises(KeyError, match="reward"):
        loss(batch.exclude(("env", "next", "reward")))
    bad = batch.clone()
    bad["model"] = TensorDict({"observation": torch.zeros(6, OBS + 1, dtype=torch.float64)}, [6])
    with pytest.raises(ValueError, match="features"):
        loss(bad)
    bad = batch.clone()
    bad["env"].set(("next", "reward"), torch.zeros(6, 2, dtype=torch.float64))
    with pytest.raises(ValueError, match="reward"):
        loss(bad)
    bad = batch.clone()
    bad["env", "observation"][0, 0] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        loss(bad)
    with pytest.raises(TypeError, match="EnvBase"):
        LEQLoss(actor, critic, object())


@pytest.mark.parametrize("actor_gradient", ["per_step", "backprop"])
def test_composite_networks_match_plain_modules(actor_gradient):
    """Plain TensorDictModules are called on tensors directly; composite ones through a TD.

    Both losses start from the same weights (deep copies), so every output must agree."""
    from tensordict.nn import TensorDictSequential

    env, actor, critic = make_parts(termination_bound=2.0)
    batch = make_batch()
    plain = LEQLoss(actor, critic, env, horizon=3, actor_gradient=actor_gradient)
    composite = LEQLoss(
        TensorDictSequential(copy.deepcopy(actor)),
        TensorDictSequential(copy.deepcopy(critic)),
        env,
        horizon=3,
        actor_gradient=actor_gradient,
    )
    a, b = plain(batch), composite(batch)
    for key in ("loss_actor", "loss_qvalue", "lambda_return_mean"):
        torch.testing.assert_close(a[key], b[key])
    for g, w in zip(_actor_grad(plain, a["loss_actor"]), _actor_grad(composite, b["loss_actor"])):
        torch.testing.assert_close(g, w)


def test_api_errors_name_the_argument():
    """Shape-only checks (no host sync): action width against the critic, empty batches."""
    env, actor, critic = make_parts()
    loss = LEQLoss(actor, critic, env, horizon=2, validate_inputs=False)
    batch = make_batch()
    bad = batch.clone()
    bad["env", "action"] = torch.zeros(6, ACT + 1, dtype=torch.float64)
    with pytest.raises(
        ValueError, match=f"action has {ACT + 1} features, the critic expects {ACT}"
    ):
        loss(bad)
    for name in ("env", "model"):
        empty = batch.clone()
        empty[name] = batch[name][:0]
        with pytest.raises(ValueError, match=f"{name}_batch is empty"):
            loss(empty)
