"""Learning test: LEQ, trained from a small generated dataset through the quickstart pipeline,
solves pointmaze-umaze far more often than a random policy (which never reaches the goal)."""

from script_loader import example_config, load_example

from torchrl_leq.training.evaluation import RandomActor, evaluate


def test_leq_beats_random_on_umaze(tmp_path):
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
    cfg = example_config("leq_pointmaze", *(f"{k}={v}" for k, v in overrides.items()))
    result = load_example("leq_antmaze").train(cfg)
    random = evaluate(RandomActor(2, seed=0), "pointmaze-umaze", episodes=20, seed=cfg.seed)
    leq_success = result["final"]["success_rate"]
    assert random["success_rate"] <= 0.1
    assert leq_success >= random["success_rate"] + 0.5, result["final"]
