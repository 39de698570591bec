"""C-LAP's model phase (Algorithm 1, "Model Training") and the start states of its agent phase.

:func:`train_clap_model` fits a :class:`~torchrl_leq.modules.latent_action_model.LatentActionModel`
with :class:`~torchrl_leq.objectives.clap_model_loss.CLAPModelLoss` (Eq. 5) on random windows
of the sequence layout (:mod:`torchrl_leq.data.sequences`), holding out whole episodes and
keeping the best-holdout weights, as :func:`~torchrl_leq.training.rssm.train_rssm` does for the
RSSM; :func:`cached_clap_model` trains once per (data, model, training) description and caches
the result. :func:`posterior_features` filters every dataset row with the trained posterior
(the agent phase's "compute latent states s_t ~ q_φ"), and :func:`start_state_buffer` holds
the non-terminal ones as the dream rollouts' start states.

Example:
    >>> import torch
    >>> from tensordict import TensorDict
    >>> from torchrl_leq.modules.latent_action_model import LatentActionModel
    >>> N = 40
    >>> seq = TensorDict({"observation": torch.randn(N, 3), "action": torch.zeros(N, 2),
    ...                   "reward": torch.zeros(N), "is_first": torch.arange(N) % 10 == 0,
    ...                   "is_terminal": torch.zeros(N, dtype=torch.bool),
    ...                   "episode": torch.arange(N) // 10}, [N])
    >>> model = LatentActionModel(3, 2, stoch_dim=2, deter_dim=4, units=8, embed_dim=3,
    ...                           latent_action_dim=2)
    >>> log = train_clap_model(model, seq, epochs=2, steps_per_epoch=2, batch_size=2,
    ...                        seq_len=4, progress=False)
    >>> len(log["holdout_loss"]), posterior_features(model, seq).shape
    (2, torch.Size([40, 6]))
"""

from __future__ import annotations

import inspect
import os
from pathlib import Path
from typing import Any

import torch
from tensordict import TensorDictBase
from torchrl.data import TensorDictReplayBuffer

from torchrl_leq.data.buffers import make_replay_buffer
from torchrl_leq.modules.latent_action_model import LatentActionModel
from torchrl_leq.objectives.clap_model_loss import CLAPModelLoss
from torchrl_leq.training.sequence_fit import cache_path, fit_sequence_model, train_and_holdout

__all__ = [
    "train_clap_model",
    "save_clap_model",
    "load_clap_model",
    "cached_clap_model",
    "posterior_features",
    "start_state_buffer",
]

_KEYS = ("action", "reward", "is_first", "is_terminal")


def train_clap_model(
    model: LatentActionModel,
    sequences: TensorDictBase,
    *,
    epochs: int = 10,
    steps_per_epoch: int = 100,
    batch_size: int = 64,
    seq_len: int = 50,
    lr: float = 3e-4,
    grad_clip: float = 100.0,
    holdout_fraction: float = 0.1,
    holdout_windows: int = 32,
    observation_key: str = "observation",
    loss_kwargs: dict[str, Any] | None = None,
    checkpoint_path: str | os.PathLike | None = None,
    seed: int = 0,
    progress: bool = True,
) -> dict[str, list[float]]:
    """Train ``model`` in place (Eq. 5, Adam); returns the per-epoch log ``train_loss``,
    ``holdout_loss``, ``holdout_elbo``, ``holdout_action_mae``, ``epoch_seconds``.

    Table 2 defaults: batch 64 windows of 50 steps, lr 3e-4. The best-holdout weights are
    restored at the end; with ``checkpoint_path`` every epoch is saved and a rerun resumes
    (:func:`~torchrl_leq.training.sequence_fit.fit_sequence_model`).
    """
    train, hold_batch = train_and_holdout(
        sequences, (observation_key, *_KEYS), holdout_fraction=holdout_fraction,
        seq_len=seq_len, max_windows=holdout_windows, caller="train_clap_model")
    loss_fn = CLAPModelLoss(model, **(loss_kwargs or {}))
    if observation_key != "observation":
        loss_fn.set_keys(observation=observation_key)
    return fit_sequence_model(
        model, loss_fn, train, hold_batch,
        torch.optim.Adam(model.parameters(), lr=lr), epochs=epochs,
        steps_per_epoch=steps_per_epoch, batch_size=batch_size, seq_len=seq_len,
        grad_clip=grad_clip, seed=seed, checkpoint_path=checkpoint_path, desc="C-LAP model",
        progress=progress,
        holdout_metrics={"holdout_elbo": "elbo", "holdout_action_mae": "action_mae"},
    )


