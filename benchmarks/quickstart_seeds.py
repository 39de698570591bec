"""The README quickstart, exactly as a user runs it, on several seeds, each from an empty cache.

Each seed runs ``python examples/leq_pointmaze.py seed=<s>`` in its own process with
``TORCHRL_LEQ_DATA`` pointing at a fresh empty directory (so the dataset is generated and the
world model trained from scratch, as on a new machine) and ``OMP_NUM_THREADS=1``; its wall time,
final 100-episode success and JSON line go to ``benchmarks/results/quickstart/seed<s>.json``
(its ``metrics.csv`` beside it). A
seed whose JSON exists is skipped, so the script can be restarted. ``--summarize`` prints the
Markdown table of the README.

    OMP_NUM_THREADS=1 python benchmarks/quickstart_seeds.py --seeds 0,1,2,3,4
    python benchmarks/quickstart_seeds.py --summarize
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "quickstart"


def commit() -> str:
    out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                         text=True)
    return out.stdout.strip() or "unknown"


def run_seed(seed: int, extra: list[str]) -> dict:
    """One quickstart run from an empty cache; its result record."""
    code = commit()  # the code the run starts with (HEAD may move while it runs)
    with tempfile.TemporaryDirectory(prefix="leq_quickstart_") as tmp:
        cache, run_dir = Path(tmp) / "cache", Path(tmp) / "run"
        env = {**os.environ, "TORCHRL_LEQ_DATA": str(cache), "OMP_NUM_THREADS": "1"}
        cmd = [sys.executable, "examples/leq_pointmaze.py", f"seed={seed}", "progress=false",
               *extra]
        began = time.perf_counter()
        proc = subprocess.run([*cmd, f"run_dir={run_dir}"], cwd=ROOT, env=env,
                              capture_output=True, text=True)
        wall = time.perf_counter() - began
        if proc.returncode != 0:
            raise SystemExit(f"error: seed {seed} failed (exit {proc.returncode}): "
                             f"{proc.stderr.strip().splitlines()[-1:]}")
        line = json.loads([s for s in proc.stdout.splitlines() if s.startswith("{")][-1])
        line.pop("metrics_csv", None)  # a temporary path
        shutil.copy(run_dir / "metrics.csv", RESULTS / f"seed{seed}_metrics.csv")
        with open(run_dir / "metrics.csv") as f:
            final = [row for row in csv.DictReader(f) if row.get("kind") == "final"][-1]
    return {"seed": seed, "wall_s": round(wall, 1), "success_rate": float(final["success_rate"]),
            "episodes": int(float(final.get("episodes") or 100)), "summary": line,
            "command": " ".join(["OMP_NUM_THREADS=1", "python", *cmd[1:]]),
            "commit": code, "machine": f"{platform.machine()}, {os.cpu_count()} cores",
            "load_avg_1m_after": round(os.getloadavg()[0], 2)}


def summarize() -> str:
    rows = [json.loads(p.read_text()) for p in sorted(RESULTS.glob("seed*.json"))]
    lines = ["| seed | final success (100 episodes) | wall time from an empty cache | commit |",
             "|---|---|---|---|"]
    for r in sorted(rows, key=lambda r: r["seed"]):
        m, s = divmod(round(r["wall_s"]), 60)
        lines.append(f"| {r['seed']} | {100 * r['success_rate']:.0f} % | {m} min {s:02d} s "
                     f"| `{r['commit']}` |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", default="0,1,2,3,4")
    parser.add_argument("--summarize", action="store_true")
    parser.add_argument("overrides", nargs="*", help="extra hydra overrides (not for the table)")
    args = parser.parse_args(argv)
    if args.summarize:
        print(summarize())
        return
    RESULTS.mkdir(parents=True, exist_ok=True)
    for seed in (int(s) for s in args.seeds.split(",")):
        path = RESULTS / f"seed{seed}.json"
        if path.exists():
            print(f"seed {seed}: done already ({path})")
            continue
        record = run_seed(seed, args.overrides)
        path.write_text(json.dumps(record, indent=1) + "\n")
        print(json.dumps({k: record[k] for k in ("seed", "wall_s", "success_rate")}), flush=True)


if __name__ == "__main__":
    main()
