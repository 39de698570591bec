"""World-model training loop (OfflineRL-Kit recipe: holdout split, elites, early stopping), plus
save / load. The loss it minimises is :func:`torchrl_leq.objectives.world_model.world_model_loss`.

Example:
    >>> import torch
    >>> from torchrl_leq.modules import ProbabilisticEnsemble
    >>> from torchrl_leq.training.world_model import train_world_model
    >>> obs, act = torch.randn(500, 3), torch.randn(500, 2)
    >>> next_obs, reward = obs + 0.1 * act.sum(-1, keepdim=True), obs[:, :1]
    >>> model = ProbabilisticEnsemble(3, 2, num_members=3, num_elites=2, hidden_dims=(32, 32),
    ...                               weight_decays=(1e-5, 1e-5, 1e-5))
    >>> log = train_world_model(model, obs, act, next_obs, reward, max_epochs=3, progress=False)
    >>> len(log["train_loss"])
    3
"""

from __future__ import annotations

import os
import pickle
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from torchrl_leq.modules.ensemble import ProbabilisticEnsemble
from torchrl_leq.objectives.world_model import world_model_loss


def _check_data(
    ensemble: ProbabilisticEnsemble,
    obs: torch.Tensor,
    act: torch.Tensor,
    next_obs: torch.Tensor,
    reward: torch.Tensor,
) -> torch.Tensor:
    """Validate training data; return ``reward`` shaped ``[N, 1]``."""
    if next_obs.shape != obs.shape:
        raise ValueError(
            f"next_obs shape {tuple(next_obs.shape)} differs from obs {tuple(obs.shape)}"
        )
    if obs.dim() != 2:
        raise ValueError(f"expected obs [N, obs_dim], got {tuple(obs.shape)}")
    ensemble._check(obs, act)
    reward = reward.reshape(obs.shape[0], 1)
    for name, x in (("obs", obs), ("action", act), ("next_obs", next_obs), ("reward", reward)):
        if not torch.isfinite(x).all():
            raise ValueError(f"train_world_model got NaN or inf in {name}")
    return reward


def train_world_model(
    ensemble: ProbabilisticEnsemble,
    obs: torch.Tensor,
    act: torch.Tensor,
    next_obs: torch.Tensor,
    reward: torch.Tensor,
    *,
    batch_size: int = 256,
    lr: float = 1e-3,
    max_epochs: int | None = None,
    holdout_ratio: float = 0.2,
    max_holdout: int = 1000,
    patience: int = 5,
    improvement: float = 0.01,
    logvar_bound_coef: float = 0.01,
    bootstrap: bool = True,
    seed: int = 0,
    progress: bool = True,
) -> dict[str, Any]:
    """Train ``ensemble`` on transitions; keep each member's best weights; pick elites.

    Holdout: ``min(holdout_ratio·N, max_holdout)`` random transitions. Each member trains on
    its own bootstrap resample (``bootstrap=True``) of the training split, reshuffled every
    epoch. After each epoch the holdout MSE of every member is measured; a member "improves"
    when its MSE drops by more than ``improvement`` relative to its best. Training stops when
    no member improved for ``patience`` consecutive epochs (or at ``max_epochs``). Each
    member's best weights are restored and the ``num_elites`` lowest-holdout members become
    the elites.

    Returns a dict: ``train_loss`` (per epoch), ``holdout_mse`` (per epoch, a list per member),
    ``best_holdout_mse`` (per member), ``elites``, ``epochs``, ``stopped_early`` and
    ``holdout_indices`` (a tensor of row indices into the inputs).
    """
    reward = _check_data(ensemble, obs, act, next_obs, reward)
    param = ensemble.max_logvar
    obs, act, next_obs, reward = (t.to(param) for t in (obs, act, next_obs, reward))
    n = obs.shape[0]
    n_hold = min(int(n * holdout_ratio), max_holdout)
    if n_hold < 1 or n - n_hold < 1:
        raise ValueError(f"need enough transitions for a train and a holdout split, got {n}")
    gen = torch.Generator().manual_seed(seed)
    perm = torch.randperm(n, generator=gen).to(obs.device)
    hold, train = perm[:n_hold], perm[n_hold:]
    target = torch.cat([next_obs - obs, reward], -1)
    o_tr, a_tr, y_tr = obs[train], act[train], target[train]
    o_ho, a_ho, y_ho = obs[hold], act[hold], target[hold]
    ensemble.fit_scaler(o_tr, a_tr)

    n_train, n_members = o_tr.shape[0], ensemble.num_members
    if bootstrap:
        idx = torch.randint(n_train, (n_members, n_train), generator=gen)
    else:
        idx = torch.arange(n_train).expand(n_members, n_train)
    idx = idx.to(obs.device)
    fused = param.device.type in ("cpu", "cuda")  # fused Adam: ~1.5x faster steps on CPU
    optim = torch.optim.Adam(ensemble.parameters(), lr=lr, fused=fused)

    best_mse = torch.full((n_members,), float("inf"), dtype=param.dtype, device=param.device)
    best_layers = [p.detach().clone() for p in (*ensemble.weights, *ensemble.biases)]
    best_bounds = [ensemble.max_logvar.detach().clone(), ensemble.min_logvar.detach().clone()]
    log: dict[str, Any] = {"train_loss": [], "holdout_mse": []}
    since_improved, epoch = 0, 0
    bar = tqdm(desc="world model", unit="epoch", total=max_epochs, disable=not progress)
    while max_epochs is None or epoch < max_epochs:
        order = torch.argsort(torch.rand(n_members, n_train, generator=gen), dim=1)
        epoch_idx = idx.gather(1, order.to(idx.device))
        total = torch.zeros((), dtype=param.dtype, device=param.device)
        n_batches = 0
        for start in range(0, n_train, batch_size):
            b = epoch_idx[:, start : start + batch_size]
            loss = world_model_loss(
                ensemble, o_tr[b], a_tr[b], y_tr[b], logvar_bound_coef=logvar_bound_coef
            )
            optim.zero_grad(set_to_none=True)
            loss.backward()
            optim.step()
            total += loss.detach()
            n_batches += 1
        with torch.no_grad():
            mean, _ = ensemble(o_ho, a_ho)
            mse = (mean - y_ho).square().mean(dim=(1, 2))
            improved = mse < best_mse * (1.0 - improvement)
            best_mse = torch.where(improved, mse, best_mse)
            for saved, p in zip(best_layers, (*ensemble.weights, *ensemble.biases)):
                saved.copy_(torch.where(improved.view(-1, 1, 1), p, saved))
            if improved.any():
                best_bounds[0].copy_(ensemble.max_logvar)
                best_bounds[1].copy_(ensemble.min_logvar)
        epoch += 1
        log["train_loss"].append((total / n_batches).item())
        log["holdout_mse"].append(mse.tolist())
        bar.update(1)
        bar.set_postfix(loss=log["train_loss"][-1], holdout=float(mse.mean()))
        since_improved = 0 if bool(improved.any()) else since_improved + 1
        if since_improved >= patience:
            break
    bar.close()

    with torch.no_grad():
        for saved, p in zip(best_layers, (*ensemble.weights, *ensemble.biases)):
            p.copy_(saved)
        ensemble.max_logvar.copy_(best_bounds[0])
        ensemble.min_logvar.copy_(best_bounds[1])
    elites = torch.argsort(best_mse)[: ensemble.num_elites]
    ensemble.set_elites(elites)
    log.update(
        best_holdout_mse=best_mse.tolist(),
        elites=elites.tolist(),
        epochs=epoch,
        stopped_early=since_improved >= patience,
        holdout_indices=hold,
    )
    return log


