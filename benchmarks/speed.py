"""Speed benchmark: one full LEQ gradient step (critic + actor + EMA), ours vs a naive reference.

Setting (the paper's): B_env = B_model = 256, H = 10, a 7-member 4×200 ensemble (5 elites),
3×256 LayerNorm actor and critic, AntMaze dimensions (obs 29, action 8).

* ``ours``: ``LEQLoss`` + ``LEQModelEnv`` (stratified elite sampling: each elite runs on B/5
  samples in one ``baddbmm`` per layer), eager, and ``torch.compile``d with ``--compile``.
* ``naive``: written here from scratch the straightforward way: every member runs on every
  sample (a Python loop over members) and the chosen elite's output is gathered, a plain
  per-step Python rollout, the per-step actor Jacobians ∂Q^λ_t/∂a_t by one backward pass through
  the whole rollout per step (as a direct port of the released JAX code does), no compile.

Both do the same optimiser steps and EMA update. Also timed: world-model training per epoch,
D_model expansion (50k start states × 5 steps), evaluation episodes per second, and K = 1, 4, 8
seeds stacked in one update (``seeds_per_s``: seed-steps per second; per-seed step time = step
time / K) at the paper's and the point-maze example's sizes, with the ``torch.func.vmap``
alternative to the ``baddbmm`` seed layers at K = 8.

    python benchmarks/speed.py --quick          # < 2 min; last line: JSON with leq_step_s,
                                                # naive_step_s, seeds_per_s (K = 1, 4, 8 stacked
                                                # seeds at the paper's and the point-maze sizes)
    python benchmarks/speed.py --compile        # adds the torch.compile'd step
    python benchmarks/speed.py --device cuda
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import statistics
import subprocess
import time
import warnings

import torch
from omegaconf import OmegaConf
from tensordict import TensorDict
from torchrl.objectives import SoftUpdate

from torchrl_leq.data import expand_model_buffer, make_model_buffer, make_replay_buffer
from torchrl_leq.envs import LEQModelEnv
from torchrl_leq.modules import (
    ProbabilisticEnsemble,
    make_deterministic_actor,
    make_exploration_policy,
    make_qvalue_network,
)
from torchrl_leq.objectives import LEQLoss, normalized_lambda_return
from torchrl_leq.training.allocator import keep_freed_memory
from torchrl_leq.training.builders import make_leq_optimizers
from torchrl_leq.training.world_model import train_world_model

OBS, ACT, B, H = 29, 8, 256, 10


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def timeit(fn, repeats: int, warmup: int, device: torch.device) -> float:
    """Median wall time of ``fn`` over ``repeats`` runs after ``warmup`` runs."""
    for _ in range(warmup):
        fn()
    sync(device)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def make_batch(device: torch.device, n: int = B, obs: int = OBS, act: int = ACT) -> TensorDict:
    """LEQ's ``{"env", "model"}`` batch of ``n`` random rows (fixed RNG)."""
    g = torch.Generator().manual_seed(0)
    env = TensorDict(
        {
            "observation": torch.randn(n, obs, generator=g),
            "action": torch.rand(n, act, generator=g) * 2 - 1,
            "next": {
                "observation": torch.randn(n, obs, generator=g),
                "reward": torch.randn(n, 1, generator=g),
                "terminated": torch.zeros(n, 1, dtype=torch.bool),
            },
        },
        [n],
    )
    model = TensorDict({"observation": torch.randn(n, obs, generator=g)}, [n])
    return TensorDict({"env": env, "model": model}, []).to(device)


# ---------------------------------------------------------------------------------- ours
def make_ours(ensemble: ProbabilisticEnsemble, device: torch.device, actor_gradient: str):
    env = LEQModelEnv(ensemble, "antmaze-umaze")
    loss = LEQLoss(
        make_deterministic_actor(OBS, ACT),
        make_qvalue_network(OBS, ACT),
        env,
        horizon=H,
        actor_gradient=actor_gradient,
        validate_inputs=False,
    ).to(device)
    # the trainers' optimisers (fused Adam), without the actor's cosine schedule
    optimizers, _ = make_leq_optimizers(
        OmegaConf.create({"actor_lr": 3e-5, "critic_lr": 1e-4, "cosine_actor_lr": False}),
        loss,
        total_steps=0,
    )
    updater = SoftUpdate(loss, eps=0.995)
    return loss, (optimizers["actor"], optimizers["critic"]), updater


