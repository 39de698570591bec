"""Behaviour cloning from pixels: LEQ's deterministic actor on the latent features of the same
RSSM world model, regressed on D_env's actions. D_env, the world model (the same cached one as
``leq_pixels.py`` for the same config) and the evaluation are ``leq_pixels.py``'s.

    python examples/bc_pixels.py                        # rendered pointmaze-umaze
    python examples/bc_pixels.py smoke=true             # end to end in well under a minute
    python examples/bc_pixels.py --config-name leq_pixels_vd4rl data.path=vd4rl_data/main/walker_walk/medium_replay/64px
"""

from __future__ import annotations

from typing import Any

import hydra
from leq_pixels import (
    SUMMARY_KEYS,
    make_latent_networks,
    make_pixel_data,
    make_pixel_evaluator,
    train_timed,
)
from omegaconf import DictConfig

from torchrl_leq.objectives.pretrain import BCLoss
from torchrl_leq.training.builders import make_optimizers, make_trainer
from torchrl_leq.training.checks import PIXEL_RULES, check_config
from torchrl_leq.training.cli import run_example
from torchrl_leq.training.config import seed_everything


def train(cfg: DictConfig) -> dict[str, Any]:
    """BC: regress the actor's action on D_env's, on latent features; no critic, no model
    rollouts. Returns the trainer's result with the world model and timings."""
    check_config(cfg, rules=PIXEL_RULES)  # before any work
    seed_everything(cfg.seed)
    data = make_pixel_data(cfg)  # D_env over the RSSM's latent features
    actor, _ = make_latent_networks(cfg.network, data)
    loss = BCLoss(actor)
    optimizers = make_optimizers({"actor": (loss.actor_network_params, cfg.optim.actor_lr)})
    trainer = make_trainer(cfg, loss=loss, optimizers=optimizers, sample_batch=data.buffer.sample,
                           evaluate=make_pixel_evaluator(cfg, data.rssm, actor))
    return train_timed(trainer, data, cfg.train.total_steps)


@hydra.main(config_path="config", config_name="bc_pixels", version_base="1.3")
def main(cfg: DictConfig) -> None:
    run_example("bc_pixels", train, cfg, extra_keys=SUMMARY_KEYS)


if __name__ == "__main__":
    main()