WORLD_MODEL_KIND = "world_model"
WORLD_MODEL_VERSION = 1


def save_world_model(path: str | os.PathLike, ensemble: ProbabilisticEnsemble) -> None:
    """Write config, weights, scaler and elites to ``path`` atomically, behind a header with a
    format marker, version and SHA-256 (:mod:`torchrl_leq.serialization`).

    Example:
        >>> import tempfile
        >>> m = ProbabilisticEnsemble(3, 2, hidden_dims=(8,), weight_decays=(0.0, 0.0))
        >>> p = Path(tempfile.mkdtemp()) / "wm.pt"
        >>> save_world_model(p, m)
        >>> load_world_model(p).config == m.config
        True
    """
    from torchrl_leq.serialization import write_verified

    payload = {"config": ensemble.config, "state_dict": ensemble.state_dict()}
    write_verified(path, payload, kind=WORLD_MODEL_KIND, version=WORLD_MODEL_VERSION)


def load_world_model(
    path: str | os.PathLike, map_location: str | torch.device = "cpu"
) -> ProbabilisticEnsemble:
    """Rebuild a :class:`ProbabilisticEnsemble` saved by :func:`save_world_model` (or by its
    earlier plain-``torch.save`` version). Every wrong input is a one-line error:
    ``FileNotFoundError`` (no file), ``ValueError`` (not a world model: another torchrl_leq
    file, another torch file, not a torch file, a newer format), or
    :class:`~torchrl_leq.serialization.CorruptFileError` (a ``ValueError``: truncated, altered,
    weights that do not fit the config).

    Example:
        >>> import tempfile
        >>> p = Path(tempfile.mkdtemp()) / "notes.txt"; _ = p.write_text("hello")
        >>> load_world_model(p)
        Traceback (most recent call last):
        ...
        ValueError: .../notes.txt is not a world model saved by save_world_model (not a torch file).
    """
    from torchrl_leq.serialization import (
        CorruptFileError,
        UnknownFormatError,
        first_line,
        read_verified,
    )

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"No world model at {path}.")
    not_ours = f"{path} is not a world model saved by save_world_model"
    try:
        payload, _ = read_verified(
            path, kind=WORLD_MODEL_KIND, max_version=WORLD_MODEL_VERSION, weights_only=True
        )
    except UnknownFormatError:
        with path.open("rb") as f:
            is_zip = f.read(4) == b"PK\x03\x04"  # torch.save's format since torch 1.6
        if not is_zip:
            raise ValueError(f"{not_ours} (not a torch file).") from None
        try:  # the format before the header: a plain torch.save of the same dict
            payload = torch.load(path, map_location="cpu", weights_only=True)
        except pickle.UnpicklingError:
            raise ValueError(
                f"{not_ours} (a torch file holding objects other than tensors and containers)."
            ) from None
        except Exception as err:
            raise CorruptFileError(
                f"{path} is an unreadable torch file ({first_line(err, 80)})."
            ) from None
    if not isinstance(payload, dict) or not {"config", "state_dict"} <= set(payload):
        keys = sorted(map(str, payload))[:5] if isinstance(payload, dict) else []
        raise ValueError(
            f"{not_ours} (a torch file holding {type(payload).__name__}"
            f"{' with keys ' + ', '.join(keys) if keys else ''})."
        )
    try:
        ensemble = ProbabilisticEnsemble(**payload["config"])
        ensemble.load_state_dict(payload["state_dict"])
    except Exception as err:
        raise CorruptFileError(
            f"{path}: the stored weights do not fit the stored config ({first_line(err, 100)})."
        ) from None
    return ensemble.to(map_location)
