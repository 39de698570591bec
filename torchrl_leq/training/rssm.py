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

import hashlib
import json
import os
import time
from pathlib import Path
from typing import Any

import torch
from tensordict import TensorDictBase
from tqdm.auto import tqdm

from torchrl_leq.modules.rssm import RSSM
from torchrl_leq.objectives.rssm_loss import RSSMLoss

__all__ = [
    "sample_sequences",
    "split_episodes",
    "train_rssm",
    "save_rssm",
    "load_rssm",
    "cached_rssm",
]

_KEYS = ("pixels", "action", "reward", "is_first", "is_terminal")


def sample_sequences(
    data: TensorDictBase, starts: torch.Tensor, seq_len: int
) -> TensorDictBase:
    """Windows ``data[s : s + seq_len]`` for each start ``s`` → ``[len(starts), seq_len]``;
    the first row of every window is marked ``is_first`` (no state from before it).

    Example:
        >>> from tensordict import TensorDict
        >>> td = TensorDict({"x": torch.arange(6), "is_first": torch.zeros(6, dtype=torch.bool)},
        ...                 [6])
        >>> w = sample_sequences(td, torch.tensor([0, 3]), 2)
        >>> w["x"].tolist(), w["is_first"].tolist()
        ([[0, 1], [3, 4]], [[True, False], [True, False]])
    """
    idx = starts.reshape(-1, 1) + torch.arange(seq_len).reshape(1, -1)
    windows = data[idx.reshape(-1)].reshape(len(starts), seq_len)
    first = windows.get("is_first").clone()
    first[:, 0] = True
    windows.set("is_first", first)
    return windows


def split_episodes(
    data: TensorDictBase, holdout_fraction: float
) -> tuple[TensorDictBase, TensorDictBase]:
    """(train, holdout): the last ``holdout_fraction`` of the episodes (≥ 1, and ≥ 1 left to
    train on) are held out; needs an ``episode`` key.

    Example:
        >>> from tensordict import TensorDict
        >>> td = TensorDict({"episode": torch.tensor([0, 0, 1, 1, 2])}, [5])
        >>> [t["episode"].tolist() for t in split_episodes(td, 0.2)]
        [[0, 0, 1, 1], [2]]
    """
    episodes = torch.unique(data["episode"])
    if len(episodes) < 2:
        raise ValueError("need at least 2 episodes to hold one out for the holdout loss")
    n_hold = min(len(episodes) - 1, max(1, int(round(holdout_fraction * len(episodes)))))
    held = torch.isin(data["episode"], episodes[-n_hold:])
    return data[~held], data[held]


def _holdout_batch(data: TensorDictBase, seq_len: int, max_windows: int) -> TensorDictBase:
    n = data.shape[0]
    if n < seq_len:
        raise ValueError(f"holdout has {n} rows, fewer than seq_len={seq_len}")
    starts = torch.arange(0, n - seq_len + 1, seq_len)[:max_windows]
    return sample_sequences(data.select(*_KEYS), starts, seq_len)


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
    missing = [k for k in (*_KEYS, "episode") if k not in data.keys()]
    if missing:
        raise ValueError(f"train_rssm data lacks keys {missing}")
    train, hold = split_episodes(data, holdout_fraction)
    train = train.select(*_KEYS)
    if train.shape[0] < seq_len:
        raise ValueError(f"training data has {train.shape[0]} rows, fewer than seq_len={seq_len}")
    hold_batch = _holdout_batch(hold, seq_len, holdout_windows)
    loss_fn = RSSMLoss(model, **(loss_kwargs or {}))
    opt = torch.optim.Adam(model.parameters(), lr=lr, eps=1e-8)
    gen = torch.Generator().manual_seed(seed)
    log: dict[str, list[float]] = {k: [] for k in (
        "train_loss", "holdout_loss", "holdout_image_mse", "holdout_kl", "epoch_seconds")}
    best: tuple[float, dict[str, torch.Tensor]] | None = None
    start_epoch = 0
    ckpt = Path(checkpoint_path) if checkpoint_path is not None else None
    if ckpt is not None and ckpt.is_file():
        state = torch.load(ckpt, weights_only=False)
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        gen.set_state(state["generator"])
        log, start_epoch = state["log"], state["epoch"]
        best = (state["best_loss"], state["best_model"])
    bar = tqdm(range(start_epoch, epochs), desc="RSSM", unit="epoch", disable=not progress)
    for epoch in bar:
        began = time.perf_counter()
        model.train()
        total = 0.0
        for _ in range(steps_per_epoch):
            starts = torch.randint(0, train.shape[0] - seq_len + 1, (batch_size,), generator=gen)
            out = loss_fn(sample_sequences(train, starts, seq_len))
            loss = sum(v for k, v in out.items() if k.startswith("loss_"))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
            opt.step()
            total += float(loss.detach())
        model.eval()
        with torch.no_grad():
            out = loss_fn(hold_batch)
        hold_loss = float(sum(v for k, v in out.items() if k.startswith("loss_")))
        log["train_loss"].append(total / steps_per_epoch)
        log["holdout_loss"].append(hold_loss)
        log["holdout_image_mse"].append(float(out["image_mse"]))
        log["holdout_kl"].append(float(out["kl"]))
        log["epoch_seconds"].append(time.perf_counter() - began)
        if best is None or hold_loss < best[0]:
            best = (hold_loss, {k: v.detach().clone() for k, v in model.state_dict().items()})
        bar.set_postfix(train=f"{log['train_loss'][-1]:.1f}", holdout=f"{hold_loss:.1f}")
        if ckpt is not None:
            ckpt.parent.mkdir(parents=True, exist_ok=True)
            tmp = ckpt.with_name(f".{ckpt.name}.tmp")
            torch.save({"model": model.state_dict(), "optimizer": opt.state_dict(),
                        "generator": gen.get_state(), "log": log, "epoch": epoch + 1,
                        "best_loss": best[0], "best_model": best[1]}, tmp)
            os.replace(tmp, ckpt)
    if best is not None:
        model.load_state_dict(best[1])
    model.eval()
    return log


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
    payload = {"data": description, "n": int(sequences.shape[0]), "model": model_kwargs,
               "train": train_kwargs}
    key = hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()
    path = Path(cache_dir) / f"rssm-{key[:16]}.pt"
    if cache and path.is_file():
        return load_rssm(path), {"path": str(path), "cached": True}
    model = RSSM(**model_kwargs)
    ckpt = path.with_suffix(".ckpt") if cache else None
    log = train_rssm(model, sequences, checkpoint_path=ckpt, progress=progress, **train_kwargs)
    if cache:
        save_rssm(path, model)
    return model, {"path": str(path), "cached": False, "log": log}
