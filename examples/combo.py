"""COMBO (Yu et al. 2021) on LEQ's parts: the same data, world model, model env and trainer; the
loss (SAC + a conservative regulariser) and what fills the model replay buffer differ.

    python examples/combo.py                      # pointmaze-umaze
    python examples/combo.py task=pointmaze-medium data.steps=1000000
    python examples/combo.py smoke=true           # < 1 min
    python examples/combo.py smoke=true seeds=[0,1,2,3]   # 4 seeds, one stacked update
"""

from __future__ import annotations

from functools import partial
from typing import NamedTuple

import hydra
from omegaconf import DictConfig
from tensordict.nn import TensorDictModule
from torchrl.data import TensorDictReplayBuffer
from torchrl.modules import ProbabilisticActor
from torchrl.objectives import SoftUpdate

from torchrl_leq.data import make_model_buffer, sample_mixed_batch
from torchrl_leq.envs import LEQModelEnv
from torchrl_leq.objectives import COMBOLoss
from torchrl_leq.training.builders import (
    OfflineData,
    make_model_rollout_hook,
    make_offline_data,
    make_optimizers,
    make_sac_networks,
    make_termination,
    make_world_model,
)
from torchrl_leq.training.checks import check_config
from torchrl_leq.training.cli import run_example
from torchrl_leq.training.config import register_config_maze, seed_everything
from torchrl_leq.training.multi_seed import (
    build_seeds,
    make_multi_seed_trainer,
    stack_networks,
    stacks_seeds,
)
from torchrl_leq.training.trainer import PeriodicHook


class Seed(NamedTuple):
    """What one seed builds before its training loop."""

    data: OfflineData
    model_env: LEQModelEnv
    actor: ProbabilisticActor
    qvalue: TensorDictModule
    d_model: TensorDictReplayBuffer


def build_seed(cfg: DictConfig) -> Seed:
    """D_env, the world model env, SAC networks and an empty D_model for the seed ``cfg.seed``
    (a single-seed run's setup, in its RNG stream)."""
    seed_everything(cfg.seed)
    data = make_offline_data(cfg.data, batch_size=cfg.optim.batch_size_env)  # D_env
    model_env = LEQModelEnv(  # the learned dynamics with the task's true termination
        make_world_model(cfg.world_model, data, run_seed=cfg.seed, progress=cfg.progress),
        make_termination(cfg),
    )
    seed_everything(cfg.seed + 1)  # the same RNG stream whether data and model came from cache
    actor, qvalue = make_sac_networks(cfg.network, data)  # tanh-Gaussian actor, twin critics
    # D_model: transitions of short model rollouts of the current policy from D_env states.
    d_model = make_model_buffer(cfg.rollout.capacity, batch_size=None)
    return Seed(data, model_env, actor, qvalue, d_model)


@stacks_seeds
def train(cfg: DictConfig) -> dict:
    """COMBO: D_env → world model env → SAC networks → COMBOLoss; model rollouts every
    ``rollout.every`` steps; each update mixes real and model transitions (ratio f). The seeds
    of ``cfg.seeds`` (one by default) are stacked into one update; returns the trainer's result
    (final score; ``per_seed`` results for K > 1)."""
    register_config_maze(cfg)  # a maze of your own (config/maze/), if any
    check_config(cfg, COMBOLoss.hyperparameter_rules)
    configs, seeds, streams = build_seeds(cfg, build_seed)
    actor, actors = stack_networks([s.actor for s in seeds])  # K seeds: [K, ...] parameters
    qvalue, _ = stack_networks([s.qvalue for s in seeds])

    # SAC + the conservative regulariser; K > 1: seed k samples from its own RNG stream.
    K, lc = len(seeds), cfg.loss
    loss = COMBOLoss(actor, qvalue, beta=lc.beta, real_ratio=lc.real_ratio,
                     num_random=lc.num_random, gamma=lc.gamma, validate_inputs=False,
                     num_seeds=K, generators=streams.generators if K > 1 else None)
    optimizers = make_optimizers({
        "actor": (loss.actor_network_params, cfg.optim.actor_lr),
        "critic": (loss.qvalue_network_params, cfg.optim.critic_lr),
        "alpha": (loss.log_alpha, cfg.optim.alpha_lr),
    })

    # Every rollout.every steps: each seed's policy rolled in its model, into its D_model.
    fill = [
        make_model_rollout_hook(cfg.rollout, s.d_model, s.data.buffer, s.model_env, actors.get(k))
        for k, s in enumerate(seeds)
    ]
    trainer = make_multi_seed_trainer(
        cfg,
        configs,
        streams,
        loss=loss,
        optimizers=optimizers,
        sample_batches=[  # each seed's mixed batch: f·B of its D_env, the rest of its D_model
            partial(sample_mixed_batch, s.data.buffer, s.d_model, cfg.optim.batch_size_env,
                    lc.real_ratio)
            for s in seeds
        ],
        actor_views=actors,
        target_updater=SoftUpdate(loss, eps=cfg.optim.ema_decay),
        hooks=[[PeriodicHook(cfg.rollout.every, f, "model_rollouts")] for f in fill],
        stateful=[{"model_transitions": s.d_model} for s in seeds],
    )
    return trainer.train()


@hydra.main(config_path="config", config_name="combo", version_base="1.3")
def main(cfg: DictConfig) -> None:
    run_example("combo", train, cfg)


if __name__ == "__main__":
    main()
