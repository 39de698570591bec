"""Offline data: loaders (D4RL HDF5, Minari, generated point-maze datasets) to TorchRL replay
buffers, reward transforms, the D_model buffer, normalized scores, the point-maze data-collection
controller. The point-maze evaluation envs are in :mod:`torchrl_leq.envs`."""

from torchrl_leq.data.buffers import make_replay_buffer, make_transitions
from torchrl_leq.data.d4rl import load_d4rl_hdf5, read_d4rl_hdf5
from torchrl_leq.data.generate import (
    data_root,
    generate_pointmaze_dataset,
    load_pointmaze_dataset,
    pointmaze_dataset_id,
    read_pointmaze_dataset,
)
from torchrl_leq.data.minari import load_minari, read_minari
from torchrl_leq.data.model_buffer import expand_model_buffer, make_model_buffer
from torchrl_leq.data.model_rollouts import (
    rollout_model_transitions,
    sample_mixed_batch,
)
from torchrl_leq.data.scores import REFERENCE_SCORES, normalized_score, reference_scores
from torchrl_leq.data.transforms import (
    RewardAffine,
    apply_reward_transform,
    episode_returns,
    locomotion_reward_scale,
    make_reward_transform,
    scale_rewards_by_return_range,
    shift_rewards,
)
from torchrl_leq.data.waypoint_controller import WaypointController, make_controller_actor

__all__ = [
    "make_transitions",
    "make_replay_buffer",
    "read_d4rl_hdf5",
    "load_d4rl_hdf5",
    "read_minari",
    "load_minari",
    "data_root",
    "pointmaze_dataset_id",
    "generate_pointmaze_dataset",
    "read_pointmaze_dataset",
    "load_pointmaze_dataset",
    "make_model_buffer",
    "expand_model_buffer",
    "rollout_model_transitions",
    "sample_mixed_batch",
    "WaypointController",
    "make_controller_actor",
    "REFERENCE_SCORES",
    "reference_scores",
    "normalized_score",
    "shift_rewards",
    "scale_rewards_by_return_range",
    "locomotion_reward_scale",
    "episode_returns",
    "apply_reward_transform",
    "RewardAffine",
    "make_reward_transform",
]