def ours_step(loss_fn, optimizers, updater, batch) -> None:
    out = loss_fn(batch)
    for opt in optimizers:
        opt.zero_grad(set_to_none=True)
    (out["loss_actor"] + out["loss_qvalue"]).backward()
    for opt in optimizers:
        opt.step()
    updater.step()


# ---------------------------------------------------------------------------------- K seeds
POINTMAZE = {"obs": 4, "act": 2, "members": 5, "elites": 3, "model": (128,) * 3,
             "cells": (128, 128), "termination": "pointmaze-umaze"}
"""examples/config/leq_pointmaze.yaml + world_model/small.yaml"""
SIZES = {
    # the paper's (AntMaze): 7 x 4x200 ensemble, 3x256 nets, per-step actor gradients
    "paper": {"obs": OBS, "act": ACT, "members": 7, "elites": 5, "model": (200,) * 4,
              "cells": (256, 256, 256), "actor_gradient": "per_step", "termination": "antmaze-umaze"},
    # the point-maze example with backprop actor gradients (its estimator before Dec 2026)
    "pointmaze": {**POINTMAZE, "actor_gradient": "backprop"},
    # the point-maze example as it is now (the released recipe: per-step actor gradients)
    "pointmaze_per_step": {**POINTMAZE, "actor_gradient": "per_step"},
}


class VmapSeeds(torch.nn.Module):
    """The measured alternative to the ``baddbmm`` layers: ``torch.func.vmap`` of
    ``functional_call`` over K stacked copies of one module's parameters (and buffers)."""

    def __init__(self, modules: list[torch.nn.Module]) -> None:
        super().__init__()
        from torch.func import stack_module_state

        params, buffers = stack_module_state(modules)
        self.base = [copy.deepcopy(modules[0]).to("meta")]  # a list: not a submodule
        self.names = list(params)
        self.params = torch.nn.ParameterList([torch.nn.Parameter(params[n]) for n in self.names])
        for i, b in enumerate(buffers.values()):
            self.register_buffer(f"b{i}", b)
        self.buffer_names = list(buffers)
        self.num_seeds = len(modules)

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        from torch.func import functional_call, vmap

        k = self.num_seeds
        xs = tuple(x.reshape(k, -1, x.shape[-1]) for x in inputs)
        buffers = [getattr(self, f"b{i}") for i in range(len(self.buffer_names))]

        def one(params, bufs, *x):
            state = {**dict(zip(self.names, params)), **dict(zip(self.buffer_names, bufs))}
            return functional_call(self.base[0], state, x)

        out = vmap(one)(list(self.params), buffers, *xs)
        return out.reshape(-1, out.shape[-1])


def make_seeds(size: str, num_seeds: int, device: torch.device, method: str = "baddbmm"):
    """K seeds' stacked LEQ update at ``size`` (K = 1: the plain single-seed step)."""
    from tensordict.nn import TensorDictModule

    from torchrl_leq.envs.model_env import SeedSplitModelEnv
    from torchrl_leq.modules.seed_batched import stack_seed_modules

    c = SIZES[size]
    ensemble = ProbabilisticEnsemble(
        c["obs"], c["act"], num_members=c["members"], num_elites=c["elites"], hidden_dims=c["model"]
    ).to(device)
    actors = [make_deterministic_actor(c["obs"], c["act"], num_cells=c["cells"]) for _ in range(num_seeds)]
    critics = [make_qvalue_network(c["obs"], c["act"], num_cells=c["cells"]) for _ in range(num_seeds)]
    if num_seeds == 1:
        actor, critic, env = actors[0], critics[0], LEQModelEnv(ensemble, c["termination"])
    else:
        if method == "vmap":
            actor = TensorDictModule(VmapSeeds([a.module for a in actors]), actors[0].in_keys, actors[0].out_keys)
            critic = TensorDictModule(VmapSeeds([q.module for q in critics]), critics[0].in_keys, critics[0].out_keys)
        else:
            actor, critic = stack_seed_modules(actors), stack_seed_modules(critics)
        env = SeedSplitModelEnv(
            [LEQModelEnv(ensemble, c["termination"]) for _ in range(num_seeds)],
            [torch.Generator(device=device).manual_seed(k) for k in range(num_seeds)],
        )
    loss = LEQLoss(
        actor, critic, env, horizon=H, actor_gradient=c["actor_gradient"], validate_inputs=False,
        num_seeds=num_seeds,
    ).to(device)
    optimizers, _ = make_leq_optimizers(
        OmegaConf.create({"actor_lr": 3e-5, "critic_lr": 1e-4, "cosine_actor_lr": False}),
        loss,
        total_steps=0,
    )
    updater = SoftUpdate(loss, eps=0.995)
    batch = make_batch(device, B * num_seeds, c["obs"], c["act"])

    def step() -> None:
        out = loss(batch)
        for opt in optimizers.values():
            opt.zero_grad(set_to_none=True)
        (out["loss_actor"] + out["loss_qvalue"]).sum().backward()
        for opt in optimizers.values():
            opt.step()
        updater.step()

    return step


