"""The ``make_*`` functions of ``examples/clap.py``: each builds one part of C-LAP from its config
node (``clap_model``, ``agent``, ``loss``, ``imagination``), so tests and notebooks reuse them.

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

from typing import Any

from omegaconf import DictConfig, OmegaConf
from tensordict import TensorDictBase
from tensordict.nn import TensorDictModule

from torchrl_leq.data.generate import data_root
from torchrl_leq.data.sequences import transitions_to_sequences
from torchrl_leq.envs.clap_env import CLAPModelEnv
from torchrl_leq.modules.clap_policy import CLAPActor, make_clap_actor
from torchrl_leq.modules.latent_action_model import LatentActionModel, mlp
from torchrl_leq.objectives.clap import CLAPLoss
from torchrl_leq.training.clap import cached_clap_model

__all__ = ["make_clap_sequences", "make_clap_model", "make_clap_agent", "make_clap_loss",
           "MODEL_KEYS", "TRAIN_KEYS"]

MODEL_KEYS = ("stoch_dim", "deter_dim", "hidden_dim", "embed_dim", "encoder_units",
              "encoder_layers", "latent_action_dim", "action_encoder_units",
              "action_decoder_units", "action_prior_units", "units", "channels", "min_std",
              "latent_action")
"""``clap_model.*`` keys passed to :class:`LatentActionModel`."""
TRAIN_KEYS = ("epochs", "steps_per_epoch", "batch_size", "seq_len", "lr", "grad_clip",
              "holdout_fraction")
"""``clap_model.*`` keys passed to :func:`~torchrl_leq.training.clap.train_clap_model`."""
LOSS_KWARGS = ("state_kl_scale", "action_kl_scale", "free_nats")


def _plain(node: Any) -> dict[str, Any]:
    return OmegaConf.to_container(node, resolve=True) if isinstance(node, DictConfig) else dict(node)


def make_clap_sequences(transitions: TensorDictBase) -> TensorDictBase:
    """D_env transitions → the sequence layout (:mod:`torchrl_leq.data.sequences`)."""
    return transitions_to_sequences(transitions)


def make_clap_model(
    cfg: Any, sequences: TensorDictBase, description: str, *, run_seed: int = 0,
    progress: bool = True, variant: str = "clap",
) -> tuple[LatentActionModel, dict[str, Any]]:
    """Model training (Algorithm 1, first loop), cached under ``$TORCHRL_LEQ_DATA/world_models``.

    ``cfg`` is the ``clap_model`` node; ``variant="no_latent_action"`` builds the plain
    state-space model. ``cfg.seed`` (``null``: ``run_seed``) seeds the initialisation and the
    windows; an int shares one model across run seeds.
    """
    node = _plain(cfg)
    obs_dim = int(sequences["observation"].shape[-1])
    model_kwargs = {"obs_dim": obs_dim, "action_dim": int(sequences["action"].shape[-1]),
                    **{k: node[k] for k in MODEL_KEYS if k in node}}
    if variant == "no_latent_action":
        model_kwargs["latent_action"] = False
    seed = int(run_seed if node.get("seed") is None else node["seed"])
    train_kwargs = {k: node[k] for k in TRAIN_KEYS if k in node} | {
        "seed": seed, "loss_kwargs": {k: node[k] for k in LOSS_KWARGS if k in node}}
    return cached_clap_model(sequences, description, model_kwargs, train_kwargs,
                             data_root() / "world_models", cache=bool(node.get("cache", True)),
                             progress=progress)


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
