"""COMBOLoss against a hand re-computation of COMBO's Eq. 2 (Bellman + conservative terms), the
SAC actor / temperature losses, and TorchRL loss conventions (grads, keys, reductions)."""

import copy
import doctest
import math

import pytest
import torch
from loss_contract import random_transitions
from tensordict import TensorDict
from torchrl.data import Bounded
from torchrl.modules import ProbabilisticActor, TanhNormal
from torchrl.objectives import SoftUpdate, ValueEstimators
from torchrl.objectives.value import TD0Estimator

import torchrl_leq.modules.stochastic_actor as combo_modules
import torchrl_leq.objectives.combo as combo_objectives
from torchrl_leq.modules import make_qvalue_network, make_tanh_normal_actor
from torchrl_leq.objectives.combo import COMBOLoss

OBS, ACT = 3, 2


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    # tiny ops: intra-op threads only add contention on the shared 2-core CPU (100x slower)
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def make_loss(seed=0, obs_key="observation", action_key="action", **kwargs):
    torch.manual_seed(seed)
    actor = make_tanh_normal_actor(
        OBS, ACT, num_cells=(16, 16), observation_key=obs_key, action_key=action_key
    ).double()
    critic = make_qvalue_network(
        OBS, ACT, layer_norm=False, use_symlog=False, num_cells=(16, 16), observation_key=obs_key, action_key=action_key
    ).double()
    return COMBOLoss(actor, critic, **kwargs)


def make_batch(b_env=6, b_model=4, seed=1):
    gen = torch.Generator().manual_seed(seed)
    return TensorDict({"env": random_transitions(b_env, gen), "model": random_transitions(b_model, gen)}, [])


def perturb_target(loss):
    gen = torch.Generator().manual_seed(5)
    online = loss.qvalue_network_params
    for key, p in loss.target_qvalue_network_params.items(True, True):
        if online.get(key).requires_grad:  # weights only, not the input-scaler buffers
            p.data.add_(0.05 * torch.randn(p.shape, generator=gen, dtype=p.dtype))


def record(loss, name):
    """Spy on a method: every call's (args, kwargs, output) is appended to the returned list."""
    calls = []
    original = getattr(loss, name)

    def spy(*args, **kwargs):
        out = original(*args, **kwargs)
        calls.append((args, kwargs, out))
        return out

    object.__setattr__(loss, name, spy)
    return calls


def q_k(loss, params, k, obs, act):
    td = TensorDict({"observation": obs, "action": act}, obs.shape[:-1])
    with params[k].to_module(loss.qvalue_network):
        return loss.qvalue_network(td)["state_action_value"].squeeze(-1)


def f_mix(f, x_env, x_model):
    """The d_f average: f·mean over env rows + (1−f)·mean over model rows."""
    return f * x_env.mean(-1) + (1 - f) * x_model.mean(-1)


