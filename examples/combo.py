"""COMBO on LEQ's parts: the same data, world model, model env and trainer; only the loss
(and what fills the model replay buffer) changes, selected by ``algo: combo`` in the config.

    python examples/combo.py                      # pointmaze-umaze
    python examples/combo.py task=pointmaze-medium data.steps=1000000
    python examples/combo.py smoke=true           # < 2 min
"""

import hydra
from omegaconf import DictConfig

from torchrl_leq.training.cli import run_example


@hydra.main(config_path="config", config_name="combo", version_base="1.3")
def main(cfg: DictConfig) -> None:
    run_example(cfg)


if __name__ == "__main__":
    main()
