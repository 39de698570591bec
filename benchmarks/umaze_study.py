"""Why LEQ fails pointmaze-umaze on some seeds: a resumable study of candidate causes.

Each *variant* is the quickstart (``examples/config/leq_pointmaze.yaml``) with config overrides
and/or a different data collection. Every run logs the wall-exploitation diagnostic
(:func:`torchrl_leq.envs.maze_diagnostics.make_wall_diagnostic`) every 1000 steps and after the
last one, on 256 D_env start states and on 64 evaluation-like start states (the start cell,
±0.25 position noise, zero velocity). Per run it writes
``benchmarks/results/umaze_study/<variant>/s<seed>.json`` (scores, wall time, diagnostics) and
skips runs whose JSON exists; killed runs resume from their checkpoint under ``--work``.

    OMP_NUM_THREADS=1 python benchmarks/umaze_study.py --variants base,jitter --seeds 1,2
    python benchmarks/umaze_study.py --summarize          # prints the markdown table

Example:
    >>> sorted(VARIANTS)[:2]  # doctest: +SKIP
    ['base', 'jitter']
"""

from __future__ import annotations

import argparse
import csv
import functools
import json
import math
import os
import time
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "umaze_study"
OLD_DATA = {"action_noise": 0.3, "waypoint_jitter": 0.0}
NEW_DATA = {"action_noise": 0.3, "waypoint_jitter": 0.5}
RELEASED = [  # the released code's AntMaze recipe where the example departs from it
    "loss.actor_gradient=per_step",
    "loss.gamma=0.997",
    "optim.actor_lr=3e-5",
    "optim.critic_lr=1e-4",
]

VARIANTS: dict[str, dict[str, Any]] = {
    "base": {"overrides": [], "data": OLD_DATA},
    "paper_wm": {
        "overrides": [
            "world_model.num_members=7",
            "world_model.num_elites=5",
            "world_model.hidden_dims=[200,200,200,200]",
            "world_model.max_epochs=100",
        ],
        "data": OLD_DATA,
    },
    "per_step": {"overrides": ["loss.actor_gradient=per_step"], "data": OLD_DATA},
    "noise05": {"overrides": [], "data": {"action_noise": 0.5, "waypoint_jitter": 0.0}},
    "jitter": {"overrides": [], "data": NEW_DATA},
    "jitter_per_step": {"overrides": ["loss.actor_gradient=per_step"], "data": NEW_DATA},
    "jitter_no_ema": {"overrides": ["loss.ema_weight=0"], "data": NEW_DATA},
    "no_ema": {"overrides": ["loss.ema_weight=0"], "data": OLD_DATA},
    "jitter_released": {"overrides": RELEASED, "data": NEW_DATA},
    "jitter_wm100": {"overrides": ["world_model.max_epochs=100"], "data": NEW_DATA},
    "jitter_wm100_per_step": {
        "overrides": ["world_model.max_epochs=100", "loss.actor_gradient=per_step"],
        "data": NEW_DATA,
    },
    "jitter_h5": {"overrides": ["loss.horizon=5"], "data": NEW_DATA},
    "h5": {"overrides": ["loss.horizon=5"], "data": OLD_DATA},
}


def _data_key(data: dict[str, float]) -> str:
    return f"a{data['action_noise']}-j{data['waypoint_jitter']}"


def _eval_starts(task: Any, n: int, seed: int) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    xy = torch.tensor(task.start_xy) + (torch.rand(n, 2, generator=gen) - 0.5) * 0.5
    return torch.cat([xy, torch.zeros(n, 2)], -1)


