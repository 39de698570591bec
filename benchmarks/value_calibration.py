"""Is a point-maze LEQ run's critic too pessimistic, or right? Post-hoc, from its checkpoint.

For each LEQ run directory (``run.json`` + ``checkpoint.pt``, e.g. one seed of a quality
benchmark), rebuild the run's data, world model (from the cache) and networks from its saved
config, load the checkpoint and report on ``--num-starts`` D_env start states (a fixed draw):

- :func:`~torchrl_leq.envs.maze_diagnostics.value_calibration`: the critic's ``Q(s, π(s))``
  against the policy's true discounted return in the real maze (time-limit rollouts), split by
  whether the policy solves the start;
- :func:`~torchrl_leq.envs.maze_diagnostics.wall_diagnostic`: imagined ``horizon``-step rollouts
  that cross walls and the λ-return gap model − real on them (the training-time diagnostic).

One JSON line per run on stdout, and with ``--out`` a JSON file of all runs::

    OMP_NUM_THREADS=1 MUJOCO_GL=egl python benchmarks/value_calibration.py \\
        benchmarks/results_grid/pointmaze-large/leq/seed{0,1,2,3,4} --out calibration.json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import torch
from omegaconf import OmegaConf
from tqdm.auto import tqdm

from torchrl_leq.envs import LEQModelEnv
from torchrl_leq.envs.maze_diagnostics import value_calibration, wall_diagnostic
from torchrl_leq.tasks import get_pointmaze_task
from torchrl_leq.training.builders import (
    make_leq_loss,
    make_leq_networks,
    make_offline_data,
    make_termination,
    make_world_model,
)
from torchrl_leq.training.checkpoint import load_checkpoint
from torchrl_leq.training.config import register_config_maze


def diagnose(run_dir: Path, num_starts: int, seed: int = 0) -> dict[str, Any]:
    """The calibration and wall statistics of one run's latest checkpoint."""
    manifest = json.loads((run_dir / "run.json").read_text())
    cfg = OmegaConf.create(manifest["config"])
    cfg.progress = False
    register_config_maze(cfg)
    state = load_checkpoint(run_dir / "checkpoint.pt")
    data = make_offline_data(cfg.data, batch_size=cfg.optim.batch_size_env)
    ensemble = make_world_model(cfg.world_model, data, run_seed=cfg.seed, progress=False)
    model_env = LEQModelEnv(ensemble, make_termination(cfg))
    actor, critic = make_leq_networks(cfg.network, data)
    loss = make_leq_loss(cfg.loss, actor, critic, model_env)
    loss.load_state_dict(state["modules"]["loss"])
    task = get_pointmaze_task(cfg.task)
    obs = data.transitions["observation"]
    idx = torch.randperm(obs.shape[0], generator=torch.Generator().manual_seed(seed))[:num_starts]
    starts = obs[idx].clone()
    shift = -1.0 if cfg.data.reward_transform in ("maze", "antmaze") else 0.0
    with loss.actor_network_params.to_module(loss.actor_network), \
            loss.qvalue_network_params.to_module(loss.qvalue_network):
        calibration = value_calibration(task, loss.actor_network, loss.qvalue_network, starts,
                                        gamma=loss.gamma, reward_shift=shift)
        walls = wall_diagnostic(task, model_env, loss.actor_network, starts,
                                horizon=int(cfg.loss.horizon), critic=loss.qvalue_network,
                                gamma=loss.gamma, lmbda=loss.lmbda, reward_shift=shift,
                                generator=torch.Generator().manual_seed(seed + 1))
    return {
        "run_dir": str(run_dir),
        "task": cfg.task,
        "seed": int(cfg.seed),
        "step": int(state["step"]),
        "last_score": state.get("last_score"),
        "num_starts": int(starts.shape[0]),
        **calibration,
        **{f"wall/{k}": v for k, v in walls.items()},
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("run_dirs", nargs="+", type=Path)
    parser.add_argument("--num-starts", type=int, default=256)
    parser.add_argument("--out", type=Path, default=None, help="JSON file of all runs")
    args = parser.parse_args(argv)
    missing = [str(d) for d in args.run_dirs if not (d / "checkpoint.pt").exists()]
    if missing:
        raise SystemExit(f"no checkpoint.pt in {', '.join(missing)}; pass LEQ run directories")
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
