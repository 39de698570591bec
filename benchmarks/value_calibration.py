"""Is a point-maze run's critic too pessimistic, or right? Post hoc, from its checkpoint.

For each LEQ or IQL run directory (``run.json`` + ``checkpoint.pt``, e.g. one seed of a quality
benchmark), rebuild the run's data, networks (and LEQ's world model, from the cache) from its
saved config, load the checkpoint and report on ``--num-starts`` D_env start states (a fixed
draw; IQL's critic is the min of its two Q-networks, its γ its own):

- :func:`~torchrl_leq.envs.maze_diagnostics.value_calibration`: the critic's ``Q(s, π(s))``
  against the policy's true discounted return in the real maze (time-limit rollouts), split by
  whether the policy solves the start;
- LEQ only, :func:`~torchrl_leq.envs.maze_diagnostics.wall_diagnostic`: imagined
  ``horizon``-step rollouts that cross walls and the λ-return gap model − real on them (the
  training-time diagnostic).

One JSON line per run on stdout, and with ``--out`` a JSON file of all runs::

    OMP_NUM_THREADS=1 MUJOCO_GL=egl python benchmarks/value_calibration.py \\
        benchmarks/results_grid/pointmaze-large/leq/seed{0,1,2,3,4} --out calibration.json
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf
from tensordict import TensorDictBase
from tensordict.nn import TensorDictModuleBase
from torchrl.objectives import IQLLoss
from tqdm.auto import tqdm

from torchrl_leq.envs import LEQModelEnv
from torchrl_leq.envs.maze_diagnostics import value_calibration, wall_diagnostic
from torchrl_leq.tasks import get_pointmaze_task
from torchrl_leq.training.builders import (
    make_leq_loss,
    make_leq_networks,
    make_offline_data,
    make_sac_networks,
    make_termination,
    make_value_network,
    make_world_model,
    maze_reward_shift,
)
from torchrl_leq.training.checkpoint import load_checkpoint
from torchrl_leq.training.config import register_config_maze


@contextmanager
def params_in(params: TensorDictBase, module: TensorDictModuleBase) -> Iterator[None]:
    """``module`` with the loss's trained ``params`` swapped in (a loss owns its networks'
    parameters). Wraps ``params.to_module(module)``, whose ``__exit__`` returns a TensorDict that
    ``ExitStack`` would test for truth (an error)."""
    with params.to_module(module):
        yield


class MinOverQ:
    """TorchRL's stacked Q-networks (IQL's two critics) as one critic: the min over them, as
    IQL's actor and value targets use them."""

    def __init__(self, network: TensorDictModuleBase, params: TensorDictBase) -> None:
        self.network, self.params = network, params

    def __call__(self, td: TensorDictBase) -> TensorDictBase:
        qs = []
        for params in self.params.unbind(0):
            with params_in(params, self.network):
                qs.append(self.network(td.clone())["state_action_value"])
        td["state_action_value"] = torch.stack(qs).min(0).values
        return td


def _leq(cfg: DictConfig, data: Any, state: dict) -> tuple[Any, Any, float, Any, ExitStack]:
    ensemble = make_world_model(cfg.world_model, data, run_seed=cfg.seed, progress=False)
    model_env = LEQModelEnv(ensemble, make_termination(cfg))
    actor, critic = make_leq_networks(cfg.network, data)
    loss = make_leq_loss(cfg.loss, actor, critic, model_env)
    loss.load_state_dict(state["modules"]["loss"])
    stack = ExitStack()
    stack.enter_context(params_in(loss.actor_network_params, loss.actor_network))
    stack.enter_context(params_in(loss.qvalue_network_params, loss.qvalue_network))
    return loss.actor_network, loss.qvalue_network, float(loss.gamma), model_env, stack


def _iql(cfg: DictConfig, data: Any, state: dict) -> tuple[Any, Any, float, Any, ExitStack]:
    actor, qvalue = make_sac_networks(cfg.network, data)
    loss = IQLLoss(actor, qvalue, make_value_network(cfg.network, data), loss_function="l2")
    loss.load_state_dict(state["modules"]["loss"], strict=False)  # no value estimator built
    stack = ExitStack()
    stack.enter_context(params_in(loss.actor_network_params, loss.actor_network))
    critic = MinOverQ(loss.qvalue_network, loss.qvalue_network_params)
    return loss.actor_network, critic, float(cfg.loss.gamma), None, stack


def diagnose(run_dir: Path, num_starts: int, seed: int = 0) -> dict[str, Any]:
    """The calibration (and for LEQ the wall statistics) of one run's latest checkpoint."""
    manifest = json.loads((run_dir / "run.json").read_text())
    cfg = OmegaConf.create(manifest["config"])
    cfg.progress = False
    register_config_maze(cfg)
    state = load_checkpoint(run_dir / "checkpoint.pt")
    keys = state["modules"]["loss"].keys()
    if "expansion" in cfg:
        build, algo = _leq, "leq"
    elif any(k.startswith("value_network_params.") for k in keys):
        build, algo = _iql, "iql"
    else:
        raise SystemExit(f"{run_dir} is neither a LEQ nor an IQL run; only those are supported")
    data = make_offline_data(cfg.data, batch_size=cfg.optim.batch_size_env)
    actor, critic, gamma, model_env, stack = build(cfg, data, state)
    task = get_pointmaze_task(cfg.task)
    obs = data.transitions["observation"]
    idx = torch.randperm(obs.shape[0], generator=torch.Generator().manual_seed(seed))[:num_starts]
    starts = obs[idx].clone()
    shift = maze_reward_shift(cfg)
    with stack:
        out = value_calibration(task, actor, critic, starts, gamma=gamma, reward_shift=shift)
        if model_env is not None:
            walls = wall_diagnostic(task, model_env, actor, starts,
                                    horizon=int(cfg.loss.horizon), critic=critic, gamma=gamma,
                                    lmbda=float(cfg.loss.lmbda), reward_shift=shift,
                                    generator=torch.Generator().manual_seed(seed + 1))
            out.update({f"wall/{k}": v for k, v in walls.items()})
    return {
        "run_dir": str(run_dir),
        "algo": algo,
        "task": cfg.task,
        "seed": int(cfg.seed),
        "step": int(state["step"]),
        "last_score": state.get("last_score"),
        "num_starts": int(starts.shape[0]),
        "gamma": gamma,
        **out,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("run_dirs", nargs="+", type=Path)
    parser.add_argument("--num-starts", type=int, default=256)
    parser.add_argument("--out", type=Path, default=None, help="JSON file of all runs")
    args = parser.parse_args(argv)
    missing = [str(d) for d in args.run_dirs if not (d / "checkpoint.pt").exists()]
    if missing:
        raise SystemExit(f"no checkpoint.pt in {', '.join(missing)}; pass LEQ or IQL run directories")
    if args.out is not None and args.out.exists():
        raise SystemExit(f"{args.out} exists; choose another --out (nothing is overwritten)")
    rows = []
    for run_dir in tqdm(args.run_dirs, desc="runs"):
        rows.append(diagnose(run_dir, args.num_starts))
        print(json.dumps(rows[-1]), flush=True)
    if args.out is not None:
        args.out.write_text(json.dumps(rows, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
