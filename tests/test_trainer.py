"""OfflineTrainer: exact resume, NaN stop with the last good checkpoint kept, determinism."""

import math

import pytest
import torch
from tensordict import TensorDict

from torchrl_leq.data import make_model_buffer
from torchrl_leq.training.checkpoint import load_checkpoint
from torchrl_leq.training.trainer import NonFiniteLossError, OfflineTrainer, PeriodicHook


class NoisyRegression(torch.nn.Module):
    """A loss that uses the global RNG (dropout + sampling) and a replay buffer, like LEQ."""

    def __init__(self):
        super().__init__()
        self.net = torch.nn.Sequential(
            torch.nn.Linear(2, 16), torch.nn.Dropout(0.2), torch.nn.Linear(16, 1)
        )

    def forward(self, td):
        pred = self.net(td["observation"])
        return TensorDict(
            {
                "loss_fit": (pred - td["observation"].sum(-1, keepdim=True)).pow(2).mean(),
                "diag": pred.mean().detach(),
            },
            [],
        )


def build(run_dir, total_steps=30, stop_after_steps=None, lr=1e-2, nan_at=None, **kwargs):
    """A small trainer; ``kwargs`` go to :class:`OfflineTrainer` (config, resume, logger, ...)."""
    torch.manual_seed(0)
    loss = NoisyRegression()
    opt = torch.optim.Adam(loss.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=total_steps)
    buffer = make_model_buffer(capacity=50, batch_size=8)

    def fill(step):
        buffer.extend(TensorDict({"observation": torch.randn(10, 2)}, [10]))

    calls = {"n": 0}

    def sample():
        calls["n"] += 1
        td = buffer.sample()
        if nan_at is not None and calls["n"] >= nan_at:
            td["observation"] = td["observation"] * float("nan")
        return td

    trainer = OfflineTrainer(
        loss=loss,
        modules={"loss": loss},
        optimizers={"opt": opt},
        schedulers={"opt": sched},
        sample_batch=sample,
        evaluate=lambda episodes, seed: {
            "normalized_score": float(loss.net[0].weight.detach().sum()),
            "success_rate": 0.0,
            "mean_return": 0.0,
        },
        run_dir=run_dir,
        total_steps=total_steps,
        eval_every=10,
        eval_episodes=1,
        final_eval_episodes=1,
        log_every=5,
        hooks=[PeriodicHook(7, fill, "fill")],
        stateful={"buffer": buffer},
        progress=False,
        stop_after_steps=stop_after_steps,
        **{"checkpoint_every": 10, **kwargs},
    )
    return trainer, loss


def test_resume_is_bitwise_identical_to_an_uninterrupted_run(tmp_path):
    straight, straight_loss = build(tmp_path / "straight", total_steps=40)
    straight.train()
    killed, _ = build(tmp_path / "resumed", total_steps=40, stop_after_steps=20)
    assert killed.train()["stopped_at"] == 20
    resumed, resumed_loss = build(tmp_path / "resumed", total_steps=40)
    assert resumed.resume() and resumed.step == 20
    resumed.train()
    for (name, a), b in zip(straight_loss.state_dict().items(), resumed_loss.state_dict().values()):
        assert torch.equal(a, b), name
    assert (tmp_path / "straight/metrics.csv").read_text() == (
        tmp_path / "resumed/metrics.csv"
    ).read_text()


def test_resume_drops_rows_logged_after_the_checkpoint(tmp_path):
    trainer, _ = build(tmp_path, total_steps=40, stop_after_steps=25)
    trainer.train()  # checkpoint at 20, an eval row at 20; the "kill" happens at 25
    trainer.metrics.write({"step": 24, "kind": "eval", "episodes": 1, "normalized_score": 1.0})
    again, _ = build(tmp_path, total_steps=40)
    again.resume()
    assert [int(r["step"]) for r in again.metrics.read()] == [10, 20]


def test_nan_loss_stops_with_clear_error_and_keeps_last_checkpoint(tmp_path):
    trainer, _ = build(tmp_path, total_steps=40, nan_at=13)
    with pytest.raises(NonFiniteLossError, match="loss_fit.*last good checkpoint"):
        trainer.train()
    assert load_checkpoint(tmp_path / "checkpoint.pt")["step"] == 10
    state = load_checkpoint(tmp_path / "checkpoint.pt")["modules"]["loss"]
    assert all(torch.isfinite(v).all() for v in state.values())


def test_same_seed_same_metrics_and_outputs(tmp_path):
    a, _ = build(tmp_path / "a")
    ra = a.train()
    b, _ = build(tmp_path / "b")
    rb = b.train()
    assert (tmp_path / "a/metrics.csv").read_text() == (tmp_path / "b/metrics.csv").read_text()
    assert ra["last_score"] == rb["last_score"] and math.isfinite(ra["best_score"])
    assert (tmp_path / "a/learning_curve.png").stat().st_size > 1000
    rows = a.metrics.read()
    assert [r["kind"] for r in rows] == ["eval", "eval", "final"]


def test_invalid_schedule_is_rejected(tmp_path):
    with pytest.raises(ValueError, match="eval_every"):
        OfflineTrainer(
            loss=lambda td: td,
            modules={},
            optimizers={},
            sample_batch=lambda: None,
            evaluate=lambda e, s: {},
            run_dir=tmp_path,
            total_steps=10,
            eval_every=0,
        )
