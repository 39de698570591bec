"""LEQ on D4RL MuJoCo locomotion (hopper / walker2d / halfcheetah × random / medium /
medium-replay / medium-expert), one YAML per task under config/mujoco/ (Table 9 + Table 10's τ).

Algorithm 1 of the paper: D_env from D4RL's HDF5 file, a world-model ensemble trained on it
(cached), the model as a TorchRL env with the MBPO termination rule, BC + FQE pretraining, then
LEQ updates from imagined rollouts while D_model is expanded; evaluation in gymnasium's v5 env.

    python examples/leq_mujoco.py                                   # hopper-medium
    python examples/leq_mujoco.py --config-name walker2d-medium-replay seed=1
    python examples/leq_mujoco.py data.path=/data/hopper_medium-v2.hdf5
    python examples/leq_mujoco.py smoke=true                        # no download, < 2 min
"""

import hydra
from omegaconf import DictConfig

from torchrl_leq.training.cli import run_example
from torchrl_leq.training.datasets import prepare_example_data


@hydra.main(config_path="config/mujoco", config_name="hopper-medium", version_base="1.3")
def main(cfg: DictConfig) -> None:
    # smoke=true: a tiny D4RL-format dataset from the real simulator; else the file must exist.
    run_example(cfg, prepare=prepare_example_data)


if __name__ == "__main__":
    main()