def run_one(variant: str, seed: int, work: Path, data_root: Path) -> dict[str, Any]:
    """Train one (variant, seed) with the diagnostic hooks; returns the run's record."""
    import torchrl_leq.training.experiments as ex
    from omegaconf import OmegaConf
    from tensordict import TensorDict

    import torchrl_leq.training.builders as builders
    from torchrl_leq.data import read_pointmaze_dataset
    from torchrl_leq.envs import LEQModelEnv
    from torchrl_leq.envs.maze_diagnostics import make_wall_diagnostic, wall_contact_fraction
    from torchrl_leq.tasks import get_pointmaze_task
    from torchrl_leq.training.trainer import PeriodicHook

    spec = VARIANTS[variant]
    os.environ["TORCHRL_LEQ_DATA"] = str(data_root / _data_key(spec["data"]))
    builders.read_pointmaze_dataset = functools.partial(read_pointmaze_dataset, **spec["data"])
    run_dir = work / variant / f"s{seed}"
    cfg = OmegaConf.load(ROOT / "examples" / "config" / "leq_pointmaze.yaml")
    cli = [f"seed={seed}", f"run_dir={run_dir}", "progress=false", "resume=true"]
    cfg = OmegaConf.merge(cfg, OmegaConf.from_dotlist(cli + spec["overrides"]))
    cfg = ex.prepare_config(cfg, smoke=False)
    t0 = time.perf_counter()

    ex.seed_everything(int(cfg.seed))
    data = builders.make_offline_data(cfg.data, batch_size=int(cfg.optim.batch_size_env))
    ensemble = builders.make_world_model(cfg.world_model, data, seed=int(cfg.seed), progress=False)
    task = get_pointmaze_task(cfg.task)
    model_env = LEQModelEnv(ensemble, cfg.task)
    ex.seed_everything(int(cfg.seed) + 1)
    resuming = (run_dir / "checkpoint.pt").exists()
    comp = ex.build_leq(cfg, data, model_env, resuming)
    critic = comp.loss.qvalue_network
    kwargs = {
        "critic": critic,
        "horizon": int(cfg.loss.horizon),
        "gamma": float(cfg.loss.gamma),
        "lmbda": float(cfg.loss.lmbda),
    }
    diag_data = make_wall_diagnostic(
        task, model_env, comp.eval_actor, data.transitions, num_starts=256, **kwargs
    )
    starts = TensorDict({"observation": _eval_starts(task, 64, 0)}, [64])
    diag_start = make_wall_diagnostic(
        task, model_env, comp.eval_actor, starts, num_starts=64, **kwargs
    )
    rows: list[dict[str, float]] = []

    def log(step: int) -> None:
        with torch.no_grad(), comp.loss.qvalue_network_params.to_module(critic):
            row = {"step": step}
            row.update({f"data/{k[5:]}": v for k, v in diag_data(step).items()})
            row.update({f"start/{k[5:]}": v for k, v in diag_start(step).items()})
        rows.append(row)

    comp.hooks.append(PeriodicHook(1000, log, "wall_diagnostic"))
    trainer = ex._make_trainer(cfg, comp, cfg.task, {"loss": comp.loss})
    trainer.resume()
    result = trainer.train()
    log(int(cfg.train.total_steps))
    wall = time.perf_counter() - t0
    record = {
        "variant": variant,
        "seed": seed,
        "overrides": spec["overrides"],
        "data": spec["data"],
        "last_score": result["last_score"],
        "best_score": result["best_score"],
        "wall_s": wall,
        "resumed": resuming,
        "data_wall_contact_frac": wall_contact_fraction(task, data.transitions["observation"]),
        "diagnostics": rows,
        "metrics": list(csv.DictReader(open(result["metrics_csv"]))),
    }
    return record


def analyze(variant: str, seed: int, work: Path, data_root: Path) -> dict[str, Any]:
    """Look inside a finished run: where its policy ends in the real maze from the start cell,
    whether model rollouts from the states it visits cross walls, what the model predicts
    there, and the critic's values along its path and along the controller's path."""
    import torchrl_leq.training.experiments as ex
    from omegaconf import OmegaConf
    from tensordict import TensorDict

    import torchrl_leq.training.builders as builders
    from torchrl_leq.data import read_pointmaze_dataset
    from torchrl_leq.data.waypoint_controller import WaypointController
    from torchrl_leq.envs import LEQModelEnv
    from torchrl_leq.envs.maze_diagnostics import _actor_fn, real_rollout, wall_diagnostic
    from torchrl_leq.tasks import get_pointmaze_task
    from torchrl_leq.training.checkpoint import load_checkpoint

    spec = VARIANTS[variant]
    os.environ["TORCHRL_LEQ_DATA"] = str(data_root / _data_key(spec["data"]))
    builders.read_pointmaze_dataset = functools.partial(read_pointmaze_dataset, **spec["data"])
    run_dir = work / variant / f"s{seed}"
    cfg = OmegaConf.load(ROOT / "examples" / "config" / "leq_pointmaze.yaml")
    cli = [f"seed={seed}", f"run_dir={run_dir}", "progress=false"]
    cfg = ex.prepare_config(OmegaConf.merge(cfg, OmegaConf.from_dotlist(cli + spec["overrides"])))
    data = builders.make_offline_data(cfg.data, batch_size=int(cfg.optim.batch_size_env))
    ensemble = builders.make_world_model(cfg.world_model, data, seed=seed, progress=False)
    task = get_pointmaze_task(cfg.task)
    model_env = LEQModelEnv(ensemble, cfg.task)
    comp = ex.build_leq(cfg, data, model_env, True)
    comp.loss.load_state_dict(load_checkpoint(run_dir / "checkpoint.pt")["modules"]["loss"])
    act = _actor_fn(comp.eval_actor)
    critic = comp.loss.qvalue_network
    start = torch.tensor([[*task.start_xy, 0.0, 0.0]])
    path, term = real_rollout(task, act, start, task.max_episode_steps)
    ctrl_path, _ = real_rollout(task, WaypointController(task), start, 120)
    visited = path[0, ::10]
    out: dict[str, Any] = {"variant": variant, "seed": seed, "success": bool(term.any())}
    out["final_xy"] = path[0, -1, :2].tolist()
    with torch.no_grad(), comp.loss.qvalue_network_params.to_module(critic):
        for h in (10, 30):
            stats = wall_diagnostic(
                task,
                model_env,
                comp.eval_actor,
                visited,
                horizon=h,
                critic=critic,
                gamma=float(cfg.loss.gamma),
                lmbda=float(cfg.loss.lmbda),
                generator=torch.Generator().manual_seed(0),
            )
            out[f"visited_h{h}"] = stats
        last = path[0, -1:]
        a = act(last)
        mean, _ = ensemble(last, a)
        out["stuck_state"] = last[0].tolist()
        out["stuck_action"] = a[0].tolist()
        out["model_pred_dxy_per_member"] = mean[:, 0, :2].tolist()

        def q(obs):
            td = TensorDict({"observation": obs, "action": act(obs)}, [obs.shape[0]])
            return critic(td)["state_action_value"].squeeze(-1)

        out["q_policy_path"] = q(path[0, ::30]).tolist()
        out["q_controller_path"] = q(ctrl_path[0, ::15]).tolist()
        out["controller_path_xy"] = ctrl_path[0, ::15, :2].tolist()
    return out


