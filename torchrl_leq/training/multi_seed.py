"""K seeds in one process: per-seed configs and RNG streams, stacked updates, per-seed outputs.

``seeds=[0,1,2,3]`` (or ``num_seeds=4``: seeds ``seed .. seed+3``) in any example's config:

* :func:`seed_configs` gives each seed the config a single-seed run with that seed would have
  (``seed=s``, ``run_dir=<run dir>/seed<s>``): every seed writes its own ``metrics.csv``,
  logs, checkpoints (resumable per seed) and final JSON line, exactly as K single runs would.
* :class:`SeedStreams`: one RNG stream per seed. A single-seed run draws everything (network
  init, buffer samples, model noise, exploration noise) from the global RNGs; seed k's stream
  is a saved copy of those global states, swapped in (:meth:`SeedStreams.use`) around seed k's
  draws and passed as a ``torch.Generator`` to the stacked model env. Each seed therefore sees
  the same random numbers in the same order as its single-seed run.
* LEQ and COMBO stack the seeds (:func:`~torchrl_leq.modules.seed_batched.stack_seed_modules`,
  a ``[K*B]`` batch, ``LEQLoss(num_seeds=K)`` / ``COMBOLoss(num_seeds=K)``): one update trains
  all K, each seed's parameters get exactly its own gradient. :class:`MultiSeedTrainer` runs
  that update and hands every seed's slice of the outputs to a per-seed
  :class:`~torchrl_leq.training.trainer.OfflineTrainer` (logging, evaluation, checkpoints,
  resume, final evaluation).
* Algorithms that do not stack (IQL, CQL, BC: TorchRL's losses are not written for a
  seed dimension) run their seeds one after another in the same process
  (:func:`run_seeds`); hydra launchers (``hydra/launcher=joblib``) run them in parallel.

Example:
    >>> from omegaconf import OmegaConf
    >>> cfg = OmegaConf.create({"seed": 0, "seeds": [3, 5], "num_seeds": 1, "run_dir": "runs/x"})
    >>> [(c.seed, c.run_dir) for c in seed_configs(cfg)]
    [(3, 'runs/x/seed3'), (5, 'runs/x/seed5')]
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf, open_dict
from tensordict import TensorDict, TensorDictBase
from torch import nn
from tqdm.auto import tqdm

from torchrl_leq.modules.seed_batched import load_seed_slice, seed_slice_state

from .trainer import OfflineTrainer, PeriodicHook, make_update_step

__all__ = [
    "seed_list",
    "seed_configs",
    "SeedStreams",
    "SeedSlice",
    "OptimizerSlice",
    "SeedViews",
    "MultiSeedTrainer",
    "cat_seed_batches",
    "run_seeds",
    "stacks_seeds",
    "summary_lines",
    "build_seeds",
    "stack_networks",
    "stack_model_envs",
    "make_multi_seed_trainer",
]


def seed_list(cfg: Mapping[str, Any]) -> list[int]:
    """The run's seeds: ``cfg.seeds`` if set, else ``num_seeds`` seeds from ``cfg.seed``."""
    seeds = cfg.get("seeds", None)
    if seeds is not None:
        if isinstance(seeds, (int, str)):
            seeds = [seeds]
        out = [int(s) for s in seeds]
        if not out or len(set(out)) != len(out):
            raise ValueError(f"seeds must be a non-empty list of distinct ints, got {list(seeds)}.")
        return out
    num = int(cfg.get("num_seeds", 1) or 1)
    if num < 1:
        raise ValueError(f"num_seeds must be >= 1, got {num}.")
    return [int(cfg["seed"]) + i for i in range(num)]


def seed_configs(cfg: DictConfig, base_dir: str | Path | None = None) -> list[DictConfig]:
    """One config per seed, the one a single-seed run with that seed would have: ``seed=s``,
    ``seeds=null``, ``num_seeds=1`` and, for K > 1, ``run_dir=<base_dir>/seed<s>``
    (``base_dir`` defaults to ``cfg.run_dir``). K = 1 returns ``[cfg]`` with ``seed`` set."""
    seeds = seed_list(cfg)
    if len(seeds) == 1 and cfg.get("seeds", None) is None and int(cfg.get("num_seeds", 1) or 1) == 1:
        return [cfg]
    base = Path(str(base_dir if base_dir is not None else cfg.get("run_dir") or "outputs"))
    out = []
    for s in seeds:
        c = cfg.copy()
        with open_dict(c):
            c.seed, c.seeds, c.num_seeds = s, None, 1
            if len(seeds) > 1:
                c.run_dir = str(base / f"seed{s}")
        out.append(c)
    return out


