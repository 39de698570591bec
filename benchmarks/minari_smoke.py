"""Every hosted Minari dataset id we support, end to end at smoke size on a generated stand-in:
generate it (same env id, kwargs, dict observations, infos, metadata as the hosted file), replay
stored transitions in the simulator, run the LEQ example (``data.source=minari
data.dataset_id=<id> smoke=true``) to a final normalized score; one row per id with wall times.

    OMP_NUM_THREADS=1 python benchmarks/minari_smoke.py [--ids D4RL/antmaze/umaze-v1,...]

Prints a markdown table (docs/antmaze.md holds the last one) and a JSON line per id.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run(dataset_id: str, root: Path, work: Path) -> dict:
    """Generate, replay and train one id; returns its row."""
    sys.path.insert(0, str(ROOT / "examples"))
    from leq_antmaze import train

    from torchrl_leq.data.generate_minari import ANTMAZE_STANDINS, generate_minari_dataset
    from torchrl_leq.data.minari_tasks import replay_error
    from torchrl_leq.training.config import compose_config

    t0 = time.perf_counter()
    generate_minari_dataset(dataset_id, root, steps=1500, episode_steps=300)
    generated = time.perf_counter() - t0
    replay = replay_error(dataset_id, root)
    name = "antmaze/umaze" if dataset_id in ANTMAZE_STANDINS else "mujoco/hopper-medium"
    run_dir = work / dataset_id.replace("/", "_")
    cfg = compose_config(ROOT / "examples" / "config", name, [
        "smoke=true", "progress=false", "data.source=minari", f"data.dataset_id={dataset_id}",
        f"data.root={root}", f"run_dir={run_dir}",
    ])
    t1 = time.perf_counter()
    result = train(cfg)
    return {"dataset_id": dataset_id, "generate_s": generated, "replay": replay,
            "train_s": time.perf_counter() - t1, "last_score": result["last_score"]}


def main(argv: list[str] | None = None) -> None:
    from torchrl_leq.data.generate_minari import ANTMAZE_STANDINS, MUJOCO_STANDINS

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--ids", default=",".join([*ANTMAZE_STANDINS, *MUJOCO_STANDINS]))
    args = parser.parse_args(argv)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for dataset_id in args.ids.split(","):
            row = run(dataset_id, Path(tmp) / "minari", Path(tmp) / "runs")
            print(json.dumps(row), flush=True)
            rows.append(row)
    print("| dataset id | generate (s) | replay max error | smoke run (s) | final score |")
    print("|---|---|---|---|---|")
    for r in rows:
        err = r["replay"]["max_abs"]
        print(f"| `{r['dataset_id']}` | {r['generate_s']:.1f} | {err:.1e} | {r['train_s']:.1f} "
              f"| {r['last_score']:.1f} |")


if __name__ == "__main__":
    main()
