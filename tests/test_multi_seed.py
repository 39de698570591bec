"""K seeds in one process (torchrl_leq.training.multi_seed): a stacked K-seed LEQ run equals K
single-seed runs, per-seed outputs, resume, the baselines' sequential seeds, and the compile node.

Tolerance: stacked and single-seed runs draw the same random numbers (asserted exactly: RNG
states, D_model contents are compared), but seed k's layers run as one ``baddbmm`` over
``[K, B, in]`` instead of ``addmm`` over ``[B, in]``, and LayerNorm's affine is applied outside
the kernel: the float32 sums are accumulated in another order (≈1e-7 relative per op). Adam
divides by √v, so over tens of steps these grow to ≈1e-5..1e-4 on parameters of size ≈0.1–1;
the run-level test allows 2e-4 absolute after 40 steps (measured max 5.5e-5), the loss-level
test 1e-5 on gradients of one step.
"""

import csv
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from data_helpers import random_transitions
from script_loader import example_config, load_example
from tensordict import TensorDict

from torchrl_leq.envs import LEQModelEnv
from torchrl_leq.envs.model_env import SeedSplitModelEnv
from torchrl_leq.modules import ProbabilisticEnsemble, make_deterministic_actor, make_qvalue_network
from torchrl_leq.modules.seed_batched import seed_slice_state, stack_seed_modules
from torchrl_leq.objectives import LEQLoss
from torchrl_leq.training.checkpoint import load_checkpoint
from torchrl_leq.training.compile import wrap_update
from torchrl_leq.training.multi_seed import SeedStreams, cat_seed_batches, seed_list

ROOT = Path(__file__).resolve().parents[1]
OBS, ACT, B, K = 4, 2, 12, 3
PARAM_ATOL = 2e-4


def _batch(seed):
    gen = torch.Generator().manual_seed(seed)
    env = random_transitions(B, OBS, ACT, gen)
    model = TensorDict({"observation": torch.randn(B, OBS, generator=gen)}, [B])
    return TensorDict({"env": env, "model": model}, [])


def _termination(obs, action, next_obs):
    return next_obs[..., :1].abs() > 1.5


@pytest.mark.parametrize("actor_gradient", ["per_step", "backprop"])
def test_stacked_loss_gives_each_seed_its_own_gradient(actor_gradient):
    """One K-seed LEQLoss call: per-seed losses, diagnostics and gradients equal K single ones."""
    torch.manual_seed(0)
    ensemble = ProbabilisticEnsemble(OBS, ACT, num_members=4, num_elites=3, hidden_dims=(16,))
    actors = [make_deterministic_actor(OBS, ACT, num_cells=(16, 16)) for _ in range(K)]
    critics = [make_qvalue_network(OBS, ACT, num_cells=(16, 16)) for _ in range(K)]
    kwargs = {"horizon": 3, "actor_gradient": actor_gradient, "validate_inputs": False}
    singles, single_out = [], []
    for k in range(K):
        env = LEQModelEnv(ensemble, _termination, generator=torch.Generator().manual_seed(k))
        loss = LEQLoss(actors[k], critics[k], env, **kwargs)
        out = loss(_batch(k))
        (out["loss_actor"] + out["loss_qvalue"]).backward()
        singles.append(loss)
        single_out.append(out)
    envs = [LEQModelEnv(ensemble, _termination) for _ in range(K)]
    stacked_env = SeedSplitModelEnv(envs, [torch.Generator().manual_seed(k) for k in range(K)])
    stacked = LEQLoss(
        stack_seed_modules(actors), stack_seed_modules(critics), stacked_env, num_seeds=K,
        **kwargs,
    )
    out = stacked(cat_seed_batches([_batch(k) for k in range(K)]))
    assert out["loss_actor"].shape == (K,)
    (out["loss_actor"] + out["loss_qvalue"]).sum().backward()
    for k in range(K):
        for key in stacked.out_keys:
            torch.testing.assert_close(out[key][k], single_out[k][key], atol=1e-5, rtol=1e-5)
        grads = {
            name: p.grad[k] for name, p in stacked.named_parameters() if p.grad is not None
        }
        single = {name: p.grad for name, p in singles[k].named_parameters() if p.grad is not None}
        assert grads.keys() == single.keys() and grads
        for name in single:
            torch.testing.assert_close(grads[name], single[name], atol=1e-5, rtol=1e-4)


