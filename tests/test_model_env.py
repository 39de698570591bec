"""LEQModelEnv: the rollout contract, alive mask, gradients (vs finite differences), seeding."""

from __future__ import annotations

import pytest
import torch
from tensordict import TensorDict
from tensordict.nn import TensorDictModule

from torchrl_leq.envs import LEQModelEnv
from torchrl_leq.modules import ProbabilisticEnsemble
from torchrl_leq.tasks import POINTMAZE_TASKS
from torchrl_leq.training.world_model import save_world_model

OBS, ACT = 4, 2


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def make_model(dtype=torch.float32, hidden=(16, 16)) -> ProbabilisticEnsemble:
    torch.manual_seed(0)
    model = ProbabilisticEnsemble(
        OBS, ACT, num_members=4, num_elites=3, hidden_dims=hidden, dtype=dtype
    )
    with torch.no_grad():  # noise large enough to matter
        model.biases[-1][..., OBS + 1 :] = -2.0
    return model


def make_actor(dtype=torch.float32) -> TensorDictModule:
    torch.manual_seed(1)
    net = torch.nn.Sequential(torch.nn.Linear(OBS, ACT), torch.nn.Tanh()).to(dtype)
    return TensorDictModule(net, ["observation"], ["action"])


def start_td(batch: int, dtype=torch.float32) -> TensorDict:
    return TensorDict({"observation": torch.randn(batch, OBS, dtype=dtype)}, batch_size=[batch])


@pytest.mark.parametrize("sampling", ["gather", "stratified"])
def test_reset_step_rollout_shapes_any_batch(sampling):
    env = LEQModelEnv(make_model(), "pointmaze-umaze", sampling=sampling)
    actor = make_actor()
    for batch in (5, 8):  # the env adopts each incoming batch size
        reset = env.reset(start_td(batch))
        assert reset["observation"].shape == (batch, OBS)
        assert reset["done"].shape == reset["terminated"].shape == (batch, 1)
        assert not reset["done"].any() and not reset["terminated"].any()
        assert (reset["alive"] == 1).all()
        step = env.step(actor(reset.clone()))
        assert step["next", "observation"].shape == (batch, OBS)
        assert step["next", "reward"].shape == (batch, 1)
        assert step["next", "reward"].dtype == torch.float32
        for key in ("terminated", "done"):
            assert step["next", key].shape == (batch, 1)
            assert step["next", key].dtype == torch.bool
        traj = env.rollout(6, actor, auto_reset=False, tensordict=reset, break_when_any_done=False)
        assert traj.batch_size == (batch, 6)
        assert traj["next", "alive"].shape == (batch, 6, 1)
        # a start td holding only observations works too
        traj = env.rollout(
            3, actor, auto_reset=False, tensordict=start_td(batch), break_when_any_done=False
        )
        assert traj.batch_size == (batch, 3) and (traj["alive"][:, 0] == 1).all()


def test_alive_mask_after_forced_termination():
    """Deterministic model moving +1 in x: row 0 reaches the umaze goal at step 2."""
    model = make_model()
    with torch.no_grad():
        for w, b in zip(model.weights, model.biases):
            w.zero_()
            b.zero_()
        model.biases[-1][..., 0] = 1.0  # Δx = 1, Δy = 0, r = 0
    env = LEQModelEnv(model, "pointmaze-umaze", deterministic=True)
    gx, gy = POINTMAZE_TASKS["pointmaze-umaze"].goal_xy
    obs = torch.tensor([[gx - 3, gy, 0, 0], [gx - 3, gy + 4, 0, 0]])
    start = env.reset(TensorDict({"observation": obs}, batch_size=[2]))
    actions = TensorDictModule(
        lambda o: torch.zeros(*o.shape[:-1], ACT), ["observation"], ["action"]
    )
    traj = env.rollout(5, actions, auto_reset=False, tensordict=start, break_when_any_done=False)
    assert traj["next", "terminated"][0, :, 0].tolist() == [False, False, True, False, False]
    assert traj["next", "done"][0, :, 0].tolist() == [False, False, True, False, False]
    assert traj["next", "alive"][0, :, 0].tolist() == [1, 1, 0, 0, 0]
    assert traj["alive"][0, :, 0].tolist() == [1, 1, 1, 0, 0]
    assert traj["next", "alive"][1].eq(1).all() and not traj["next", "terminated"][1].any()
    # stepping continued after termination
    torch.testing.assert_close(traj["next", "observation"][0, :, 0], gx - 3 + torch.arange(1.0, 6))


