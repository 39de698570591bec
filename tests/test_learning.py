"""Learning test: LEQ, trained from a small generated dataset through the quickstart pipeline,
solves pointmaze-umaze far more often than a random policy (which never reaches the goal)."""

from pathlib import Path

from omegaconf import OmegaConf

from torchrl_leq.training.evaluation import evaluate, make_random_actor
from torchrl_leq.training.experiments import prepare_config, run_model_based

CONFIG = Path(__file__).resolve().parents[1] / "examples" / "config" / "leq_pointmaze.yaml"


def test_leq_beats_random_on_umaze(tmp_path):
    cfg = prepare_config(OmegaConf.load(CONFIG), smoke=False)
    overrides = {
        "run_dir": str(tmp_path),
        "progress": False,
        "data.steps": 50_000,
        "world_model.max_epochs": 5,
        "pretrain.bc_steps": 500,
        "pretrain.fqe_steps": 500,
        "expansion.num_starts": 2000,
        "train.total_steps": 2000,
        "train.eval_every": 1000,
        "train.checkpoint_every": 0,
        "train.final_eval_episodes": 20,
    }
    for key, value in overrides.items():
        OmegaConf.update(cfg, key, value)
    result = run_model_based(cfg)
    random = evaluate(make_random_actor(2, seed=0), "pointmaze-umaze", episodes=20, seed=cfg.seed)
    leq_success = result["final"]["success_rate"]
    assert random["success_rate"] <= 0.1
    assert leq_success >= random["success_rate"] + 0.5, result["final"]