class SeedStreams:
    """K RNG streams, each a saved state of python's, numpy's and torch's global (CPU) RNGs.

    :meth:`capture` stores the current global states as stream k; :meth:`use` swaps stream k in
    and stores it back on exit; :meth:`generator` is stream k as a ``torch.Generator`` for code
    that takes one (the stacked model env), valid outside :meth:`use`. CUDA generators are not
    swapped: on a GPU the per-seed streams cover the CPU draws (buffer sampling) and the model
    env's generators (equality with single runs is tested on the CPU).
    """

    def __init__(self, num_seeds: int) -> None:
        self.generators = [torch.Generator() for _ in range(num_seeds)]
        self._python: list[Any] = [None] * num_seeds
        self._numpy: list[Any] = [None] * num_seeds

    def __len__(self) -> int:
        return len(self.generators)

    def capture(self, k: int) -> None:
        self.generators[k].set_state(torch.get_rng_state())
        self._python[k], self._numpy[k] = random.getstate(), np.random.get_state()

    def generator(self, k: int) -> torch.Generator:
        return self.generators[k]

    @contextmanager
    def use(self, k: int) -> Iterator[None]:
        saved = torch.get_rng_state(), random.getstate(), np.random.get_state()
        torch.set_rng_state(self.generators[k].get_state())
        if self._python[k] is not None:
            random.setstate(self._python[k])
            np.random.set_state(self._numpy[k])
        try:
            yield
        finally:
            self.capture(k)
            torch.set_rng_state(saved[0])
            random.setstate(saved[1])
            np.random.set_state(saved[2])


class SeedSlice:
    """Seed k's ``state_dict`` of a module holding K stacked seeds (a single-seed run's layout);
    ``load_state_dict`` writes it back into slice k."""

    def __init__(self, module: nn.Module, k: int) -> None:
        self.module, self.k = module, k

    def __call__(self, *args, **kwargs):  # never called: the stacked update runs the loss
        raise RuntimeError("SeedSlice is a checkpoint view; call the stacked module instead.")

    def state_dict(self) -> dict[str, Any]:
        return seed_slice_state(self.module.state_dict(), self.k)

    @torch.no_grad()
    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        own = self.module.state_dict()
        missing = set(own) - set(state)
        if missing:
            raise KeyError(f"checkpoint has no entries for {sorted(missing)[:3]}")
        for name, t in own.items():
            if isinstance(t, torch.Tensor) and t.dim() > 0:
                t[self.k].copy_(state[name])


class OptimizerSlice:
    """Seed k's part of an optimiser over stacked parameters (per-seed moments ``[k]``; shared
    scalars such as Adam's ``step`` as they are). Loading is collected across the K slices
    and applied at once by :meth:`apply_loaded` (the optimiser may hold no state yet): every
    tensor but ``step`` (the one entry torch's optimisers do not shape like their parameter)
    is stacked, also the 0-dim moments of a per-seed scalar such as COMBO's ``log_alpha``."""

    def __init__(self, optimizer: torch.optim.Optimizer, k: int, num_seeds: int) -> None:
        self.optimizer, self.k, self.num_seeds = optimizer, k, num_seeds
        self.loaded: dict[str, Any] | None = None

    def state_dict(self) -> dict[str, Any]:
        full = self.optimizer.state_dict()
        state = {
            idx: {
                name: v[self.k].clone() if torch.is_tensor(v) and v.dim() > 0 else v
                for name, v in entry.items()
            }
            for idx, entry in full["state"].items()
        }
        return {"state": state, "param_groups": full["param_groups"]}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.loaded = dict(state)

    @staticmethod
    def apply_loaded(slices: Sequence[OptimizerSlice]) -> None:
        """Stack the K loaded per-seed states into the optimiser (all or none loaded)."""
        loaded = [s.loaded for s in slices]
        if all(x is None for x in loaded):
            return
        if any(x is None for x in loaded):
            raise ValueError("only some seeds' optimiser states were loaded; resume all seeds.")
        first = loaded[0]
        state = {}
        for idx, entry in first["state"].items():
            state[idx] = {
                name: torch.stack([x["state"][idx][name] for x in loaded])
                if torch.is_tensor(v) and name != "step"
                else v
                for name, v in entry.items()
            }
        slices[0].optimizer.load_state_dict({"state": state, "param_groups": first["param_groups"]})
        for s in slices:
            s.loaded = None


