"""LEQ (Lower Expectile Q-learning), Algorithm 1 of Park & Lee (arXiv:2407.00699), on D4RL AntMaze.

``train(cfg)`` below is the algorithm; the point-maze quickstart (``leq_pointmaze.py``) and the
MuJoCo script (``leq_mujoco.py``) run this same function with their own configs. One YAML per
task under config/antmaze/ (Table 9's values, Table 10's τ). Evaluating D4RL AntMaze needs D4RL's
own env (set ``eval.env_id``); ``smoke=true`` runs end to end on gymnasium-robotics' AntMaze
instead (docs/antmaze.md: the two mazes are mirror images).

    python examples/leq_antmaze.py eval.env_id=<your D4RL env id>           # antmaze-umaze
    python examples/leq_antmaze.py --config-name antmaze/large-diverse seed=1 eval.env_id=...
    python examples/leq_antmaze.py smoke=true                               # no download, < 1 min
    python examples/leq_antmaze.py smoke=true seeds=[0,1,2,3]               # 4 seeds, one process
"""

from __future__ import annotations

from typing import NamedTuple

import hydra
from omegaconf import DictConfig
from tensordict.nn import TensorDictModule
from torchrl.data import TensorDictReplayBuffer
from torchrl.objectives import SoftUpdate

from torchrl_leq.envs import LEQModelEnv
from torchrl_leq.objectives import LEQLoss
from torchrl_leq.training.builders import (
    OfflineData,
    is_resuming,
    make_expansion_hook,
    make_leq_batch_sampler,
    make_leq_loss,
    make_leq_networks,
    make_leq_optimizers,
    make_model_start_buffer,
    make_offline_data,
    make_termination,
    make_wall_diagnostic_hooks,
    make_world_model,
    pretrain_bc,
    pretrain_fqe,
)
from torchrl_leq.training.checks import check_config
from torchrl_leq.training.cli import run_example
from torchrl_leq.training.config import register_config_maze, seed_everything
from torchrl_leq.training.multi_seed import (
    build_seeds,
    make_multi_seed_trainer,
    stack_model_envs,
    stack_networks,
    stacks_seeds,
)
from torchrl_leq.training.trainer import PeriodicHook


class Seed(NamedTuple):
    """What one seed builds before its training loop (Algorithm 1, lines 1-4)."""

    data: OfflineData
    model_env: LEQModelEnv
    actor: TensorDictModule
    critic: TensorDictModule
    d_model: TensorDictReplayBuffer


def build_seed(cfg: DictConfig) -> Seed:
    """Lines 1-4 for the seed ``cfg.seed`` (a single-seed run's setup, in its RNG stream)."""
    seed_everything(cfg.seed)
    # Input: the offline dataset D_env (rewards transformed as the released code does).
    data = make_offline_data(cfg.data, batch_size=cfg.optim.batch_size_env)

    # Lines 1-2: world models p_ψ1..p_ψM, pretrained on D_env by Gaussian NLL (cached per dataset;
    # one per seed unless world_model.seed is set), wrapped as a TorchRL env that ends a rollout
    # where the task's true termination says so.
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

    # Line 4: D_model ← ∅ (FIFO).
    d_model = make_model_start_buffer(cfg.expansion, cfg.optim.batch_size_model)
    return Seed(data, model_env, actor, critic, d_model)


@stacks_seeds
def train(cfg: DictConfig) -> dict:
    """Algorithm 1 (line numbers in the comments) for the seeds of ``cfg.seeds`` (one by
    default): K seeds' networks are stacked into one update; returns the trainer's result
    (final score; ``per_seed`` results for K > 1)."""
    register_config_maze(cfg)  # a maze of your own (config/maze/), if any
    check_config(cfg, LEQLoss.hyperparameter_rules)  # every value a user set, before any work
    configs, seeds, streams = build_seeds(cfg, build_seed)  # lines 1-4 per seed
    actor, actors = stack_networks([s.actor for s in seeds])  # K seeds: [K, ...] parameters
    critic, critics = stack_networks([s.critic for s in seeds])
    model_env = stack_model_envs([s.model_env for s in seeds], streams)

    # Lines 12-20: imagine H steps from D_model with π_θ in the model (one rollout per update);
    # critic loss Eq. 7 (lower-expectile λ-returns Eq. 9, D_env TD Eq. 5, EMA Eq. 6), actor Eq. 11.
    loss = make_leq_loss(cfg.loss, actor, critic, model_env, num_seeds=len(seeds))
    optimizers, schedulers = make_leq_optimizers(cfg.optim, loss, cfg.train.total_steps)
    ema = SoftUpdate(loss, eps=cfg.optim.ema_decay)  # the EMA critic of Eq. 6

    # Lines 6-11: every T_expand steps add R-step model rollouts of the (noisy) policy from
    # D_env states to each seed's D_model.
    every = cfg.expansion.every if cfg.expansion.enabled else cfg.train.total_steps + 1
    expand = [
        make_expansion_hook(cfg.expansion, s.d_model, s.data.buffer, s.model_env, actors.get(k))
        for k, s in enumerate(seeds)
    ]

    # Line 5: the loop — expansion hook, sample D_env and D_model batches, one update of both
    # networks, EMA step; evaluation every eval_every steps, checkpoints, a final evaluation.
    trainer = make_multi_seed_trainer(
        cfg,
        configs,
        streams,
        loss=loss,
        optimizers=optimizers,
        schedulers=schedulers,
        sample_batches=[make_leq_batch_sampler(s.data.buffer, s.d_model) for s in seeds],
        actor_views=actors,
        target_updater=ema,
        hooks=[
            [PeriodicHook(every, fn, "expand_d_model"),
             *make_wall_diagnostic_hooks(  # point mazes, optional: imagined wall crossings
                 cfg, s.model_env, s.data, lambda k=k: (actors.get(k), critics.get(k)),
                 gamma=loss.gamma, lmbda=loss.lmbda)]
            for k, (fn, s) in enumerate(zip(expand, seeds))
        ],
        stateful=[{"d_model": s.d_model} for s in seeds],
    )
    return trainer.train()


@hydra.main(config_path="config", config_name="antmaze/umaze", version_base="1.3")
def main(cfg: DictConfig) -> None:
    run_example("leq", train, cfg)


if __name__ == "__main__":
    main()
