"""Import scripts from ``examples/`` and ``benchmarks/`` (not packages) as modules, and compose the
examples' hydra configs, for their tests (as TorchRL's ``test_sota.py`` drives its scripts)."""

from pathlib import Path
from types import ModuleType

from omegaconf import DictConfig

from torchrl_leq.training.config import compose_config, load_script

ROOT = Path(__file__).resolve().parents[1]
BENCHMARKS = ROOT / "benchmarks"
EXAMPLES = ROOT / "examples"
CONFIGS = EXAMPLES / "config"


def load_benchmark(name: str) -> ModuleType:
    """``benchmarks/<name>.py`` as a module named ``<name>_benchmark``."""
    return load_script(BENCHMARKS / f"{name}.py", f"{name}_benchmark")


def load_example(name: str) -> ModuleType:
    """``examples/<name>.py`` as a module (``examples/`` goes on ``sys.path``, as when the script
    runs: the LEQ scripts share ``leq_antmaze.train``)."""
    return load_script(EXAMPLES / f"{name}.py", f"{name}_example")


def example_config(name: str, *overrides: str) -> DictConfig:
    """The composed config ``examples/config/<name>.yaml`` with command-line ``overrides``."""
    return compose_config(CONFIGS, name, overrides)
