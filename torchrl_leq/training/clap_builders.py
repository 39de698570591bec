"""The ``make_*`` functions of ``examples/clap.py``: each builds one part of C-LAP from its config
(``data``, ``clap_model``, ``agent``, ``loss``, ``imagination``, ``eval``), so tests and notebooks
reuse them. The data decide the observations: vectors (the point maze, a D4RL file, a Minari
dataset, the simulator) or 64×64 frames (the rendered maze, a V-D4RL folder: :data:`PIXEL_SOURCES`).

Example:
    >>> from omegaconf import OmegaConf
    >>> from torchrl_leq.modules.latent_action_model import LatentActionModel, mlp
    >>> model = LatentActionModel(4, 2, stoch_dim=3, deter_dim=5, units=8, embed_dim=3,
    ...                           latent_action_dim=2)
    >>> agent = OmegaConf.create({"variant": "clap", "epsilon": 2.0, "units": 8, "layers": 1})
    >>> actor, value = make_clap_agent(agent, model)
    >>> actor.epsilon, value.out_keys
    (2.0, ['state_value'])
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

from omegaconf import DictConfig, OmegaConf
from tensordict import TensorDict
from tensordict.nn import TensorDictModule, TensorDictModuleBase

from torchrl_leq.data.generate import data_root
from torchrl_leq.data.sequences import transitions_to_sequences
from torchrl_leq.envs.clap_env import CLAPModelEnv
from torchrl_leq.modules.clap_policy import VARIANTS, CLAPActor, make_clap_actor
from torchrl_leq.modules.latent_action_model import LatentActionModel, mlp
from torchrl_leq.objectives.clap import CLAPLoss
from torchrl_leq.objectives.hyperparameters import POSITIVE, POSITIVE_INT, Rule, choice, number
from torchrl_leq.training.builders import DATA_SOURCES, make_evaluator, make_offline_data
from torchrl_leq.training.checks import RENDER_RULES
from torchrl_leq.training.clap import cached_clap_model
from torchrl_leq.training.pixel_data import (
    PIXEL_SOURCES,
    load_pixel_sequences,
    make_rendered_evaluator,
)

__all__ = ["CLAPData", "make_clap_sequences", "make_clap_model", "clap_model_summary",
           "make_clap_agent", "make_clap_loss", "make_clap_evaluator", "CLAP_RULES",
           "MODEL_KEYS", "TRAIN_KEYS"]

CLAP_RULES: dict[str, Rule] = {
    "data.source": choice(*DATA_SOURCES, *PIXEL_SOURCES),
    "data.episode_length": POSITIVE_INT,
    "data.reward_shift": number(float),
    "train.max_eval_steps": number(int, 1, nullable=True),
    "agent.variant": choice(*VARIANTS),
    "agent.epsilon": POSITIVE,
    **RENDER_RULES,
}
"""C-LAP's own config checks, over :data:`~torchrl_leq.training.checks.CONFIG_RULES`
(``check_config(cfg, CLAPLoss.hyperparameter_rules, CLAP_RULES)``)."""

MODEL_KEYS = ("stoch_dim", "deter_dim", "hidden_dim", "embed_dim", "encoder_units",
              "encoder_layers", "latent_action_dim", "action_encoder_units",
              "action_decoder_units", "action_prior_units", "units", "channels", "min_std",
              "beta_min_concentration", "latent_action")
"""``clap_model.*`` keys passed to :class:`LatentActionModel`."""
TRAIN_KEYS = ("epochs", "steps_per_epoch", "batch_size", "seq_len", "lr", "grad_clip",
              "holdout_fraction")
"""``clap_model.*`` keys passed to :func:`~torchrl_leq.training.clap.train_clap_model`."""
LOSS_KWARGS = ("state_kl_scale", "action_kl_scale", "free_nats")


def _plain(node: Any) -> dict[str, Any]:
    return OmegaConf.to_container(node, resolve=True) if isinstance(node, DictConfig) else dict(node)


class CLAPData(NamedTuple):
    """D_env in the sequence layout (:mod:`torchrl_leq.data.sequences`)."""

    sequences: TensorDict
    description: str  # the data's part of the model's cache key
    observation_key: str  # "observation" (vectors) or "pixels" (uint8 frames [N, 3, 64, 64])


def make_clap_sequences(cfg: DictConfig) -> CLAPData:
    """D_env of ``cfg.data`` as sequences: the frames of a pixel source
    (:func:`~torchrl_leq.training.pixel_data.load_pixel_sequences`), else the transitions of
    :func:`~torchrl_leq.training.builders.make_offline_data` in the sequence layout."""
    if cfg.data.source in PIXEL_SOURCES:
        sequences, description = load_pixel_sequences(cfg)
        return CLAPData(sequences, description, "pixels")
    data = make_offline_data(cfg.data, batch_size=cfg.optim.batch_size)
    return CLAPData(transitions_to_sequences(data.transitions), data.description, "observation")


def make_clap_model(
    cfg: Any, data: CLAPData, *, run_seed: int = 0, progress: bool = True,
    variant: str = "clap",
) -> tuple[LatentActionModel, dict[str, Any]]:
    """Model training (Algorithm 1, first loop), cached under ``$TORCHRL_LEQ_DATA/world_models``.

    ``cfg`` is the ``clap_model`` node; frames get the conv encoder/decoder (``channels``),
    vectors the MLPs; ``variant="no_latent_action"`` builds the plain state-space model.
    ``cfg.seed`` (``null``: ``run_seed``) seeds the initialisation and the windows; an int
    shares one model across run seeds.
    """
    node = _plain(cfg)
    seq, key = data.sequences, data.observation_key
    obs_dim = None if key == "pixels" else int(seq[key].shape[-1])
    model_kwargs = {"obs_dim": obs_dim, "action_dim": int(seq["action"].shape[-1]),
                    **{k: node[k] for k in MODEL_KEYS if k in node}}
    if variant == "no_latent_action":
        model_kwargs["latent_action"] = False
    seed = int(run_seed if node.get("seed") is None else node["seed"])
    train_kwargs = {k: node[k] for k in TRAIN_KEYS if k in node} | {
        "seed": seed, "loss_kwargs": {k: node[k] for k in LOSS_KWARGS if k in node}}
    if key != "observation":  # (absent for vectors: the cache keys of vector models stay valid)
        train_kwargs["observation_key"] = key
    return cached_clap_model(seq, data.description, model_kwargs, train_kwargs,
                             data_root() / "world_models", cache=bool(node.get("cache", True)),
                             progress=progress)


def clap_model_summary(info: dict[str, Any]) -> dict[str, Any]:
    """What a run reports of its model (``info`` of :func:`make_clap_model`): the cache path,
    whether it was loaded, and (trained in this run) the holdout loss and action MAE of the
    kept (best-holdout) epoch; ``None`` for a loaded one."""
    out = {"clap_model": info["path"], "clap_model_cached": info["cached"],
           "clap_model_holdout_loss": None, "clap_model_holdout_action_mae": None}
    log = info.get("log")
    if log:  # the weights kept are those of the best holdout epoch
        best = log["holdout_loss"].index(min(log["holdout_loss"]))
        out["clap_model_holdout_loss"] = log["holdout_loss"][best]
        out["clap_model_holdout_action_mae"] = log["holdout_action_mae"][best]
    return out


def make_clap_agent(cfg: Any, model: LatentActionModel) -> tuple[CLAPActor, TensorDictModule]:
    """Policy (``cfg.variant``, ε̃ = ``cfg.epsilon``) and value network (Table 2: 3 × 256 SELU
    policy; 3 × 256 SELU value)."""
    units, layers = int(cfg.units), int(cfg.layers)
    actor = make_clap_actor(model.feature_dim, model.latent_action_dim or 1, model.action_dim,
                            str(cfg.variant), epsilon=float(cfg.epsilon), units=units,
                            layers=layers)
    value = TensorDictModule(mlp(model.feature_dim, 1, units, layers), ["observation"],
                             ["state_value"])
    return actor, value


def make_clap_loss(
    cfg: Any, actor: CLAPActor, value: TensorDictModule, model: LatentActionModel,
    imagination: Any,
) -> CLAPLoss:
    """:class:`CLAPLoss` over a :class:`CLAPModelEnv` of ``model`` (``imagination`` node:
    ``state_mode``, ``action_mode``, ``termination``)."""
    env = CLAPModelEnv(model, termination=imagination.termination,
                       state_mode=str(imagination.state_mode),
                       action_mode=str(imagination.action_mode))
    return CLAPLoss(actor, value, env, **_plain(cfg))


def make_clap_evaluator(
    cfg: DictConfig, policy: TensorDictModuleBase
) -> Callable[[int, int], dict[str, float]]:
    """``(episodes, seed) -> scores`` of the filtering ``policy`` in the real env: the rendered
    maze for frames (V-D4RL: NaN, no DMC here), else
    :func:`~torchrl_leq.training.builders.make_evaluator`'s (the point maze, ``eval.env_id``
    or the Minari dataset's env)."""
    if cfg.data.source in PIXEL_SOURCES:
        return make_rendered_evaluator(cfg, policy)
    return make_evaluator(cfg, policy)
