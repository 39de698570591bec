"""CLAPLoss and the constrained latent action policy: the support constraint for any policy
output, λ-return targets against a hand loop, gradient routing, the ablations, and the shared
loss contract (tests/loss_contract.py)."""

from __future__ import annotations

import pytest
import torch
from loss_contract import LossContract
from tensordict import TensorDict
from tensordict.nn import TensorDictModule
from torchrl.envs.utils import ExplorationType, set_exploration_type
from torchrl.objectives import ValueEstimators

from torchrl_leq.envs.clap_env import CLAPModelEnv, CLAPPolicy
from torchrl_leq.modules.clap_policy import CLAPActor, constrain_latent_action, make_clap_actor
from torchrl_leq.modules.latent_action_model import LatentActionModel, mlp
from torchrl_leq.objectives.clap import CLAPLoss

OBS, ACT, U, B = 3, 2, 2, 6


def make_model(latent_action=True):
    torch.manual_seed(7)
    return LatentActionModel(OBS, ACT, stoch_dim=2, deter_dim=4, units=16, embed_dim=3,
                             latent_action_dim=U, latent_action=latent_action)


def make_value(feature_dim, seed):
    torch.manual_seed(seed + 100)
    return TensorDictModule(mlp(feature_dim, 1, 16, 2), ["observation"], ["state_value"])


def make_parts(variant="clap", seed=0, epsilon=1.5, model=None, **env_kwargs):
    model = model or make_model(variant != "no_latent_action")
    torch.manual_seed(seed)
    actor = make_clap_actor(model.feature_dim, U, ACT, variant, epsilon=epsilon, units=16,
                            layers=2)
    env = CLAPModelEnv(model, **env_kwargs)
    return model, actor, make_value(model.feature_dim, seed), env


def starts(model, b=B, seed=1):
    g = torch.Generator().manual_seed(seed)
    return TensorDict({"observation": torch.randn(b, model.feature_dim, generator=g)}, [b])


# ---------------------------------------------------------------- the support constraint
@pytest.mark.parametrize("magnitude", [1.0, 1e3, 1e8, 1e30])
def test_constraint_holds_for_arbitrary_policy_outputs(magnitude):
    g = torch.Generator().manual_seed(0)
    sample = magnitude * torch.randn(1000, U, generator=g)
    loc = 10 * torch.randn(1000, U, generator=g)
    scale = torch.rand(1000, U, generator=g) * 3 + 1e-3
    for eps in (0.5, 1.0, 3.0):
        u = constrain_latent_action(sample, loc, scale, eps)
        assert torch.isfinite(u).all()
        assert ((u - loc).abs() <= eps * scale * (1 + 1e-6) + 1e-6).all()


@pytest.mark.parametrize("bias", [1e6, -1e6, 1e12])
def test_generated_latent_actions_stay_within_the_prior_support(bias):
    """A policy network driven to huge outputs (sampled and deterministic) still generates latent
    actions within μ ± ε̃σ of the prior at every imagined step; without the constraint it
    leaves that region (the check can fail)."""
    eps = 1.5
    for variant in ("clap", "no_constraint"):
        model, actor, value, env = make_parts(variant, epsilon=eps)
        with torch.no_grad():
            actor.net[-1].bias.fill_(bias)
            actor.net[-1].weight.mul_(1e3)
        loss = CLAPLoss(actor, value, env, horizon=4)
        rollout = loss.imagine(starts(model)["observation"])
        u, loc, scale = rollout["action"], rollout["prior_loc"], rollout["prior_scale"]
        inside = ((u - loc).abs() <= eps * scale * (1 + 1e-6)).all()
        assert bool(inside) == (variant == "clap"), variant
        if variant == "clap":
            assert float(rollout["latent_action_sigma"].max()) <= eps * (1 + 1e-6)
            td = TensorDict({"observation": rollout["observation"][:, 0], "prior_loc": loc[:, 0],
                             "prior_scale": scale[:, 0]}, [B])
            with set_exploration_type(ExplorationType.DETERMINISTIC):
                det = actor(td)["action"]
            assert ((det - loc[:, 0]).abs() <= eps * scale[:, 0] * (1 + 1e-6)).all()
        decoded = rollout["next", "decoded_action"]
        assert decoded.abs().max() <= 1.0


def test_untrained_constrained_policy_is_near_the_prior_mean():
    model, actor, value, env = make_parts("clap", epsilon=1.0)
    td = env.reset(starts(model))
    with set_exploration_type(ExplorationType.DETERMINISTIC), torch.no_grad():
        u = actor(td)["action"]
    # û = tanh(mean) of a fresh network: small, so u is within 1σ and close to μ
    z = ((u - td["prior_loc"]) / td["prior_scale"]).abs()
    assert float(z.detach().max()) < 1.0


# ---------------------------------------------------------------- targets and gradients
def test_value_targets_are_the_lambda_return_of_the_rollout():
    model, actor, value, env = make_parts()
    loss = CLAPLoss(actor, value, env, horizon=5, gamma=0.9, lmbda=0.7)
    rollout = loss.imagine(starts(model)["observation"])
    with torch.no_grad():
        # force one termination to check the cut
        rollout["next", "terminated"][0, 1] = True
        loss.actor_loss(rollout)
        v_next = loss._values(rollout["next", "observation"],
                              loss.value_network_params.detach()).mean(0)
    r, d = rollout["next", "reward"], rollout["next", "terminated"].float()
    want = torch.zeros_like(r)
    g = v_next[:, -1]
    for t in reversed(range(5)):
        boot = v_next[:, t] if t == 4 else (1 - 0.7) * v_next[:, t] + 0.7 * g
        g = r[:, t] + 0.9 * (1 - d[:, t]) * boot
        want[:, t] = g
    torch.testing.assert_close(rollout["value_target"], want)
    td0 = CLAPLoss(actor, value, env, horizon=5, gamma=0.9).make_value_estimator(ValueEstimators.TD0)
    assert td0.lmbda == 0.0 and td0.gamma == pytest.approx(0.9)


