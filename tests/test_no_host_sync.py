"""A whole LEQ update (loss → backward → fused Adam → EMA) runs without a device→host sync.

The check is a dispatch mode (:class:`~torchrl_leq.objectives.host_sync.NoHostSync`) that fails
on ops which would force the host to wait for a GPU (``.item()``, ``nonzero``, boolean masks,
data-dependent shapes); it runs on the CPU as well.
"""

import pytest
import torch
from tensordict import TensorDict
from torchrl.objectives import SoftUpdate

from torchrl_leq.envs import LEQModelEnv
from torchrl_leq.modules import ProbabilisticEnsemble, make_deterministic_actor, make_qvalue_network
from torchrl_leq.objectives import LEQLoss
from torchrl_leq.objectives.host_sync import HostSyncError, NoHostSync

OBS, ACT, B = 4, 2, 10  # B not divisible by the 3 elites: the stratified path pads slices


def _batch():
    gen = torch.Generator().manual_seed(0)
    env = TensorDict(
        {
            "observation": torch.randn(B, OBS, generator=gen),
            "action": torch.rand(B, ACT, generator=gen) * 2 - 1,
            "next": {
                "observation": torch.randn(B, OBS, generator=gen),
                "reward": torch.randn(B, 1, generator=gen),
                "terminated": torch.arange(B).view(-1, 1) % 4 == 0,
            },
        },
        [B],
    )
    model = TensorDict({"observation": torch.randn(B, OBS, generator=gen)}, [B])
    return TensorDict({"env": env, "model": model}, [])


@pytest.mark.parametrize("sampling", ["stratified", "gather"])
@pytest.mark.parametrize("actor_gradient", ["per_step", "backprop"])
def test_leq_update_has_no_host_sync(actor_gradient, sampling):
    torch.manual_seed(0)
    ensemble = ProbabilisticEnsemble(
        OBS, ACT, num_members=4, num_elites=3, hidden_dims=(16,), sampling=sampling
    )
    env = LEQModelEnv(ensemble, lambda obs, action, next_obs: next_obs[..., :1].abs() > 1.0)
    actor = make_deterministic_actor(OBS, ACT, num_cells=(16,))
    critic = make_qvalue_network(OBS, ACT, num_cells=(16,))
    loss = LEQLoss(
        actor, critic, env, horizon=3, actor_gradient=actor_gradient, validate_inputs=False
    )
    params = [p for p in loss.parameters() if p.requires_grad]
    optim = torch.optim.Adam(params, lr=1e-3, fused=True)
    updater = SoftUpdate(loss, eps=0.995)
    batch = _batch()
    for _ in range(2):  # the second step also covers Adam's filled state and cached elites
        with NoHostSync() as mode:
            out = loss(batch)
            (out["loss_actor"] + out["loss_qvalue"]).backward()
            optim.step()
            optim.zero_grad(set_to_none=True)
            updater.step()
        assert mode.num_ops > 300  # the mode saw the work, backward included
    assert 0 < out["rollout_alive_fraction"] < 1  # terminations happened: masks were exercised


def test_the_mode_sees_backward_and_catches_syncs():
    x = torch.ones(3, requires_grad=True)
    y = (x * 2).sum()
    with NoHostSync() as mode:
        y.backward()
    assert mode.num_ops > 0
    with pytest.raises(HostSyncError, match="nonzero"):
        with NoHostSync():
            torch.nonzero(x > 0)
    with pytest.raises(HostSyncError, match="boolean-mask"):
        with NoHostSync():
            x.detach()[x > 0]
    with pytest.raises(HostSyncError, match="_local_scalar_dense"):
        with NoHostSync():
            float(x.sum())


def test_validate_inputs_is_the_only_sync_of_the_loss():
    """``validate_inputs=True`` reads one flag per input key (documented); nothing else."""
    torch.manual_seed(0)
    ensemble = ProbabilisticEnsemble(OBS, ACT, num_members=4, num_elites=3, hidden_dims=(16,))
    env = LEQModelEnv(ensemble, lambda obs, action, next_obs: next_obs[..., :1].abs() > 1.0)
    loss = LEQLoss(make_deterministic_actor(OBS, ACT, num_cells=(16,)), make_qvalue_network(OBS, ACT), env)
    with NoHostSync(raise_on_sync=False) as mode:
        loss(_batch())
    assert mode.syncs and all("_split_and_check" in where for _, where in mode.syncs)


@pytest.mark.parametrize("actor_gradient", ["per_step", "backprop"])
def test_k_seed_update_has_no_host_sync(actor_gradient):
    """The stacked K-seed update (seed-batched networks, per-seed model envs and generators,
    per-seed losses summed) is as capture-ready as the single-seed one."""
    from torchrl_leq.envs.model_env import SeedSplitModelEnv
    from torchrl_leq.modules.seed_batched import stack_seed_modules
    from torchrl_leq.training.multi_seed import cat_seed_batches
    from torchrl_leq.training.trainer import make_update_step

    K = 3
    torch.manual_seed(0)
    ensemble = ProbabilisticEnsemble(OBS, ACT, num_members=4, num_elites=3, hidden_dims=(16,))
    term = lambda obs, action, next_obs: next_obs[..., :1].abs() > 1.0  # noqa: E731
    env = SeedSplitModelEnv(
        [LEQModelEnv(ensemble, term) for _ in range(K)],
        [torch.Generator().manual_seed(k) for k in range(K)],
    )
    actor = stack_seed_modules([make_deterministic_actor(OBS, ACT, num_cells=(16,)) for _ in range(K)])
    critic = stack_seed_modules([make_qvalue_network(OBS, ACT, num_cells=(16,)) for _ in range(K)])
    loss = LEQLoss(
        actor, critic, env, horizon=3, actor_gradient=actor_gradient, validate_inputs=False,
        num_seeds=K,
    )
    optim = torch.optim.Adam([p for p in loss.parameters() if p.requires_grad], lr=1e-3, fused=True)
    update = make_update_step(loss, {"all": optim}, SoftUpdate(loss, eps=0.995))
    batch = cat_seed_batches([_batch() for _ in range(K)])
    for _ in range(2):
        with NoHostSync() as mode:
            out = update(batch)
        assert mode.num_ops > 300
    assert out["loss_actor"].shape == (K,)
    assert ((0 < out["rollout_alive_fraction"]) & (out["rollout_alive_fraction"] < 1)).all()
