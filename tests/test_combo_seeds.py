"""K COMBO seeds in one stacked update (``COMBOLoss(num_seeds=K)``, ``examples/combo.py
seeds=[...]``) equal K single-seed runs, and a killed K-seed run resumes exactly.

Tolerance: the stacked loss and run draw exactly the random numbers of the single ones
(critic initialisation, proposal and policy noise from each seed's generator, buffer samples and
model rollouts in its RNG stream: asserted exactly through the RNG states), and the forward pass
came out bit-equal here; but seed k's layers run as one ``baddbmm`` over ``[K, B, in]`` instead
of ``addmm`` over ``[B, in]``, whose backward sums in another float32 order, so gradients differ
by ≈1e-7 of their size (measured max 2.4e-7): the loss-level test allows 1e-6 of each
gradient's largest entry. Adam (which divides by √v) carries these into the parameters: after
the 40-step smoke run they differ by at most 3e-8 (7e-7 after 200 steps) on parameters of size
≈0.5; the run-level test allows 1e-5 absolute, and checks that two seeds differ by 100× that.
"""

import csv

import pytest
import torch
from data_helpers import random_transitions
from script_loader import example_config, load_example
from tensordict import TensorDict
from torchrl.data import Bounded

from torchrl_leq.modules import make_qvalue_network, make_tanh_normal_actor
from torchrl_leq.modules.seed_batched import seed_slice_state, stack_seed_modules
from torchrl_leq.objectives import COMBOLoss
from torchrl_leq.training.checkpoint import load_checkpoint
from torchrl_leq.training.multi_seed import cat_seed_batches

OBS, ACT, B_ENV, B_MODEL, K = 4, 2, 12, 20, 3
GRAD_RTOL = 1e-6
PARAM_ATOL = 1e-5


def _transitions(b, gen):
    return random_transitions(b, OBS, ACT, gen)


def _batch(k):
    gen = torch.Generator().manual_seed(100 + k)
    return TensorDict({"env": _transitions(B_ENV, gen), "model": _transitions(B_MODEL, gen)}, [])


def _networks(k):
    """Seed k's actor and critic, and the RNG state a single-seed run builds its loss in."""
    torch.manual_seed(k)
    actor = make_tanh_normal_actor(OBS, ACT, num_cells=(16, 16))
    critic = make_qvalue_network(
        OBS, ACT, layer_norm=False, use_symlog=False, num_cells=(16, 16)
    )
    return actor, critic, torch.get_rng_state()


@pytest.mark.parametrize(
    "action_spec",
    [None, Bounded(torch.tensor([-1.0, -2.0]), torch.tensor([1.0, 0.5]), (ACT,))],
    ids=["actor_spec", "own_box"],
)
def test_stacked_loss_gives_each_seed_its_own_loss_and_gradient(action_spec):
    """One K-seed COMBOLoss call: per-seed initial state, random draws, losses, diagnostics and
    gradients equal K single-seed COMBOLoss calls on the same per-seed batches."""
    kwargs = {"beta": 1.0, "real_ratio": 0.4, "num_random": 5, "action_spec": action_spec,
              "alpha_init": 0.5, "validate_inputs": False}
    actors, critics, states = zip(*(_networks(k) for k in range(K)))
    generators = [torch.Generator() for _ in range(K)]
    for g, state in zip(generators, states):
        g.set_state(state)
    stacked = COMBOLoss(stack_seed_modules(actors), stack_seed_modules(critics), num_seeds=K,
                        generators=generators, **kwargs)
    initial = {name: t.clone() for name, t in stacked.state_dict().items()}

    singles, single_out, single_rng = [], [], []
    for k in range(K):
        torch.set_rng_state(states[k])
        loss = COMBOLoss(actors[k], critics[k], **kwargs)
        own, sliced = loss.state_dict(), seed_slice_state(initial, k)
        assert sliced.keys() == own.keys()  # seed k's slice is a single-seed loss's state
        for name in own:  # critics drawn from seed k's stream exactly as the single loss draws
            assert torch.equal(sliced[name], own[name]), name
        out = loss(_batch(k))
        (out["loss_actor"] + out["loss_qvalue"] + out["loss_alpha"]).backward()
        singles.append(loss)
        single_out.append(out)
        single_rng.append(torch.get_rng_state())

    out = stacked(cat_seed_batches([_batch(k) for k in range(K)]))
    for key in stacked.out_keys:
        assert out[key].shape == (K,), key
    (out["loss_actor"] + out["loss_qvalue"] + out["loss_alpha"]).sum().backward()
    for k in range(K):
        assert torch.equal(generators[k].get_state(), single_rng[k])  # the same draws
        for key in stacked.out_keys:
            torch.testing.assert_close(out[key][k], single_out[k][key], rtol=1e-6, atol=1e-7)
        grads = {n: p.grad[k] for n, p in stacked.named_parameters() if p.grad is not None}
        own = {n: p.grad for n, p in singles[k].named_parameters() if p.grad is not None}
        assert grads.keys() == own.keys() and "log_alpha" in own and len(own) > 10
        for name, g in own.items():
            err = (grads[name] - g).abs().max().item()
            assert err <= GRAD_RTOL * g.abs().max().item(), (name, err)


