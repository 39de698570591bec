"""LEQ from pixels: a recurrent latent world model (RSSM) and LEQ in its imagination env.

Algorithm 1 of the paper with the DreamerV3-style world model of its V-D4RL experiments:
pixel sequences D_env (the generated point-maze rendered at 64×64, or a V-D4RL 64px folder),
an RSSM trained on them (cached), the RSSM as a latent TorchRL env, actor and critic on latent
features, LEQ updates from imagined rollouts while D_model (latent start states) is expanded,
evaluation in the rendered env with a filtering policy.

    python examples/leq_pixels.py                       # rendered pointmaze-umaze
    python examples/leq_pixels.py smoke=true            # end to end in well under a minute
    python examples/leq_pixels.py algo=bc_pixels        # BC on the same latent features
    python examples/leq_pixels.py --config-name leq_pixels_vd4rl data.path=vd4rl_data/main/walker_walk/medium_replay/64px
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any

import hydra
import torch
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf
from torchrl.objectives import SoftUpdate

from torchrl_leq.data.buffers import make_replay_buffer
from torchrl_leq.data.generate import data_root
from torchrl_leq.data.model_buffer import expand_model_buffer, make_model_buffer
from torchrl_leq.data.pixels import evaluate_rendered, render_pointmaze_dataset
from torchrl_leq.data.vd4rl import read_vd4rl
from torchrl_leq.envs.latent_env import (
    LatentModelEnv,
    LatentPolicy,
    encode_sequences,
    latent_transitions,
)
from torchrl_leq.modules import (
    make_deterministic_actor,
    make_exploration_policy,
    make_qvalue_network,
)
from torchrl_leq.objectives.leq import LEQLoss
from torchrl_leq.objectives.pretrain import BCLoss
from torchrl_leq.training.builders import make_adam, make_leq_batch_sampler, make_leq_optimizers
from torchrl_leq.training.rssm import cached_rssm
from torchrl_leq.training.trainer import OfflineTrainer, PeriodicHook

WM_MODEL_KEYS = ("channels", "deter_dim", "hidden_dim", "groups", "classes", "prior_members")
WM_TRAIN_KEYS = ("epochs", "steps_per_epoch", "batch_size", "seq_len", "lr", "holdout_fraction")


def load_pixel_sequences(cfg: DictConfig) -> tuple[Any, str]:
    """D_env as pixel sequences (V-D4RL layout) and a description for the cache key."""
    if cfg.data.source == "rendered_pointmaze":
        path = render_pointmaze_dataset(cfg.data.task, int(cfg.data.steps), int(cfg.data.seed),
                                        episode_length=int(cfg.data.episode_length),
                                        progress=cfg.progress)
    elif cfg.data.source == "vd4rl":
        if not cfg.data.path:
            raise ValueError("data.source=vd4rl needs data.path=<a V-D4RL 64px folder>")
        path = Path(cfg.data.path)
    else:
        raise ValueError(f"data.source must be rendered_pointmaze or vd4rl, got {cfg.data.source}")
    seq = read_vd4rl(path)
    seq["reward"] = seq["reward"] + float(cfg.data.reward_shift)
    return seq, f"{cfg.data.source}:{path}:shift={cfg.data.reward_shift}"


def train(cfg: DictConfig) -> dict[str, Any]:
    """Algorithm 1 from pixels; returns the final evaluation and timings."""
    torch.manual_seed(int(cfg.seed))
    run_dir = Path(cfg.run_dir or HydraConfig.get().runtime.output_dir)
    timings: dict[str, float] = {}

    # Line 1: D_env, the offline pixel sequences.
    began = time.perf_counter()
    seq, description = load_pixel_sequences(cfg)
    timings["data_s"] = time.perf_counter() - began

    # Line 2: the world model (DreamerV3 loss), trained once and cached.
    wm = cfg.world_model
    model_kwargs = {"action_dim": int(seq["action"].shape[-1]),
                    **{k: wm[k] for k in WM_MODEL_KEYS}}
    wm_seed = int(cfg.seed if wm.seed is None else wm.seed)  # an int shares one model across seeds
    train_kwargs = {k: wm[k] for k in WM_TRAIN_KEYS} | {"seed": wm_seed}
    began = time.perf_counter()
    rssm, wm_info = cached_rssm(seq, description, model_kwargs, train_kwargs,
                                data_root() / "world_models", cache=wm.cache,
                                progress=cfg.progress)
    timings["world_model_s"] = time.perf_counter() - began
    rssm.requires_grad_(False)

    # The model as an env: latent imagination, alive mask from the continuation head.
    termination = None if wm.termination == "none" else wm.termination
    model_env = LatentModelEnv(rssm, termination)
    model_env.set_seed(int(cfg.seed))

    # D_env in latent space: posterior features of every frame, as transitions.
    began = time.perf_counter()
    features = encode_sequences(rssm, seq)
    env_td = latent_transitions(features, seq)
    timings["encode_s"] = time.perf_counter() - began
    env_buffer = make_replay_buffer(env_td, int(cfg.optim.batch_size_env))

    # Actor and critic on latent features (standardised with D_env statistics).
    f, a = rssm.feature_dim, rssm.action_dim
    loc, scale = features.mean(0), features.std(0) + 1e-3
    cells = tuple(cfg.network.num_cells)
    actor = make_deterministic_actor(f, a, num_cells=cells, layer_norm=False, obs_loc=loc, obs_scale=scale)
    critic = make_qvalue_network(f, a, num_cells=cells, input_loc=torch.cat([loc, torch.zeros(a)]),
                             input_scale=torch.cat([scale, torch.ones(a)]))

    # LEQ loss (Eqs. 7, 11), optimisers, EMA critic (Eq. 6).
    total = int(cfg.train.total_steps)
    if cfg.algo == "bc_pixels":  # the BC-from-pixels baseline: same world model and features
        loss = BCLoss(actor)
        optimizers = {"actor": make_adam(list(actor.parameters()), float(cfg.optim.actor_lr))}
        schedulers, target_updater, loss_keys = {}, None, ("loss_actor",)
    else:
        loss = LEQLoss(actor, critic, model_env, **OmegaConf.to_container(cfg.loss),
                       validate_inputs=False)
        optimizers, schedulers = make_leq_optimizers(cfg.optim, loss, total)
        target_updater = SoftUpdate(loss, eps=float(cfg.optim.ema_decay))
        loss_keys = ("loss_actor", "loss_qvalue")

    # D_model: latent start states; Lines 7-11: expanded by R-step rollouts every T_expand.
    model_buffer = make_model_buffer(int(cfg.expansion.capacity), int(cfg.optim.batch_size_model))
    explore = make_exploration_policy(actor, float(cfg.expansion.noise))

    def expand(step: int) -> None:
        expand_model_buffer(model_buffer, env_buffer, model_env, explore,
                            num_starts=int(cfg.expansion.num_starts),
                            rollout_length=int(cfg.expansion.rollout_length))

    # Evaluation in the rendered env: filter frames with the posterior, act on features.
    policy = LatentPolicy(rssm, actor)
    max_eval_steps = cfg.train.max_eval_steps

    def evaluate(episodes: int, seed: int) -> dict[str, float]:
        if cfg.data.source != "rendered_pointmaze":
            return {"normalized_score": math.nan, "success_rate": math.nan,
                    "mean_return": math.nan}  # no DMC renderer on this machine: not measured
        res = evaluate_rendered(policy, cfg.task, episodes, seed, max_steps=max_eval_steps)
        rate = res["success_rate"]
        return {"normalized_score": 100.0 * rate, "success_rate": rate,
                "mean_return": sum(res["returns"]) / len(res["returns"])}

    # Lines 3-14: the LEQ update loop.
    if cfg.algo == "bc_pixels":
        sample_batch, hooks = env_buffer.sample, []
    else:
        sample_batch = make_leq_batch_sampler(env_buffer, model_buffer)
        hooks = [PeriodicHook(int(cfg.expansion.every), expand, "expand")]
    trainer = OfflineTrainer(
        loss=loss, modules={"loss": loss}, optimizers=optimizers, schedulers=schedulers,
        sample_batch=sample_batch, evaluate=evaluate,
        run_dir=run_dir, total_steps=total, eval_every=int(cfg.train.eval_every),
        eval_episodes=int(cfg.train.eval_episodes),
        final_eval_episodes=int(cfg.train.final_eval_episodes),
        log_every=int(cfg.train.log_every), checkpoint_every=int(cfg.train.checkpoint_every),
        target_updater=target_updater, hooks=hooks,
        stateful={"model_buffer": model_buffer}, seed=1000 + int(cfg.seed),
        progress=cfg.progress, loss_keys=loss_keys,
    )
    began = time.perf_counter()
    result = trainer.train()
    timings["leq_s"] = time.perf_counter() - began
    timings["leq_step_s"] = timings["leq_s"] / max(total, 1)
    log = wm_info.get("log")
    return {
        "algo": cfg.algo, "task": cfg.task, "seed": int(cfg.seed),
        "final_score": result["last_score"], "best_score": result["best_score"],
        "success_rate": result["final"]["success_rate"],
        "world_model": wm_info["path"], "world_model_cached": wm_info["cached"],
        "world_model_epoch_s": (sum(log["epoch_seconds"]) / len(log["epoch_seconds"])
                                if log else None),
        "world_model_holdout_image_mse": log["holdout_image_mse"][-1] if log else None,
        **{k: round(v, 3) for k, v in timings.items()},
    }


def apply_smoke(cfg: DictConfig) -> DictConfig:
    """Merge ``smoke_overrides`` when ``smoke=true``."""
    if cfg.smoke:
        cfg = OmegaConf.merge(cfg, cfg.smoke_overrides)
    return cfg


@hydra.main(config_path="config", config_name="leq_pixels", version_base="1.3")
def main(cfg: DictConfig) -> None:
    print(json.dumps(train(apply_smoke(cfg)), default=str))


if __name__ == "__main__":
    main()
