"""LEQ on D4RL AntMaze (umaze, umaze-diverse, medium-play/-diverse, large-play/-diverse,
ultra-play/-diverse), one YAML per task under config/antmaze/ (Table 9 + Table 10's τ).

Algorithm 1 of the paper: D_env from D4RL's HDF5 file (rewards r - 1), a world-model ensemble
trained on it (cached), the model as a TorchRL env that terminates at the goal, then LEQ updates
from imagined rollouts while D_model is expanded. Evaluating D4RL AntMaze needs D4RL's own env
(set eval.env_id); smoke=true runs end to end on gymnasium-robotics' AntMaze instead. See
docs/antmaze.md for the frame difference between the two.

    python examples/leq_antmaze.py eval.env_id=<your D4RL env id>    # antmaze-umaze
    python examples/leq_antmaze.py --config-name large-diverse seed=1 eval.env_id=...
    python examples/leq_antmaze.py smoke=true                        # no download, < 2 min
"""

import hydra
from omegaconf import DictConfig

from torchrl_leq.training.cli import run_example
from torchrl_leq.training.datasets import prepare_example_data


@hydra.main(config_path="config/antmaze", config_name="umaze", version_base="1.3")
def main(cfg: DictConfig) -> None:
    # smoke=true: a tiny D4RL-format dataset from the real simulator; else the file must exist.
    run_example(cfg, prepare=prepare_example_data)


if __name__ == "__main__":
    main()