def reference(loss, batch, policy_calls, reg_calls):
    """Eq. 2 / SAC losses computed by hand from the recorded random draws."""
    f, beta, gamma = loss.real_ratio, loss.beta, loss.gamma
    alpha = loss.log_alpha.detach().exp()
    e, m = batch["env"], batch["model"]
    b_env = e.batch_size[0]
    obs = torch.cat([e["observation"], m["observation"]])
    act = torch.cat([e["action"], m["action"]])
    nobs = torch.cat([e["next", "observation"], m["next", "observation"]])
    rew = torch.cat([e["next", "reward"], m["next", "reward"]]).squeeze(-1)
    term = torch.cat([e["next", "terminated"], m["next", "terminated"]]).squeeze(-1)
    online = loss.qvalue_network_params.detach()
    target = loss.target_qvalue_network_params
    K = loss.num_qvalue_nets

    # draws: the Bellman target's a' ~ π(·|s') and the actor's ã ~ π(·|s) (single samples)
    (next_args, _, (a_next, lp_next)), (act_args, _, (a_pi, lp_pi)) = [
        c for c in policy_calls if len(c[0]) == 2 and c[1].get("num_samples") is None
    ]
    assert torch.equal(next_args[0], nobs) and torch.equal(act_args[0], obs)
    soft_v = torch.stack([q_k(loss, target, k, nobs, a_next) for k in range(K)]).min(0).values
    soft_v = soft_v - alpha * lp_next
    y = rew + gamma * (~term).double() * soft_v

    ((_, _, (reg_a, reg_logd)),) = reg_calls
    bellman, gap, lse_terms, data_terms = 0.0, [], [], []
    for k in range(K):
        q = q_k(loss, online, k, obs, act)
        td_err = 0.5 * (q - y) ** 2
        bellman = bellman + f_mix(f, td_err[:b_env], td_err[b_env:])
        # log Σ_j exp(Q(s, a_j) − log p_j), one s at a time
        lse = torch.stack(
            [
                torch.log(
                    torch.exp(
                        q_k(loss, online, k, obs[i].expand(len(reg_a[i]), OBS), reg_a[i])
                        - reg_logd[i]
                    ).sum()
                )
                for i in range(len(obs))
            ]
        )
        lse_term = f_mix(f, lse[:b_env], lse[b_env:])
        data_term = q[:b_env].mean()
        lse_terms.append(lse_term)
        data_terms.append(data_term)
        gap.append(lse_term - data_term)
    gap = torch.stack(gap)
    q_pi = torch.stack([q_k(loss, online, k, obs, a_pi) for k in range(K)]).min(0).values
    actor_ps = alpha * lp_pi - q_pi
    alpha_ps = -loss.log_alpha.detach() * (lp_pi + loss.target_entropy)
    return {
        "critic_bellman": bellman / K,
        "conservative_gap": gap.mean(),
        "logsumexp_term": torch.stack(lse_terms).mean(),
        "dataset_term": torch.stack(data_terms).mean(),
        "loss_qvalue": bellman + beta * gap.sum(),
        "loss_actor": f_mix(f, actor_ps[:b_env], actor_ps[b_env:]),
        "loss_alpha": f_mix(f, alpha_ps[:b_env], alpha_ps[b_env:]),
        "entropy": -f_mix(f, lp_pi[:b_env], lp_pi[b_env:]),
    }


@pytest.mark.parametrize("real_ratio", [0.5, 0.8])
@pytest.mark.parametrize("sizes", [(6, 4), (3, 7)])
def test_losses_match_hand_computation(real_ratio, sizes):
    loss = make_loss(beta=2.5, real_ratio=real_ratio, num_random=4, gamma=0.9, alpha_init=0.3)
    perturb_target(loss)
    batch = make_batch(*sizes)
    policy_calls = record(loss, "_sample_policy")
    reg_calls = record(loss, "sample_regularizer_actions")
    out = loss(batch)
    want = reference(loss, batch, policy_calls, reg_calls)
    for key, value in want.items():
        torch.testing.assert_close(out[key], value.detach(), msg=key)


def test_regulariser_proposals_and_their_log_densities():
    loss = make_loss(num_random=5)
    batch = make_batch()
    reg_calls = record(loss, "sample_regularizer_actions")
    loss(batch)
    (((obs, nobs), _, (actions, log_density)),) = reg_calls
    n, m = obs.shape[0], 5
    assert actions.shape == (n, 3 * m, ACT) and log_density.shape == (n, 3 * m)
    assert not actions.requires_grad and not log_density.requires_grad
    uniform = actions[:, :m]
    assert bool((uniform.abs() <= 1).all())
    torch.testing.assert_close(
        log_density[:, :m], torch.full((n, m), -ACT * math.log(2.0), dtype=torch.float64)
    )
    # policy proposals: densities of π(·|s) and π(·|s'), recomputed with the actor's distribution
    for block, states in ((1, obs), (2, nobs)):
        a = actions[:, block * m : (block + 1) * m]
        with loss.actor_network_params.to_module(loss.actor_network):
            dist = loss.actor_network.get_dist(TensorDict({"observation": states}, [n]))
        want = dist.log_prob(a.transpose(0, 1)).transpose(0, 1)
        torch.testing.assert_close(
            log_density[:, block * m : (block + 1) * m], want, rtol=1e-5, atol=1e-5
        )
    # wrong density for the policy block would change the log-sum-exp: it is really used
    q = torch.randn(n, 3 * m, dtype=torch.float64)
    assert not torch.allclose(
        COMBOLoss.importance_logsumexp(q, log_density), torch.logsumexp(q, -1)
    )


