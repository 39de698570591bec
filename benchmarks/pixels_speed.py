"""Speed of the pixel pipeline on this CPU: RSSM update (world-model training) and LEQ update on
latent states, at a small maze size and at V-D4RL (DreamerV3 S) sizes.

    OMP_NUM_THREADS=1 python benchmarks/pixels_speed.py [--threads 1] [--repeats 3]

Prints one JSON line per measurement (seconds per step, median of ``--repeats`` after a warm-up).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch
from tensordict import TensorDict

from torchrl_leq.envs.latent_env import LatentModelEnv
from torchrl_leq.modules import make_deterministic_actor, make_qvalue_network
from torchrl_leq.modules.rssm import RSSM
from torchrl_leq.objectives.leq import LEQLoss
from torchrl_leq.objectives.rssm_loss import RSSMLoss

SIZES = {
    # rendered umaze (examples/config/base/pixels.yaml has half these channels and deter_dim)
    "maze": dict(model=dict(channels=16, deter_dim=128, hidden_dim=128, groups=8, classes=8,
                            prior_members=1), batch=16, seq=32, mlp=(256, 256), b_model=256),
    # V-D4RL: DreamerV3 S (12M) world model, OfflineDV2's 7 priors, 16 x 64 sequences; LEQ
    # imagines H=5 steps from every posterior state of a batch (16 * 64 = 1024 starts)
    "vd4rl": dict(model=dict(channels=32, deter_dim=512, hidden_dim=512, groups=32, classes=32,
                             prior_members=7), batch=16, seq=64, mlp=(512, 512), b_model=1024),
}


def timed(fn, repeats: int) -> float:
    fn()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def latent_states(model: RSSM, n: int) -> torch.Tensor:
    """Random features shaped like posterior states (one-hot stochastic part)."""
    z = torch.nn.functional.one_hot(torch.randint(model.classes, (n, model.groups)),
                                    model.classes).float().flatten(1)
    return torch.cat([torch.randn(n, model.deter_dim), z], -1)


def bench_world_model(model: RSSM, batch: int, seq_len: int, repeats: int) -> float:
    """Seconds per RSSM update on ``batch`` sequences of ``seq_len`` frames."""
    a = model.action_dim
    seq = TensorDict({
        "pixels": torch.randint(0, 256, (batch, seq_len, 3, 64, 64), dtype=torch.uint8),
        "action": torch.rand(batch, seq_len, a) * 2 - 1, "reward": torch.rand(batch, seq_len),
        "is_first": torch.zeros(batch, seq_len, dtype=torch.bool),
        "is_terminal": torch.zeros(batch, seq_len, dtype=torch.bool)}, [batch, seq_len])
    loss_fn = RSSMLoss(model)
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)

    def step() -> None:
        out = loss_fn(seq)
        loss = sum(v for k, v in out.items() if k.startswith("loss_"))
        opt.zero_grad()
        loss.backward()
        opt.step()

    return timed(step, repeats)


def bench_leq(model: RSSM, mlp: tuple[int, ...], b_model: int, actor_gradient: str,
              termination: str | None, repeats: int) -> float:
    """Seconds per LEQ update (H = 5, B_env = 256) on latent states of ``model``."""
    f, a = model.feature_dim, model.action_dim
    env = LatentModelEnv(model, termination)
    loss = LEQLoss(make_deterministic_actor(f, a, num_cells=mlp), make_qvalue_network(f, a, num_cells=mlp),
                   env, horizon=5, actor_gradient=actor_gradient, validate_inputs=False)
    batch = TensorDict({
        "env": TensorDict({"observation": latent_states(model, 256),
                           "action": torch.rand(256, a) * 2 - 1,
                           "next": {"observation": latent_states(model, 256),
                                    "reward": torch.rand(256, 1),
                                    "terminated": torch.zeros(256, 1, dtype=torch.bool)}},
                          [256]),
        "model": TensorDict({"observation": latent_states(model, b_model)}, [b_model])}, [])
    opt = torch.optim.Adam([p for p in loss.parameters() if p.requires_grad], lr=1e-4)

    def step() -> None:
        out = loss(batch)
        opt.zero_grad()
        (out["loss_actor"] + out["loss_qvalue"]).backward()
        opt.step()

    return timed(step, repeats)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--sizes", nargs="+", default=list(SIZES))
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    for name in args.sizes:
        s = SIZES[name]
        torch.manual_seed(0)
        model = RSSM(6 if name == "vd4rl" else 2, **s["model"])
        sec = bench_world_model(model, s["batch"], s["seq"], args.repeats)
        print(json.dumps({"size": name, "what": "rssm_update", "batch": s["batch"],
                          "seq_len": s["seq"],
                          "params_M": round(sum(p.numel() for p in model.parameters()) / 1e6, 2),
                          "seconds": round(sec, 4), "threads": args.threads}), flush=True)
        model.requires_grad_(False)
        termination = None if name == "vd4rl" else "continue_head"
        for grad in ("backprop", "per_step"):
            sec = bench_leq(model, s["mlp"], s["b_model"], grad, termination, args.repeats)
            print(json.dumps({"size": name, "what": "leq_update", "actor_gradient": grad,
                              "b_model": s["b_model"], "b_env": 256, "horizon": 5,
                              "feature_dim": model.feature_dim, "seconds": round(sec, 4),
                              "threads": args.threads}), flush=True)


if __name__ == "__main__":
    main()
