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
from torchrl_leq.modules import make_leq_actor, make_leq_critic
from torchrl_leq.modules.rssm import RSSM
from torchrl_leq.objectives.leq import LEQLoss
from torchrl_leq.objectives.rssm_loss import RSSMLoss

SIZES = {
    # rendered umaze (examples/config/leq_pixels.yaml)
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
        a = model.action_dim
        b, t = s["batch"], s["seq"]
        seq = TensorDict({
            "pixels": torch.randint(0, 256, (b, t, 3, 64, 64), dtype=torch.uint8),
            "action": torch.rand(b, t, a) * 2 - 1, "reward": torch.rand(b, t),
            "is_first": torch.zeros(b, t, dtype=torch.bool),
            "is_terminal": torch.zeros(b, t, dtype=torch.bool)}, [b, t])
        wm_loss = RSSMLoss(model)
        opt = torch.optim.Adam(model.parameters(), lr=1e-4)

        def wm_step():
            out = wm_loss(seq)
            loss = sum(v for k, v in out.items() if k.startswith("loss_"))
            opt.zero_grad()
            loss.backward()
            opt.step()

        wm = timed(wm_step, args.repeats)
        print(json.dumps({"size": name, "what": "rssm_update", "batch": b, "seq_len": t,
                          "params_M": round(sum(p.numel() for p in model.parameters()) / 1e6, 2),
                          "seconds": round(wm, 4), "threads": args.threads}), flush=True)

        f = model.feature_dim
        env = LatentModelEnv(model, None if name == "vd4rl" else "continue_head")
        actor = make_leq_actor(f, a, num_cells=s["mlp"])
        critic = make_leq_critic(f, a, num_cells=s["mlp"])
        bm = s["b_model"]

        def feats(n):
            z = torch.nn.functional.one_hot(torch.randint(model.classes, (n, model.groups)),
                                            model.classes).float().flatten(1)
            return torch.cat([torch.randn(n, model.deter_dim), z], -1)

        batch = TensorDict({
            "env": TensorDict({"observation": feats(256), "action": torch.rand(256, a) * 2 - 1,
                               "next": {"observation": feats(256), "reward": torch.rand(256, 1),
                                        "terminated": torch.zeros(256, 1, dtype=torch.bool)}},
                              [256]),
            "model": TensorDict({"observation": feats(bm)}, [bm])}, [])
        for grad in ("backprop", "per_step"):
            loss = LEQLoss(actor, critic, env, horizon=5, actor_gradient=grad,
                           validate_inputs=False)
            params = [p for p in loss.parameters() if p.requires_grad]
            lopt = torch.optim.Adam(params, lr=1e-4)

            def leq_step():
                out = loss(batch)
                lopt.zero_grad()
                (out["loss_actor"] + out["loss_qvalue"]).backward()
                lopt.step()

            sec = timed(leq_step, args.repeats)
            print(json.dumps({"size": name, "what": "leq_update", "actor_gradient": grad,
                              "b_model": bm, "b_env": 256, "horizon": 5, "feature_dim": f,
                              "seconds": round(sec, 4), "threads": args.threads}), flush=True)


if __name__ == "__main__":
    main()