def test_beta_zero_removes_the_regulariser_and_beta_scales_it():
    batch = make_batch()
    outs = {}
    for beta in (0.0, 1.0, 3.0):
        loss = make_loss(beta=beta)
        torch.manual_seed(123)
        outs[beta] = loss(batch)
    torch.testing.assert_close(outs[0.0]["loss_qvalue"], 2 * outs[0.0]["critic_bellman"])
    for beta in (1.0, 3.0):
        gap = outs[beta]["conservative_gap"]
        torch.testing.assert_close(
            outs[beta]["loss_qvalue"] - outs[0.0]["loss_qvalue"], beta * 2 * gap
        )  # summed over the twin critics
    assert outs[1.0]["conservative_gap"].abs() > 1e-3


def _random_minus_data_q(loss, obs, act, gen):
    """Mean over critics and states of E_{a~U}[Q(s,a)] − Q(s, a_data)."""
    params = loss.qvalue_network_params.detach()
    rand = torch.rand(obs.shape[0], 32, ACT, generator=gen, dtype=torch.float64) * 2 - 1
    gaps = []
    for k in range(loss.num_qvalue_nets):
        q_rand = q_k(loss, params, k, obs[:, None].expand(-1, 32, -1), rand).mean(1)
        gaps.append((q_rand - q_k(loss, params, k, obs, act)).mean())
    return torch.stack(gaps).mean()


def test_larger_beta_pushes_random_action_values_below_dataset_values():
    gen = torch.Generator().manual_seed(3)
    b = 64
    batch = make_batch(b, b, seed=4)
    # dataset actions concentrated near a = 0.5; zero rewards: only β separates the actions
    for sub in ("env", "model"):
        batch[sub, "action"] = 0.5 + 0.05 * torch.randn(b, ACT, generator=gen, dtype=torch.float64)
        batch[sub, "next", "reward"] = torch.zeros(b, 1, dtype=torch.float64)
    env = batch["env"]
    gaps = {}
    for beta in (0.0, 2.0):
        loss = make_loss(seed=0, beta=beta, num_random=4)
        opt = torch.optim.Adam(loss.qvalue_network_params.values(True, True), lr=3e-3)
        updater = SoftUpdate(loss, tau=0.05)
        torch.manual_seed(0)
        for _ in range(40):
            opt.zero_grad()
            loss(batch)["loss_qvalue"].backward()
            opt.step()
            updater.step()
        gaps[beta] = _random_minus_data_q(
            loss, env["observation"], env["action"], torch.Generator().manual_seed(9)
        )
    assert gaps[2.0] < gaps[0.0] - 0.5, gaps
    assert gaps[2.0] < 0


def _grads(params):
    return [p.grad for p in params.values(True, True) if p.requires_grad]


def _none_or_zero(grads):
    return all(g is None or g.abs().sum() == 0 for g in grads)


def _some_nonzero(grads):
    return sum(g.abs().sum() for g in grads if g is not None) > 0


def test_gradients_reach_only_their_parameters():
    loss = make_loss()
    perturb_target(loss)
    batch = make_batch()
    for name, owner in (
        ("loss_qvalue", "critic"),
        ("loss_actor", "actor"),
        ("loss_alpha", "alpha"),
    ):
        loss.zero_grad(set_to_none=True)
        loss(batch)[name].backward()
        actor, critic = _grads(loss.actor_network_params), _grads(loss.qvalue_network_params)
        assert all(g is None for g in _grads(loss.target_qvalue_network_params)), name
        assert _some_nonzero(actor) if owner == "actor" else _none_or_zero(actor), name
        assert _some_nonzero(critic) if owner == "critic" else _none_or_zero(critic), name
        g_alpha = loss.log_alpha.grad
        if owner == "alpha":
            assert g_alpha is not None and g_alpha.abs() > 0
        else:
            assert g_alpha is None or g_alpha == 0, name
    # both twin critics are trained
    loss.zero_grad(set_to_none=True)
    loss(batch)["loss_qvalue"].backward()
    w = loss.qvalue_network_params["module", "mlp", "0", "weight"].grad
    assert w[0].abs().sum() > 0 and w[1].abs().sum() > 0


@pytest.mark.parametrize("target_entropy, grows", [(50.0, True), (-50.0, False)])
def test_alpha_moves_towards_the_target_entropy(target_entropy, grows):
    # entropy of a 2-d tanh-Gaussian is far below +50 (α must grow) and far above −50 (shrink)
    loss = make_loss(target_entropy=target_entropy, alpha_init=0.5)
    opt = torch.optim.SGD([loss.log_alpha], lr=0.01)
    before = loss.alpha.item()
    out = loss(make_batch())
    assert (out["entropy"] < target_entropy) == grows
    out["loss_alpha"].backward()
    opt.step()
    assert (loss.alpha.item() > before) == grows