def save_clap_model(path: str | os.PathLike, model: LatentActionModel) -> None:
    """Write config and weights to ``path`` atomically.

    Example:
        >>> import tempfile
        >>> m = LatentActionModel(3, 2, stoch_dim=2, deter_dim=4, units=8, embed_dim=3)
        >>> p = Path(tempfile.mkdtemp()) / "clap.pt"
        >>> save_clap_model(p, m)
        >>> load_clap_model(p).config == m.config
        True
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp.{os.getpid()}")
    torch.save({"config": model.config, "state_dict": model.state_dict()}, tmp)
    os.replace(tmp, path)


def load_clap_model(path: str | os.PathLike) -> LatentActionModel:
    """Rebuild a model saved by :func:`save_clap_model` (eval mode, CPU)."""
    if not Path(path).is_file():
        raise FileNotFoundError(f"no C-LAP model at {str(path)!r}: train one with train_clap_model")
    payload = torch.load(path, map_location="cpu", weights_only=True)
    # models saved before the switch existed had the unimodal Beta decoder
    model = LatentActionModel(**{"beta_min_concentration": 1.0, **payload["config"]})
    model.load_state_dict(payload["state_dict"])
    return model.eval()


def cached_clap_model(
    sequences: TensorDictBase,
    description: str,
    model_kwargs: dict[str, Any],
    train_kwargs: dict[str, Any],
    cache_dir: str | os.PathLike,
    *,
    cache: bool = True,
    progress: bool = True,
) -> tuple[LatentActionModel, dict[str, Any]]:
    """Train a model on ``sequences`` or load it from ``cache_dir/clap-<hash>.pt`` (hash of
    ``description``, the data size and both kwargs). Returns ``(model, info)`` with
    ``info["path"]``, ``info["cached"]`` and, when trained here, ``info["log"]``."""
    # hash the resolved model config (defaults included), so a changed default is a new model
    resolved = {k: v.default for k, v in inspect.signature(LatentActionModel).parameters.items()
                if v.default is not inspect.Parameter.empty} | dict(model_kwargs)
    path = cache_path(cache_dir, "clap", {"data": description, "n": int(sequences.shape[0]),
                                          "model": resolved, "train": train_kwargs})
    if cache and path.is_file():
        return load_clap_model(path), {"path": str(path), "cached": True}
    torch.manual_seed(int(train_kwargs.get("seed", 0)))
    model = LatentActionModel(**model_kwargs)
    ckpt = path.with_suffix(".ckpt") if cache else None
    log = train_clap_model(model, sequences, checkpoint_path=ckpt, progress=progress,
                           **train_kwargs)
    if cache:
        save_clap_model(path, model)
    return model, {"path": str(path), "cached": False, "log": log}


@torch.no_grad()
def posterior_features(
    model: LatentActionModel,
    sequences: TensorDictBase,
    *,
    observation_key: str = "observation",
    streams: int = 64,
    chunk: int = 64,
    mode: str = "mean",
) -> torch.Tensor:
    """Posterior features ``[N, F]`` of every row of a sequence TensorDict ``[N]``.

    The rows are cut into ``streams`` contiguous segments filtered in parallel (each segment
    starts a fresh state, like a training window; ``is_first`` resets it inside), ``chunk``
    rows per call; ``mode="mean"`` takes the posterior mean.
    """
    n = sequences.shape[0]
    streams = max(1, min(streams, n))
    length = -(-n // streams)
    pad = streams * length - n
    obs = sequences.get(observation_key)
    action = sequences.get("action").float()
    first = sequences.get("is_first").reshape(n).bool().clone()
    if pad:
        obs = torch.cat([obs, obs[-1:].expand(pad, *obs.shape[1:])])
        action = torch.cat([action, action[-1:].expand(pad, *action.shape[1:])])
        first = torch.cat([first, first.new_ones(pad)])
    first = first.reshape(streams, length)
    first[:, 0] = True
    obs = obs.reshape(streams, length, *obs.shape[1:])
    if not model.pixels:
        obs = obs.float()
    action = action.reshape(streams, length, -1)
    state, out = None, []
    for t in range(0, length, chunk):
        res = model.observe(obs[:, t : t + chunk], action[:, t : t + chunk],
                            first[:, t : t + chunk], state=state, mode=mode)
        state = res["state"]
        out.append(res["features"])
    return torch.cat(out, 1).reshape(streams * length, -1)[:n]


def start_state_buffer(
    features: torch.Tensor, sequences: TensorDictBase, batch_size: int
) -> TensorDictReplayBuffer:
    """A replay buffer of the non-terminal rows' features under ``"observation"``: the start
    states of the dream rollouts (uniform over dataset states).

    Example:
        >>> from tensordict import TensorDict
        >>> seq = TensorDict({"is_terminal": torch.tensor([False, True, False])}, [3])
        >>> rb = start_state_buffer(torch.arange(3.0).unsqueeze(-1), seq, 4)
        >>> sorted(set(rb.sample()["observation"].squeeze(-1).tolist())) <= [0.0, 2.0]
        True
    """
    from tensordict import TensorDict

    keep = ~sequences.get("is_terminal").reshape(-1).bool()
    td = TensorDict({"observation": features[keep]}, [int(keep.sum())])
    return make_replay_buffer(td, batch_size=batch_size)
