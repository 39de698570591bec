"""benchmarks/quality.py: --summarize statistics and the skip-completed-runs logic (no training)."""

import argparse
import json
from pathlib import Path

import pytest
from script_loader import load_benchmark

HEADER = "step,kind,episodes,normalized_score,success_rate,mean_return\n"


@pytest.fixture(scope="module")
def quality():
    return load_benchmark("quality")


def _write(path: Path, rows: list[str]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(HEADER + "".join(r + "\n" for r in rows))
    return path


def test_summarize_mean_std(quality, tmp_path):
    out = tmp_path / "results"
    task = out / "pointmaze-umaze" / "leq"
    # seed0: final 80, best 90 (an eval); seed1: final 100, best 100
    _write(
        task / "seed0" / "metrics.csv", ["1000,eval,10,90.0,0.9,1.0", "2000,final,100,80.0,0.8,1"]
    )
    _write(
        task / "seed1" / "metrics.csv", ["1000,eval,10,50.0,0.5,1.0", "2000,final,100,100.0,1,1"]
    )
    # an unfinished run is listed as incomplete and left out of the statistics
    _write(out / "pointmaze-umaze" / "bc" / "seed0" / "metrics.csv", ["1000,eval,10,30.0,0.3,1"])
    md = tmp_path / "RESULTS.md"
    text = quality.summarize(out, md)
    assert md.read_text() == text
    leq_row = next(line for line in text.splitlines() if line.startswith("| leq |"))
    # mean 90, sample std sqrt(200) = 14.14; best: mean(90, 100) = 95, std 7.07
    # bootstrap means of (80, 100): 80, 90, 100 with probabilities 1/4, 1/2, 1/4
    # flat from: seed0's eval at 1000 (90) is within 10 of its final 80; seed1's (50) is not
    assert leq_row == "| leq | 90.0 ± 14.1 | [80.0, 100.0] | 95.0 ± 7.1 | not flat: seed1 | 2 |  |"
    bc_row = next(line for line in text.splitlines() if line.startswith("| bc |"))
    assert bc_row == "| bc | – | – | – | – | 0 | seed0 |"
    assert (out / "pointmaze-umaze_curves.png").exists()
    assert "results/pointmaze-umaze_curves.png" in text
    assert "2000 gradient steps" in text and "(0.2%)" in text  # budget read from the runs
    assert not (out / "pointmaze-umaze_q_env_mean.png").exists()  # no training logs yet
    # a hand-written discussion survives regeneration
    md.write_text(text + "\nLEQ wins here.\n")
    assert "LEQ wins here." in quality.summarize(out, md)


def test_bootstrap_interval_matches_exact_enumeration(quality):
    import itertools

    import numpy as np

    values = [0.0, 30.0, 100.0, 100.0]
    exact = sorted(np.mean(t) for t in itertools.product(values, repeat=len(values)))  # 256
    lo, hi = quality.bootstrap_ci(values, resamples=200_000)
    assert abs(lo - np.quantile(exact, 0.025)) <= 2.5 and abs(hi - np.quantile(exact, 0.975)) <= 2.5
    assert quality.bootstrap_ci([7.0] * 5) == (7.0, 7.0)
    assert quality.bootstrap_ci(values) == quality.bootstrap_ci(values)  # fixed RNG


def test_difference_interval_matches_exact_enumeration(quality):
    import itertools

    import numpy as np

    a, b = [0.0, 100.0, 100.0], [20.0, 40.0, 90.0]
    means = lambda v: [np.mean(t) for t in itertools.product(v, repeat=len(v))]  # noqa: E731
    exact = sorted(x - y for x in means(a) for y in means(b))  # 27 x 27 equally likely
    lo, hi = quality.bootstrap_diff_ci(a, b, resamples=200_000)
    assert abs(lo - np.quantile(exact, 0.025)) <= 2.5 and abs(hi - np.quantile(exact, 0.975)) <= 2.5
    assert quality.bootstrap_diff_ci([5.0, 5.0], [2.0] * 4) == (3.0, 3.0)


def test_summary_compares_leq_with_each_method_and_its_ablations(quality, tmp_path):
    out = tmp_path / "results"
    finals = {("pointmaze-medium", "leq"): [100.0, 100.0, 90.0],
              ("pointmaze-medium", "bc"): [10.0, 30.0, 20.0],
              ("pointmaze-medium", "iql"): [100.0, 80.0, 100.0],
              ("pointmaze-medium", "leq_released"): [100.0, 100.0, 90.0],
              ("pointmaze-medium", "no_ema"): [0.0, 10.0, 20.0],
              ("pointmaze-medium", "combo"): [50.0]}  # one seed: no interval, no row
    for (task, name), scores in finals.items():
        for seed, score in enumerate(scores):
            _write(out / task / name / f"seed{seed}" / "metrics.csv",
                   [f"1000,eval,10,{score},0,0", f"2000,final,100,{score},0,0"])
    lines = quality.summarize(out, tmp_path / "R.md").splitlines()
    rows = {line.split(" | ")[0]: line for line in lines if " − " in line.split(" | ")[0]}
    assert sorted(rows) == ["| leq − bc", "| leq − iql", "| leq − leq_released", "| no_ema − leq"]
    lo, hi = quality.bootstrap_diff_ci([100.0, 100.0, 90.0], [10.0, 30.0, 20.0])
    assert rows["| leq − bc"] == f"| leq − bc | +76.7 | [{lo:+.1f}, {hi:+.1f}] | leq > bc |"
    assert rows["| leq − iql"].endswith("| not separated |")
    assert rows["| leq − leq_released"].endswith("| +0.0 | [-6.7, +6.7] | not separated |")
    ties = {n: {s: {"complete": True, "last": 100.0} for s in range(3)} for n in ("leq", "iql")}
    assert quality.difference_table([("leq", "iql")], ties)[-1] == (
        "| leq − iql | +0.0 | [+0.0, +0.0] | equal on every seed |")
    assert rows["| no_ema − leq"].startswith("| no_ema − leq | -86.7 |")
    assert rows["| no_ema − leq"].endswith("| no_ema < leq |")


def test_skip_completed(quality, tmp_path):
    args = argparse.Namespace(out=str(tmp_path), smoke=True, steps=10, data_steps=100, num_cells=None)
    done = _write(
        tmp_path / "pointmaze-umaze" / "bc" / "seed0" / "metrics.csv",
        ["1000,eval,10,0.0,0,0", "2000,final,100,0.0,0,0"],
    )
    assert quality.has_final_row(done)
    assert quality.run_one("bc", "pointmaze-umaze", 0, "bc", [], args) == "skipped"
    partial = _write(tmp_path / "p" / "metrics.csv", ["1000,eval,10,0.0,0,0"])
    assert not quality.has_final_row(partial)
    assert not quality.has_final_row(tmp_path / "missing.csv")
    names = [r[3] for r in quality.plan(argparse.Namespace(ablations=True, seeds="0"))]
    assert set(names) == {n for n, o in quality.ABLATIONS.items() if o is not None}
    assert "no_ema" in names


def test_logged_scalar_is_averaged_over_seeds_and_plotted(quality, tmp_path):
    out = tmp_path / "results"
    for seed, values in ((0, (-1.0, -3.0)), (1, (-3.0, -5.0))):
        log = out / "pointmaze-medium" / "leq" / f"seed{seed}" / "logs" / "leq_pointmaze"
        path = log / "scalars" / "train" / "q_env_mean.csv"
        path.parent.mkdir(parents=True)
        path.write_text(f"200,{values[0]}\n400,{values[1]}\n")
    series = quality.read_scalar(out, "pointmaze-medium", "q_env_mean")
    assert series == {"leq": [{200: -1.0, 400: -3.0}, {200: -3.0, 400: -5.0}]}
    _write(out / "pointmaze-medium" / "leq" / "seed0" / "metrics.csv", ["400,final,100,0,0,0"])
    text = quality.summarize(out, tmp_path / "RESULTS.md")
    assert (out / "pointmaze-medium_q_env_mean.png").exists()
    assert "results/pointmaze-medium_q_env_mean.png" in text


def test_a_diverged_run_is_recorded_and_the_benchmark_goes_on(quality, tmp_path, monkeypatch):
    from types import SimpleNamespace

    from torchrl_leq.training import config
    from torchrl_leq.training.trainer import NonFiniteLossError

    def diverge(cfg):
        _write(tmp_path / "pointmaze-umaze" / "bc" / "seed0" / "metrics.csv",
               ["1000,eval,10,20.0,0.2,0"])
        raise NonFiniteLossError("non-finite loss_actor at step 1800")

    monkeypatch.setattr(config, "load_script", lambda path: SimpleNamespace(train=diverge))
    args = argparse.Namespace(out=str(tmp_path), smoke=True, steps=10, data_steps=100, num_cells=None)
    assert quality.run_one("bc", "pointmaze-umaze", 0, "bc", [], args) == "diverged"
    run_dir = tmp_path / "pointmaze-umaze" / "bc" / "seed0"
    assert "step 1800" in (run_dir / quality.DIVERGED).read_text()
    assert quality.run_one("bc", "pointmaze-umaze", 0, "bc", [], args) == "skipped"
    runs = quality.collect(tmp_path)["pointmaze-umaze"]
    row = quality.table(["bc"], runs)[-1]
    assert row.endswith("| 0 | seed0 (diverged) |"), row


def test_stack_seeds_runs_only_the_pending_seeds_in_one_call(quality, tmp_path, monkeypatch):
    from types import SimpleNamespace

    from torchrl_leq.training import config
    from torchrl_leq.training.trainer import NonFiniteLossError

    calls = []

    def stacked(cfg):
        calls.append(list(cfg.seeds))
        return {"per_seed": [{"last_score": 10.0 * s, "best_score": 50.0} for s in cfg.seeds]}

    stacked.stacks_seeds = True
    monkeypatch.setattr(config, "load_script", lambda path: SimpleNamespace(train=stacked))
    _write(tmp_path / "pointmaze-umaze" / "leq" / "seed1" / "metrics.csv",
           ["40,final,100,0.0,0,0"])  # seed 1 complete: not run again
    args = argparse.Namespace(out=str(tmp_path), smoke=True, steps=40, data_steps=100, num_cells=None)
    status = quality.run_stacked("leq", "pointmaze-umaze", [0, 1, 2], "leq", [], args)
    assert status == ["done", "skipped", "done"] and calls == [[0, 2]]
    with (tmp_path / "timings.csv").open() as f:
        rows = [r.split(",")[:3] for r in f.read().splitlines()[1:]]
    assert rows == [["pointmaze-umaze", "leq", "0"], ["pointmaze-umaze", "leq", "2"]]

    # a stacked update that diverges names no seed: the seeds then run one by one
    singles = []

    def single(cfg):
        singles.append(cfg.seed)
        return {"last_score": 0.0, "best_score": 0.0}

    def diverging(cfg):
        raise NonFiniteLossError("non-finite loss_qvalue at step 30")

    diverging.stacks_seeds = True
    scripts = iter([diverging, single, single])
    monkeypatch.setattr(config, "load_script", lambda path: SimpleNamespace(train=next(scripts)))
    out = tmp_path / "again"
    args = argparse.Namespace(out=str(out), smoke=True, steps=40, data_steps=100, num_cells=None)
    assert quality.run_stacked("leq", "pointmaze-umaze", [3, 4], "leq", [], args) == [
        "done", "done"]
    assert singles == [3, 4]


def test_num_cells_sizes_every_method_and_the_summary_names_the_sizes(quality, tmp_path,
                                                                        monkeypatch):
    import json
    from types import SimpleNamespace

    from torchrl_leq.training import config

    sizes = {}

    def record(cfg):
        sizes[cfg.logger.exp_name] = list(cfg.network.num_cells)
        run_dir = Path(cfg.run_dir)
        (run_dir / "run.json").write_text(json.dumps({"config": {"network": {"num_cells": list(cfg.network.num_cells)}}}))
        _write(run_dir / "metrics.csv", ["40,final,100,10.0,0,0"])
        return {"last_score": 10.0, "best_score": 10.0}

    monkeypatch.setattr(config, "load_script", lambda path: SimpleNamespace(train=record))
    args = argparse.Namespace(out=str(tmp_path), smoke=True, steps=40, data_steps=100,
                              num_cells="96,96")
    for algo in ("leq", "iql", "bc", "combo"):
        assert quality.run_one(algo, "pointmaze-umaze", 0, algo, [], args) == "done"
    assert sorted(map(tuple, sizes.values())) == [(96, 96)] * 4
    # without it each example keeps its own size (full configs: the smoke presets shrink
    # every net), and the summary shows the mix
    args.num_cells, args.out, args.smoke = None, str(tmp_path / "own"), False
    for algo in ("leq", "iql"):
        quality.run_one(algo, "pointmaze-umaze", 0, algo, [], args)
    text = quality.summarize(tmp_path / "own", tmp_path / "R.md")
    assert "Networks (hidden layers, from each run's run.json): leq 2×128, iql 2×256." in text
    with pytest.raises(SystemExit, match="C-LAP sizes its networks"):
        quality.main(["--algos", "clap", "--num-cells", "64,64", "--out", str(tmp_path / "c")])
    assert not (tmp_path / "c").exists()  # refused before anything was written
    with pytest.raises(SystemExit, match="give layer sizes as integers"):
        quality.main(["--algos", "iql", "--num-cells", "wide", "--out", str(tmp_path / "w")])
    assert not (tmp_path / "w").exists()


def test_summary_tables_the_critic_calibration_over_seeds(quality, tmp_path):
    out = tmp_path / "results"
    _write(out / "pointmaze-large" / "leq" / "seed0" / "metrics.csv", ["20,final,100,50.0,0.5,1"])
    base = {"step": 20, "gamma": 0.9, "real_return_mean": -8.0, "real_success_frac": 0.5,
            "q_minus_real_failure": 3.0}
    rows = [
        {**base, "q_mean": -10.0, "q_minus_real": 5.0, "q_minus_real_success": float("nan"),
         "q_real_corr": 0.25},
        {**base, "q_mean": -20.0, "q_minus_real": 15.0, "q_minus_real_success": float("nan"),
         "q_real_corr": 0.75},
    ]
    (out / "calibration").mkdir()
    (out / "calibration" / "pointmaze-large_leq.json").write_text(json.dumps(rows))
    text = quality.summarize(out, tmp_path / "RESULTS.md")
    row = next(line for line in text.splitlines() if line.startswith("| leq | 20 |"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    # Q: mean -15, std sqrt(50) = 7.07; share of 1/(1-γ) = 10: 50 % and 150 %, std 70.7
    assert cells == ["leq", "20", "2", "0.9", "-15.0 ± 7.1", "-8.0 ± 0.0", "50.0 ± 0.0 %",
                     "10.0 ± 7.1 (100.0 ± 70.7 %)", "— / 3.0 ± 0.0", "0.50 ± 0.35", "—"]


def test_flat_from_is_the_start_of_the_final_plateau(quality):
    curve = {1000: 100.0, 2000: 0.0, 3000: 95.0, 4000: 91.0, 5000: 100.0}
    assert quality.settled_from(curve) == 3000  # the early 100 does not count: 0 came after
    assert quality.settled_from({1000: 0.0, 2000: 100.0}) == 2000  # moving until the end
    seeds = {0: {"complete": True, "curve": curve},
             1: {"complete": True, "curve": {1000: 100.0, 2000: 100.0, 3000: 100.0}},
             2: {"complete": False, "curve": {1000: 0.0}}}
    assert quality.settled_cell(seeds) == "3000"  # the latest complete seed
    seeds[1]["curve"][4000] = 50.0
    assert quality.settled_cell(seeds) == "not flat: seed1"


def test_timing_table_leaves_resumed_runs_out_of_the_mean(quality, tmp_path):
    (tmp_path / "timings.csv").write_text(
        "task,name,seed,steps,wall_s,resumed\n"
        "pointmaze-large,iql,0,40,100.0,0\n"
        "pointmaze-large,iql,1,40,300.0,0\n"
        "pointmaze-large,iql,2,40,5.0,1\n"
        "pointmaze-large,leq,0,40,7.0,1\n"
    )
    rows = [line for line in quality.timing_table(tmp_path / "timings.csv") if "pointmaze" in line]
    assert rows == [
        "| pointmaze-large | iql | 2 | 200 | 100–300 | 1 |",
        "| pointmaze-large | leq | 0 | – | – | 1 |",
    ]
