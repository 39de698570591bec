"""C-LAP's jump start in the real maze: an *untrained* constrained policy acting through a trained
latent action model's decoder, against a random policy (tests/test_clap_jump_start.py runs the
same rollouts with a 60-s model: 10/10 for the decoded prior, 0/10 for random).

For each seed: train the model of ``examples/config/clap.yaml`` (or smaller, ``--units``) on the
generated point-maze data, then evaluate (1) the untrained constrained policy deterministically
(u = μ of the prior, decoded), (2) the same policy sampled (û ~ π, within μ ± ε̃σ), (3) a random
policy; success rate, mean return and mean minimum distance to the goal over ``--episodes``
episodes. Writes one CSV row per seed and policy.

    python benchmarks/clap_jump_start.py --steps 100000 --epochs 10 --seeds 0 1 2
    python benchmarks/clap_jump_start.py --steps 5000 --epochs 1 --steps-per-epoch 20 --units 16 \
        --episodes 2 --out /tmp/jump.csv        # a quick check that it runs
"""

from __future__ import annotations

import argparse
import csv
import time
from pathlib import Path

import numpy as np
import torch
from tensordict import TensorDict
from torchrl.envs.utils import ExplorationType, set_exploration_type

from torchrl_leq.data import read_pointmaze_dataset
from torchrl_leq.data.sequences import transitions_to_sequences
from torchrl_leq.envs.clap_env import CLAPPolicy
from torchrl_leq.envs.pointmaze import make_pointmaze_env
from torchrl_leq.modules.clap_policy import make_clap_actor
from torchrl_leq.modules.latent_action_model import LatentActionModel
from torchrl_leq.tasks import get_pointmaze_task
from torchrl_leq.training.clap import train_clap_model
from torchrl_leq.training.evaluation import RandomActor


def rollouts(policy, task: str, episodes: int, exploration: ExplorationType) -> dict[str, float]:
    goal = np.asarray(get_pointmaze_task(task).goal_xy)
    success, returns, min_dist = [], [], []
    for i in range(episodes):
        env = make_pointmaze_env(task)
        obs, _ = env.reset(seed=1000 + i)
        total, best, reached = 0.0, np.inf, False
        with set_exploration_type(exploration), torch.no_grad():
            for t in range(env.spec.max_episode_steps):
                td = TensorDict({"observation": torch.as_tensor(obs, dtype=torch.float32)[None],
                                 "is_first": torch.tensor([t == 0])}, [1])
                action = policy(td)["action"][0].numpy()
                obs, reward, terminated, truncated, _ = env.step(np.clip(action, -1, 1))
                total += float(reward)
                best = min(best, float(np.linalg.norm(obs[:2] - goal)))
                reached |= bool(terminated)
                if terminated or truncated:
                    break
        env.close()
        success.append(reached)
        returns.append(total)
        min_dist.append(best)
    return {"success_rate": float(np.mean(success)), "mean_return": float(np.mean(returns)),
            "min_goal_distance": float(np.mean(min_dist))}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--task", default="pointmaze-umaze")
    p.add_argument("--steps", type=int, default=100_000, help="dataset transitions")
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--steps-per-epoch", type=int, default=200)
    p.add_argument("--units", type=int, default=None, help="all model widths (default: Table 2)")
    p.add_argument("--epsilon", type=float, default=1.0)
    p.add_argument("--episodes", type=int, default=20)
    p.add_argument("--seeds", type=int, nargs="+", default=[0])
    p.add_argument("--out", default="benchmarks/results/clap_jump_start.csv")
    args = p.parse_args()
    torch.set_num_threads(1)
    seq = transitions_to_sequences(read_pointmaze_dataset(args.task, args.steps, seed=0))
    rows = []
    for seed in args.seeds:
        torch.manual_seed(seed)
        sizes = {} if args.units is None else {"units": args.units, "deter_dim": args.units}
        model = LatentActionModel(4, 2, **sizes)
        began = time.perf_counter()
        train_clap_model(model, seq, epochs=args.epochs, steps_per_epoch=args.steps_per_epoch,
                         loss_kwargs={"free_nats": 1.0}, seed=seed, progress=False)
        train_s = time.perf_counter() - began
        actor = make_clap_actor(model.feature_dim, model.latent_action_dim, 2, "clap",
                                epsilon=args.epsilon)
        policy = CLAPPolicy(model, actor)
        for name, pol, mode in (("prior_mean", policy, ExplorationType.DETERMINISTIC),
                                ("prior_sampled", policy, ExplorationType.RANDOM),
                                ("random", RandomActor(2, seed=seed), ExplorationType.RANDOM)):
            res = rollouts(pol, args.task, args.episodes, mode)
            rows.append({"seed": seed, "policy": name, "model_train_s": round(train_s, 1), **res})
            print(rows[-1], flush=True)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
