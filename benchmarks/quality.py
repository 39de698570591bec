"""Quality benchmark: algo x task x seed (plus LEQ ablations) through the example configs.

Every run uses the example YAML of its algorithm (``examples/config/<algo>.yaml``) with a common
gradient-step budget (``--steps``), the same generated dataset (``data.steps``, ``--data-steps``)
and, for the model-based algorithms (LEQ, COMBO), one cached world model per task shared across
seeds (``world_model.seed=0``). Runs go to ``<out>/<task>/<algo or ablation>/seed<k>/``; a run
whose ``metrics.csv`` already has a ``final`` row is skipped, and a killed run continues from its
``checkpoint.pt``, so the script can simply be restarted. ``--summarize`` writes
``benchmarks/RESULTS.md`` (tables, LEQ's difference to each method with its bootstrap interval,
the network sizes, one learning-curve PNG per task) from whatever CSVs exist. ``--num-cells``
gives every method the same hidden layers.

    OMP_NUM_THREADS=1 python benchmarks/quality.py --algos leq,bc --tasks pointmaze-umaze
    OMP_NUM_THREADS=1 python benchmarks/quality.py --ablations --seeds 0,1,2
    OMP_NUM_THREADS=1 python benchmarks/quality.py --algos leq --stack-seeds  # 5 seeds, 1 process
    OMP_NUM_THREADS=1 python benchmarks/quality.py --algos iql,bc --num-cells 128,128  # LEQ's size
    python benchmarks/quality.py --summarize
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import platform
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CONFIG_DIR = REPO / "examples" / "config"
ALGO_CONFIGS = {  # algo -> (example script whose train(cfg) runs it, its config)
    "leq": ("leq_antmaze", "leq_pointmaze"),
    "leq_released": ("leq_antmaze", "leq_pointmaze_released"),  # the released recipe, paper sizes
    "iql": ("iql", "iql"),
    "cql": ("cql", "cql"),
    "bc": ("bc", "bc"),
    "combo": ("combo", "combo"),
    "leq_pixels": ("leq_pixels", "leq_pixels"),  # rendered 64x64 frames of the same maze
    "bc_pixels": ("bc_pixels", "bc_pixels"),
    "clap": ("clap", "clap"),
    "clap_no_constraint": ("clap", "clap"),  # C-LAP's App. F ablations
    "clap_no_latent_action": ("clap", "clap"),
    "clap_pixels": ("clap", "clap_pixels"),  # leq_pixels' frames and rendered-maze evaluation
}
ALGO_OVERRIDES = {  # algo -> overrides on its config
    "clap_no_constraint": ["agent.variant=no_constraint"],
    "clap_no_latent_action": ["agent.variant=no_latent_action"],
    # Table 2's visual model is ~60 s an update on this CPU (docs/clap.md): leq_pixels' CPU-sized
    # model (base/pixels.yaml world_model: channels 8, deterministic 64) and its schedule
    # (40 x 100 updates of 8 windows of 32 steps); the rest of Table 2 unchanged
    "clap_pixels": ["clap_model.channels=8", "clap_model.deter_dim=64", "clap_model.embed_dim=256",
                    "clap_model.epochs=40", "clap_model.steps_per_epoch=100",
                    "clap_model.batch_size=8", "clap_model.seq_len=32"],
}
# bc_pixels: on the RSSM's features
MODEL_BASED = ("leq", "leq_released", "combo", "leq_pixels", "bc_pixels")
# their model: clap_model.seed
CLAP = ("clap", "clap_no_constraint", "clap_no_latent_action", "clap_pixels")
# their own dataset size (data.steps of base/pixels.yaml)
PIXELS = ("leq_pixels", "bc_pixels", "clap_pixels")
ABLATION_TASK = "pointmaze-medium"
# name -> overrides on the LEQ config (paper Table 18 style); None: not supported yet.
ABLATIONS: dict[str, list[str] | None] = {
    "no_actor_expectile": ["loss.actor_tau=0.5"],
    "no_env_critic_loss": ["loss.beta=1.0"],
    # the critic's lower expectile (loss.tau=0.1) also on the D_env term (LEQLoss env_tau, db8fcce)
    "expectile_on_env": ["loss.env_tau=0.1"],
    "no_ema": ["loss.ema_weight=0"],
    "no_expansion": ["expansion.enabled=false"],
}
DISCUSSION_MARK = "<!-- discussion: hand-written below this line, kept by --summarize -->"
INTRO = """\
**Budget.** Every run: {steps} gradient steps (`--steps`; LEQ additionally does 1000 BC + 1000 FQE
pretraining steps, as in its example config), evaluation every 1000 steps on 10 episodes and a
final evaluation on 100 episodes. This is **far below the paper's 1M gradient steps** ({pct}),
with small networks and world models (the example configs), so the numbers measure what each
method learns quickly on CPU, not its asymptotic quality; do not compare them with the paper's
tables.

