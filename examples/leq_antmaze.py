"""LEQ (Lower Expectile Q-learning), Algorithm 1 of Park & Lee (arXiv:2407.00699), on D4RL AntMaze.

``train(cfg)`` below is the algorithm; the point-maze quickstart (``leq_pointmaze.py``) and the
MuJoCo script (``leq_mujoco.py``) run this same function with their own configs. One YAML per
task under config/antmaze/ (Table 9's values, Table 10's τ). Evaluating D4RL AntMaze needs D4RL's
own env (set ``eval.env_id``); ``smoke=true`` runs end to end on gymnasium-robotics' AntMaze
instead (docs/antmaze.md: the two mazes are mirror images).

    python examples/leq_antmaze.py eval.env_id=<your D4RL env id>           # antmaze-umaze
    python examples/leq_antmaze.py --config-name antmaze/large-diverse seed=1 eval.env_id=...
    python examples/leq_antmaze.py smoke=true                               # no download, < 1 min
"""

from __future__ import annotations

import hydra
from omegaconf import DictConfig
from torchrl.objectives import SoftUpdate

from torchrl_leq.envs import LEQModelEnv
from torchrl_leq.objectives import LEQLoss
from torchrl_leq.training.builders import (
    is_resuming,
    make_expansion_hook,
    make_leq_batch_sampler,
    make_leq_loss,
    make_leq_networks,
    make_leq_optimizers,
    make_model_start_buffer,
    make_offline_data,
    make_termination,
    make_trainer,
    make_wall_diagnostic_hooks,
    make_world_model,
    pretrain_bc,
    pretrain_fqe,
)
from torchrl_leq.training.checks import check_config
from torchrl_leq.training.cli import run_example
from torchrl_leq.training.config import register_config_maze, seed_everything
from torchrl_leq.training.trainer import PeriodicHook


def train(cfg: DictConfig) -> dict:
    """Algorithm 1 (line numbers in the comments); returns the trainer's result (final score)."""
    register_config_maze(cfg)  # a maze of your own (config/maze/), if any
    check_config(cfg, LEQLoss.hyperparameter_rules)  # every value a user set, before any work
    seed_everything(cfg.seed)
    # Input: the offline dataset D_env (rewards transformed as the released code does).
    data = make_offline_data(cfg.data, batch_size=cfg.optim.batch_size_env)

    # Lines 1-2: world models p_ψ1..p_ψM, pretrained on D_env by Gaussian NLL (cached per dataset),
    # wrapped as a TorchRL env that ends a rollout where the task's true termination says so.
    ensemble = make_world_model(cfg.world_model, data, run_seed=cfg.seed, progress=cfg.progress)
    model_env = LEQModelEnv(ensemble, make_termination(cfg))
    seed_everything(cfg.seed + 1)  # the same RNG stream whether data and model came from cache

    # Lines 1 and 3: policy π_θ and critic Q_φ; BC for π_θ, then FQE (Algorithm 2) for Q_φ.
    actor, critic = make_leq_networks(cfg.network, data)
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

    # Lines 4 and 6-11: D_model ← ∅, then every T_expand steps add R-step model rollouts of the
    # (noisy) policy from D_env states.
    d_model = make_model_start_buffer(cfg.expansion, cfg.optim.batch_size_model)
    expand = make_expansion_hook(cfg.expansion, d_model, data.buffer, model_env, actor)
    every = cfg.expansion.every if cfg.expansion.enabled else cfg.train.total_steps + 1

    # Line 5: the loop — expansion hook, sample D_env and D_model batches, one update of both
    # networks, EMA step; evaluation every eval_every steps, checkpoints, a final evaluation.
    trainer = make_trainer(
        cfg,
        loss=loss,
        optimizers=optimizers,
        schedulers=schedulers,
        sample_batch=make_leq_batch_sampler(data.buffer, d_model),
        actor=actor,
        target_updater=ema,
        hooks=[PeriodicHook(every, expand, "expand_d_model"),
               *make_wall_diagnostic_hooks(cfg, loss, model_env, data)],  # point mazes, optional
        stateful={"d_model": d_model},
    )
    return trainer.train()


@hydra.main(config_path="config", config_name="antmaze/umaze", version_base="1.3")
def main(cfg: DictConfig) -> None:
    run_example("leq", train, cfg)


if __name__ == "__main__":
    main()
