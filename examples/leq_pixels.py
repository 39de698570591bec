"""LEQ from pixels: a recurrent latent world model (RSSM) and LEQ in its imagination env.

Algorithm 1 of the paper with the DreamerV3-style world model of its V-D4RL experiments:
pixel sequences D_env (the generated point-maze rendered at 64×64, or a V-D4RL 64px folder),
an RSSM trained on them (cached), the RSSM as a latent TorchRL env, actor and critic on latent
features, LEQ updates from imagined rollouts while D_model (latent start states) is expanded,
evaluation in the rendered env with a filtering policy. ``bc_pixels.py`` (BC on the same latent
features) reuses this script's D_env, world model and evaluation.

    python examples/leq_pixels.py                       # rendered pointmaze-umaze
    python examples/leq_pixels.py smoke=true            # end to end in well under a minute
    python examples/leq_pixels.py smoke=true seeds=[0,1]  # 2 seeds, one after another
    python examples/leq_pixels.py --config-name leq_pixels_vd4rl data.path=vd4rl_data/main/walker_walk/medium_replay/64px
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, NamedTuple

import hydra
import torch
from omegaconf import DictConfig
from tensordict.nn import TensorDictModule
from torchrl.data import TensorDictReplayBuffer
from torchrl.objectives import SoftUpdate

from torchrl_leq.data import data_root, make_replay_buffer
from torchrl_leq.envs.latent_env import (
    LatentModelEnv,
    LatentPolicy,
    encode_sequences,
    latent_transitions,
)
from torchrl_leq.modules import make_deterministic_actor, make_qvalue_network
from torchrl_leq.modules.rssm import RSSM
from torchrl_leq.objectives import LEQLoss
from torchrl_leq.training.builders import (
    is_resuming,
    make_expansion_hook,
    make_leq_batch_sampler,
    make_leq_loss,
    make_leq_optimizers,
    make_model_start_buffer,
    make_trainer,
    pretrain_bc,
    pretrain_fqe,
)
from torchrl_leq.training.checkpoint import GeneratorState
from torchrl_leq.training.checks import PIXEL_RULES, check_config
from torchrl_leq.training.cli import run_example
from torchrl_leq.training.config import seed_everything
from torchrl_leq.training.pixel_data import load_pixel_sequences, make_rendered_evaluator
from torchrl_leq.training.rssm import cached_rssm
from torchrl_leq.training.trainer import OfflineTrainer, PeriodicHook

WM_MODEL_KEYS = ("channels", "deter_dim", "hidden_dim", "groups", "classes", "prior_members")
WM_TRAIN_KEYS = ("epochs", "steps_per_epoch", "batch_size", "seq_len", "lr", "holdout_fraction")
SUMMARY_KEYS = (
    "world_model", "world_model_cached", "world_model_epoch_s", "world_model_holdout_image_mse",
    "data_s", "world_model_s", "encode_s", "leq_s", "leq_step_s",
)
"""What the pixel scripts report besides the scores (in their JSON line)."""


class PixelData(NamedTuple):
    """D_env from pixels: the world model, D_env's posterior features and their transitions."""

    rssm: RSSM
    features: torch.Tensor  # [N, F]: the posterior features of every frame
    buffer: TensorDictReplayBuffer  # D_env as transitions between features
    rssm_info: dict[str, Any]  # cached_rssm's info: path, cached, training log
    timings: dict[str, float]  # seconds: data_s, world_model_s, encode_s


def make_pixel_data(cfg: DictConfig) -> PixelData:
    """D_env's pixel sequences, the world model trained on them (or loaded from the cache) and
    D_env over the model's latent features, with the seconds each took."""
    timings: dict[str, float] = {}
    # Input: D_env, the offline pixel sequences.
    began = time.perf_counter()
    seq, description = load_pixel_sequences(cfg)
    timings["data_s"] = time.perf_counter() - began

    # Lines 1-2: the world model p_ψ, an RSSM trained on D_env by the DreamerV3 loss, cached
    # (one per run seed unless world_model.seed is set).
    wm = cfg.world_model
    model_kwargs = {"action_dim": seq["action"].shape[-1], **{k: wm[k] for k in WM_MODEL_KEYS}}
    train_kwargs = {k: wm[k] for k in WM_TRAIN_KEYS} | {
        "seed": cfg.seed if wm.seed is None else wm.seed
    }
    began = time.perf_counter()
    rssm, info = cached_rssm(seq, description, model_kwargs, train_kwargs,
                             data_root() / "world_models", cache=wm.cache, progress=cfg.progress)
    timings["world_model_s"] = time.perf_counter() - began
    rssm.requires_grad_(False)

    # D_env in latent space: the posterior features of every frame, as transitions.
    began = time.perf_counter()
    features = encode_sequences(rssm, seq)
    transitions = latent_transitions(features, seq)
    timings["encode_s"] = time.perf_counter() - began
    buffer = make_replay_buffer(transitions, cfg.optim.batch_size_env)
    return PixelData(rssm, features, buffer, info, timings)


