"""Behaviour cloning (LEQ's deterministic actor, MSE to the dataset's actions) on exactly LEQ's
data pipeline and evaluation.

    python examples/bc.py                         # pointmaze-umaze
    python examples/bc.py task=pointmaze-medium   # any generated maze
    python examples/bc.py smoke=true              # < 1 min
"""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from torchrl_leq.objectives.pretrain import BCLoss
from torchrl_leq.training.builders import (
    make_leq_networks,
    make_offline_data,
    make_optimizers,
    make_trainer,
)
from torchrl_leq.training.checks import check_config
from torchrl_leq.training.cli import run_example
from torchrl_leq.training.config import register_config_maze, seed_everything


def train(cfg: DictConfig) -> dict:
    """BC: regress the actor's action on D_env's; no critic."""
    register_config_maze(cfg)  # a maze of your own (config/maze/), if any
    check_config(cfg)
    seed_everything(cfg.seed)
    data = make_offline_data(cfg.data, batch_size=cfg.optim.batch_size_env)  # D_env
    actor, _ = make_leq_networks(cfg.network, data)
    loss = BCLoss(actor)
    optimizers = make_optimizers({"actor": (loss.actor_network_params, cfg.optim.actor_lr)})
    trainer = make_trainer(cfg, loss=loss, optimizers=optimizers, sample_batch=data.buffer.sample,
                           actor=actor)
    return trainer.train()


@hydra.main(config_path="config", config_name="bc", version_base="1.3")
def main(cfg: DictConfig) -> None:
    run_example("bc", train, cfg)


if __name__ == "__main__":
    main()