def test_actor_gradient_flows_through_the_imagined_trajectory():
    """With no entropy term, the actor's only gradient path is through rewards and values of the
    dream rollout (latent actions → Beta actions → dynamics): it must be non-zero and the model
    must get none."""
    model, actor, value, env = make_parts()
    loss = CLAPLoss(actor, value, env, horizon=3, entropy_coef=0.0)
    out = loss(starts(model))
    out["loss_actor"].backward()
    grads = [p.grad for p in loss.actor_network_params.values(True, True)]
    assert sum(float(g.abs().sum()) for g in grads if g is not None) > 0
    assert all(p.grad is None for p in model.parameters())
    assert all(p.grad is None for p in loss.value_network_params.values(True, True))


def test_ablations_run_and_mismatches_are_refused():
    for variant in ("clap", "no_constraint", "no_latent_action"):
        model, actor, value, env = make_parts(variant)
        loss = CLAPLoss(actor, value, env, horizon=2)
        assert loss.variant == variant
        out = loss(starts(model))
        assert torch.isfinite(out["loss_actor"]) and torch.isfinite(out["loss_value"])
    plain = make_model(latent_action=False)
    actor = make_clap_actor(plain.feature_dim, U, ACT, "clap", units=8, layers=1)
    with pytest.raises(ValueError, match="latent actions"):
        CLAPLoss(actor, make_value(plain.feature_dim, 0), CLAPModelEnv(plain))
    with pytest.raises(TypeError, match="CLAPActor"):
        CLAPLoss(torch.nn.Linear(2, 2), make_value(plain.feature_dim, 0), CLAPModelEnv(plain))


def test_filtering_policy_decodes_bounded_actions_and_resets():
    model, actor, _, _ = make_parts()
    policy = CLAPPolicy(model, actor)
    obs = torch.randn(4, OBS)
    first = TensorDict({"observation": obs, "is_first": torch.ones(4, dtype=torch.bool)}, [4])
    with set_exploration_type(ExplorationType.DETERMINISTIC):
        a1 = policy(first.clone())["action"]
        policy(TensorDict({"observation": obs + 1, "is_first": torch.zeros(4, dtype=torch.bool)},
                          [4]))
        a3 = policy(first.clone())["action"]  # is_first: same as the very first call
    assert a1.abs().max() <= 1.0
    torch.testing.assert_close(a1, a3)


# ---------------------------------------------------------------- the shared contract
class TestCLAPLossContract(LossContract):
    grads_of = {"loss_actor": {"actor"}, "loss_value": {"value"}}
    compile_kwargs = {}
    variant = "clap"
    _model = None

    def model(self):
        if TestCLAPLossContract._model is None or self._model.latent_action != (
                self.variant != "no_latent_action"):
            type(self)._model = make_model(self.variant != "no_latent_action")
        return self._model

    def make_loss(self, seed=0, **kwargs):
        _, actor, value, env = make_parts(self.variant, seed=seed, model=self.model())
        return CLAPLoss(actor, value, env, **{"horizon": 3, **kwargs})

    def make_batch(self):
        return starts(self.model())

    def param_groups(self, loss):
        return {
            "actor": list(loss.actor_network_params.values(True, True)),
            "value": list(loss.value_network_params.values(True, True)),
            "model": list(self.model().parameters()),
        }

    def frozen_params(self, loss):
        return []

    def remapped(self):
        loss = self.make_loss()
        loss.set_keys(observation="features")
        batch = self.make_batch()
        return loss, {"observation": "features"}, TensorDict({"features": batch["observation"]},
                                                             batch.batch_size)

    def test_make_value_estimator_gamma_equals_a_fresh_loss(self):
        batch = self.make_batch()
        fresh = self.make_loss(gamma=0.8)
        changed = self.make_loss().make_value_estimator(gamma=0.8)
        assert changed.gamma == fresh.gamma and changed.lmbda == fresh.lmbda
        a, b = self.run(fresh, batch), self.run(changed, batch)
        self.assert_same_outputs(a, b)
        assert not torch.allclose(a["loss_value"], self.run(self.make_loss(), batch)["loss_value"])


class TestCLAPNoConstraintContract(TestCLAPLossContract):
    variant = "no_constraint"
    compile_kwargs = None  # compiled once above (~10 s a variant)


class TestCLAPNoLatentActionContract(TestCLAPLossContract):
    variant = "no_latent_action"
    compile_kwargs = None


def test_actor_is_a_clap_actor_with_tensordict_keys():
    actor = CLAPActor(5, 2, epsilon=1.0, units=4, layers=1)
    assert actor.in_keys == ["observation", "prior_loc", "prior_scale"]
    free = CLAPActor(5, 2, epsilon=None, squash=False, units=4, layers=1)
    assert free.in_keys == ["observation"] and not free.squash
    with pytest.raises(ValueError, match="epsilon"):
        CLAPActor(5, 2, epsilon=-1.0)
