"""A generic offline-RL training loop for any TorchRL ``LossModule`` (LEQ, IQL, CQL, BC, COMBO).

Each step: run the hooks due (e.g. D_model expansion), sample a batch, sum the ``loss_*``
entries, backpropagate once, step every optimiser and scheduler, update targets. Every
``eval_every`` steps the deterministic actor is evaluated in the real env; every
``checkpoint_every`` steps everything needed to continue bit-exactly is saved atomically (the
previous checkpoint is kept as ``checkpoint.prev.pt``, the fallback when the newest is corrupt);
``resume`` continues from it. A non-finite loss stops training with a clear error and leaves the
last good checkpoint in place. At the end: a final evaluation, ``metrics.csv`` and a PNG.

The run directory belongs to this run (:class:`~torchrl_leq.training.run_dir.RunDirectory`):
the first ``resume()``/``train()`` locks it and refuses another run's directory unless resuming
with the same ``config``; on resume only the files the trainer wrote (``metrics.csv``, the CSV
logger's files) are cut back to their sizes at the checkpoint.

Example (a toy loss and a fake evaluator):
    >>> import torch, tempfile
    >>> from tensordict import TensorDict
    >>> net = torch.nn.Linear(1, 1)
    >>> loss = lambda td: TensorDict({"loss_x": (net(td["x"]) - 1).pow(2).mean()}, [])
    >>> trainer = OfflineTrainer(
    ...     loss=loss, modules={"net": net},
    ...     optimizers={"net": torch.optim.SGD(net.parameters(), lr=0.1)},
    ...     sample_batch=lambda: TensorDict({"x": torch.ones(4, 1)}, [4]),
    ...     evaluate=lambda episodes, seed: {"normalized_score": 0.0, "success_rate": 0.0,
    ...                                      "mean_return": 0.0},
    ...     run_dir=tempfile.mkdtemp(), total_steps=20, eval_every=10, final_eval_episodes=1,
    ...     progress=False)
    >>> trainer.train()["last_score"]
    0.0
"""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import torch
from tensordict import TensorDictBase
from torchrl.record.loggers import Logger
from tqdm.auto import tqdm

from torchrl_leq.serialization import first_line

from .checkpoint import (
    capture_rng_state,
    checkpoint_files,
    load_checkpoint,
    load_latest_checkpoint,
    restore_rng_state,
    save_checkpoint,
)
from .loggers import MetricsCSV, logger_files, plot_learning_curve, truncate_csv_after
from .run_dir import RunDirectory, config_diff

__all__ = [
    "OfflineTrainer",
    "PeriodicHook",
    "NonFiniteLossError",
    "CheckpointWriteError",
    "make_update_step",
    "loss_keys_of",
]

METRIC_FIELDS = ["step", "kind", "episodes", "normalized_score", "success_rate", "mean_return"]


class NonFiniteLossError(RuntimeError):
    """A loss became NaN/inf; the last good checkpoint is kept."""


class CheckpointWriteError(OSError):
    """Writing a checkpoint failed (disk full, read-only); the previous checkpoints are kept."""


class Stateful(Protocol):
    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> Any: ...


@dataclass
class PeriodicHook:
    """Call ``fn(step)`` before the update of every step with ``step % every == 0``; a mapping
    of scalars it returns is logged at that step (e.g. ``{"wall/cross_frac": 0.1}``)."""

    every: int
    fn: Callable[[int], Any]
    name: str = "hook"


def loss_keys_of(out: TensorDictBase, loss_keys: tuple[str, ...] | None = None) -> list[str]:
    """The entries of ``out`` that are summed into the training loss."""
    if loss_keys is not None:
        return [k for k in loss_keys if k in out.keys()]
    return [k for k in out.keys() if isinstance(k, str) and k.startswith("loss_")]