def test_auto_target_entropy_and_fixed_alpha():
    loss = make_loss()
    assert loss.target_entropy.item() == -ACT
    fixed = make_loss(fixed_alpha=True, alpha_init=0.2)
    assert "log_alpha" not in dict(fixed.named_parameters())
    out = fixed(make_batch())
    assert out["loss_alpha"].item() == 0.0
    torch.testing.assert_close(out["alpha"], torch.tensor(0.2, dtype=out["alpha"].dtype))


@pytest.mark.parametrize("real_ratio", [0.0, 1.0])
def test_real_ratio_extremes_select_one_batch(real_ratio):
    loss = make_loss(real_ratio=real_ratio, beta=0.0)
    batch = make_batch()
    torch.manual_seed(0)
    ref = loss(batch)
    ignored = "model" if real_ratio == 1.0 else "env"
    changed = batch.clone()
    changed[ignored, "next", "reward"] += 10.0
    torch.manual_seed(0)
    out = loss(changed)
    torch.testing.assert_close(out["loss_qvalue"], ref["loss_qvalue"])
    used = "env" if ignored == "model" else "model"
    changed = batch.clone()
    changed[used, "next", "reward"] += 10.0
    torch.manual_seed(0)
    assert not torch.allclose(loss(changed)["loss_qvalue"], ref["loss_qvalue"])


def test_reductions_are_consistent():
    batch = make_batch(6, 4)
    outs = {}
    for red in ("mean", "sum", "none"):
        loss = make_loss(reduction=red)
        torch.manual_seed(7)
        outs[red] = loss(batch)
    for key in ("loss_qvalue", "loss_actor", "loss_alpha"):
        assert outs["none"][key].shape == (10,)
        torch.testing.assert_close(outs["none"][key].mean(), outs["mean"][key])
        torch.testing.assert_close(outs["none"][key].sum(), outs["sum"][key])
        assert outs["mean"][key].shape == ()
    torch.testing.assert_close(outs["none"]["conservative_gap"], outs["mean"]["conservative_gap"])


def test_set_keys_remaps_batches_and_transition_keys():
    gen = torch.Generator().manual_seed(1)
    keys = dict(obs_key="obs", action_key="act", reward_key="rew", term_key="done_real")
    batch = TensorDict(
        {"data": {"real": random_transitions(5, gen, **keys)}, "fake": random_transitions(4, gen, **keys)}, []
    )
    loss = make_loss(obs_key="obs", action_key="act")
    loss.set_keys(
        env_batch=("data", "real"),
        model_batch="fake",
        observation="obs",
        action="act",
        reward="rew",
        terminated="done_real",
    )
    assert ("data", "real", "next", "rew") in loss.in_keys
    torch.manual_seed(0)
    out = loss(batch)
    # same numbers as the default layout
    default = make_loss()
    renamed = TensorDict(
        {
            sub: TensorDict(
                {
                    "observation": td["obs"],
                    "action": td["act"],
                    "next": {
                        "observation": td["next", "obs"],
                        "reward": td["next", "rew"],
                        "terminated": td["next", "done_real"],
                    },
                },
                td.batch_size,
            )
            for sub, td in (("env", batch["data", "real"]), ("model", batch["fake"]))
        },
        [],
    )
    torch.manual_seed(0)
    ref = default(renamed)
    for key in ("loss_qvalue", "loss_actor", "loss_alpha"):
        torch.testing.assert_close(out[key], ref[key])
    with pytest.raises(KeyError, match="env_batch"):
        loss(renamed)


def test_state_dict_round_trip_and_soft_update():
    loss = make_loss()
    updater = SoftUpdate(loss, tau=0.5)
    opt = torch.optim.Adam(loss.parameters(), lr=1e-2)
    batch = make_batch()
    out = loss(batch)
    (out["loss_qvalue"] + out["loss_actor"] + out["loss_alpha"]).backward()
    opt.step()
    before = loss.target_qvalue_network_params.clone()
    updater.step()
    after = loss.target_qvalue_network_params
    w = ("module", "mlp", "0", "weight")
    online = loss.qvalue_network_params[w].detach()
    torch.testing.assert_close(after[w], 0.5 * before[w] + 0.5 * online)
    assert not torch.allclose(after[w], before[w])

    other = make_loss(seed=99)
    other.load_state_dict(loss.state_dict())
    for key in ("log_alpha", "target_entropy"):
        torch.testing.assert_close(getattr(other, key), getattr(loss, key))
    torch.manual_seed(0)
    a = loss(batch)
    torch.manual_seed(0)
    b = other(batch)
    for key in a.keys():
        torch.testing.assert_close(a[key], b[key], msg=key)
    assert copy.deepcopy(loss)(batch)["loss_qvalue"].isfinite()