def test_stacked_loss_checks_its_seeds():
    actors, critics, _ = zip(*(_networks(k) for k in range(2)))
    with pytest.raises(ValueError, match="holds 2 stacked seed"):
        COMBOLoss(stack_seed_modules(actors), stack_seed_modules(critics), num_seeds=3)
    with pytest.raises(ValueError, match="one per seed"):
        COMBOLoss(actors[0], critics[0], generators=[torch.Generator()])
    loss = COMBOLoss(stack_seed_modules(actors), stack_seed_modules(critics), num_seeds=2)
    batch = cat_seed_batches([_batch(0), _batch(1)])
    batch["model"] = batch["model"][:-1]
    with pytest.raises(ValueError, match="not num_seeds=2 equal seed parts"):
        loss(batch)


# ------------------------------------------------------------------ whole runs
def _train_combo(run_dir, **changes):
    overrides = [f"{key}={value}" for key, value in changes.items()]
    cfg = example_config("combo", "smoke=true", f"run_dir={run_dir}", "progress=false", *overrides)
    return load_example("combo").train(cfg)


def _rows(path):
    with open(path) as f:
        return list(csv.DictReader(f))


def test_k_seed_run_equals_single_seed_runs(tmp_path):
    """``seeds=[0,1,2]``: one stacked update per step; each seed's directory holds what the
    single-seed run with that seed writes (checkpoint, D_model, metrics.csv, logs)."""
    seeds = [0, 1, 2]
    result = _train_combo(tmp_path / "stacked", seeds=f"[{','.join(map(str, seeds))}]")
    assert len(result["per_seed"]) == len(seeds)
    params = []
    for s in seeds:
        single = _train_combo(tmp_path / f"single{s}", seed=s)
        stacked_dir, single_dir = tmp_path / "stacked" / f"seed{s}", tmp_path / f"single{s}"
        a = load_checkpoint(stacked_dir / "checkpoint.pt")
        b = load_checkpoint(single_dir / "checkpoint.pt")
        assert a["step"] == b["step"] == 40
        assert torch.equal(a["rng"]["torch"], b["rng"]["torch"])  # the same random draws
        la, lb = a["modules"]["loss"], b["modules"]["loss"]
        assert la.keys() == lb.keys()  # a seed's checkpoint is a single-seed run's checkpoint
        assert lb["log_alpha"].shape == ()  # one temperature per seed, twin critics per seed
        assert lb["qvalue_network_params.module.mlp.0.weight"].shape[0] == 2
        for key in lb:
            torch.testing.assert_close(la[key], lb[key], atol=PARAM_ATOL, rtol=0, msg=key)
        params.append((la, lb))
        da = a["stateful"]["model_transitions"]["_storage"]
        db = b["stateful"]["model_transitions"]["_storage"]
        n = db["_len"]
        assert da["_len"] == n > 0  # the same rollouts (of nearly equal actors) in D_model
        for key in ("observation", "action"):
            torch.testing.assert_close(da["_storage"][key][:n], db["_storage"][key][:n],
                                       atol=1e-3, rtol=1e-3)
        ra, rb = _rows(stacked_dir / "metrics.csv"), _rows(single_dir / "metrics.csv")
        assert [(r["step"], r["kind"]) for r in ra] == [(r["step"], r["kind"]) for r in rb]
        assert ra[-1]["kind"] == "final"
        for x, y in zip(ra, rb):
            assert abs(float(x["mean_return"]) - float(y["mean_return"])) <= 1e-3 * (
                1 + abs(float(y["mean_return"]))
            )
        assert result["per_seed"][s]["last_score"] == pytest.approx(single["last_score"], abs=1e-3)
        logs = sorted(p.relative_to(single_dir) for p in (single_dir / "logs").rglob("*.csv"))
        assert logs and logs == sorted(
            p.relative_to(stacked_dir) for p in (stacked_dir / "logs").rglob("*.csv")
        )
    for k in seeds:  # the tolerance is far below what tells two seeds apart
        other = params[(k + 1) % len(seeds)][1]
        assert max((params[k][0][key] - other[key]).abs().max() for key in other) > 100 * PARAM_ATOL


def test_k_seed_resume_equals_uninterrupted_run(tmp_path):
    """A killed K-seed run resumed from its per-seed checkpoints (stacked critics, per-seed
    temperatures and their Adam moments loaded back into their slices) ends bit-equal."""
    _train_combo(tmp_path / "straight", num_seeds=2)
    killed = _train_combo(tmp_path / "resumed", num_seeds=2, **{"train.stop_after_steps": 20})
    assert [r["stopped_at"] for r in killed["per_seed"]] == [20, 20]
    _train_combo(tmp_path / "resumed", num_seeds=2, resume=True)
    for s in (0, 1):
        a = load_checkpoint(tmp_path / "resumed" / f"seed{s}" / "checkpoint.pt")
        b = load_checkpoint(tmp_path / "straight" / f"seed{s}" / "checkpoint.pt")
        assert a["step"] == b["step"] == 40
        for key, value in b["modules"]["loss"].items():
            assert torch.equal(a["modules"]["loss"][key], value), key
        for name, opt in b["optimizers"].items():
            for idx, state in opt["state"].items():
                for key, value in state.items():
                    assert torch.equal(a["optimizers"][name]["state"][idx][key], value)
        assert (tmp_path / "resumed" / f"seed{s}" / "metrics.csv").read_text() == (
            tmp_path / "straight" / f"seed{s}" / "metrics.csv"
        ).read_text()