class SeedViews:
    """Single-seed copies of a stacked module (seed k's actor for its evaluation and D_model
    expansion), copied from the stacked parameters on every :meth:`get` (a few times per
    thousand steps; version counters are not a safe cache key: ``load_state_dict`` on a
    resumed run writes through ``.data``)."""

    def __init__(self, stacked: nn.Module, templates: Sequence[nn.Module]) -> None:
        self.stacked, self.templates = stacked, list(templates)

    def get(self, k: int) -> nn.Module:
        if len(self.templates) == 1 and self.templates[0] is self.stacked:
            return self.stacked
        return load_seed_slice(self.templates[k], self.stacked, k)


def cat_seed_batches(batches: Sequence[TensorDictBase]) -> TensorDictBase:
    """The K seeds' batches concatenated seed-major (sub-tensordicts of a ``[]`` batch, such as
    LEQ's ``env``/``model``, each concatenated)."""
    first = batches[0]
    if first.batch_dims > 0:
        return torch.cat(list(batches), 0)
    return TensorDict(
        {key: cat_seed_batches([b.get(key) for b in batches]) for key in first.keys()}, []
    )


def _seed_out(out: TensorDictBase, k: int, num_seeds: int) -> TensorDictBase:
    """Seed k's entries of the stacked update's outputs (``[K]`` per-seed values)."""
    return TensorDict(
        {
            key: v[k] if v.dim() == 1 and v.shape[0] == num_seeds else v
            for key, v in out.items()
            if isinstance(key, str)
        },
        [],
    )


