"""LEQ on a generated point-maze dataset — the quickstart (no download needed).

Algorithm 1 of the paper: the offline data D_env (generated on first use), a world-model
ensemble trained on it (cached), the model as a TorchRL env with the maze's true termination,
BC + FQE pretraining, then LEQ updates from imagined rollouts while D_model is expanded.

    python examples/leq_pointmaze.py                      # pointmaze-umaze, ~10 min on 2 cores
    python examples/leq_pointmaze.py task=pointmaze-medium seed=1
    python examples/leq_pointmaze.py smoke=true           # < 2 min
    python examples/leq_pointmaze.py -m seed=0,1,2        # hydra multirun
"""

import hydra
from omegaconf import DictConfig

from torchrl_leq.training.cli import run_example


@hydra.main(config_path="config", config_name="leq_pointmaze", version_base="1.3")
def main(cfg: DictConfig) -> None:
    run_example(cfg)


if __name__ == "__main__":
    main()