**Same data.** All algorithms train on the same generated point-maze dataset per task
(`data.steps=100000`, `data.seed=0`; the model-free example configs default to 200000 and are
overridden), with the same reward transform and evaluation. LEQ and COMBO share **one cached
world model per task, trained once with `world_model.seed=0`, across all run seeds** (to save
compute): seed-to-seed variance therefore excludes world-model variance, unlike the paper, which
trains one model per seed.

*last* = normalized score of the final 100-episode evaluation; *best* = max over all
evaluations of the run (10-episode evals + the final one, so it is optimistically biased);
mean ± sample std (ddof=1) over the completed seeds, and the 95% percentile-bootstrap interval of
the mean (10,000 resamples of the seeds); *n seeds* counts completed runs."""
DEFAULT_ALGOS = "leq,iql,cql,bc,combo"
DEFAULT_TASKS = "pointmaze-umaze,pointmaze-medium,pointmaze-large"


# --------------------------------------------------------------------------- running
def has_final_row(csv_path: Path) -> bool:
    """Whether ``metrics.csv`` holds a ``final`` row, i.e. the run is complete."""
    if not csv_path.exists():
        return False
    with csv_path.open(newline="") as f:
        return any(row.get("kind") == "final" for row in csv.DictReader(f))


def run_overrides(algo: str, task: str, seed: int, run_dir: Path, args) -> list[str]:
    over = [f"task={task}", f"seed={seed}", f"run_dir={run_dir}", "resume=true", "progress=false"]
    if not args.smoke:
        over.append(f"train.total_steps={args.steps}")
        if algo not in PIXELS:
            over.append(f"data.steps={args.data_steps}")
    if algo in MODEL_BASED:
        over.append("world_model.seed=0")
    if algo in CLAP:
        over.append("clap_model.seed=0")
    if args.num_cells:
        over.append(f"network.num_cells=[{args.num_cells}]")
    return over + ALGO_OVERRIDES.get(algo, [])


DIVERGED = "diverged.txt"
"""Written in a run's directory when its loss became non-finite: the run ended there (its
error message inside), and the benchmark goes on with the next run."""


def _prepare(run_dir: Path) -> bool:
    """Make ``run_dir``; without a checkpoint drop the rows of a run killed before its first
    one (it starts from scratch). Returns whether the run resumes."""
    if not (run_dir / "checkpoint.pt").exists():
        (run_dir / "metrics.csv").unlink(missing_ok=True)
        shutil.rmtree(run_dir / "logs", ignore_errors=True)
    resumed = (run_dir / "checkpoint.pt").exists()
    run_dir.mkdir(parents=True, exist_ok=True)
    return resumed


def _pending(task: str, name: str, seeds: list[int], args) -> list[int]:
    """The seeds of ``task/name`` still to run (no ``final`` row, not diverged)."""
    left = []
    for seed in seeds:
        run_dir = Path(args.out) / task / name / f"seed{seed}"
        if has_final_row(run_dir / "metrics.csv") or (run_dir / DIVERGED).exists():
            why = "diverged" if (run_dir / DIVERGED).exists() else "complete"
            print(f"[skip] {task}/{name}/seed{seed}: {why}", flush=True)
        else:
            left.append(seed)
    return left


def _record_wall(args, task: str, name: str, seed: int, steps: int, wall: float,
                 resumed: bool) -> None:
    timings = Path(args.out) / "timings.csv"
    new = not timings.exists()
    with timings.open("a", newline="") as f:
        w = csv.writer(f)
        if new:
            w.writerow(["task", "name", "seed", "steps", "wall_s", "resumed"])
        w.writerow([task, name, seed, steps, f"{wall:.1f}", int(resumed)])


def _compose(algo: str, over: list[str], args):
    from torchrl_leq.training.config import compose_config, load_script

    script, config_name = ALGO_CONFIGS[algo]
    cfg = compose_config(CONFIG_DIR, config_name, [f"smoke={bool(args.smoke)}".lower(), *over])
    return cfg, load_script(REPO / "examples" / f"{script}.py").train


def run_one(algo: str, task: str, seed: int, name: str, extra: list[str], args) -> str:
    """Run (or resume, or skip) one run; returns 'skipped' / 'done' / 'diverged'."""
    if not _pending(task, name, [seed], args):
        return "skipped"
    from torchrl_leq.training.trainer import NonFiniteLossError

    run_dir = Path(args.out) / task / name / f"seed{seed}"
    resumed = _prepare(run_dir)
    over = run_overrides(algo, task, seed, run_dir, args) + extra
    cfg, runner = _compose(algo, over, args)
    print(f"[run ] {task}/{name}/seed{seed}: {' '.join(over)}", flush=True)
    start = time.time()
    try:
        result = runner(cfg)
    except NonFiniteLossError as err:
        (run_dir / DIVERGED).write_text(f"{err}\n")
        print(f"[diverged] {task}/{name}/seed{seed}: {err}", flush=True)
        return "diverged"
    wall = time.time() - start
    print(
        f"[done] {task}/{name}/seed{seed}: last={result['last_score']:.1f} "
        f"best={result['best_score']:.1f} wall={wall:.0f}s",
        flush=True,
    )
    _record_wall(args, task, name, seed, cfg.train.total_steps, wall, resumed)
    return "done"


def run_stacked(algo: str, task: str, seeds: list[int], name: str, extra: list[str],
                args) -> list[str]:
    """The pending ``seeds`` of one algo/task/name in one process, their networks stacked into
    one update (``seeds=[...]``, issue 15) when the example's ``train`` stacks seeds; each seed
    still writes ``<name>/seed<k>/`` exactly as its single run would (tested in
    tests/test_multi_seed.py). Otherwise, with one seed pending, or when the stacked update
    diverges (a non-finite loss names no seed), the seeds run one by one (from their
    checkpoints). Timings record each seed's share of the wall time. Returns each seed's
    status, as :func:`run_one`."""
    pending = _pending(task, name, seeds, args)
    base = Path(args.out) / task / name
    over = [o for o in run_overrides(algo, task, 0, base, args) if not o.startswith("seed=")]
    over = [f"seeds=[{','.join(map(str, pending))}]", *over, *extra]
    cfg, runner = _compose(algo, over, args) if len(pending) > 1 else (None, None)
    status = dict.fromkeys(seeds, "skipped")
    if runner is None or not getattr(runner, "stacks_seeds", False):
        status.update({s: run_one(algo, task, s, name, extra, args) for s in pending})
        return [status[s] for s in seeds]
    from torchrl_leq.training.trainer import NonFiniteLossError

    resumed = [_prepare(base / f"seed{s}") for s in pending]
    print(f"[run ] {task}/{name}/seeds{pending} (stacked): {' '.join(over)}", flush=True)
    start = time.time()
    try:
        result = runner(cfg)
    except NonFiniteLossError as err:
        print(f"[diverged] {task}/{name} stacked: {err}; running the seeds one by one", flush=True)
        status.update({s: run_one(algo, task, s, name, extra, args) for s in pending})
        return [status[s] for s in seeds]
    wall = time.time() - start
    for seed, res, res_resumed in zip(pending, result["per_seed"], resumed):
        print(f"[done] {task}/{name}/seed{seed}: last={res['last_score']:.1f} "
              f"best={res['best_score']:.1f} wall={wall / len(pending):.0f}s (share)", flush=True)
        _record_wall(args, task, name, seed, cfg.train.total_steps, wall / len(pending),
                     res_resumed)
        status[seed] = "done"
    return [status[s] for s in seeds]


def plan(args) -> list[tuple[str, str, int, str, list[str]]]:
    """(algo, task, seed, name, extra overrides) for every requested run."""
    seeds = [int(s) for s in args.seeds.split(",") if s]
    runs = []
    if args.ablations:
        wanted = list(ABLATIONS) if args.ablations in (True, "all") else args.ablations.split(",")
        unknown = sorted(set(wanted) - set(ABLATIONS))
        if unknown:
            raise SystemExit(f"unknown ablations {unknown}; known: {list(ABLATIONS)}")
        for seed in seeds:
            for name, extra in ABLATIONS.items():
                if name not in wanted:
                    continue
                if extra is None:
                    print(f"[miss] {name}: not supported by LEQLoss, skipped", flush=True)
                    continue
                runs.append(("leq", ABLATION_TASK, seed, name, extra))
        return runs
    algos = [a for a in args.algos.split(",") if a]
    for algo in algos:
        if algo not in ALGO_CONFIGS:
            raise SystemExit(f"unknown algo {algo!r}; known: {sorted(ALGO_CONFIGS)}")
    for task in [t for t in args.tasks.split(",") if t]:
        for seed in seeds:
            for algo in algos:
                runs.append((algo, task, seed, algo, []))
    return runs


def record_command(out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    cmd = "OMP_NUM_THREADS=1 python benchmarks/quality.py " + shlex.join(sys.argv[1:])
    path = out / "commands.txt"
    lines = path.read_text().splitlines() if path.exists() else []
    if cmd not in lines:
        path.write_text("\n".join([*lines, cmd]) + "\n")


# --------------------------------------------------------------------------- summarizing
def read_run(csv_path: Path) -> dict | None:
    """last (final row), best (max over all eval rows) and the curve (step -> score)."""
    with csv_path.open(newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows:
        return None
    curve: dict[int, float] = {}
    final = None
    for row in rows:
        step, score = int(row["step"]), float(row["normalized_score"])
        if row["kind"] == "final":
            final = score
            curve[step] = score  # the 100-episode final eval replaces a same-step eval
        else:
            curve.setdefault(step, score)
    return {
        "last": final,
        "best": max(float(r["normalized_score"]) for r in rows),
        "curve": curve,
        "complete": final is not None,
    }


def mean_std(values: list[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (ddof=1; 0 for a single value)."""
    n = len(values)
    mean = sum(values) / n
    if n < 2:
        return mean, 0.0
    return mean, math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))


