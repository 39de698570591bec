"""Offline training of the :class:`~torchrl_leq.modules.rssm.RSSM` on image sequences, save/load.

Mirrors :mod:`torchrl_leq.training.world_model` (``train_world_model`` /
``save_world_model`` / ``load_world_model``): whole episodes are held out (the last
``holdout_fraction`` of them, at least one), every epoch is ``steps_per_epoch`` Adam steps on
random windows ``[batch_size, seq_len]`` of the training episodes (windows may cross episode
boundaries; ``is_first`` resets the state there, as in DreamerV3's replay), followed by the
holdout loss on fixed windows. With ``checkpoint_path`` the model, optimiser, RNG and log are
saved after every epoch and a rerun resumes from there; the best-holdout weights are restored
at the end (OfflineRL-Kit keeps the best holdout weights too).

Example:
    >>> import torch
    >>> from tensordict import TensorDict
    >>> from torchrl_leq.modules.rssm import RSSM
    >>> N = 40
    >>> data = TensorDict({"pixels": torch.randint(0, 256, (N, 3, 64, 64), dtype=torch.uint8),
    ...                    "action": torch.zeros(N, 2), "reward": torch.zeros(N),
    ...                    "is_first": torch.arange(N) % 10 == 0,
    ...                    "is_terminal": torch.zeros(N, dtype=torch.bool),
    ...                    "episode": torch.arange(N) // 10}, [N])
    >>> model = RSSM(2, channels=2, deter_dim=8, hidden_dim=8, groups=2, classes=3)
    >>> log = train_rssm(model, data, epochs=2, steps_per_epoch=2, batch_size=2, seq_len=4,
    ...                  progress=False)
    >>> len(log["train_loss"]), len(log["holdout_loss"])
    (2, 2)
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from tensordict import TensorDictBase

from torchrl_leq.modules.rssm import RSSM
from torchrl_leq.objectives.rssm_loss import RSSMLoss
from torchrl_leq.training.sequence_fit import (
    cache_path,
    fit_sequence_model,
    sample_sequences,
    split_episodes,
    train_and_holdout,
)

__all__ = [
    "sample_sequences",
    "split_episodes",
    "train_rssm",
    "save_rssm",
    "load_rssm",
    "cached_rssm",
]

_KEYS = ("pixels", "action", "reward", "is_first", "is_terminal")


def train_rssm(
    model: RSSM,
    data: TensorDictBase,
    *,
    epochs: int = 10,
    steps_per_epoch: int = 100,
    batch_size: int = 16,
    seq_len: int = 64,
    lr: float = 1e-4,
    grad_clip: float = 1000.0,
    holdout_fraction: float = 0.1,
    holdout_windows: int = 32,
    loss_kwargs: dict[str, Any] | None = None,
    checkpoint_path: str | os.PathLike | None = None,
    seed: int = 0,
    progress: bool = True,
) -> dict[str, list[float]]:
    """Train ``model`` in place on sequence data (:func:`torchrl_leq.data.vd4rl.read_vd4rl`
    layout, ``episode`` key needed); returns the per-epoch log ``train_loss``,
    ``holdout_loss``, ``holdout_image_mse``, ``holdout_kl``, ``epoch_seconds``.

    DreamerV3 defaults: batch 16 × 64 steps, Adam lr 1e-4 (ε 1e-8), gradient-norm clip 1000.
    """
    train, hold_batch = train_and_holdout(
        data, _KEYS, holdout_fraction=holdout_fraction, seq_len=seq_len,
        max_windows=holdout_windows, caller="train_rssm")
    return fit_sequence_model(
        model, RSSMLoss(model, **(loss_kwargs or {})), train, hold_batch,
        torch.optim.Adam(model.parameters(), lr=lr, eps=1e-8), epochs=epochs,
        steps_per_epoch=steps_per_epoch, batch_size=batch_size, seq_len=seq_len,
        grad_clip=grad_clip, seed=seed, checkpoint_path=checkpoint_path, desc="RSSM",
        progress=progress,
        holdout_metrics={"holdout_image_mse": "image_mse", "holdout_kl": "kl"},
    )


def save_rssm(path: str | os.PathLike, model: RSSM) -> None:
    """Write config and weights to ``path`` atomically.

    Example:
        >>> import tempfile
        >>> m = RSSM(2, channels=2, deter_dim=4, hidden_dim=4, groups=1, classes=2)
        >>> p = Path(tempfile.mkdtemp()) / "rssm.pt"
        >>> save_rssm(p, m)
        >>> load_rssm(p).config == m.config
        True
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp.{os.getpid()}")
    torch.save({"config": model.config, "state_dict": model.state_dict()}, tmp)
    os.replace(tmp, path)


def load_rssm(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> RSSM:
    """Rebuild an :class:`RSSM` saved by :func:`save_rssm` (in eval mode)."""
    if not Path(path).is_file():
        raise FileNotFoundError(f"no RSSM file at {str(path)!r}: train one with train_rssm")
    payload = torch.load(path, map_location=map_location, weights_only=True)
    model = RSSM(**payload["config"])
    model.load_state_dict(payload["state_dict"])
    return model.to(map_location).eval()



def cached_rssm(
    sequences: TensorDictBase,
    description: str,
    model_kwargs: dict[str, Any],
    train_kwargs: dict[str, Any],
    cache_dir: str | os.PathLike,
    *,
    cache: bool = True,
    progress: bool = True,
) -> tuple[RSSM, dict[str, Any]]:
    """Train an :class:`RSSM` on ``sequences`` or load it from ``cache_dir/<hash>.pt``
    (hash of ``description``, the data size and both kwargs); training checkpoints to
    ``<hash>.ckpt`` and resumes from it. Returns ``(model, info)`` with ``info["path"]`` and,
    when trained here, ``info["log"]``.

    Example:
        >>> model, info = cached_rssm(data, "umaze 30k", {"action_dim": 2}, {"epochs": 1},
        ...                           "/tmp/wm")  # doctest: +SKIP
    """
    path = cache_path(cache_dir, "rssm", {"data": description, "n": int(sequences.shape[0]),
                                          "model": model_kwargs, "train": train_kwargs})
    if cache and path.is_file():
        return load_rssm(path), {"path": str(path), "cached": True}
    model = RSSM(**model_kwargs)
    ckpt = path.with_suffix(".ckpt") if cache else None
    log = train_rssm(model, sequences, checkpoint_path=ckpt, progress=progress, **train_kwargs)
    if cache:
        save_rssm(path, model)
    return model, {"path": str(path), "cached": False, "log": log}