def test_stacked_state_dict_slices_are_single_seed_state_dicts():
    actors = [make_deterministic_actor(OBS, ACT, num_cells=(8,), layer_norm=True) for _ in range(2)]
    stacked = stack_seed_modules(actors)
    for k in range(2):
        single = actors[k].state_dict()
        sliced = seed_slice_state(stacked.state_dict(), k)
        assert sliced.keys() == single.keys()
        for name in single:
            assert torch.equal(sliced[name], single[name])
    assert stack_seed_modules(actors[:1]) is actors[0]


def test_seed_streams_replay_the_global_rng():
    streams = SeedStreams(2)
    for k in range(2):
        torch.manual_seed(k)
        streams.capture(k)
    torch.manual_seed(7)
    outside = torch.rand(1)
    with streams.use(1):
        a = torch.rand(3)
    with streams.use(0):
        b = torch.rand(3)
    torch.manual_seed(1)
    assert torch.equal(a, torch.rand(3))
    torch.manual_seed(0)
    assert torch.equal(b, torch.rand(3))
    torch.manual_seed(7)
    assert torch.equal(outside, torch.rand(1))  # the global stream was left as it was
    assert seed_list({"seed": 4, "seeds": None, "num_seeds": 3}) == [4, 5, 6]


# ------------------------------------------------------------------ whole runs
def _train_leq(run_dir, **changes):
    overrides = [f"{key}={value}" for key, value in changes.items()]
    cfg = example_config(
        "leq_pointmaze", "smoke=true", f"run_dir={run_dir}", "progress=false", *overrides
    )
    return load_example("leq_antmaze").train(cfg)


def _rows(path):
    with open(path) as f:
        return list(csv.DictReader(f))


def _assert_same_run(stacked_dir, single_dir, exact=False):
    a, b = load_checkpoint(stacked_dir / "checkpoint.pt"), load_checkpoint(single_dir / "checkpoint.pt")
    assert a["step"] == b["step"]
    assert torch.equal(a["rng"]["torch"], b["rng"]["torch"])  # the same random draws
    la, lb = a["modules"]["loss"], b["modules"]["loss"]
    assert la.keys() == lb.keys()  # a seed's checkpoint is a single-seed run's checkpoint
    for key in lb:
        if exact:
            assert torch.equal(la[key], lb[key]), key
        else:
            torch.testing.assert_close(la[key], lb[key], atol=PARAM_ATOL, rtol=0, msg=key)
    sa, sb = a["stateful"]["d_model"]["_storage"], b["stateful"]["d_model"]["_storage"]
    n = sb["_len"]
    assert sa["_len"] == n > 0  # D_model: the same expansions (rollouts of nearly equal actors)
    torch.testing.assert_close(
        sa["_storage"]["observation"][:n], sb["_storage"]["observation"][:n], atol=1e-3, rtol=1e-3
    )
    ra, rb = _rows(stacked_dir / "metrics.csv"), _rows(single_dir / "metrics.csv")
    assert [(r["step"], r["kind"], r["episodes"]) for r in ra] == [
        (r["step"], r["kind"], r["episodes"]) for r in rb
    ]
    for x, y in zip(ra, rb):
        assert abs(float(x["mean_return"]) - float(y["mean_return"])) <= 1e-3 * (
            1 + abs(float(y["mean_return"]))
        )
    logs = sorted(p.relative_to(single_dir) for p in (single_dir / "logs").rglob("*.csv"))
    assert logs == sorted(p.relative_to(stacked_dir) for p in (stacked_dir / "logs").rglob("*.csv"))


