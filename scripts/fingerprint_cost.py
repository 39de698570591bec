"""Cost of content fingerprints on a 1M-transition D4RL-format HDF5 file (29 obs dims,
8 actions, float32): ``dataset_fingerprint`` full vs quick (warm page cache, and cold after
``posix_fadvise(DONTNEED)``), ``transitions_fingerprint`` of the loaded TensorDict, and the
load itself for scale.

    python scripts/fingerprint_cost.py [--n 1000000]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import h5py
import numpy as np


def write_file(path: Path, n: int) -> None:
    rng = np.random.default_rng(0)
    with h5py.File(path, "w") as f:
        f["observations"] = rng.standard_normal((n, 29), dtype=np.float32)
        f["next_observations"] = rng.standard_normal((n, 29), dtype=np.float32)
        f["actions"] = rng.uniform(-1, 1, (n, 8)).astype(np.float32)
        f["rewards"] = rng.standard_normal(n, dtype=np.float32)
        f["terminals"] = np.zeros(n, bool)
        f["timeouts"] = (np.arange(n) % 1000) == 999


def evict(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    os.fsync(fd)
    os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    os.close(fd)


def timed(fn, repeats=3):
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def main() -> None:
    from torchrl_leq.data import read_d4rl_hdf5
    from torchrl_leq.data.fingerprint import dataset_fingerprint, transitions_fingerprint

    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=1_000_000)
    n = parser.parse_args().n
    path = Path(tempfile.mkdtemp()) / "synthetic-1M.hdf5"
    write_file(path, n)
    size = path.stat().st_size
    print(f"file: {n} transitions, {size / 1e6:.0f} MB")
    dataset_fingerprint(path)  # warm the page cache
    rows = {
        "dataset_fingerprint full (warm)": timed(lambda: dataset_fingerprint(path)),
        "dataset_fingerprint quick (warm)": timed(lambda: dataset_fingerprint(path, "quick")),
    }

    def cold(mode):
        evict(path)
        return dataset_fingerprint(path, mode)

    rows["dataset_fingerprint full (cold)"] = timed(lambda: cold("full"))
    rows["dataset_fingerprint quick (cold)"] = timed(lambda: cold("quick"))
    td = read_d4rl_hdf5(path)
    rows["read_d4rl_hdf5 (warm, for scale)"] = timed(lambda: read_d4rl_hdf5(path), repeats=1)
    rows["transitions_fingerprint of the loaded TensorDict"] = timed(
        lambda: transitions_fingerprint(td)
    )
    print("| what | seconds |\n|---|---|")
    for name, seconds in rows.items():
        print(f"| {name} | {seconds:.3f} |")
    path.unlink()


if __name__ == "__main__":
    main()
