"""LEQ on D4RL MuJoCo locomotion (hopper / walker2d / halfcheetah × random / medium /
medium-replay / medium-expert), one YAML per task under config/mujoco/ (Table 9 + Table 10's τ).

The algorithm is ``train`` of ``leq_antmaze.py`` (Algorithm 1 of the paper): D_env from D4RL's
HDF5 file, the world model, the MBPO termination rule, BC + FQE pretraining, LEQ updates from
imagined rollouts; evaluation in gymnasium's v5 env.

    python examples/leq_mujoco.py                                           # hopper-medium
    python examples/leq_mujoco.py --config-name mujoco/walker2d-medium-replay seed=1
    python examples/leq_mujoco.py data.path=/data/hopper_medium-v2.hdf5
    python examples/leq_mujoco.py smoke=true                                # no download, < 1 min
"""

import hydra
from leq_antmaze import train
from omegaconf import DictConfig

from torchrl_leq.training.cli import run_example


@hydra.main(config_path="config", config_name="mujoco/hopper-medium", version_base="1.3")
def main(cfg: DictConfig) -> None:
    run_example("leq", train, cfg)


if __name__ == "__main__":
    main()