def test_actions_clipped_before_model():
    env = LEQModelEnv(make_model(), "halfcheetah", deterministic=True)
    td = start_td(4)
    td["action"] = torch.full((4, ACT), 0.7)
    td["action"][:, 0] = 5.0
    clipped = td.clone()
    clipped["action"][:, 0] = 1.0
    env.set_seed(0)
    out = env.step(td)["next", "observation"]
    env.set_seed(0)
    torch.testing.assert_close(out, env.step(clipped)["next", "observation"])
    env.set_seed(0)
    unclipped = env.ensemble.sample(td["observation"], td["action"], generator=env.generator)
    assert not torch.allclose(out, unclipped.next_obs)


@pytest.mark.parametrize("sampling", ["gather", "stratified"])
def test_gradient_matches_finite_differences(sampling):
    dtype = torch.float64
    env = LEQModelEnv(make_model(dtype, hidden=(8,)), "pointmaze-umaze", sampling=sampling)
    actor = make_actor(dtype)
    start = start_td(6, dtype)

    def objective() -> torch.Tensor:
        env.set_seed(0)  # same elites and noise every call
        traj = env.rollout(
            4, actor, auto_reset=False, tensordict=start.clone(), break_when_any_done=False
        )
        return traj["next", "reward"].sum() + 0.1 * traj["next", "observation"].square().sum()

    params = list(actor.parameters())
    grads = torch.autograd.grad(objective(), params)
    assert all(g.abs().sum() > 0 for g in grads)
    h = 1e-6
    with torch.no_grad():
        for p, g in zip(params, grads):
            for i in range(p.numel()):
                flat = p.view(-1)
                flat[i] += h
                up = objective()
                flat[i] -= 2 * h
                down = objective()
                flat[i] += h
                torch.testing.assert_close(
                    g.view(-1)[i], (up - down) / (2 * h), rtol=1e-5, atol=1e-7
                )


def test_hold_out_net_freezes_model_not_actor():
    from torchrl.objectives.utils import hold_out_net

    model = make_model()
    env, actor = LEQModelEnv(model, "pointmaze-umaze"), make_actor()
    with hold_out_net(env):
        traj = env.rollout(
            3, actor, auto_reset=False, tensordict=start_td(8), break_when_any_done=False
        )
    traj["next", "reward"].sum().backward()
    assert all(p.grad is None for p in model.parameters())
    assert all(p.grad.abs().sum() > 0 for p in actor.parameters())


def test_gradient_wrt_action_and_observation():
    env = LEQModelEnv(make_model(), "hopper")
    td = start_td(5)
    td["observation"].requires_grad_(True)
    td["action"] = torch.zeros(5, ACT, requires_grad=True)
    out = env.step(td)
    out["next", "reward"].sum().backward()
    assert td["action"].grad.abs().sum() > 0 and td["observation"].grad.abs().sum() > 0


def test_seeding_and_generator():
    env = LEQModelEnv(make_model(), "pointmaze-umaze")
    actor = make_actor()
    start = start_td(7)

    def run(seed):
        env.set_seed(seed)
        with torch.no_grad():
            return env.rollout(
                3, actor, auto_reset=False, tensordict=start.clone(), break_when_any_done=False
            )["next", "observation"]

    assert torch.equal(run(3), run(3))
    assert not torch.equal(run(3), run(4))
    env.generator = None  # global RNG
    with torch.no_grad():
        torch.manual_seed(0)
        first = env.step(actor(start.clone()))["next", "observation"]
        torch.manual_seed(0)
        second = env.step(actor(start.clone()))["next", "observation"]
    assert torch.equal(first, second)


def test_from_checkpoint_and_errors(tmp_path):
    model = make_model()
    save_world_model(tmp_path / "wm.pt", model)
    env = LEQModelEnv.from_checkpoint(tmp_path / "wm.pt", "antmaze-large-diverse-v2")
    assert env.ensemble.config == model.config
    with pytest.raises(ValueError, match="observation"):
        env.reset(TensorDict({}, batch_size=[3]))
    with pytest.raises(ValueError, match="expected 4"):
        env.reset(TensorDict({"observation": torch.zeros(3, OBS + 1)}, batch_size=[3]))
    with pytest.raises(ValueError, match="known"):
        LEQModelEnv(model, "cartpole")