class MultiSeedTrainer:
    """One stacked update per step for K seeds; everything else per seed.

    Args:
        trainers: one :class:`OfflineTrainer` per seed (its own run directory, logger,
            evaluator, checkpoints), built with :class:`SeedSlice` / :class:`OptimizerSlice`
            views of the stacked loss and optimisers; their ``loss``/``sample_batch`` are not
            called.
        loss, optimizers, schedulers, target_updater, loss_keys: the stacked update.
        sample_batches: seed k's batch sampler (run inside seed k's RNG stream).
        hooks: seed k's hooks (e.g. its D_model expansion), run inside its stream.
        streams: the seeds' RNG streams.
        actor_views: refreshed before every evaluation (each seed evaluates its own actor).
        update_wrapper: e.g. :func:`~torchrl_leq.training.compile.wrap_update`.
    """

    def __init__(
        self,
        trainers: Sequence[OfflineTrainer],
        *,
        loss: nn.Module,
        optimizers: Mapping[str, torch.optim.Optimizer],
        sample_batches: Sequence[Callable[[], TensorDictBase]],
        streams: SeedStreams,
        schedulers: Mapping[str, Any] | None = None,
        target_updater: Any = None,
        hooks: Sequence[Sequence[PeriodicHook]] | None = None,
        loss_keys: tuple[str, ...] | None = None,
        update_wrapper: Callable[[Callable], Callable] | None = None,
        progress: bool = True,
    ) -> None:
        self.trainers, self.streams = list(trainers), streams
        self.num_seeds = len(self.trainers)
        self.optimizers, self.schedulers = dict(optimizers), dict(schedulers or {})
        self.sample_batches = list(sample_batches)
        self.hooks = [list(h) for h in (hooks or [[] for _ in self.trainers])]
        update = make_update_step(loss, self.optimizers, target_updater, loss_keys)
        self.update_step = update_wrapper(update) if update_wrapper is not None else update
        self.progress = progress
        self.total_steps = self.trainers[0].total_steps

    @property
    def step(self) -> int:
        return self.trainers[0].step

    def _optimizer_slices(self) -> list[list[OptimizerSlice]]:
        return [
            [t.optimizers[name] for t in self.trainers]  # type: ignore[misc]
            for name in self.trainers[0].optimizers
        ]

    def _start(self) -> list[str]:
        statuses = []
        for k, trainer in enumerate(self.trainers):
            with self.streams.use(k):
                status = trainer._claim(trainer.resume_requested)
                if status in ("resume", "restart"):
                    trainer._resume()
            statuses.append(status)
        if "finished" not in statuses:  # killed between two seeds' checkpoints: go back to both
            common = min(t.step for t in self.trainers)
            for k, trainer in enumerate(self.trainers):
                if trainer.step != common:
                    with self.streams.use(k):
                        trainer._rewind(common)
        for slices in self._optimizer_slices():
            OptimizerSlice.apply_loaded(slices)
        steps = {t.step for t in self.trainers}
        if len(steps) > 1 or (len(set(statuses) & {"finished"}) and len(set(statuses)) > 1):
            raise ValueError(
                "the seeds' checkpoints are at different steps "
                f"({', '.join(f'{t.run_dir.name}: {t.step}' for t in self.trainers)}); resume "
                "them one by one (single-seed runs) or start a new run_dir."
            )
        return statuses

    def train(self) -> dict[str, Any]:
        """Train all seeds; returns ``{"per_seed": [summary of seed k, ...]}``."""
        try:
            statuses = self._start()
            if all(s == "finished" for s in statuses):
                return {"per_seed": [dict(t.run.manifest.get("summary", {})) for t in self.trainers]}
            return self._train()
        finally:
            for trainer in self.trainers:
                trainer.run.release()

    def _train(self) -> dict[str, Any]:
        bar = tqdm(total=self.total_steps, initial=self.step, disable=not self.progress,
                   desc=f"train ({self.num_seeds} seeds)", mininterval=2.0)
        K = self.num_seeds
        while self.step < self.total_steps:
            step = self.step
            batches = []
            for k in range(K):
                with self.streams.use(k):
                    for hook in self.hooks[k]:
                        if step % hook.every == 0:
                            hook.fn(step)
                    batches.append(self.sample_batches[k]())
            out = self.update_step(cat_seed_batches(batches))
            for sched in self.schedulers.values():
                sched.step()
            bar.update(1)
            stop = False
            for k, trainer in enumerate(self.trainers):
                trainer.step = step + 1
                with self.streams.use(k):
                    stop = trainer._after_update(_seed_out(out, k, K)) or stop
            if stop:
                bar.close()
                return {"per_seed": [t._stopped_summary() for t in self.trainers]}
        bar.close()
        summaries = []
        for k, trainer in enumerate(self.trainers):
            with self.streams.use(k):
                summaries.append(trainer._finish())
        return {"per_seed": summaries}


def stacks_seeds(train: Callable) -> Callable:
    """Mark an example's ``train(cfg)`` as running all of ``cfg.seeds`` itself (stacked)."""
    train.stacks_seeds = True  # type: ignore[attr-defined]
    return train


def run_seeds(train: Callable[[DictConfig], Mapping[str, Any]], cfg: DictConfig) -> Mapping:
    """``train(cfg)`` for a single seed or a stacking ``train``; otherwise each seed's config
    (:func:`seed_configs`) trained one after another in this process:
    ``{"per_seed": [...]}``."""
    if len(seed_list(cfg)) == 1 or getattr(train, "stacks_seeds", False):
        configs = seed_configs(cfg)
        return train(configs[0]) if len(configs) == 1 else train(cfg)
    base = _base_run_dir(cfg)
    return {"per_seed": [dict(train(c)) for c in seed_configs(cfg, base)]}


def _base_run_dir(cfg: DictConfig) -> Path:
    from .builders import run_directory

    return run_directory(cfg)


def summary_lines(
    algo: str,
    cfg: Mapping[str, Any],
    result: Mapping[str, Any],
    line: Callable[[str, Mapping[str, Any], Mapping[str, Any]], str],
) -> list[str]:
    """The final JSON line(s): one per seed for a multi-seed result."""
    if "per_seed" not in result:
        return [line(algo, cfg, result)]
    plain = OmegaConf.to_container(cfg, resolve=False) if isinstance(cfg, DictConfig) else cfg
    return [
        line(algo, {**plain, "seed": s}, r)  # type: ignore[dict-item]
        for s, r in zip(seed_list(cfg), result["per_seed"])
    ]


