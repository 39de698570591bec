"""C-LAP: Constrained Latent Action Policies (Alles et al., CoRL 2024), Algorithm 1, on LEQ's parts.

A latent action state-space model of the joint distribution of observations and actions is
trained on D_env (Eq. 5), then a policy in its latent action space, constrained to the support
of the latent action prior (Eq. 12), and a value model learn from imagined rollouts (Eq. 6,
gradients through the dream). The real env sees actions from the model's action decoder.

The data decide the observations: vectors (the generated point maze, a D4RL file, a Minari
dataset) or 64×64 frames (the rendered point maze, a V-D4RL folder), one config per dataset.

    python examples/clap.py                                  # pointmaze-umaze, state observations
    python examples/clap.py agent.epsilon=3.0                # the support constraint ε̃
    python examples/clap.py agent.variant=no_constraint      # App. F ablations
    python examples/clap.py agent.variant=no_latent_action
    python examples/clap.py smoke=true                       # end to end in seconds
    python examples/clap.py --config-name clap/mujoco/hopper-medium      # D4RL, Table 3's ε̃
    python examples/clap.py --config-name clap/mujoco/hopper-medium data.source=minari
    python examples/clap.py --config-name clap_pixels                    # the rendered maze
    python examples/clap.py --config-name clap/vd4rl/walker_walk-medium  # V-D4RL, Table 4's ε̃
"""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from torchrl_leq.envs.clap_env import CLAPPolicy
from torchrl_leq.objectives.clap import CLAPLoss
from torchrl_leq.training.builders import make_adam, make_trainer
from torchrl_leq.training.checks import check_config
from torchrl_leq.training.clap import posterior_features, start_state_buffer
from torchrl_leq.training.clap_builders import (
    CLAP_RULES,
    clap_model_summary,
    make_clap_agent,
    make_clap_evaluator,
    make_clap_loss,
    make_clap_model,
    make_clap_sequences,
)
from torchrl_leq.training.cli import run_example
from torchrl_leq.training.config import register_config_maze, seed_everything

SUMMARY_KEYS = ("clap_model", "clap_model_cached", "clap_model_holdout_loss",
                "clap_model_holdout_action_mae")
"""What the JSON line reports besides the scores (:func:`clap_model_summary`)."""


def train(cfg: DictConfig) -> dict:
    """Algorithm 1 (model training, then agent training); returns the trainer's result with
    :data:`SUMMARY_KEYS`."""
    register_config_maze(cfg)  # a maze of your own (config/maze/), if any
    check_config(cfg, CLAPLoss.hyperparameter_rules, CLAP_RULES)
    seed_everything(cfg.seed)
    # Given: the dataset D of trajectories (o_t, a_t, r_t, t_t), in the sequence layout
    # (o_t: state vectors or 64×64 frames).
    data = make_clap_sequences(cfg)

    # Model training: maximise the ELBO of Eq. 4 plus the reward and termination terms (Eq. 5)
    # on windows of length K (cached per data/model/training description).
    model, info = make_clap_model(cfg.clap_model, data, run_seed=cfg.seed,
                                  progress=cfg.progress, variant=cfg.agent.variant)
    model.requires_grad_(False)  # frozen from here on: agent training only reads it
    seed_everything(cfg.seed + 1)  # the same RNG stream whether the model came from cache

    # Agent training, start states: latent states s_t ~ q_φ(s_t | s_{t-1}, a_{t-1}, o_t) of every
    # dataset row (posterior mean, filtered once: the model no longer changes).
    features = posterior_features(model, data.sequences, observation_key=data.observation_key)
    starts = start_state_buffer(features, data.sequences, cfg.optim.batch_size)

    # Policy π_ψ (constrained: u = μ_θ + û·ε̃·σ_θ, Eq. 12) and value model v_ξ.
    actor, value = make_clap_agent(cfg.agent, model)
    # Dream rollouts of length H from the start states with a ~ p(a | s, g(π, p)), rewards and
    # terminations from their heads; λ-returns (Eq. 6) as the value targets and, summed over
    # the rollout, the policy objective (gradients through the imagined trajectories).
    loss = make_clap_loss(cfg.loss, actor, value, model, cfg.imagination)
    optimizers = {
        "actor": make_adam(list(loss.actor_network_params.values(True, True)), cfg.optim.actor_lr),
        "value": make_adam(list(loss.value_network_params.values(True, True)), cfg.optim.value_lr),
    }

    # The loop: sample start states, one update of ψ and ξ; evaluation in the real env with the
    # filtering policy (posterior over real observations, actions from the action decoder).
    policy = CLAPPolicy(model, actor, observation_key=data.observation_key)
    trainer = make_trainer(
        cfg,
        loss=loss,
        optimizers=optimizers,
        sample_batch=starts.sample,
        evaluate=make_clap_evaluator(cfg, policy),
        loss_keys=("loss_actor", "loss_value"),
    )
    return {**trainer.train(), **clap_model_summary(info)}


@hydra.main(config_path="config", config_name="clap", version_base="1.3")
def main(cfg: DictConfig) -> None:
    run_example("clap", train, cfg, extra_keys=SUMMARY_KEYS)


if __name__ == "__main__":
    main()
