"""The loss contract (tests/loss_contract.py) applied to LEQLoss, COMBOLoss, BCLoss and FQELoss."""

from __future__ import annotations

import torch
from loss_contract import LossContract, random_transitions
from tensordict import TensorDict

from torchrl_leq.envs.analytic import LinearQuadraticEnv
from torchrl_leq.modules import (
    make_deterministic_actor,
    make_qvalue_network,
    make_tanh_normal_actor,
)
from torchrl_leq.objectives import COMBOLoss, LEQLoss
from torchrl_leq.objectives.pretrain import BCLoss, FQELoss

OBS, ACT, B = 3, 2, 6


def _rename_transition_keys(td, reward="rew", terminated="term"):
    td = td.clone()
    td.rename_key_(("next", "reward"), ("next", reward))
    td.rename_key_(("next", "terminated"), ("next", terminated))
    return td


def _actor_critic(seed, obs="observation", act="action"):
    torch.manual_seed(seed)
    actor = make_deterministic_actor(OBS, ACT, num_cells=(16, 16), observation_key=obs, action_key=act)
    critic = make_qvalue_network(OBS, ACT, num_cells=(16, 16), observation_key=obs, action_key=act)
    return actor.double(), critic.double()


def _groups(loss):
    return {
        "actor": [p for p in loss.actor_network_params.values(True, True) if p.requires_grad],
        "critic": [p for p in loss.qvalue_network_params.values(True, True) if p.requires_grad],
    }


class TestLEQLossContract(LossContract):
    grads_of = {"loss_actor": {"actor"}, "loss_qvalue": {"critic"}}
    compile_kwargs = {"validate_inputs": False}  # per_step (backprop: test_leq_loss.py)

    def make_loss(self, seed=0, **kwargs):
        actor, critic = _actor_critic(seed)
        env = LinearQuadraticEnv(OBS, ACT, termination_bound=2.0, dtype=torch.float64)
        kwargs = {"horizon": 3, "tau": 0.3, **kwargs}
        loss = LEQLoss(actor, critic, env, **kwargs)
        gen = torch.Generator().manual_seed(5)
        for p in loss.target_qvalue_network_params.values(True, True):  # EMA term non-zero
            p.data.add_(0.05 * torch.randn(p.shape, generator=gen, dtype=p.dtype))
        return loss

    def make_batch(self):
        gen = torch.Generator().manual_seed(1)
        env = random_transitions(B, gen)
        model = TensorDict({"observation": env["observation"].flip(0) + 0.1}, [B])
        return TensorDict({"env": env, "model": model}, [])

    def param_groups(self, loss):
        return _groups(loss)

    def remapped(self):
        loss = self.make_loss()
        mapping = {"env_batch": "data", "model_batch": "imagined", "reward": "rew"}
        loss.set_keys(**mapping, terminated="term")
        mapping["terminated"] = "term"
        batch = self.make_batch()
        renamed = TensorDict(
            {"data": _rename_transition_keys(batch["env"]), "imagined": batch["model"]}, []
        )
        return loss, mapping, renamed


class TestLEQLossBackpropContract(TestLEQLossContract):
    compile_kwargs = None  # tests/test_leq_loss.py::test_torch_compile_agrees_with_eager

    def make_loss(self, seed=0, **kwargs):
        return super().make_loss(seed, **{"actor_gradient": "backprop", **kwargs})


class TestCOMBOLossContract(LossContract):
    grads_of = {"loss_actor": {"actor"}, "loss_qvalue": {"critic"}, "loss_alpha": {"alpha"}}
    compile_kwargs = {"validate_inputs": False}

    def make_loss(self, seed=0, obs="observation", act="action", **kwargs):
        torch.manual_seed(seed)
        actor = make_tanh_normal_actor(OBS, ACT, num_cells=(16, 16), observation_key=obs, action_key=act)
        critic = make_qvalue_network(
            OBS, ACT, layer_norm=False, use_symlog=False, num_cells=(16, 16), observation_key=obs, action_key=act
        )
        return COMBOLoss(actor.double(), critic.double(), num_random=3, **kwargs)

    def make_batch(self):
        gen = torch.Generator().manual_seed(1)
        return TensorDict(
            {"env": random_transitions(B, gen), "model": random_transitions(B, gen)}, []
        )

    def param_groups(self, loss):
        return {**_groups(loss), "alpha": [loss.log_alpha]}

    def remapped(self):
        loss = self.make_loss(obs="obs", act="act")
        mapping = {
            "env_batch": "real",
            "model_batch": "fake",
            "observation": "obs",
            "action": "act",
            "reward": "rew",
            "terminated": "term",
        }
        loss.set_keys(**mapping)
        gen, keys = torch.Generator().manual_seed(1), ("obs", "act", "rew", "term")
        batch = {name: random_transitions(B, gen, *keys) for name in ("env", "model")}
        return loss, mapping, TensorDict({"real": batch["env"], "fake": batch["model"]}, [])


class TestBCLossContract(LossContract):
    grads_of = {"loss_actor": {"actor"}}
    has_gamma = False

    def make_loss(self, seed=0, obs="observation", act="action", **kwargs):
        actor, _ = _actor_critic(seed, obs, act)
        return BCLoss(actor, **kwargs)

    def make_batch(self, obs="observation", act="action"):
        td = random_transitions(B, torch.Generator().manual_seed(1))
        return TensorDict({obs: td["observation"], act: td["action"]}, [B])

    def param_groups(self, loss):
        return {"actor": [p for p in loss.actor_network_params.values(True, True)]}

    def frozen_params(self, loss):
        return []

    def remapped(self):
        loss = self.make_loss(obs="obs", act="act")
        mapping = {"observation": "obs", "action": "act"}
        loss.set_keys(**mapping)
        return loss, mapping, self.make_batch(obs="obs", act="act")


class TestFQELossContract(LossContract):
    grads_of = {"loss_qvalue": {"critic"}}

    def make_loss(self, seed=0, **kwargs):
        actor, critic = _actor_critic(seed)
        loss = FQELoss(actor, critic, **kwargs)
        for p in loss.target_qvalue_network_params.values(True, True):
            p.data.add_(0.01)
        return loss

    def make_batch(self):
        return random_transitions(B, torch.Generator().manual_seed(1))

    def param_groups(self, loss):
        return _groups(loss)

    def remapped(self):
        loss = self.make_loss()
        mapping = {"reward": "rew", "terminated": "term"}
        loss.set_keys(**mapping)
        return loss, mapping, _rename_transition_keys(self.make_batch())
