"""Test helpers for the data tests: a tiny analytic model env with the LEQ model-env contract,
and writers of small D4RL-format HDF5 / Minari datasets with known values."""

from __future__ import annotations

import warnings
from pathlib import Path

import h5py
import numpy as np
import torch
from tensordict import TensorDict, TensorDictBase
from tensordict.nn import TensorDictModuleBase


class LinearModelEnv:
    """Differentiable analytic "world model": ``s' = s + 0.1 a``, reward ``-|s|^2``, never
    terminates. Any batch size; ``reset``/``step``/``rollout`` follow the model-env contract."""

    def __init__(self) -> None:
        self.rollout_calls = 0

    def reset(self, tensordict: TensorDictBase) -> TensorDictBase:
        return tensordict.select("observation").clone(False)

    def step(self, tensordict: TensorDictBase) -> TensorDictBase:
        obs, action = tensordict["observation"], tensordict["action"]
        b = tensordict.batch_size
        tensordict.set(
            "next",
            TensorDict(
                {
                    "observation": obs + 0.1 * action,
                    "reward": -(obs**2).sum(-1, keepdim=True),
                    "terminated": torch.zeros(*b, 1, dtype=torch.bool),
                    "done": torch.zeros(*b, 1, dtype=torch.bool),
                },
                batch_size=b,
            ),
        )
        return tensordict

    def rollout(
        self,
        max_steps: int,
        policy: TensorDictModuleBase,
        auto_reset: bool = True,
        tensordict: TensorDictBase | None = None,
        break_when_any_done: bool = True,
    ) -> TensorDictBase:
        assert not auto_reset and tensordict is not None and not break_when_any_done
        self.rollout_calls += 1
        steps, td = [], tensordict
        for _ in range(max_steps):
            td = self.step(policy(td.clone(False)))
            steps.append(td)
            td = td["next"].select("observation").clone(False)
        return torch.stack(steps, dim=len(tensordict.batch_size))


def random_transitions(b: int, obs: int, act: int, gen: torch.Generator) -> TensorDict:
    """``b`` random transitions (normal observations, actions in [-1, 1], 20 % terminal)."""
    return TensorDict(
        {
            "observation": torch.randn(b, obs, generator=gen),
            "action": torch.rand(b, act, generator=gen) * 2 - 1,
            "next": {
                "observation": torch.randn(b, obs, generator=gen),
                "reward": torch.randn(b, 1, generator=gen),
                "terminated": torch.rand(b, 1, generator=gen) < 0.2,
            },
        },
        [b],
    )


def write_d4rl_file(path: Path, data: dict[str, np.ndarray]) -> Path:
    """Write ``data`` (D4RL key → array) to an HDF5 file."""
    with h5py.File(path, "w") as f:
        for key, value in data.items():
            f.create_dataset(key, data=value)
    return path


def write_minari_dataset(root: Path, dataset_id: str, episodes: list[dict]) -> None:
    """Write episodes (``observations`` with T+1 rows — array or dict of arrays —, ``actions``,
    ``rewards``, ``terminations``, ``truncations``) as a Minari dataset under ``root``, no JAX."""
    import gymnasium as gym
    import minari
    from minari.data_collector import EpisodeBuffer

    from torchrl_leq.data.minari import minari_root_env

    first = episodes[0]
    obs = first["observations"]
    if isinstance(obs, dict):
        obs_space = gym.spaces.Dict(
            {k: gym.spaces.Box(-np.inf, np.inf, v.shape[1:], np.float32) for k, v in obs.items()}
        )
    else:
        obs_space = gym.spaces.Box(-np.inf, np.inf, obs.shape[1:], np.float32)
    act_space = gym.spaces.Box(-1.0, 1.0, first["actions"].shape[1:], np.float32)
    buffers = [EpisodeBuffer(id=i, **ep) for i, ep in enumerate(episodes)]
    with minari_root_env(root), warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*(eval_env|env_spec).*")
        minari.create_dataset_from_buffers(
            dataset_id,
            buffers,
            observation_space=obs_space,
            action_space=act_space,
            author="tests",
            author_email="tests@example.com",
            code_permalink="none",
            algorithm_name="tests",
            description="test dataset",
        )