def test_value_estimator_is_torchrl_td0():
    loss = make_loss(gamma=0.9)
    assert isinstance(loss.value_estimator, TD0Estimator)
    assert loss.value_type == ValueEstimators.TD0
    batch = make_batch()
    policy_calls = record(loss, "_sample_policy")
    reg_calls = record(loss, "sample_regularizer_actions")
    loss.make_value_estimator(ValueEstimators.TD0, gamma=0.5)
    assert loss.gamma == 0.5
    out = loss(batch)
    want = reference(loss, batch, policy_calls, reg_calls)
    torch.testing.assert_close(out["critic_bellman"], want["critic_bellman"].detach())
    with pytest.raises(NotImplementedError):
        loss.make_value_estimator(ValueEstimators.TDLambda)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"beta": -0.1}, "beta"),
        ({"real_ratio": 1.5}, "real_ratio"),
        ({"real_ratio": -0.1}, "real_ratio"),
        ({"num_random": 0}, "num_random"),
        ({"gamma": 1.5}, "gamma"),
        ({"reduction": "avg"}, "reduction"),
        ({"alpha_init": 0.0}, "alpha_init"),
        ({"target_entropy": "max"}, "target_entropy"),
    ],
)
def test_invalid_hyperparameters(kwargs, match):
    with pytest.raises(ValueError, match=match):
        make_loss(**kwargs)


def test_actor_needs_bounds_and_a_distribution():
    critic = make_qvalue_network(OBS, ACT, layer_norm=False, use_symlog=False, num_cells=(8,))
    actor = ProbabilisticActor(  # no spec: the loss cannot know the action box
        make_tanh_normal_actor(OBS, ACT, num_cells=(8,))[0],
        in_keys=["loc", "scale"],
        distribution_class=TanhNormal,
    )
    with pytest.raises(ValueError, match="bounded action spec"):
        COMBOLoss(actor, critic)
    loss = COMBOLoss(actor, critic, action_spec=Bounded(-2.0, 2.0, (ACT,)))
    assert loss.action_high.tolist() == [2.0, 2.0]
    from tensordict.nn import TensorDictModule

    with pytest.raises(TypeError, match="probabilistic actor"):
        COMBOLoss(TensorDictModule(torch.nn.Linear(OBS, ACT), ["observation"], ["action"]), critic)


def _broken(fn):
    batch = make_batch()
    fn(batch)
    return batch


@pytest.mark.parametrize(
    "mutate, error, match",
    [
        (lambda b: b.del_("model"), KeyError, "model_batch"),
        (lambda b: b["env", "next"].del_("reward"), KeyError, "reward"),
        (lambda b: b["model"].del_("action"), KeyError, "action"),
        (lambda b: b.set("env", b["env"].unsqueeze(0)), ValueError, "1-d batch"),
        (lambda b: b.set("model", b["model"][:0]), ValueError, "empty"),
        (
            lambda b: b["model"].set("observation", torch.zeros(4, OBS + 1, dtype=torch.float64)),
            ValueError,
            "observation",
        ),
        (
            lambda b: b["env"].set("action", torch.zeros(6, ACT + 1, dtype=torch.float64)),
            ValueError,
            "action",
        ),
        (
            lambda b: b["env", "next"].set("reward", torch.zeros(6, 2, dtype=torch.float64)),
            ValueError,
            "reward",
        ),
        (lambda b: b["env", "next", "observation"].__setitem__(0, float("nan")), ValueError, "NaN"),
    ],
)
def test_bad_inputs_name_the_problem(mutate, error, match):
    loss = make_loss()
    with pytest.raises(error, match=match):
        loss(_broken(mutate))


def test_docstring_examples_run():
    for module in (combo_objectives, combo_modules):
        result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
        assert result.failed == 0 and result.attempted > 0, module.__name__
