"""benchmarks/value_calibration.py: a LEQ run's checkpoint diagnosed post hoc."""

import json

import pytest
import torch
from script_loader import example_config, load_benchmark, load_example
from tensordict import TensorDict
from torchrl.envs.utils import ExplorationType, set_exploration_type

from torchrl_leq.training.builders import make_leq_networks, make_offline_data, make_sac_networks
from torchrl_leq.training.checkpoint import load_checkpoint


def _load_prefixed(module, state, prefix):
    module.load_state_dict({k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)})


def _starts(data, n):
    obs = data.transitions["observation"]
    return obs[torch.randperm(obs.shape[0], generator=torch.Generator().manual_seed(0))[:n]]


def test_calibration_reads_the_checkpoint_networks(tmp_path):
    run_dir = tmp_path / "run"
    cfg = example_config("leq_pointmaze", "smoke=true", f"run_dir={run_dir}", "progress=false")
    load_example("leq_antmaze").train(cfg)
    calibration = load_benchmark("value_calibration")
    out = tmp_path / "calibration.json"
    assert calibration.main([str(run_dir), "--num-starts", "8", "--out", str(out)]) == 0
    (row,) = json.loads(out.read_text())
    state = load_checkpoint(run_dir / "checkpoint.pt")
    assert row["step"] == state["step"] == cfg.train.total_steps
    assert 0.0 <= row["real_success_frac"] <= 1.0
    assert row["q_minus_real"] == pytest.approx(row["q_mean"] - row["real_return_mean"])

    # Q(s, π(s)) by hand: the checkpoint's actor and critic loaded into fresh networks
    data = make_offline_data(cfg.data, batch_size=cfg.optim.batch_size_env)
    actor, critic = make_leq_networks(cfg.network, data)
    _load_prefixed(actor, state["modules"]["loss"], "actor_network_params.")
    _load_prefixed(critic, state["modules"]["loss"], "qvalue_network_params.")
    starts = _starts(data, 8)
    with torch.no_grad():
        td = TensorDict({"observation": starts}, [8])
        td["action"] = actor(td)["action"].clamp(-1, 1)
        q = critic(td)["state_action_value"]
    assert row["q_mean"] == pytest.approx(float(q.double().mean()), rel=1e-5)

    with pytest.raises(SystemExit, match="exists"):  # nothing of the user's is overwritten
        calibration.main([str(run_dir), "--out", str(out)])


def test_iql_critic_is_the_min_of_its_two_q_networks(tmp_path):
    run_dir = tmp_path / "iql"
    cfg = example_config("iql", "smoke=true", f"run_dir={run_dir}", "progress=false")
    load_example("iql").train(cfg)
    calibration = load_benchmark("value_calibration")
    row = calibration.diagnose(run_dir, num_starts=8)
    assert row["algo"] == "iql" and row["gamma"] == cfg.loss.gamma
    assert "wall/wall_cross_frac" not in row  # no world model
    state = load_checkpoint(run_dir / "checkpoint.pt")["modules"]["loss"]
    data = make_offline_data(cfg.data, batch_size=cfg.optim.batch_size_env)
    actor, qvalue = make_sac_networks(cfg.network, data)
    _load_prefixed(actor, state, "actor_network_params.")
    td = TensorDict({"observation": _starts(data, 8)}, [8])
    with torch.no_grad(), set_exploration_type(ExplorationType.DETERMINISTIC):
        td["action"] = actor(td)["action"].clamp(-1, 1)
        qs = []
        for i in range(2):  # the stacked Q-networks' i-th slice
            q_i = {k: v[i] for k, v in state.items() if k.startswith("qvalue_network_params.")}
            _load_prefixed(qvalue, q_i, "qvalue_network_params.")
            qs.append(qvalue(td.clone())["state_action_value"])
    expected = torch.minimum(*qs).double().mean()
    assert row["q_mean"] == pytest.approx(float(expected), rel=1e-5)
    assert not torch.allclose(qs[0], qs[1])  # the min is a real choice
