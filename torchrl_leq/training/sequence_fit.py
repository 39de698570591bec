"""One offline training loop for the sequence world models (the RSSM, C-LAP's latent action model).

:func:`fit_sequence_model` runs ``epochs`` × ``steps_per_epoch`` optimiser steps on random
windows ``[batch_size, seq_len]`` of the training rows (gradient-norm clipping), then evaluates
the loss on fixed holdout windows; it keeps the best-holdout weights and restores them at the
end. With ``checkpoint_path`` the model, optimiser, RNGs, log and best weights are saved after
every epoch (atomically) and a rerun resumes from there, bit-exactly. :func:`sample_sequences`
cuts the windows, :func:`split_episodes` holds out whole episodes,
:func:`train_and_holdout` checks and splits a training function's data; :func:`cache_path` names
a trained model's cache file by a hash of what it was trained on.

Example:
    >>> import torch
    >>> from tensordict import TensorDict
    >>> model = torch.nn.Linear(1, 1)
    >>> def loss_fn(batch):
    ...     err = model(batch["x"].unsqueeze(-1)).squeeze(-1) - 2 * batch["x"]
    ...     return TensorDict({"loss_mse": err.pow(2).mean(), "mae": err.abs().mean()}, [])
    >>> rows = TensorDict({"x": torch.linspace(-1, 1, 50),
    ...                    "is_first": torch.zeros(50, dtype=torch.bool)}, [50])
    >>> log = fit_sequence_model(model, loss_fn, rows, rows[:8].unsqueeze(0),
    ...                          torch.optim.Adam(model.parameters(), lr=0.1), epochs=3,
    ...                          steps_per_epoch=50, batch_size=4, seq_len=5,
    ...                          holdout_metrics={"holdout_mae": "mae"}, progress=False)
    >>> list(log), log["holdout_mae"][-1] < log["holdout_mae"][0]
    (['train_loss', 'holdout_loss', 'holdout_mae', 'epoch_seconds'], True)
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch
from tensordict import TensorDictBase
from torch import nn
from tqdm.auto import tqdm

__all__ = ["total_loss", "sample_sequences", "split_episodes",
           "train_and_holdout", "fit_sequence_model", "cache_path"]


def total_loss(out: TensorDictBase) -> torch.Tensor:
    """The sum of a loss module's ``loss_*`` entries."""
    return sum(v for k, v in out.items() if k.startswith("loss_"))


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


def train_and_holdout(
    data: TensorDictBase,
    keys: tuple[str, ...],
    *,
    holdout_fraction: float,
    seq_len: int,
    max_windows: int,
    caller: str,
) -> tuple[TensorDictBase, TensorDictBase]:
    """The training rows (``keys`` of the episodes :func:`split_episodes` keeps) and the fixed
    holdout batch (the first ``max_windows`` non-overlapping windows of the held-out episodes),
    after one-line checks that ``data`` has ``keys`` and ``episode`` and both parts have at
    least ``seq_len`` rows (``caller`` names the training function in the error)."""
    missing = [k for k in (*keys, "episode") if k not in data.keys()]
    if missing:
        raise ValueError(f"{caller} data lacks keys {missing}")
    train, hold = split_episodes(data, holdout_fraction)
    train, hold = train.select(*keys), hold.select(*keys)
    for name, part in (("training", train), ("holdout", hold)):
        if part.shape[0] < seq_len:
            raise ValueError(f"{name} data has {part.shape[0]} rows, fewer than seq_len={seq_len}")
    starts = torch.arange(0, hold.shape[0] - seq_len + 1, seq_len)[:max_windows]
    return train, sample_sequences(hold, starts, seq_len)


def fit_sequence_model(
    model: nn.Module,
    loss_fn: Callable[[TensorDictBase], TensorDictBase],
    train: TensorDictBase,
    hold_batch: TensorDictBase,
    optimizer: torch.optim.Optimizer,
    *,
    epochs: int,
    steps_per_epoch: int,
    batch_size: int,
    seq_len: int,
    grad_clip: float = 100.0,
    holdout_metrics: Mapping[str, str] | None = None,
    seed: int = 0,
    checkpoint_path: str | os.PathLike | None = None,
    desc: str = "model",
    progress: bool = True,
) -> dict[str, list[float]]:
    """Train ``model`` in place; returns the per-epoch log ``train_loss``, ``holdout_loss``,
    one list per ``holdout_metrics`` entry (log name → key of ``loss_fn``'s output on the
    holdout batch) and ``epoch_seconds``. ``loss_fn`` maps a ``[batch_size, seq_len]`` window
    batch to a TensorDict whose ``loss_*`` entries are summed and minimised."""
    metrics = dict(holdout_metrics or {})
    gen = torch.Generator().manual_seed(seed)
    log: dict[str, list[float]] = {
        k: [] for k in ("train_loss", "holdout_loss", *metrics, "epoch_seconds")
    }
    best: tuple[float, dict[str, torch.Tensor]] | None = None
    start_epoch = 0
    ckpt = Path(checkpoint_path) if checkpoint_path is not None else None
    if ckpt is not None and ckpt.is_file():
        state = torch.load(ckpt, weights_only=False)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        gen.set_state(state["generator"])
        if "torch_rng" in state:  # the model's own sampling draws from the global RNG
            torch.set_rng_state(state["torch_rng"])
        log, start_epoch = state["log"], state["epoch"]
        best = (state["best_loss"], state["best_model"])
    bar = tqdm(range(start_epoch, epochs), desc=desc, unit="epoch", disable=not progress)
    for epoch in bar:
        began = time.perf_counter()
        model.train()
        total = 0.0
        for _ in range(steps_per_epoch):
            starts = torch.randint(0, train.shape[0] - seq_len + 1, (batch_size,), generator=gen)
            loss = total_loss(loss_fn(sample_sequences(train, starts, seq_len)))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
            optimizer.step()
            total += float(loss.detach())
        model.eval()
        with torch.no_grad():
            out = loss_fn(hold_batch)
        hold_loss = float(total_loss(out))
        log["train_loss"].append(total / max(steps_per_epoch, 1))
        log["holdout_loss"].append(hold_loss)
        for name, key in metrics.items():
            log[name].append(float(out[key]))
        log["epoch_seconds"].append(time.perf_counter() - began)
        if best is None or hold_loss < best[0]:
            best = (hold_loss, {k: v.detach().clone() for k, v in model.state_dict().items()})
        bar.set_postfix(train=f"{log['train_loss'][-1]:.1f}", holdout=f"{hold_loss:.1f}")
        if ckpt is not None:
            ckpt.parent.mkdir(parents=True, exist_ok=True)
            tmp = ckpt.with_name(f".{ckpt.name}.tmp")
            torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                        "generator": gen.get_state(), "torch_rng": torch.get_rng_state(),
                        "log": log, "epoch": epoch + 1,
                        "best_loss": best[0], "best_model": best[1]}, tmp)
            os.replace(tmp, ckpt)
    if best is not None:
        model.load_state_dict(best[1])
    model.eval()
    return log


def cache_path(cache_dir: str | os.PathLike, prefix: str, payload: Mapping[str, Any]) -> Path:
    """``cache_dir/<prefix>-<first 16 hex digits of the sha256 of payload as JSON>.pt``.

    Example:
        >>> cache_path("/tmp/wm", "rssm", {"data": "umaze"}).name
        'rssm-c3338d52510ade3d.pt'
    """
    key = hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()
    return Path(cache_dir) / f"{prefix}-{key[:16]}.pt"