def fmt(values: list[float], digits: int = 1) -> str:
    if not values:
        return "–"
    mean, std = mean_std(values)
    return f"{mean:.{digits}f} ± {std:.{digits}f}" if len(values) > 1 else f"{mean:.{digits}f}"


def bootstrap_ci(
    values: list[float], level: float = 0.95, resamples: int = 10_000, seed: int = 0
) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean: resample the seeds with replacement
    ``resamples`` times (fixed RNG ``seed``), take the ``(1-level)/2`` and ``(1+level)/2``
    quantiles of the resampled means.

    Example:
        >>> bootstrap_ci([50.0, 50.0, 50.0])
        (50.0, 50.0)
    """
    import numpy as np

    rng = np.random.default_rng(seed)
    means = _resampled_means(values, rng, resamples)
    lo, hi = np.quantile(means, [(1 - level) / 2, (1 + level) / 2])
    return float(lo), float(hi)


def _resampled_means(values: list[float], rng, resamples: int):
    """Means of ``resamples`` draws of ``len(values)`` values with replacement (numpy array)."""
    import numpy as np

    x = np.asarray(values, dtype=float)
    return x[rng.integers(0, len(x), size=(resamples, len(x)))].mean(1)


def fmt_ci(values: list[float]) -> str:
    if len(values) < 2:
        return "–"
    lo, hi = bootstrap_ci(values)
    return f"[{lo:.1f}, {hi:.1f}]"


def bootstrap_diff_ci(
    a: list[float], b: list[float], level: float = 0.95, resamples: int = 10_000, seed: int = 0
) -> tuple[float, float]:
    """Percentile bootstrap interval of ``mean(a) - mean(b)`` for two independent groups of
    seeds: each resample draws ``len(a)`` seeds of ``a`` and ``len(b)`` of ``b`` with replacement
    (fixed RNG ``seed``). An interval that excludes 0 says the ordering holds on these seeds.

    Example:
        >>> bootstrap_diff_ci([100.0, 100.0], [40.0, 40.0, 40.0])
        (60.0, 60.0)
    """
    import numpy as np

    rng = np.random.default_rng(seed)
    diffs = _resampled_means(a, rng, resamples) - _resampled_means(b, rng, resamples)
    lo, hi = np.quantile(diffs, [(1 - level) / 2, (1 + level) / 2])
    return float(lo), float(hi)


def final_scores(seeds: dict[int, dict]) -> list[float]:
    """The final 100-episode scores of the completed seeds, in seed order."""
    return [seeds[s]["last"] for s in sorted(seeds) if seeds[s]["complete"]]


def difference_table(pairs: list[tuple[str, str]], runs: dict[str, dict[int, dict]]) -> list[str]:
    """``| a − b | difference of means | 95% bootstrap CI | verdict |`` for each pair with ≥ 2
    completed seeds on both sides (the final 100-episode scores); empty when none has."""
    lines = []
    for a, b in pairs:
        x, y = final_scores(runs.get(a, {})), final_scores(runs.get(b, {}))
        if len(x) < 2 or len(y) < 2:
            continue
        lo, hi = bootstrap_diff_ci(x, y)
        diff = mean_std(x)[0] - mean_std(y)[0]
        verdict = (f"{a} > {b}" if lo > 0 else f"{a} < {b}" if hi < 0
                   else "equal on every seed" if lo == hi == 0 else "not separated")
        lines.append(f"| {a} − {b} | {diff:+.1f} | [{lo:+.1f}, {hi:+.1f}] | {verdict} |")
    if not lines:
        return []
    head = ["| comparison | difference of means (last) | 95% bootstrap CI | verdict |",
            "|---|---|---|---|"]
    return head + lines


def read_num_cells(run_json: Path) -> tuple[int, ...] | None:
    """The run's ``network.num_cells`` (hidden layer sizes) from its ``run.json``; None when
    the file or the key is missing."""
    try:
        cells = json.loads(run_json.read_text())["config"]["network"]["num_cells"]
    except (OSError, KeyError, TypeError, ValueError):
        return None
    return tuple(int(c) for c in cells)


def network_line(names: list[str], runs: dict[str, dict[int, dict]]) -> list[str]:
    """``Networks (hidden layers, from each run's run.json): leq 2×128, iql 2×256`` — the
    sizes of each row's runs, so that a comparison across sizes is visible."""
    parts = []
    for name in names:
        sizes = sorted({r["num_cells"] for r in runs.get(name, {}).values() if r.get("num_cells")})
        if sizes:
            parts.append(f"{name} " + " / ".join(
                f"{len(c)}×{c[0]}" if len(set(c)) == 1 else "×".join(map(str, c)) for c in sizes))
    return [f"Networks (hidden layers, from each run's run.json): {', '.join(parts)}."] if parts else []


def collect(out: Path) -> dict[str, dict[str, dict[int, dict]]]:
    """task -> name -> seed -> run summary, from every ``metrics.csv`` under ``out``."""
    found: dict[str, dict[str, dict[int, dict]]] = {}
    for path in sorted(out.glob("*/*/seed*/metrics.csv")):
        seed_dir, name_dir, task_dir = path.parent, path.parent.parent, path.parent.parent.parent
        run = read_run(path)
        if run is None:
            continue
        run["diverged"] = (seed_dir / DIVERGED).exists()
        run["num_cells"] = read_num_cells(seed_dir / "run.json")
        seed = int(seed_dir.name.removeprefix("seed"))
        found.setdefault(task_dir.name, {}).setdefault(name_dir.name, {})[seed] = run
    return found


SETTLE_TOLERANCE = 10.0


def settled_from(curve: dict[int, float], tol: float = SETTLE_TOLERANCE) -> int:
    """The earliest evaluation step from which every later evaluation (the final one included,
    the last step of ``curve``) is within ``tol`` points of the final score: where the curve
    has flattened; the final step itself when the evaluation before it is off by more.

    Example:
        >>> settled_from({1000: 0.0, 2000: 95.0, 3000: 100.0, 4000: 100.0})
        2000
    """
    steps = sorted(curve)
    final = curve[steps[-1]]
    start = steps[-1]
    for step in reversed(steps):
        if abs(curve[step] - final) > tol:
            break
        start = step
    return start


def settled_cell(seeds: dict[int, dict]) -> str:
    """``settled from`` over the complete seeds: the latest seed's step, or the seeds whose
    curve is still moving at the end (settled only at their final evaluation)."""
    done = {s: r["curve"] for s, r in sorted(seeds.items()) if r["complete"]}
    if not done:
        return "–"
    moving = [f"seed{s}" for s, curve in done.items() if settled_from(curve) == max(curve)]
    if moving:
        return "not flat: " + ", ".join(moving)
    return str(max(settled_from(curve) for curve in done.values()))


def table(names: list[str], runs: dict[str, dict[int, dict]]) -> list[str]:
    lines = [
        "| algo | last (final 100-ep eval) | 95% bootstrap CI of last | best (max over evals) "
        f"| flat from step (±{SETTLE_TOLERANCE:.0f} of final, latest seed) | n seeds | incomplete |",
        "|---|---|---|---|---|---|---|",
    ]
    for name in names:
        seeds = runs.get(name, {})
        done = [s for s in sorted(seeds) if seeds[s]["complete"]]
        running = [s for s in sorted(seeds) if not seeds[s]["complete"]]
        last = final_scores(seeds)
        best = [seeds[s]["best"] for s in done]
        inc = ", ".join(f"seed{s}" + (" (diverged)" if seeds[s].get("diverged") else "")
                        for s in running) or ""
        lines.append(
            f"| {name} | {fmt(last)} | {fmt_ci(last)} | {fmt(best)} | {settled_cell(seeds)} | "
            f"{len(done)} | {inc} |"
        )
    return lines


def plot_mean_curves(
    series: dict[str, list[dict[int, float]]],
    path: Path,
    *,
    title: str,
    ylabel: str,
    ylim: tuple[float, float] | None = None,
    marker: str | None = None,
) -> bool:
    """One line per name: the mean over its seeds' ``{step: value}`` curves (at each step, over
    the seeds that have it). Returns whether anything was plotted."""
    series = {name: curves for name, curves in series.items() if curves}
    if not series:
        return False
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for name, curves in sorted(series.items()):
        steps = sorted(set().union(*curves))
        means = [sum(c[t] for c in curves if t in c) / sum(t in c for c in curves) for t in steps]
        ax.plot(steps, means, marker=marker, label=f"{name} (n={len(curves)})")
    ax.set_xlabel("gradient step")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    if ylim is not None:
        ax.set_ylim(*ylim)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return True


def plot_task(task: str, runs: dict[str, dict[int, dict]], path: Path) -> bool:
    """Learning curves of a task: normalized score, mean over seeds, per algorithm."""
    series = {
        name: [r["curve"] for r in seeds.values() if r["curve"]] for name, seeds in runs.items()
    }
    return plot_mean_curves(
        series,
        path,
        title=task,
        ylabel="normalized score (mean over seeds)",
        ylim=(-5, 105),
        marker="o",
    )


def read_scalar(out: Path, task: str, key: str) -> dict[str, list[dict[int, float]]]:
    """name -> one ``{step: value}`` per seed, from the runs' csv logs (``train/<key>.csv``)."""
    found: dict[str, list[dict[int, float]]] = {}
    for path in sorted(out.glob(f"{task}/*/seed*/logs/*/scalars/train/{key}.csv")):
        name = path.parents[5].name
        with path.open(newline="") as f:
            series = {int(float(r[0])): float(r[1]) for r in csv.reader(f) if len(r) == 2}
        if series:
            found.setdefault(name, []).append(series)
    return found


def plot_scalar(task: str, key: str, series: dict[str, list[dict[int, float]]], path: Path) -> bool:
    """Mean over seeds of a logged training scalar, one line per run name."""
    return plot_mean_curves(series, path, title=f"{task}: {key}", ylabel=f"{key} (mean over seeds)")


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _commit() -> str:
    try:
        return subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=REPO,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def _finals(seeds: dict[int, dict]) -> list[int]:
    """Gradient-step budgets of the completed runs (the step of their final evaluation)."""
    return [max(r["curve"]) for r in seeds.values() if r["complete"] and r["curve"]]


def _summarize_command(out: Path, results_md: Path) -> str:
    """The command that regenerates ``results_md`` (paths relative to the repository)."""
    cmd = "python benchmarks/quality.py --summarize"
    default_out = REPO / "benchmarks" / "results_5seeds"
    if out.resolve() != default_out or results_md.resolve() != default_out.parent / "RESULTS.md":
        rel = [os.path.relpath(p.resolve(), REPO) for p in (out, results_md)]
        cmd += f" --out {rel[0]} --results-md {rel[1]}"
    return cmd


def summarize(out: Path, results_md: Path, discussion: str | None = None) -> str:
    """Write ``results_md`` (tables per task + curve PNGs under ``out``) and return its text."""

    data = collect(out)
    cmd_path = out / "commands.txt"
    commands = cmd_path.read_text().splitlines() if cmd_path.exists() else []
    lines = [
        "# Quality benchmark results",
        "",
        f"- machine: `{platform.machine()}`, nproc {os.cpu_count()}, CPU `{_cpu_model()}`",
        f"- commit: `{_commit()}` (when this file was generated)",
        "- commands (each run is one in-process call of the example runners):",
        "",
        "```bash",
        *(commands or ["# (no runs recorded)"]),
        _summarize_command(out, results_md),
        "```",
        "",
    ]
    budgets = sorted({step for runs in data.values() for r in runs.values() for step in _finals(r)})
    steps = " / ".join(f"{b}" for b in budgets) or "?"
    pct = " / ".join(f"{100 * b / 1e6:.1f}%" for b in budgets) or "?"
    lines += [INTRO.format(steps=steps, pct=pct), ""]
    order = DEFAULT_TASKS.split(",")
    for task in sorted(data, key=lambda t: (order.index(t) if t in order else len(order), t)):
        runs = data[task]
        main = [a for a in ALGO_CONFIGS if a in runs]
        abl = [a for a in ABLATIONS if a in runs]
        other = sorted(set(runs) - set(main) - set(abl))
        lines += [f"## {task}", ""]
        lines += table(main + other, runs)
        nets = network_line(main + other + abl, runs)
        lines += ["", *nets] if nets else []
        diffs = difference_table([("leq", n) for n in main + other if n != "leq"], runs)
        if diffs:
            lines += ["", "LEQ against each method (seeds resampled independently per method; "
                      "the ordering holds on these seeds when the interval excludes 0):", ""]
            lines += diffs
        if abl:
            lines += ["", f"Ablations of LEQ on {task} (compare with the `leq` row above):", ""]
            lines += table(abl, runs)
            diffs = difference_table([(n, "leq") for n in abl], runs)
            lines += ["", *diffs] if diffs else []
        png = out / f"{task}_curves.png"
        if plot_task(task, runs, png):
            rel = os.path.relpath(png, results_md.parent)
            lines += ["", f"![{task} learning curves]({rel})"]
        png = out / f"{task}_q_env_mean.png"
        series = read_scalar(out, task, "q_env_mean")
        # the runs' csv logs are not committed: without them keep the plot drawn when they existed
        if plot_scalar(task, "q_env_mean", series, png) if series else png.exists():
            rel = os.path.relpath(png, results_md.parent)
            lines += [
                "",
                "Critic value on D_env batches (`q_env_mean`, logged by LEQ and its ablations) "
                "— how far the critic has moved towards its fixed point:",
                "",
                f"![{task} q_env_mean]({rel})",
            ]
        calibration = calibration_table(out, task)
        lines += ["", *calibration] if calibration else []
        lines.append("")
    missing = [n for n, o in ABLATIONS.items() if o is None]
    if missing:
        lines += [
            "Not run (not supported by `LEQLoss` yet): " + ", ".join(f"`{m}`" for m in missing),
            "",
        ]
    timings = out / "timings.csv"
    if timings.exists():
        lines += timing_table(timings)
    if discussion is None and results_md.exists():
        old = results_md.read_text()
        if DISCUSSION_MARK in old:  # keep the hand-written discussion when regenerating
            discussion = old[old.index(DISCUSSION_MARK) + len(DISCUSSION_MARK) :]
    lines += [DISCUSSION_MARK, (discussion or "").strip(), ""]
    text = "\n".join(lines)
    results_md.write_text(text)
    return text


CALIBRATION_DIR = "calibration"


def calibration_table(out: Path, task: str) -> list[str]:
    """Mean ± std over seeds of ``<out>/calibration/<task>_<run>.json`` (written by
    ``benchmarks/value_calibration.py --out``): each critic's ``Q(s, π(s))`` against the
    policy's true return; [] when there are none."""
    rows = []
    for path in sorted((out / CALIBRATION_DIR).glob(f"{task}_*.json")):
        runs = json.loads(path.read_text())
        if not runs:
            continue

        def stat(key: str, scale: float = 1.0, digits: int = 1, runs=runs) -> str:
            values = [r[key] * scale for r in runs if r.get(key) is not None]
            if not values or any(math.isnan(v) for v in values):
                return "—"
            return fmt(values, digits)

        for r in runs:
            r["share"] = r["q_minus_real"] * (1 - r["gamma"]) * 100
        walls = "—" if "wall/rollout_cross_frac" not in runs[0] else (
            f"{stat('wall/rollout_cross_frac', 100)} %; {stat('wall/lambda_gap_cross')}")
        steps = sorted({r["step"] for r in runs})
        rows.append(
            f"| {path.stem[len(task) + 1:]} | {'/'.join(map(str, steps))} | {len(runs)} | "
            f"{runs[0]['gamma']} | {stat('q_mean')} | {stat('real_return_mean')} | "
            f"{stat('real_success_frac', 100)} % | {stat('q_minus_real')} ({stat('share')} %) | "
            f"{stat('q_minus_real_success')} / {stat('q_minus_real_failure')} | "
            f"{stat('q_real_corr', digits=2)} | {walls} |"
        )
    if not rows:
        return []
    return [
        "Critic calibration on the final checkpoints (`benchmarks/value_calibration.py`: "
        "`Q(s, π(s))` against the policy's true discounted return `G` from fixed D_env "
        "states, mean ± std over seeds; the share is `Q − G` in % of `1/(1−γ)`):",
        "",
        "| run | step | seeds | γ | `Q(s, π(s))` | true `G` | starts solved | `Q − G` (share) | "
        "`Q − G` solved / failed | corr(`Q`, `G`) | imagined rollouts crossing a wall; λ gap |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
        *rows,
    ]


def timing_table(path: Path) -> list[str]:
    """The wall-time section from ``timings.csv``; a run resumed from a checkpoint only timed
    its last part, so those rows are counted apart (``resumed``) and left out of the mean."""
    with path.open(newline="") as f:
        rows = list(csv.DictReader(f))
    by: dict[tuple[str, str], list[float]] = {}
    resumed: dict[tuple[str, str], int] = {}
    for r in rows:
        key = (r["task"], r["name"])
        by.setdefault(key, [])
        if r.get("resumed") == "1":
            resumed[key] = resumed.get(key, 0) + 1
        else:
            by[key].append(float(r["wall_s"]))
    lines = [
        "## Wall time per run (`OMP_NUM_THREADS=1`; some overlapped another training process)",
        "",
        "Includes data generation / world-model training when not cached yet, pretraining and "
        "all evaluations. A run resumed from a checkpoint timed only its last part: it is "
        "counted under *resumed* and left out of the mean.",
        "",
        "| task | run | runs timed | mean wall (s) | min–max (s) | resumed (not timed) |",
        "|---|---|---|---|---|---|",
    ]
    for key, walls in sorted(by.items()):
        timed = (
            f"{sum(walls) / len(walls):.0f} | {min(walls):.0f}–{max(walls):.0f}"
            if walls else "– | –"
        )
        lines.append(f"| {key[0]} | {key[1]} | {len(walls)} | {timed} | {resumed.get(key, 0)} |")
    return [*lines, ""]


# --------------------------------------------------------------------------- CLI
def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--algos", default=DEFAULT_ALGOS)
    p.add_argument("--tasks", default=DEFAULT_TASKS)
    p.add_argument("--seeds", default="0,1,2,3,4")
    p.add_argument("--steps", type=int, default=4000, help="gradient steps per run")
    p.add_argument("--data-steps", type=int, default=100000, help="data.steps (dataset size)")
    p.add_argument(
        "--ablations",
        nargs="?",
        const="all",
        default=None,
        help=f"LEQ ablations on {ABLATION_TASK}: all, or a comma list of {list(ABLATIONS)}",
    )
    p.add_argument("--out", default=str(REPO / "benchmarks" / "results_5seeds"))
    p.add_argument("--results-md", default=None, help="default: <out>/../RESULTS.md")
    p.add_argument("--summarize", action="store_true", help="only write RESULTS.md")
    p.add_argument(
        "--num-cells",
        default=None,
        help="hidden layer sizes for every algo's networks (network.num_cells), e.g. 128,128: "
        "the same size for every method; default: each example config's own",
    )
    p.add_argument("--smoke", action="store_true", help="smoke-size configs (for testing)")
    p.add_argument(
        "--stack-seeds",
        action="store_true",
        help="run the seeds of each algo/task in one process, stacked into one update, where "
        "the example supports it (LEQ, its ablations, COMBO); the others one by one",
    )
    args = p.parse_args(argv)
    from torchrl_leq.training.allocator import keep_freed_memory

    keep_freed_memory()  # as the examples' CLI does (torchrl_leq/training/allocator.py)
    out = Path(args.out)
    results_md = Path(args.results_md) if args.results_md else out.parent / "RESULTS.md"
    if args.summarize:
        summarize(out, results_md)
        print(f"wrote {results_md}")
        return 0
    runs = plan(args)
    if args.num_cells and not all(c.strip().isdigit() for c in args.num_cells.split(",")):
        raise SystemExit(f"--num-cells {args.num_cells!r}: give layer sizes as integers, "
                         "e.g. --num-cells 128,128")
    if args.num_cells and any(algo in CLAP for algo, *_ in runs):
        raise SystemExit("--num-cells: C-LAP sizes its networks with agent.* / clap_model.*, "
                         "not network.num_cells; run the C-LAP algos without it")
    import torch

    torch.set_num_threads(1)
    record_command(out)
    if not args.stack_seeds:
        for algo, task, seed, name, extra in runs:
            run_one(algo, task, seed, name, extra, args)
        return 0
    groups: dict[tuple[str, str, str], list[int]] = {}
    extras: dict[tuple[str, str, str], list[str]] = {}
    for algo, task, seed, name, extra in runs:
        groups.setdefault((algo, task, name), []).append(seed)
        extras[(algo, task, name)] = extra
    for (algo, task, name), seeds in groups.items():
        run_stacked(algo, task, seeds, name, extras[(algo, task, name)], args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
