"""IQL (TorchRL's ``IQLLoss``) on exactly LEQ's data pipeline, reward transform and evaluation.

    python examples/iql.py                        # pointmaze-umaze
    python examples/iql.py task=pointmaze-medium  # any generated maze
    python examples/iql.py data.source=d4rl_hdf5 data.path=~/antmaze.hdf5 task=antmaze-umaze eval.env_id=...
    python examples/iql.py smoke=true             # < 1 min
"""

from __future__ import annotations

import hydra
from omegaconf import DictConfig
from torchrl.objectives import IQLLoss, SoftUpdate

from torchrl_leq.training.builders import (
    make_offline_data,
    make_optimizers,
    make_sac_networks,
    make_trainer,
    make_value_network,
)
from torchrl_leq.training.checks import check_config
from torchrl_leq.training.cli import run_example
from torchrl_leq.training.config import register_config_maze, seed_everything


def train(cfg: DictConfig) -> dict:
    """IQL: expectile regression of V, TD learning of Q, advantage-weighted actor (AWR)."""
    register_config_maze(cfg)  # a maze of your own (config/maze/), if any
    check_config(cfg)
    seed_everything(cfg.seed)
    data = make_offline_data(cfg.data, batch_size=cfg.optim.batch_size_env)  # D_env
    actor, qvalue = make_sac_networks(cfg.network, data)
    loss = IQLLoss(actor, qvalue, make_value_network(cfg.network, data), loss_function="l2",
                   expectile=cfg.loss.expectile, temperature=cfg.loss.temperature)
    loss.make_value_estimator(gamma=cfg.loss.gamma)
    optimizers = make_optimizers({
        "actor": (loss.actor_network_params, cfg.optim.actor_lr),
        "critic": (loss.qvalue_network_params, cfg.optim.critic_lr),
        "value": (loss.value_network_params, cfg.optim.critic_lr),
    })
    trainer = make_trainer(cfg, loss=loss, optimizers=optimizers, sample_batch=data.buffer.sample,
                           actor=actor, target_updater=SoftUpdate(loss, eps=cfg.optim.ema_decay))
    return trainer.train()


@hydra.main(config_path="config", config_name="iql", version_base="1.3")
def main(cfg: DictConfig) -> None:
    run_example("iql", train, cfg)


if __name__ == "__main__":
    main()
