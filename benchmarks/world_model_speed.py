"""World-model speed: elite-sampling paths in a model rollout, and ensemble training time.

Measures (1) one 10-step ``LEQModelEnv`` rollout of 256 start states through a 7-member
4×200 ensemble (obs 29, act 8, a tanh linear policy), forward only and forward + backward of
Σ rewards w.r.t. the policy, for the ``gather`` and ``stratified`` elite paths; (2) training
the ensemble on 100k random linear-Gaussian transitions (epochs capped, per-epoch time shown).

Usage:
    PYTHONPATH=. python benchmarks/world_model_speed.py [--epochs 5] [--repeats 20] [--threads 2]
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import time

import torch
from tensordict import TensorDict
from tensordict.nn import TensorDictModule

from torchrl_leq.envs import LEQModelEnv
from torchrl_leq.modules import ProbabilisticEnsemble
from torchrl_leq.training.world_model import train_world_model

OBS_DIM, ACT_DIM, BATCH, HORIZON = 29, 8, 256, 10


def _median_time(fn, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return sorted(times)[len(times) // 2]


def rollout_times(repeats: int) -> dict[str, tuple[float, float]]:
    """Median seconds (forward, forward + backward) of one H=10 rollout per sampling path."""
    torch.manual_seed(0)
    model = ProbabilisticEnsemble(OBS_DIM, ACT_DIM)
    policy = TensorDictModule(
        torch.nn.Sequential(torch.nn.Linear(OBS_DIM, ACT_DIM), torch.nn.Tanh()),
        ["observation"],
        ["action"],
    )
    start = TensorDict({"observation": torch.randn(BATCH, OBS_DIM)}, batch_size=[BATCH])
    results = {}
    for sampling in ("gather", "stratified"):
        env = LEQModelEnv(model, "antmaze-umaze", sampling=sampling)

        def forward(env=env):
            with torch.no_grad():
                env.rollout(
                    HORIZON,
                    policy,
                    auto_reset=False,
                    tensordict=start.clone(),
                    break_when_any_done=False,
                )

        def backward(env=env):
            traj = env.rollout(
                HORIZON,
                policy,
                auto_reset=False,
                tensordict=start.clone(),
                break_when_any_done=False,
            )
            policy.zero_grad()
            traj["next", "reward"].sum().backward()

        results[sampling] = (_median_time(forward, repeats), _median_time(backward, repeats))
    return results


def training_time(epochs: int, n: int = 100_000) -> dict[str, float]:
    """Train on ``n`` random linear-Gaussian transitions for at most ``epochs`` epochs."""
    g = torch.Generator().manual_seed(0)
    obs = torch.randn(n, OBS_DIM, generator=g)
    act = torch.rand(n, ACT_DIM, generator=g) * 2 - 1
    a_mat = 0.1 * torch.randn(OBS_DIM, OBS_DIM, generator=g)
    b_mat = 0.1 * torch.randn(ACT_DIM, OBS_DIM, generator=g)
    next_obs = obs + obs @ a_mat + act @ b_mat + 0.05 * torch.randn(n, OBS_DIM, generator=g)
    reward = obs[:, :1] - act.square().sum(-1, keepdim=True) + 0.1 * torch.randn(n, 1, generator=g)
    model = ProbabilisticEnsemble(OBS_DIM, ACT_DIM)
    t0 = time.perf_counter()
    log = train_world_model(model, obs, act, next_obs, reward, max_epochs=epochs, progress=False)
    total = time.perf_counter() - t0
    return {
        "total_s": total,
        "epochs": log["epochs"],
        "per_epoch_s": total / log["epochs"],
        "final_holdout_mse": min(log["best_holdout_mse"]),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=5, help="cap on training epochs")
    parser.add_argument("--repeats", type=int, default=20, help="timed rollouts per variant")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    try:
        commit = subprocess.check_output(["git", "rev-parse", "--short", "HEAD"], text=True).strip()
    except (OSError, subprocess.CalledProcessError):
        commit = "unknown"
    print(
        f"machine: {platform.processor() or platform.machine()}, torch {torch.__version__}, "
        f"{args.threads} threads, commit {commit}, load avg {os.getloadavg()[0]:.1f}"
    )
    print(
        f"rollout: B={BATCH}, H={HORIZON}, 7 members (5 elites), 4x200, obs {OBS_DIM}, "
        f"act {ACT_DIM}; median of {args.repeats}"
    )
    for sampling, (fwd, bwd) in rollout_times(args.repeats).items():
        print(
            f"  {sampling:>10}: forward {fwd * 1e3:7.1f} ms   forward+backward {bwd * 1e3:7.1f} ms"
        )
    res = training_time(args.epochs)
    print(
        f"training on 100k transitions (99k train / 1k holdout, capped at {args.epochs} epochs): "
        f"{res['total_s']:.1f} s for {res['epochs']} epochs = {res['per_epoch_s']:.2f} s/epoch; "
        f"best holdout MSE {res['final_holdout_mse']:.4f}"
    )


if __name__ == "__main__":
    main()