def make_update_step(
    loss: Callable[[TensorDictBase], TensorDictBase],
    optimizers: Mapping[str, torch.optim.Optimizer],
    target_updater: Any = None,
    loss_keys: tuple[str, ...] | None = None,
) -> Callable[[TensorDictBase], TensorDictBase]:
    """``batch -> out``: sum the ``loss_*`` entries (per-seed ``[K]`` losses of stacked seeds
    are summed too), zero the grads, backward, step every optimiser, step ``target_updater``.
    Tensor work only: the function ``torch.compile`` / CUDA graphs wrap."""
    optimizers = list(optimizers.values())

    def update(batch: TensorDictBase) -> TensorDictBase:
        out = loss(batch)
        total = sum(out[k] for k in loss_keys_of(out, loss_keys))
        if total.dim() > 0:
            total = total.sum()
        for opt in optimizers:
            opt.zero_grad(set_to_none=True)
        total.backward()
        for opt in optimizers:
            opt.step()
        if target_updater is not None:
            target_updater.step()
        return out

    return update


class OfflineTrainer:
    """Offline training loop with evaluation, logging, checkpoints and exact resume.

    Args (keyword only):
        loss: callable ``batch -> TensorDict`` whose ``loss_*`` entries are summed.
        loss_keys: the entries to sum instead (e.g. to leave out CQL's ``loss_actor_bc``).
        stop_after_steps: leave the loop after this step as a kill would (no final evaluation);
            for time-sliced runs (e.g. 3-hour sessions) and resume tests.
        modules: name -> module whose ``state_dict`` is checkpointed (the loss, at least).
        optimizers: name -> optimiser (all are zeroed and stepped every step).
        sample_batch: callable returning the next training batch.
        evaluate: callable ``(episodes, seed) -> dict`` with ``normalized_score``,
            ``success_rate`` and ``mean_return``.
        run_dir: where ``metrics.csv``, ``learning_curve.png``, ``checkpoint.pt`` (and
            ``checkpoint.prev.pt``) and ``run.json`` go; a path or a :class:`RunDirectory`
            (possibly claimed already by the caller, who passes its ``config`` there).
        config: the run's resolved config, stored in ``run.json`` and every checkpoint and
            compared on resume (None: no comparison).
        resume: continue the run in ``run_dir`` (same as calling :meth:`resume` first).
        total_steps, eval_every, eval_episodes, final_eval_episodes, log_every,
        checkpoint_every: schedule (``checkpoint_every=0`` disables checkpoints).
        schedulers: name -> LR scheduler stepped after each update.
        target_updater: e.g. ``SoftUpdate`` (``.step()`` after each update).
        hooks: :class:`PeriodicHook` s, e.g. D_model expansion.
        stateful: extra name -> object with ``state_dict``/``load_state_dict`` to checkpoint
            (e.g. the D_model replay buffer).
        logger: optional TorchRL logger (all diagnostics every ``log_every`` steps).
        seed: base seed of the evaluation episodes.
        progress: show a tqdm bar with the latest score.
    """

    def __init__(
        self,
        *,
        loss: Callable[[TensorDictBase], TensorDictBase],
        modules: Mapping[str, torch.nn.Module],
        optimizers: Mapping[str, torch.optim.Optimizer],
        sample_batch: Callable[[], TensorDictBase],
        evaluate: Callable[[int, int], Mapping[str, Any]],
        run_dir: str | os.PathLike | RunDirectory,
        total_steps: int,
        eval_every: int,
        eval_episodes: int = 10,
        final_eval_episodes: int = 100,
        log_every: int = 100,
        checkpoint_every: int = 0,
        schedulers: Mapping[str, Any] | None = None,
        target_updater: Any | None = None,
        hooks: list[PeriodicHook] | None = None,
        stateful: Mapping[str, Stateful] | None = None,
        logger: Logger | None = None,
        seed: int = 0,
        progress: bool = True,
        loss_keys: tuple[str, ...] | None = None,
        stop_after_steps: int | None = None,
        config: Mapping[str, Any] | None = None,
        resume: bool = False,
    ) -> None:
        if total_steps < 0 or eval_every < 1 or log_every < 1 or checkpoint_every < 0:
            raise ValueError(
                "total_steps must be >= 0 and eval_every, log_every >= 1, checkpoint_every >= 0; "
                f"got {total_steps}, {eval_every}, {log_every}, {checkpoint_every}."
            )
        self.loss, self.modules, self.optimizers = loss, dict(modules), dict(optimizers)
        self.loss_keys = loss_keys
        self.stop_after_steps = stop_after_steps
        self.sample_batch, self.evaluate_fn = sample_batch, evaluate
        if isinstance(run_dir, RunDirectory):
            if config is not None:
                raise ValueError("pass config to the RunDirectory, not to OfflineTrainer too.")
            self.run = run_dir
        else:
            self.run = RunDirectory(run_dir, config)
        self.run_dir = self.run.path
        self.resume_requested = resume
        self.total_steps, self.eval_every, self.log_every = total_steps, eval_every, log_every
        self.eval_episodes, self.final_eval_episodes = eval_episodes, final_eval_episodes
        self.checkpoint_every = checkpoint_every
        self.schedulers = dict(schedulers or {})
        self.target_updater = target_updater
        self.hooks = list(hooks or [])
        self.stateful = dict(stateful or {})
        self.logger, self.seed, self.progress = logger, seed, progress
        self.metrics = MetricsCSV(self.run_dir / "metrics.csv", METRIC_FIELDS)
        self.checkpoint_path = self.run_dir / "checkpoint.pt"
        self.step = 0
        self.final_row: dict[str, Any] | None = None  # set once the final evaluation ran
        self.best_score = -math.inf
        self.last_score = math.nan
        self._loaded = False
        self._logged: set[str] = set()
        self.update_step = make_update_step(
            loss, self.optimizers, target_updater, loss_keys
        )
        """``batch -> loss outputs``: loss, backward, optimiser steps, target update (no host
        sync; the step ``compile.*`` wraps, see :func:`~torchrl_leq.training.compile.wrap_update`)."""

    # ------------------------------------------------------------------ state
    def state_dict(self) -> dict[str, Any]:
        return {
            "step": self.step,
            "best_score": self.best_score,
            "last_score": self.last_score,
            "final": self.final_row,
            "modules": {k: m.state_dict() for k, m in self.modules.items()},
            "optimizers": {k: o.state_dict() for k, o in self.optimizers.items()},
            "schedulers": {k: s.state_dict() for k, s in self.schedulers.items()},
            "stateful": {k: s.state_dict() for k, s in self.stateful.items()},
            "rng": capture_rng_state(),
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        for group, target in (
            ("modules", self.modules),
            ("optimizers", self.optimizers),
            ("schedulers", self.schedulers),
            ("stateful", self.stateful),
        ):
            missing = set(target) - set(state[group])
            if missing:
                raise KeyError(f"checkpoint has no {group} entries for {sorted(missing)}")
            for name, obj in target.items():
                obj.load_state_dict(state[group][name])
        self.step = int(state["step"])
        self.best_score, self.last_score = state["best_score"], state["last_score"]
        self.final_row = state.get("final")
        restore_rng_state(state["rng"])

    def _claim(self, resume: bool) -> str:
        status = self.run.claim(resume)
        self.run.record(self.metrics.path)
        return status

    def resume(self) -> bool:
        """Claim ``run_dir`` for resuming and load the newest usable checkpoint (falling back to
        ``checkpoint.prev.pt`` with a warning when the newest is corrupt); cut the trainer's own
        files back to their sizes at that checkpoint. Returns whether a checkpoint was loaded
        (the lock is released if it raises)."""
        try:
            return self._resume()
        except BaseException:
            self.run.release()
            raise

    def _resume(self) -> bool:
        status = self._claim(True)
        if self._loaded or status in ("new", "finished"):
            return self._loaded
        if status == "restart":
            self.run.set_aside_logs()
            return False
        found = load_latest_checkpoint(self.checkpoint_path)
        if found is None:  # the claim saw a checkpoint; it vanished since
            raise FileNotFoundError(f"No checkpoint in {self.run_dir} to resume from.")
        self._load_checkpoint_state(found[0])
        return True

    def _rewind(self, step: int) -> bool:
        """Load the kept checkpoint (``checkpoint.pt`` or ``checkpoint.prev.pt``) written at
        ``step`` and cut the logs back to it; False when neither is at ``step``. Used when a run
        was killed between the per-seed checkpoints of a stacked multi-seed run."""
        for candidate in checkpoint_files(self.checkpoint_path):
            if candidate.exists():
                state = load_checkpoint(candidate)
                if state["step"] == step:
                    self._load_checkpoint_state(state)
                    return True
        return False

    def _load_checkpoint_state(self, state: dict[str, Any]) -> None:
        saved, ours = state.get("config_hash"), self.run.config_hash
        if saved is not None and ours is not None and saved != ours:
            diff = config_diff(state.get("config") or {}, self.run.config or {}, self.run.ignore)
            raise ValueError(
                f"the checkpoint in {self.run_dir} was written with a different config: "
                f"{', '.join(diff) or 'hash ' + saved[:12]} — resume with the same config, or "
                "choose another run_dir."
            )
        self.load_state_dict(state)
        if "log_sizes" in state:
            self.run.truncate_logs(state["log_sizes"])
        elif self.metrics.path.exists():  # a checkpoint from before run manifests
            truncate_csv_after(self.metrics.path, self.step)
        self._loaded = True

    def save(self) -> None:
        """Checkpoint now (keeping the previous one); one-line :class:`CheckpointWriteError`
        when the disk is full or read-only."""
        state = self.state_dict()
        state.update(
            log_sizes=self.run.log_sizes(),
            config=self.run.config,
            config_hash=self.run.config_hash,
        )
        try:
            save_checkpoint(self.checkpoint_path, state, keep_previous=True)
        except OSError as err:
            kept = [
                p.name
                for p in checkpoint_files(self.checkpoint_path)
                if p.exists()
            ]
            raise CheckpointWriteError(
                f"could not write a checkpoint at step {self.step} to {self.checkpoint_path} "
                f"({first_line(err)}); kept: {', '.join(kept) or 'none'} — free space or make "
                "run_dir writable, then rerun with resume=true."
            ) from err

    # ------------------------------------------------------------------ loop
    def _update(self) -> TensorDictBase:
        out = self.update_step(self.sample_batch())
        for sched in self.schedulers.values():  # host-side lr changes, outside a captured step
            sched.step()
        return out

    def _loss_keys(self, out: TensorDictBase) -> list[str]:
        return loss_keys_of(out, self.loss_keys)

    def _check_finite(self, out: TensorDictBase) -> None:
        bad = [k for k in self._loss_keys(out) if not bool(torch.isfinite(out[k]).all())]
        if bad:
            where = (
                f"the last good checkpoint ({self.checkpoint_path}) is kept"
                if self.checkpoint_path.exists()
                else "no checkpoint was written yet"
            )
            raise NonFiniteLossError(
                f"non-finite {', '.join(bad)} at step {self.step}; {where}. Lower the learning "
                "rates or check the data/world model for NaN or huge values."
            )

    def _evaluate(self, episodes: int, kind: str) -> dict[str, Any]:
        result = dict(
            self.evaluate_fn(episodes, self.seed + 10_000 * (self.step // self.eval_every))
        )
        score = float(result["normalized_score"])
        self.last_score = score
        self.best_score = max(self.best_score, score)
        row = {
            "step": self.step,
            "kind": kind,
            "episodes": episodes,
            "normalized_score": score,
            "success_rate": float(result.get("success_rate", math.nan)),
            "mean_return": float(result.get("mean_return", math.nan)),
        }
        self.metrics.write(row)
        for key in ("normalized_score", "success_rate", "mean_return"):
            self._log_scalar(f"eval/{key}", row[key])
        return row

    def _log_scalar(self, name: str, value: float) -> None:
        if self.logger is None:
            return
        if name not in self._logged:  # register the file before its first row
            for path in logger_files(self.logger, name):
                self.run.record(path)
            self._logged.add(name)
        self.logger.log_scalar(name, value, step=self.step)

    def _log_hook_output(self, output: Any) -> None:
        if isinstance(output, Mapping):
            for name, value in output.items():
                self._log_scalar(str(name), float(value))

    def train(self) -> dict[str, Any]:
        """Run (or continue) training; returns last/best scores and the final evaluation. The
        lock on ``run_dir`` is released when it returns or raises."""
        try:
            status = self._claim(self.resume_requested)
            if status == "finished":
                summary = dict(self.run.manifest.get("summary", {}))
                warnings.warn(
                    f"the run in {self.run_dir} already finished; nothing to do (returning its "
                    "summary). Choose another run_dir to train again.",
                    RuntimeWarning,
                    stacklevel=2,
                )
                return summary
            if status in ("resume", "restart"):
                self.resume()
            return self._train()
        finally:
            self.run.release()

    def _train(self) -> dict[str, Any]:
        bar = tqdm(
            total=self.total_steps,
            initial=self.step,
            disable=not self.progress,
            desc="train",
            mininterval=2.0,
        )
        while self.step < self.total_steps:
            for hook in self.hooks:
                if self.step % hook.every == 0:
                    self._log_hook_output(hook.fn(self.step))
            out = self._update()
            self.step += 1
            bar.update(1)
            if self._after_update(out, bar):
                bar.close()
                return self._stopped_summary()
        bar.close()
        return self._finish()

    def _after_update(self, out: TensorDictBase, bar: Any = None) -> bool:
        """After the update of ``self.step``: finiteness check, logging, evaluation, checkpoint;
        returns whether ``stop_after_steps`` is reached."""
        due_log = self.step % self.log_every == 0
        due_ckpt = self.checkpoint_every and self.step % self.checkpoint_every == 0
        if due_log or due_ckpt:
            self._check_finite(out)
        if due_log and self.logger is not None:
            for key, value in out.items():
                if isinstance(key, str) and value.numel() == 1:
                    self._log_scalar(f"train/{key}", value.item())
        if self.step % self.eval_every == 0 and self.step < self.total_steps:
            row = self._evaluate(self.eval_episodes, "eval")
            if bar is not None:
                bar.set_postfix(
                    score=f"{row['normalized_score']:.1f}", best=f"{self.best_score:.1f}"
                )
        if due_ckpt:
            self.save()
        return self.stop_after_steps is not None and self.step >= self.stop_after_steps

    def _stopped_summary(self) -> dict[str, Any]:
        return {
            "stopped_at": self.step,
            "last_score": self.last_score,
            "best_score": self.best_score,
            "metrics_csv": str(self.metrics.path),
        }

    def _finish(self) -> dict[str, Any]:
        """Final evaluation, last checkpoint, learning curve, the run's summary."""
        if self.final_row is None:  # not when resuming from the final checkpoint
            self.final_row = self._evaluate(self.final_eval_episodes, "final")
        final = self.final_row
        if self.checkpoint_every:
            self.save()
        png = plot_learning_curve(
            self.metrics.path, self.run_dir / "learning_curve.png", title=self.run_dir.name
        )
        summary = {
            "last_score": final["normalized_score"],
            "best_score": self.best_score,
            "final": final,
            "metrics_csv": str(self.metrics.path),
            "learning_curve": str(png),
        }
        self.run.finish(summary)
        return summary
