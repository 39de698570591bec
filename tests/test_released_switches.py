"""Switches that reproduce the released LEQ code (docs/deviations.md): each changes what it says."""

from __future__ import annotations

import pytest
import torch
from tensordict import TensorDict
from torch import nn

from torchrl_leq.data.scores import normalized_score
from torchrl_leq.data.transforms import apply_reward_transform, released_reward_kind
from torchrl_leq.envs import LEQModelEnv
from torchrl_leq.modules import ProbabilisticEnsemble
from torchrl_leq.modules.actor_critic import make_deterministic_actor, make_qvalue_network


def _count(module: nn.Module, cls: type) -> int:
    return sum(isinstance(m, cls) for m in module.modules())


def test_actor_has_no_layer_norm_by_default_critic_has():
    assert _count(make_deterministic_actor(5, 2, num_cells=(8, 8)), nn.LayerNorm) == 0
    assert _count(make_deterministic_actor(5, 2, num_cells=(8, 8), layer_norm=True), nn.LayerNorm) == 2
    assert _count(make_qvalue_network(5, 2, num_cells=(8, 8)), nn.LayerNorm) == 2
    assert _count(make_qvalue_network(5, 2, num_cells=(8, 8), layer_norm=False), nn.LayerNorm) == 0


def test_orthogonal_sqrt2_init():
    torch.manual_seed(0)
    actor = make_deterministic_actor(6, 3, num_cells=(6, 12), init="orthogonal")
    linears = [m for m in actor.modules() if isinstance(m, nn.Linear)]
    assert len(linears) == 3
    for lin in linears:
        w = lin.weight.detach()
        small = min(w.shape)
        gram = w @ w.T if w.shape[0] == small else w.T @ w
        torch.testing.assert_close(gram, 2.0 * torch.eye(small), atol=1e-5, rtol=0)
        assert torch.equal(lin.bias.detach(), torch.zeros_like(lin.bias))
    default = make_qvalue_network(6, 3, num_cells=(6,))
    w = next(m for m in default.modules() if isinstance(m, nn.Linear)).weight.detach()
    assert not torch.allclose(w @ w.T, 2.0 * torch.eye(6), atol=1e-2)
    with pytest.raises(ValueError, match="init must be one of"):
        make_deterministic_actor(6, 3, init="xavier")


def test_random_locomotion_datasets_keep_raw_rewards():
    td = TensorDict(
        {"episode": torch.tensor([0, 1]), "next": {"reward": torch.tensor([[1.0], [3.0]])}}, [2]
    )
    kind = released_reward_kind("hopper-random-v2")
    assert kind == "none"
    assert apply_reward_transform(kind, td)["next", "reward"].tolist() == [[1.0], [3.0]]
    scaled = apply_reward_transform(released_reward_kind("hopper-random-v2", scale_random=True), td)
    assert scaled["next", "reward"].tolist() == [[500.0], [1500.0]]
    assert released_reward_kind("walker2d-medium-replay-v2") == "locomotion"
    with pytest.raises(ValueError, match="No released reward transform"):
        released_reward_kind("cartpole")


def test_halfcheetah_model_rollouts_end_at_state_bound():
    torch.manual_seed(0)
    model = ProbabilisticEnsemble(3, 1, num_members=2, num_elites=2, hidden_dims=(8,))
    with torch.no_grad():  # zero dynamics: s' = s, reward 0
        for w in (*model.weights, *model.biases):
            w.zero_()
    obs = torch.tensor([[0.0, 50.0, -99.0], [0.0, 120.0, 0.0], [-100.0, 0.0, 0.0]])
    td = TensorDict({"observation": obs, "action": torch.zeros(3, 1)}, [3])
    released = LEQModelEnv(model, "halfcheetah", deterministic=True).step(td.clone())
    assert released["next", "terminated"].squeeze(-1).tolist() == [False, True, True]
    from torchrl_leq.envs.termination import get_termination_fn

    mbpo = LEQModelEnv(
        model, get_termination_fn("halfcheetah", state_bounds=False), deterministic=True
    ).step(td.clone())
    assert not mbpo["next", "terminated"].any()


def test_ultra_maze_scores_are_numbers():
    assert normalized_score("antmaze-ultra-diverse-v0", 1.0) == 100.0
    assert normalized_score("antmaze-ultra-play", [0.0, 0.5]).tolist() == [0.0, 50.0]


def _flat(node, prefix=""):
    out = {}
    for key, value in node.items():
        out |= _flat(value, f"{prefix}{key}.") if isinstance(value, dict) else {prefix + key: value}
    return out


def test_point_maze_released_config_is_the_paper_config_but_for_data_and_budget():
    """``leq_pointmaze_released`` = ``base/leq_paper`` (the released recipe) on the generated
    maze: every algorithm value equal, only data, budget/cadence, pretraining and τ set."""
    from omegaconf import OmegaConf
    from script_loader import example_config

    released = _flat(OmegaConf.to_container(example_config("leq_pointmaze_released")))
    paper = _flat(OmegaConf.to_container(
        example_config("antmaze/umaze", "data.path=x.hdf5")))  # base/leq_paper + AntMaze
    scaled = {"data.", "train.", "logger.", "task", "smoke_preset", "eval.", "diagnostics.",
              "termination"}
    differ = {k for k in set(released) | set(paper)
              if released.get(k, "<absent>") != paper.get(k, "<absent>")
              and not any(k.startswith(s) for s in scaled)}
    assert differ == set(), differ  # networks, world model, loss, optim, expansion, pretrain
    assert released["network.num_cells"] == [256, 256, 256]
    assert (released["world_model.num_members"], released["world_model.hidden_dims"]) == (
        7, [200, 200, 200, 200])
    assert released["pretrain.enabled"] is False and released["loss.tau"] == 0.1
    assert released["data.source"] == "pointmaze" and released["data.steps"] == 100000