def summarize() -> str:
    """Markdown table: variant → seeds solved (final ≥ 90), final scores, diagnostics."""
    lines = [
        "| variant | solved | final scores (seed: score) | mean wall (s) | data wall contact "
        "| start: crossing rollouts (final) | start: λ gap cross / clean (final) |",
        "|---|---|---|---|---|---|---|",
    ]
    for variant in VARIANTS:
        recs = [json.loads(p.read_text()) for p in sorted((RESULTS / variant).glob("s*.json"))]
        if not recs:
            continue
        recs.sort(key=lambda r: r["seed"])
        solved = sum(r["last_score"] >= 90 for r in recs)
        scores = ", ".join(f"{r['seed']}: {r['last_score']:.0f}" for r in recs)
        walls = [r["wall_s"] for r in recs if not r["resumed"]]
        wall = f"{sum(walls) / len(walls):.0f}" if walls else "–"
        final = [r["diagnostics"][-1] for r in recs]
        cross = ", ".join(f"{d['start/rollout_cross_frac']:.2f}" for d in final)
        gap = ", ".join(
            f"{_fmt(d.get('start/lambda_gap_cross'))}/{_fmt(d.get('start/lambda_gap_clean'))}"
            for d in final
        )
        contact = f"{recs[0]['data_wall_contact_frac']:.4f}"
        lines.append(
            f"| {variant} | {solved}/{len(recs)} | {scores} | {wall} | {contact} | {cross} | {gap} |"
        )
    return "\n".join(lines)


def _fmt(x: float | None) -> str:
    return "–" if x is None or math.isnan(x) else f"{x:.1f}"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--variants", default="base")
    parser.add_argument("--seeds", default="0,1,2,3,4")
    parser.add_argument("--work", default="/tmp/umaze/study", help="run dirs (checkpoints)")
    parser.add_argument("--data-root", default="/tmp/umaze_data", help="data + world models")
    parser.add_argument("--summarize", action="store_true")
    parser.add_argument("--analyze", action="store_true", help="inspect finished runs")
    args = parser.parse_args(argv)
    if args.summarize:
        print(summarize())
        return
    if args.analyze:
        for variant in args.variants.split(","):
            for seed in (int(s) for s in args.seeds.split(",")):
                out = analyze(variant, seed, Path(args.work), Path(args.data_root))
                path = RESULTS / variant / f"analysis_s{seed}.json"
                path.write_text(json.dumps(out, indent=1))
                print(json.dumps(out))
        return
    for variant in args.variants.split(","):
        if variant not in VARIANTS:
            raise SystemExit(f"error: unknown variant {variant!r}; known: {sorted(VARIANTS)}")
        for seed in (int(s) for s in args.seeds.split(",")):
            out = RESULTS / variant / f"s{seed}.json"
            if out.exists():
                continue
            record = run_one(variant, seed, Path(args.work), Path(args.data_root))
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text(json.dumps(record, indent=1))
            print(
                json.dumps({k: record[k] for k in ("variant", "seed", "last_score", "wall_s")}),
                flush=True,
            )


if __name__ == "__main__":
    main()
