"""Why LEQ fails pointmaze-umaze on some seeds: a resumable study of candidate causes.

Each *variant* is the quickstart (``examples/config/leq_pointmaze.yaml``, run by the example's own
``train(cfg)``) with config overrides, e.g. the older centre-line data collection
(``data.waypoint_jitter=0.0``). Every run logs the wall-exploitation diagnostic
(:func:`torchrl_leq.envs.maze_diagnostics.make_wall_diagnostic`, ``diagnostics.wall_every=1000``)
on 256 D_env start states. Records made before the diagnostic moved into the example (Dec 2026)
hold it on 64 evaluation-like start states instead (``start/`` keys). Per run it writes
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
import json
import math
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "umaze_study"
OLD_DATA = ["data.waypoint_jitter=0.0"]  # the centre-line collection (before Dec 2026)
RELEASED = [  # the released code's AntMaze recipe where the example departs from it
    "loss.actor_gradient=per_step",
    "loss.gamma=0.997",
    "optim.actor_lr=3e-5",
    "optim.critic_lr=1e-4",
]
PAPER_WM = [
    "world_model.num_members=7",
    "world_model.num_elites=5",
    "world_model.hidden_dims=[200,200,200,200]",
    "world_model.max_epochs=100",
]

VARIANTS: dict[str, list[str]] = {  # variant -> overrides of examples/config/leq_pointmaze.yaml
    "base": OLD_DATA,
    "paper_wm": [*OLD_DATA, *PAPER_WM],
    "per_step": [*OLD_DATA, "loss.actor_gradient=per_step"],
    "noise05": ["data.waypoint_jitter=0.0", "data.action_noise=0.5"],
    "no_ema": [*OLD_DATA, "loss.ema_weight=0"],
    "h5": [*OLD_DATA, "loss.horizon=5"],
    "jitter": [],  # the wall-covering collection, the default since Dec 2026
    "jitter_per_step": ["loss.actor_gradient=per_step"],
    "jitter_no_ema": ["loss.ema_weight=0"],
    "jitter_released": RELEASED,
    "jitter_wm100": ["world_model.max_epochs=100"],
    "jitter_wm100_per_step": ["world_model.max_epochs=100", "loss.actor_gradient=per_step"],
    "jitter_h5": ["loss.horizon=5"],
    "jitter_h5_12k": ["loss.horizon=5", "train.total_steps=12000", "train.eval_every=2000"],
    "jitter_12k": ["train.total_steps=12000", "train.eval_every=2000"],
    "jitter_released_lr": ["optim.actor_lr=3e-5", "optim.critic_lr=1e-4"],
    "released": [*OLD_DATA, *RELEASED],
}


def _wall_rows(run_dir: Path) -> list[dict[str, float]]:
    """The diagnostic's logged ``wall/*`` scalars as one row per step."""
    rows: dict[int, dict[str, float]] = {}
    for path in sorted(run_dir.glob("logs/*/scalars/wall/*.csv")):
        for line in path.read_text().split():
            step, value = line.split(",")
            rows.setdefault(int(step), {"step": int(step)})[f"wall/{path.stem}"] = float(value)
    return [rows[k] for k in sorted(rows)]


def run_one(variant: str, seed: int, work: Path) -> dict[str, Any]:
    """Train one (variant, seed) with the quickstart's ``train(cfg)`` and its wall diagnostic
    every 1000 steps; returns the run's record."""
    sys.path.insert(0, str(ROOT / "examples"))
    from leq_antmaze import train

    from torchrl_leq.data import read_pointmaze_dataset
    from torchrl_leq.envs.maze_diagnostics import wall_contact_fraction
    from torchrl_leq.tasks import get_pointmaze_task
    from torchrl_leq.training.config import compose_config

    run_dir = work / variant / f"s{seed}"
    overrides = [f"seed={seed}", f"run_dir={run_dir}", "progress=false", "resume=true",
                 "diagnostics.wall_every=1000", *VARIANTS[variant]]
    cfg = compose_config(ROOT / "examples" / "config", "leq_pointmaze", overrides)
    resuming = (run_dir / "checkpoint.pt").exists()
    t0 = time.perf_counter()
    result = train(cfg)
    wall = time.perf_counter() - t0
    data = read_pointmaze_dataset(cfg.task, int(cfg.data.steps), int(cfg.data.seed),
                                  action_noise=float(cfg.data.action_noise),
                                  waypoint_jitter=float(cfg.data.waypoint_jitter))
    return {
        "variant": variant,
        "seed": seed,
        "overrides": VARIANTS[variant],
        "last_score": result["last_score"],
        "best_score": result["best_score"],
        "wall_s": wall,
        "resumed": resuming,
        "data_wall_contact_frac": wall_contact_fraction(
            get_pointmaze_task(cfg.task), data["observation"]
        ),
        "diagnostics": _wall_rows(run_dir),
        "metrics": list(csv.DictReader(open(result["metrics_csv"]))),
    }


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
        final = [_final_diagnostic(r) for r in recs]
        cross = ", ".join(_fmt(d.get("rollout_cross_frac"), ".2f") for d in final)
        gap = ", ".join(
            f"{_fmt(d.get('lambda_gap_cross'))}/{_fmt(d.get('lambda_gap_clean'))}" for d in final
        )
        contact = f"{recs[0]['data_wall_contact_frac']:.4f}"
        lines.append(
            f"| {variant} | {solved}/{len(recs)} | {scores} | {wall} | {contact} | {cross} | {gap} |"
        )
    return "\n".join(lines)


def _final_diagnostic(record: dict[str, Any]) -> dict[str, float]:
    """The last diagnostic row without its prefix: ``start/`` (evaluation-like starts, records
    before the diagnostic moved into the example) or ``wall/`` (D_env starts)."""
    last = record["diagnostics"][-1] if record["diagnostics"] else {}
    prefix = "start/" if any(k.startswith("start/") for k in last) else "wall/"
    return {k[len(prefix):]: v for k, v in last.items() if k.startswith(prefix)}


def _fmt(x: float | None, spec: str = ".1f") -> str:
    return "–" if x is None or math.isnan(x) else format(x, spec)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--variants", default="base")
    parser.add_argument("--seeds", default="0,1,2,3,4")
    parser.add_argument("--work", default="/tmp/umaze/study", help="run dirs (checkpoints)")
    parser.add_argument("--summarize", action="store_true")
    args = parser.parse_args(argv)
    from torchrl_leq.training.allocator import keep_freed_memory

    keep_freed_memory()  # as the examples' CLI does (torchrl_leq/training/allocator.py)
    if args.summarize:
        print(summarize())
        return
    for variant in args.variants.split(","):
        if variant not in VARIANTS:
            raise SystemExit(f"error: unknown variant {variant!r}; known: {sorted(VARIANTS)}")
        for seed in (int(s) for s in args.seeds.split(",")):
            out = RESULTS / variant / f"s{seed}.json"
            if out.exists():
                continue
            record = run_one(variant, seed, Path(args.work))
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text(json.dumps(record, indent=1))
            print(
                json.dumps({k: record[k] for k in ("variant", "seed", "last_score", "wall_s")}),
                flush=True,
            )


if __name__ == "__main__":
    main()
