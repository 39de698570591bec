"""BC (deterministic behaviour cloning) baseline on the same data, reward transform and evaluation as LEQ.

python examples/bc.py                        # pointmaze-umaze
python examples/bc.py task=pointmaze-medium  # any generated maze
python examples/bc.py data.source=d4rl_hdf5 data.path=~/antmaze.hdf5 task=antmaze-umaze
python examples/bc.py smoke=true             # < 2 min
"""

import hydra
from omegaconf import DictConfig

from torchrl_leq.training.cli import run_example


@hydra.main(config_path="config", config_name="bc", version_base="1.3")
def main(cfg: DictConfig) -> None:
    run_example(cfg)


if __name__ == "__main__":
    main()