def make_latent_networks(
    cfg: DictConfig, data: PixelData
) -> tuple[TensorDictModule, TensorDictModule]:
    """Deterministic actor and Q-network on latent features (``cfg.num_cells``), inputs
    standardised with D_env's feature statistics."""
    f, a = data.rssm.feature_dim, data.rssm.action_dim
    loc, scale = data.features.mean(0), data.features.std(0) + 1e-3
    cells = tuple(cfg.num_cells)
    actor = make_deterministic_actor(f, a, num_cells=cells, layer_norm=False, obs_loc=loc,
                                     obs_scale=scale)
    critic = make_qvalue_network(f, a, num_cells=cells, input_loc=torch.cat([loc, torch.zeros(a)]),
                                 input_scale=torch.cat([scale, torch.ones(a)]))
    return actor, critic


def make_pixel_evaluator(
    cfg: DictConfig, rssm: RSSM, actor: TensorDictModule
) -> Callable[[int, int], dict[str, float]]:
    """``(episodes, seed) -> scores`` in the rendered maze: the RSSM posterior filters the
    frames, ``actor`` acts on its features. V-D4RL: NaN (no DMC renderer on this machine)."""
    return make_rendered_evaluator(cfg, LatentPolicy(rssm, actor))


def train_timed(trainer: OfflineTrainer, data: PixelData, total_steps: int) -> dict[str, Any]:
    """``trainer.train()``; its result (final score) with the world model and the seconds each
    part took (:data:`SUMMARY_KEYS`)."""
    began = time.perf_counter()
    result = trainer.train()
    seconds = time.perf_counter() - began
    timings = {**data.timings, "leq_s": seconds, "leq_step_s": seconds / max(total_steps, 1)}
    log = data.rssm_info.get("log")
    return {
        **result,
        "world_model": data.rssm_info["path"],
        "world_model_cached": data.rssm_info["cached"],
        "world_model_epoch_s": (sum(log["epoch_seconds"]) / len(log["epoch_seconds"])
                                if log else None),
        "world_model_holdout_image_mse": log["holdout_image_mse"][-1] if log else None,
        **{k: round(v, 3) for k, v in timings.items()},
    }


def train(cfg: DictConfig) -> dict[str, Any]:
    """Algorithm 1 from pixels (line numbers in the comments); returns the trainer's result
    (final score) with the world model and timings."""
    check_config(cfg, LEQLoss.hyperparameter_rules, PIXEL_RULES)  # before any work
    seed_everything(cfg.seed)
    # Input and lines 1-2: D_env's pixel sequences, the RSSM world model p_ψ trained on them
    # (or loaded from the cache), D_env over its latent features.
    data = make_pixel_data(cfg)

    # Line 2's p_ψ as a TorchRL env, imagining in latent space; a rollout ends where the
    # continuation head says so (world_model.termination=none: never, as in DMC).
    termination = None if cfg.world_model.termination == "none" else cfg.world_model.termination
    model_env = LatentModelEnv(data.rssm, termination)
    model_env.set_seed(cfg.seed)

    # Lines 1 and 3: policy π_θ and critic Q_φ on latent features; BC for π_θ, then FQE
    # (Algorithm 2) for Q_φ, on D_env's latent transitions.
    actor, critic = make_latent_networks(cfg.network, data)
    if cfg.pretrain.enabled and not is_resuming(cfg):  # a resumed run has them in its checkpoint
        pretrain_bc(actor, data.buffer, cfg.pretrain.bc_steps, lr=cfg.pretrain.bc_lr,
                    batch_size=cfg.pretrain.get("bc_batch_size"), progress=cfg.progress)
        pretrain_fqe(actor, critic, data.buffer, cfg.pretrain.fqe_steps, gamma=cfg.loss.gamma,
                     lr=cfg.optim.critic_lr, ema_decay=cfg.optim.ema_decay, progress=cfg.progress)

    # Lines 12-20: imagine H steps from D_model with π_θ in the model (one rollout per update);
    # critic loss Eq. 7 (lower-expectile λ-returns Eq. 9, D_env TD Eq. 5, EMA Eq. 6), actor Eq. 11.
    loss = make_leq_loss(cfg.loss, actor, critic, model_env)
    optimizers, schedulers = make_leq_optimizers(cfg.optim, loss, cfg.train.total_steps)
    ema = SoftUpdate(loss, eps=cfg.optim.ema_decay)  # the EMA critic of Eq. 6

    # Line 4: D_model ← ∅ (FIFO, latent start states). Lines 6-11: every T_expand steps add
    # R-step model rollouts of the (noisy) policy from D_env states.
    d_model = make_model_start_buffer(cfg.expansion, cfg.optim.batch_size_model)
    expand = make_expansion_hook(cfg.expansion, d_model, data.buffer, model_env, actor)

    # Line 5: the loop — expansion hook, D_env and D_model batches, one update of both networks,
    # EMA step; evaluation in the rendered env every eval_every steps, checkpoints, a final one.
    trainer = make_trainer(
        cfg,
        loss=loss,
        optimizers=optimizers,
        schedulers=schedulers,
        sample_batch=make_leq_batch_sampler(data.buffer, d_model),
        evaluate=make_pixel_evaluator(cfg, data.rssm, actor),
        target_updater=ema,
        hooks=[PeriodicHook(cfg.expansion.every, expand, "expand_d_model")],
        stateful={"d_model": d_model, "model_env_rng": GeneratorState(model_env.generator)},
    )
    return train_timed(trainer, data, cfg.train.total_steps)


@hydra.main(config_path="config", config_name="leq_pixels", version_base="1.3")
def main(cfg: DictConfig) -> None:
    run_example("leq_pixels", train, cfg, extra_keys=SUMMARY_KEYS)


if __name__ == "__main__":
    main()
