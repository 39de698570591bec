"""Does the pixel world model see the ball? A linear probe from the RSSM's posterior features.

Loads the rendered point-maze dataset and the cached RSSM of ``examples/config/leq_pixels.yaml``
(with the given overrides; both are built if missing), encodes every frame with the posterior
and fits least squares from the features (plus a constant) to the simulator's ball position
``x, y`` and to the dataset action, on a random 80 % of the frames; prints the R² on the other
20 % per dimension as one JSON line. A policy on these features can only steer the ball if x, y
are recoverable from them.

    MUJOCO_GL=egl OMP_NUM_THREADS=1 python benchmarks/pixels_probe.py world_model.seed=0
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]


def linear_probe_r2(x: torch.Tensor, y: torch.Tensor, seed: int = 0) -> list[float]:
    """Held-out R² per output dimension of least squares ``y ≈ [x, 1] w`` (80/20 split)."""
    n = x.shape[0]
    idx = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    train, test = idx[: int(0.8 * n)], idx[int(0.8 * n):]
    design = torch.cat([x, torch.ones(n, 1, dtype=x.dtype)], 1).double()
    w = torch.linalg.lstsq(design[train], y[train].double()).solution
    err = (design[test] @ w - y[test]).pow(2).sum(0)
    var = (y[test] - y[test].mean(0)).pow(2).sum(0)
    return (1 - err / var).tolist()


def main(overrides: list[str]) -> None:
    sys.path.insert(0, str(ROOT / "examples"))
    import leq_pixels

    from torchrl_leq.data.pixels import render_pointmaze_dataset
    from torchrl_leq.data.vd4rl import read_vd4rl_episodes
    from torchrl_leq.training.config import compose_config

    cfg = compose_config(ROOT / "examples" / "config", "leq_pixels", ["progress=false", *overrides])
    seq, _ = leq_pixels.load_pixel_sequences(cfg)
    data = leq_pixels.make_pixel_data(cfg)
    path = render_pointmaze_dataset(cfg.data.task, int(cfg.data.steps), int(cfg.data.seed),
                                    episode_length=int(cfg.data.episode_length), progress=False)
    state = np.concatenate([e["state"] for e in read_vd4rl_episodes(path)])
    xy = torch.as_tensor(state[:, :2], dtype=torch.float32)
    print(json.dumps({
        "frames": int(data.features.shape[0]), "feature_dim": int(data.features.shape[1]),
        "world_model": data.rssm_info["path"],
        "r2_xy": linear_probe_r2(data.features, xy),
        "r2_action": linear_probe_r2(data.features, seq["action"]),
    }))


if __name__ == "__main__":
    main(sys.argv[1:])