def build_seeds(
    cfg: DictConfig, build: Callable[[DictConfig], Any]
) -> tuple[list[DictConfig], list[Any], SeedStreams]:
    """``build(cfg_k)`` for every seed's config (:func:`seed_configs`, per-seed run dirs under
    the run's directory), each seed's global RNG state afterwards kept as its stream: what a
    single-seed run builds before its training loop, and the RNG state it enters it with."""
    seeds = seed_list(cfg)
    configs = seed_configs(cfg, _base_run_dir(cfg) if len(seeds) > 1 else None)
    streams = SeedStreams(len(configs))
    built = []
    for k, c in enumerate(configs):
        built.append(build(c))
        streams.capture(k)
    return configs, built, streams


def stack_networks(modules: Sequence[nn.Module]) -> tuple[nn.Module, SeedViews]:
    """The K seeds' networks stacked (K = 1: the network itself) and their per-seed views."""
    from torchrl_leq.modules.seed_batched import stack_seed_modules

    stacked = stack_seed_modules(modules)
    return stacked, SeedViews(stacked, modules)


def stack_model_envs(envs: Sequence[Any], streams: SeedStreams) -> Any:
    """The K seeds' model envs as one (K = 1: the env itself), seed k drawing from stream k."""
    from torchrl_leq.envs.model_env import SeedSplitModelEnv

    return envs[0] if len(envs) == 1 else SeedSplitModelEnv(list(envs), streams.generators)


def make_multi_seed_trainer(
    cfg: DictConfig,
    configs: Sequence[DictConfig],
    streams: SeedStreams,
    *,
    loss: nn.Module,
    optimizers: Mapping[str, torch.optim.Optimizer],
    sample_batches: Sequence[Callable[[], TensorDictBase]],
    actor_views: SeedViews,
    schedulers: Mapping[str, Any] | None = None,
    target_updater: Any = None,
    hooks: Sequence[Sequence[PeriodicHook]] | None = None,
    stateful: Sequence[Mapping[str, Any]] | None = None,
    loss_keys: tuple[str, ...] | None = None,
) -> OfflineTrainer | MultiSeedTrainer:
    """K = 1: :func:`~torchrl_leq.training.builders.make_trainer` (the single-seed loop,
    unchanged). K > 1: a :class:`MultiSeedTrainer` over one ``make_trainer`` per seed (its
    config, run dir, evaluator of its own actor, D_model and hooks)."""
    from .builders import make_trainer
    from .compile import wrap_update

    K = len(configs)
    hooks = [list(h) for h in (hooks or [[] for _ in configs])]
    stateful = list(stateful or [{} for _ in configs])
    if K == 1:
        return make_trainer(
            configs[0], loss=loss, optimizers=optimizers, sample_batch=sample_batches[0],
            actor=actor_views.get(0), schedulers=schedulers, target_updater=target_updater,
            hooks=hooks[0], stateful=stateful[0], loss_keys=loss_keys,
        )
    trainers = []
    for k, c in enumerate(configs):
        trainer = make_trainer(
            c, loss=SeedSlice(loss, k),  # type: ignore[arg-type]
            optimizers={n: OptimizerSlice(o, k, K) for n, o in optimizers.items()},  # type: ignore[misc]
            sample_batch=sample_batches[k], actor=actor_views.templates[k],
            schedulers=schedulers, stateful=stateful[k], loss_keys=loss_keys,
            run_dir=Path(str(c.run_dir)),
        )
        evaluate = trainer.evaluate_fn

        def evaluate_seed(episodes: int, seed: int, k: int = k, evaluate=evaluate):
            actor_views.get(k)  # seed k's current parameters
            return evaluate(episodes, seed)

        trainer.evaluate_fn = evaluate_seed
        trainers.append(trainer)
    seed_hooks = [
        [
            PeriodicHook(h.every, lambda step, f=h.fn, k=k: (actor_views.get(k), f(step))[1], h.name)
            for h in hs
        ]
        for k, hs in enumerate(hooks)
    ]
    return MultiSeedTrainer(
        trainers,
        loss=loss,
        optimizers=optimizers,
        sample_batches=sample_batches,
        streams=streams,
        schedulers=schedulers,
        target_updater=target_updater,
        hooks=seed_hooks,
        loss_keys=loss_keys,
        update_wrapper=lambda u: wrap_update(
            u, cfg.get("compile"), optimizers=list(optimizers.values()), schedulers=schedulers
        ),
        progress=bool(cfg.get("progress", True)),
    )
