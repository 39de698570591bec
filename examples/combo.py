"""COMBO (Yu et al. 2021) on LEQ's parts: the same data, world model, model env and trainer; the
loss (SAC + a conservative regulariser) and what fills the model replay buffer differ.

    python examples/combo.py                      # pointmaze-umaze
    python examples/combo.py task=pointmaze-medium data.steps=1000000
    python examples/combo.py smoke=true           # < 1 min
"""

from __future__ import annotations

import hydra
from omegaconf import DictConfig
from torchrl.objectives import SoftUpdate

from torchrl_leq.data import make_model_buffer, sample_mixed_batch
from torchrl_leq.envs import LEQModelEnv
from torchrl_leq.objectives import COMBOLoss
from torchrl_leq.training.builders import (
    make_model_rollout_hook,
    make_offline_data,
    make_optimizers,
    make_sac_networks,
    make_termination,
    make_trainer,
    make_world_model,
)
from torchrl_leq.training.checks import check_config
from torchrl_leq.training.cli import run_example
from torchrl_leq.training.config import register_config_maze, seed_everything
from torchrl_leq.training.trainer import PeriodicHook


def train(cfg: DictConfig) -> dict:
    """COMBO: D_env → world model env → SAC networks → COMBOLoss; model rollouts every
    ``rollout.every`` steps; each update mixes real and model transitions (ratio f)."""
    register_config_maze(cfg)  # a maze of your own (config/maze/), if any
    check_config(cfg, COMBOLoss.hyperparameter_rules)
    seed_everything(cfg.seed)
    data = make_offline_data(cfg.data, batch_size=cfg.optim.batch_size_env)  # D_env
    model_env = LEQModelEnv(  # the learned dynamics with the task's true termination
        make_world_model(cfg.world_model, data, run_seed=cfg.seed, progress=cfg.progress),
        make_termination(cfg),
    )
    seed_everything(cfg.seed + 1)  # the same RNG stream whether data and model came from cache

    actor, qvalue = make_sac_networks(cfg.network, data)  # tanh-Gaussian actor, twin critics
    lc = cfg.loss
    loss = COMBOLoss(actor, qvalue, beta=lc.beta, real_ratio=lc.real_ratio,
                     num_random=lc.num_random, gamma=lc.gamma, validate_inputs=False)
    optimizers = make_optimizers({
        "actor": (loss.actor_network_params, cfg.optim.actor_lr),
        "critic": (loss.qvalue_network_params, cfg.optim.critic_lr),
        "alpha": (loss.log_alpha, cfg.optim.alpha_lr),
    })

    # D_model: transitions of short model rollouts of the current policy from D_env states.
    d_model = make_model_buffer(cfg.rollout.capacity, batch_size=None)
    fill = make_model_rollout_hook(cfg.rollout, d_model, data.buffer, model_env, loss.actor_network)
    trainer = make_trainer(
        cfg,
        loss=loss,
        optimizers=optimizers,
        sample_batch=lambda: sample_mixed_batch(
            data.buffer, d_model, cfg.optim.batch_size_env, lc.real_ratio
        ),
        actor=actor,
        target_updater=SoftUpdate(loss, eps=cfg.optim.ema_decay),
        hooks=[PeriodicHook(cfg.rollout.every, fill, "model_rollouts")],
        stateful={"model_transitions": d_model},
    )
    return trainer.train()


@hydra.main(config_path="config", config_name="combo", version_base="1.3")
def main(cfg: DictConfig) -> None:
    run_example("combo", train, cfg)


if __name__ == "__main__":
    main()
