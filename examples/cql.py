"""CQL baseline on the same data, reward transform and evaluation as LEQ.

python examples/cql.py                        # pointmaze-umaze
python examples/cql.py task=pointmaze-medium  # any generated maze
python examples/cql.py data.source=d4rl_hdf5 data.path=~/antmaze.hdf5 task=antmaze-umaze
python examples/cql.py smoke=true             # < 2 min
"""

import hydra
from omegaconf import DictConfig

from torchrl_leq.training.cli import run_example


@hydra.main(config_path="config", config_name="cql", version_base="1.3")
def main(cfg: DictConfig) -> None:
    run_example(cfg)


if __name__ == "__main__":
    main()
