"""CQL (TorchRL's ``CQLLoss``) on exactly LEQ's data pipeline, reward transform and evaluation.

    python examples/cql.py                        # pointmaze-umaze
    python examples/cql.py task=pointmaze-medium  # any generated maze
    python examples/cql.py smoke=true             # < 1 min
"""

from __future__ import annotations

import hydra
from omegaconf import DictConfig
from torchrl.objectives import CQLLoss, SoftUpdate

from torchrl_leq.training.builders import (
    make_offline_data,
    make_optimizers,
    make_sac_networks,
    make_trainer,
)
from torchrl_leq.training.checks import check_config
from torchrl_leq.training.cli import run_example
from torchrl_leq.training.config import register_config_maze, seed_everything

# CQLLoss also returns loss_actor_bc (a diagnostic BC term); the update sums these.
CQL_LOSS_KEYS = ("loss_actor", "loss_qvalue", "loss_cql", "loss_alpha", "loss_alpha_prime")


def train(cfg: DictConfig) -> dict:
    """CQL: SAC with a conservative log-sum-exp penalty on the critic (min-Q weight α)."""
    register_config_maze(cfg)  # a maze of your own (config/maze/), if any
    check_config(cfg)
    seed_everything(cfg.seed)
    data = make_offline_data(cfg.data, batch_size=cfg.optim.batch_size_env)  # D_env
    actor, qvalue = make_sac_networks(cfg.network, data)
    lc = cfg.loss
    loss = CQLLoss(actor, qvalue, loss_function="l2", min_q_weight=lc.min_q_weight,
                   num_random=lc.num_random, with_lagrange=lc.with_lagrange,
                   lagrange_thresh=lc.lagrange_thresh, deterministic_backup=lc.deterministic_backup)
    loss.make_value_estimator(gamma=lc.gamma)
    log_alphas = [p for name, p in loss.named_parameters() if "log_alpha" in name]
    optimizers = make_optimizers({
        "actor": (loss.actor_network_params, cfg.optim.actor_lr),
        "critic": (loss.qvalue_network_params, cfg.optim.critic_lr),
        "alpha": (log_alphas, cfg.optim.alpha_lr),
    })
    trainer = make_trainer(cfg, loss=loss, optimizers=optimizers, sample_batch=data.buffer.sample,
                           actor=actor, target_updater=SoftUpdate(loss, eps=cfg.optim.ema_decay),
                           loss_keys=CQL_LOSS_KEYS)
    return trainer.train()


@hydra.main(config_path="config", config_name="cql", version_base="1.3")
def main(cfg: DictConfig) -> None:
    run_example("cql", train, cfg)


if __name__ == "__main__":
    main()
