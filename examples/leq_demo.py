"""Minimal LEQ update loop on a differentiable analytic model env (no data, no download).

Trains LEQ's actor and critic on a linear-quadratic regulator whose dynamics play the role of
the learned world model, and shows that the imagined return of the policy improves.

    python examples/leq_demo.py --steps 300
"""

from __future__ import annotations

import argparse
import time

import torch
from tensordict import TensorDict
from torchrl.objectives import SoftUpdate

from torchrl_leq.envs.analytic import LinearQuadraticEnv
from torchrl_leq.modules import make_deterministic_actor, make_qvalue_network
from torchrl_leq.objectives import LEQLoss


def imagined_return(env: LinearQuadraticEnv, actor, start: torch.Tensor, horizon: int) -> float:
    """Mean undiscounted return of ``horizon`` model steps from ``start`` (no gradient)."""
    with torch.no_grad():
        td = env.reset(TensorDict({"observation": start}, start.shape[:1]))
        rollout = env.rollout(horizon, actor, auto_reset=False, tensordict=td)
        return rollout["next", "reward"].sum(1).mean().item()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--horizon", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.manual_seed(args.seed)

    obs_dim, act_dim = 4, 2
    env = LinearQuadraticEnv(obs_dim, act_dim, noise_std=0.01, seed=args.seed)
    actor = make_deterministic_actor(obs_dim, act_dim, num_cells=(64, 64))
    critic = make_qvalue_network(obs_dim, act_dim, num_cells=(64, 64))
    loss = LEQLoss(actor, critic, env, horizon=args.horizon, tau=0.3, gamma=0.99)
    target_updater = SoftUpdate(loss, eps=0.995)
    opt_actor = torch.optim.Adam(loss.actor_network_params.values(True, True), lr=1e-3)
    opt_critic = torch.optim.Adam(loss.qvalue_network_params.values(True, True), lr=1e-3)

    def offline_batch(n: int) -> TensorDict:
        """'D_env': random-action transitions of the true system."""
        obs = torch.randn(n, obs_dim)
        act = torch.rand(n, act_dim) * 2 - 1
        with torch.no_grad():
            nxt = env.dynamics(obs, act)
        reward = -(nxt.pow(2).sum(-1, keepdim=True)) - env.action_cost * act.pow(2).sum(
            -1, keepdim=True
        )
        return TensorDict(
            {
                "observation": obs,
                "action": act,
                "next": {
                    "observation": nxt,
                    "reward": reward,
                    "terminated": torch.zeros(n, 1, dtype=torch.bool),
                },
            },
            [n],
        )

    eval_states = torch.randn(512, obs_dim)
    print(f"imagined return before: {imagined_return(env, actor, eval_states, args.horizon):8.3f}")
    start = time.perf_counter()
    for step in range(1, args.steps + 1):
        batch = TensorDict(
            {
                "env": offline_batch(args.batch),
                "model": TensorDict(
                    {"observation": torch.randn(args.batch, obs_dim)}, [args.batch]
                ),
            },
            [],
        )
        out = loss(batch)
        opt_actor.zero_grad()
        opt_critic.zero_grad()
        (out["loss_actor"] + out["loss_qvalue"]).backward()
        opt_actor.step()
        opt_critic.step()
        target_updater.step()
        if step % 50 == 0 or step == args.steps:
            print(
                f"step {step:4d}  loss_qvalue {out['loss_qvalue'].item():8.3f}  "
                f"loss_actor {out['loss_actor'].item():9.3f}  "
                f"Q^λ mean {out['lambda_return_mean'].item():8.3f}"
            )
    elapsed = time.perf_counter() - start
    after = imagined_return(env, actor, eval_states, args.horizon)
    print(f"imagined return after:  {after:8.3f}   ({elapsed / args.steps * 1000:.1f} ms/step)")


if __name__ == "__main__":
    main()