def test_k_seed_run_equals_single_seed_runs(tmp_path):
    seeds = [0, 1, 2]
    result = _train_leq(tmp_path / "stacked", seeds=f"[{','.join(map(str, seeds))}]")
    assert len(result["per_seed"]) == 3
    for s in seeds:
        _train_leq(tmp_path / f"single{s}", seed=s)
        _assert_same_run(tmp_path / "stacked" / f"seed{s}", tmp_path / f"single{s}")


def test_k_seed_resume_equals_uninterrupted_run(tmp_path):
    _train_leq(tmp_path / "straight", num_seeds=2)
    killed = _train_leq(tmp_path / "resumed", num_seeds=2, **{"train.stop_after_steps": 20})
    assert [r["stopped_at"] for r in killed["per_seed"]] == [20, 20]
    _train_leq(tmp_path / "resumed", num_seeds=2, resume=True)
    for s in (0, 1):
        _assert_same_run(tmp_path / "resumed" / f"seed{s}", tmp_path / "straight" / f"seed{s}",
                         exact=True)


def test_k_seed_resume_after_a_kill_between_two_seeds_checkpoints(tmp_path):
    """Killed after seed 0 wrote its step-30 checkpoint but before seed 1 did: the resume goes
    back to step 20 for both (seed 0's kept previous checkpoint) and ends as if never killed."""
    every = {"train.checkpoint_every": 10}
    _train_leq(tmp_path / "straight", num_seeds=2, **every)
    run = tmp_path / "resumed"
    _train_leq(run, num_seeds=2, **every, **{"train.stop_after_steps": 20})
    shutil.copytree(run / "seed1", tmp_path / "seed1_at_20")
    _train_leq(run, num_seeds=2, resume=True, **every, **{"train.stop_after_steps": 30})
    shutil.rmtree(run / "seed1")
    shutil.copytree(tmp_path / "seed1_at_20", run / "seed1")
    assert [load_checkpoint(run / f"seed{s}" / "checkpoint.pt")["step"] for s in (0, 1)] == [30, 20]
    _train_leq(run, num_seeds=2, resume=True, **every)
    for s in (0, 1):
        _assert_same_run(run / f"seed{s}", tmp_path / "straight" / f"seed{s}", exact=True)


def test_baseline_seeds_run_one_after_another(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    cmd = [
        sys.executable, str(ROOT / "examples" / "bc.py"), "smoke=true", "progress=false",
        "seeds=[3,4]", f"run_dir={tmp_path / 'bc'}", f"hydra.run.dir={tmp_path / 'hydra'}",
    ]
    proc = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    assert [line["seed"] for line in lines] == [3, 4]
    for s in (3, 4):
        assert _rows(tmp_path / "bc" / f"seed{s}" / "metrics.csv")[-1]["kind"] == "final"


# ------------------------------------------------------------------ compile node
def _update_fn(seed=0):
    torch.manual_seed(seed)
    net = torch.nn.Sequential(torch.nn.Linear(3, 8), torch.nn.ReLU(), torch.nn.Linear(8, 1))
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)

    def update(x):
        loss = net(x).pow(2).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return loss.detach()

    return net, opt, update


def test_compiled_update_equals_eager():
    x = torch.randn(16, 3)
    net_e, _, eager = _update_fn()
    net_c, opt_c, update = _update_fn()
    compiled = wrap_update(update, {"compile": True, "backend": "aot_eager"}, optimizers=[opt_c])
    for _ in range(3):
        torch.testing.assert_close(compiled(x), eager(x))
    for a, b in zip(net_e.parameters(), net_c.parameters()):
        torch.testing.assert_close(a, b)


def test_cudagraphs_are_refused_on_cpu():
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA: the refusal is for CPU runs")
    with pytest.raises(ValueError, match="compile.cudagraphs=true needs a CUDA device"):
        wrap_update(lambda x: x, {"cudagraphs": True})
