"""LEQ on a generated point-maze dataset — the quickstart (no download needed).

The algorithm is ``train`` of ``leq_antmaze.py`` (Algorithm 1 of the paper), run here with
config/leq_pointmaze.yaml: the data are generated on first use, the world model is trained and
cached, BC + FQE pretraining, then LEQ updates from imagined rollouts while D_model is expanded.

    python examples/leq_pointmaze.py                      # pointmaze-umaze, ~4 min on 2 cores
    python examples/leq_pointmaze.py task=pointmaze-medium seed=1
    python examples/leq_pointmaze.py smoke=true           # < 1 min
    python examples/leq_pointmaze.py -m seed=0,1,2        # hydra multirun
"""

import hydra
from leq_antmaze import train
from omegaconf import DictConfig

from torchrl_leq.training.cli import run_example


@hydra.main(config_path="config", config_name="leq_pointmaze", version_base="1.3")
def main(cfg: DictConfig) -> None:
    run_example("leq", train, cfg)


if __name__ == "__main__":
    main()