def time_seeds(device: torch.device, repeats: int, warmup: int, seeds=(1, 4, 8)) -> dict:
    """Per-seed step time (step time / K) and seeds·steps per second, K seeds stacked."""
    out: dict = {}
    for size in SIZES:
        for k in seeds:
            t = timeit(make_seeds(size, k, device), repeats, warmup, device)
            out[f"{size}_K{k}_step_s"] = t
            out[f"{size}_K{k}_per_seed_step_s"] = t / k
            out[f"{size}_K{k}_seeds_per_s"] = k / t
        k = max(seeds)
        t = timeit(make_seeds(size, k, device, "vmap"), repeats, warmup, device)
        out[f"{size}_K{k}_vmap_per_seed_step_s"] = t / k
    return out


# ---------------------------------------------------------------------------------- naive
class NaiveLEQ:
    """LEQ written the straightforward way (see the module docstring)."""

    def __init__(
        self,
        ensemble: ProbabilisticEnsemble,
        device: torch.device,
        actor: torch.nn.Module | None = None,
        critic: torch.nn.Module | None = None,
    ) -> None:
        self.ens = ensemble
        self.actor = (actor or make_deterministic_actor(OBS, ACT).module).to(device)
        self.critic = (critic or make_qvalue_network(OBS, ACT).module).to(device)
        self.target = copy.deepcopy(self.critic)
        self.actor_opt = torch.optim.Adam(self.actor.parameters(), lr=3e-5)
        self.critic_opt = torch.optim.Adam(self.critic.parameters(), lr=1e-4)

    def member(self, m: int, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        e = self.ens
        h = (x - e.input_mean) / e.input_std
        for i, (w, b) in enumerate(zip(e.weights, e.biases)):
            h = h @ w[m] + b[m]
            if i < len(e.weights) - 1:
                h = torch.nn.functional.silu(h)
        mean, logvar = h.chunk(2, dim=-1)
        logvar = e.max_logvar - torch.nn.functional.softplus(e.max_logvar - logvar)
        logvar = e.min_logvar + torch.nn.functional.softplus(logvar - e.min_logvar)
        return mean, logvar

    def model_step(self, obs, act):
        x = torch.cat([obs, act.clamp(-1, 1)], -1)
        outs = [
            self.member(m, x) for m in range(self.ens.num_members)
        ]  # every member, every sample
        mean = torch.stack([o[0] for o in outs])
        std = torch.stack([o[1] for o in outs]).mul(0.5).exp()
        choice = self.ens.elites[
            torch.randint(len(self.ens.elites), (obs.shape[0],), device=obs.device)
        ]
        idx = torch.arange(obs.shape[0], device=obs.device)
        sample = mean[choice, idx] + std[choice, idx] * torch.randn_like(mean[0])
        return obs + sample[:, :-1], sample[:, -1:]

    def losses(self, batch: TensorDict) -> tuple[torch.Tensor, torch.Tensor]:
        """LEQLoss's defaults (τ = 0.1, β = 0.25, ω = 1, γ = 0.997, λ = 0.95, EMA on the
        rollout too), written out; no terminations (the benchmark's states never reach a goal)."""
        obs0 = batch["model", "observation"]
        deltas = [torch.zeros(B, ACT, device=obs0.device, requires_grad=True) for _ in range(H + 1)]
        frozen = {k: v.detach() for k, v in self.critic.named_parameters()}
        actor_frozen = {k: v.detach() for k, v in self.actor.named_parameters()}
        q_fn = torch.func.functional_call
        s, states, actions, rewards, qs = obs0, [], [], [], []
        for t in range(H + 1):
            a = q_fn(self.actor, actor_frozen, (s,)) + deltas[t]
            states.append(s)
            actions.append(a)
            qs.append(q_fn(self.critic, frozen, (s, a)))
            if t < H:
                s, r = self.model_step(s, a)
                rewards.append(r)
        q = torch.stack(qs, 1)
        lam = normalized_lambda_return(
            torch.stack(rewards, 1), q[:, 1:], gamma=0.997, lmbda=0.95, value=q[:, :-1]
        )
        lam = torch.cat([lam, q[:, -1:]], 1)
        jac = [
            torch.autograd.grad(lam[:, t].sum(), deltas[t], retain_graph=True)[0]
            for t in range(H + 1)
        ]
        obs = torch.stack(states, 1).detach()
        w = torch.where(q.detach() > lam.detach(), 0.9, 0.1)
        w[:, -1] = 0.5  # t = H, where Q^λ_H = Q_H
        pa = self.actor(obs)
        actor_loss = -(w * (torch.stack(jac, 1) * pa).sum(-1, keepdim=True)).sum(1).mean()
        act = torch.stack(actions, 1).detach()
        q_pred = self.critic(obs[:, :-1], act[:, :-1])
        target = lam[:, :-1].detach()
        diff = q_pred - target
        discount = 0.997 ** torch.arange(H, device=obs.device, dtype=obs.dtype).view(1, H, 1)
        model_loss = (discount * torch.where(diff > 0, 0.9, 0.1) * diff**2).mean()
        e = batch["env"]
        with torch.no_grad():
            na = self.actor(e["next", "observation"])
            y = e["next", "reward"] + 0.997 * self.critic(e["next", "observation"], na)
            ema_env = self.target(e["observation"], e["action"])
            ema_model = self.target(obs[:, :-1], act[:, :-1])
        q_env = self.critic(e["observation"], e["action"])
        env_loss = 0.5 * ((q_env - y) ** 2).mean()
        ema_model_loss = (discount * (q_pred - ema_model) ** 2).mean()
        ema = 0.25 * ema_model_loss + 0.75 * ((q_env - ema_env) ** 2).mean()
        critic_loss = 0.25 * model_loss + 0.75 * env_loss + ema
        return actor_loss, critic_loss

    def step(self, batch: TensorDict) -> None:
        actor_loss, critic_loss = self.losses(batch)
        self.actor_opt.zero_grad()
        self.critic_opt.zero_grad()
        (actor_loss + critic_loss).backward()
        self.actor_opt.step()
        self.critic_opt.step()
        with torch.no_grad():
            for p, tp in zip(self.critic.parameters(), self.target.parameters()):
                tp.lerp_(p, 0.005)


# ---------------------------------------------------------------------------------- extras
def time_world_model_epoch(device: torch.device, n: int) -> float:
    g = torch.Generator().manual_seed(1)
    obs, act = torch.randn(n, OBS, generator=g), torch.rand(n, ACT, generator=g) * 2 - 1
    nxt, rew = obs + 0.1 * torch.randn(n, OBS, generator=g), torch.randn(n, 1, generator=g)
    ens = ProbabilisticEnsemble(OBS, ACT).to(device)
    start = time.perf_counter()
    train_world_model(ens, obs, act, nxt, rew, max_epochs=1, progress=False)
    sync(device)
    return time.perf_counter() - start


def time_expansion(ensemble: ProbabilisticEnsemble, device: torch.device, starts: int) -> float:
    g = torch.Generator().manual_seed(2)
    td = TensorDict(
        {
            "observation": torch.randn(20_000, OBS, generator=g),
            "action": torch.zeros(20_000, ACT),
        },
        [20_000],
    )
    env_buffer = make_replay_buffer(td, device=device)
    model_buffer = make_model_buffer(capacity=1_250_000, device=device)
    env = LEQModelEnv(ensemble, "antmaze-umaze")
    policy = make_exploration_policy(make_deterministic_actor(OBS, ACT).to(device), 1.0)
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        expand_model_buffer(
            model_buffer, env_buffer, env, policy, num_starts=starts, rollout_length=5
        )
    sync(device)
    return time.perf_counter() - start


def time_evaluation(episodes: int) -> float:
    from torchrl_leq.training.evaluation import evaluate

    actor = make_deterministic_actor(4, 2)
    start = time.perf_counter()
    evaluate(actor, "pointmaze-umaze", episodes=episodes, seed=0, num_envs=min(episodes, 10))
    return episodes / (time.perf_counter() - start)


def machine() -> dict:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=False
        ).stdout.strip()
    except OSError:
        commit = ""
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "threads": torch.get_num_threads(),
        "load_avg": os.getloadavg()[0],
        "torch": torch.__version__,
        "commit": commit,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--quick", action="store_true", help="fewer repeats, small extras (< 1 min)"
    )
    parser.add_argument("--compile", action="store_true", help="also time the torch.compile'd step")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--default-malloc", action="store_true",
                        help="keep glibc's malloc defaults (the examples raise its thresholds)")
    args = parser.parse_args()
    malloc_tuned = False if args.default_malloc else keep_freed_memory()
    if args.threads:
        torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore")
    device = torch.device(args.device)
    torch.manual_seed(0)
    repeats, warmup = (3, 1) if args.quick else (10, 3)
    ensemble = ProbabilisticEnsemble(OBS, ACT).to(device)
    batch = make_batch(device)
    result: dict = {"device": str(device), **machine(), "malloc_tuned": malloc_tuned}

    loss, opts, updater = make_ours(ensemble, device, "per_step")
    result["leq_step_s"] = timeit(
        lambda: ours_step(loss, opts, updater, batch), repeats, warmup, device
    )
    loss_bp, opts_bp, updater_bp = make_ours(ensemble, device, "backprop")
    result["leq_step_backprop_s"] = timeit(
        lambda: ours_step(loss_bp, opts_bp, updater_bp, batch), repeats, warmup, device
    )
    naive = NaiveLEQ(ensemble, device)
    result["naive_step_s"] = timeit(lambda: naive.step(batch), repeats, warmup, device)
    result["speedup_vs_naive"] = result["naive_step_s"] / result["leq_step_s"]
    if args.compile:
        compiled = torch.compile(loss_bp)
        start = time.perf_counter()
        ours_step(compiled, opts_bp, updater_bp, batch)
        result["compile_time_s"] = time.perf_counter() - start
        result["leq_step_backprop_compiled_s"] = timeit(
            lambda: ours_step(compiled, opts_bp, updater_bp, batch), repeats, warmup, device
        )
    seeds = time_seeds(device, repeats, warmup)
    result["seeds_per_s"] = {
        size: {str(k): seeds[f"{size}_K{k}_seeds_per_s"] for k in (1, 4, 8)} for size in SIZES
    }
    result["per_seed_step_s"] = {
        size: {str(k): seeds[f"{size}_K{k}_per_seed_step_s"] for k in (1, 4, 8)}
        for size in SIZES
    }
    result["vmap_per_seed_step_s_K8"] = {
        size: seeds[f"{size}_K8_vmap_per_seed_step_s"] for size in SIZES
    }
    result["paper_K8_per_seed_vs_naive"] = result["naive_step_s"] / seeds["paper_K8_per_seed_step_s"]
    result["world_model_epoch_s"] = time_world_model_epoch(
        device, 20_000 if args.quick else 100_000
    )
    result["world_model_epoch_transitions"] = 20_000 if args.quick else 100_000
    result["expansion_s"] = time_expansion(ensemble, device, 5_000 if args.quick else 50_000)
    result["expansion_starts"] = 5_000 if args.quick else 50_000
    result["eval_episodes_per_s"] = time_evaluation(4 if args.quick else 20)
    for key, value in result.items():
        print(f"{key:32s} {value:.4f}" if isinstance(value, float) else f"{key:32s} {value}")
    print(f"{'K seeds (per-seed step s)':32s} " + "  ".join(
        f"{size}: " + ", ".join(f"K={k} {result['per_seed_step_s'][size][k]:.4f}" for k in ("1", "4", "8"))
        for size in SIZES))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
