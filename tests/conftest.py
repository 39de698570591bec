"""Test-session settings: one intra-op thread per test process (pytest-xdist runs two
processes on two cores; oversubscribed threads make small ops ~100x slower), and a
per-session data directory for generated datasets and cached world models."""

import os

import pytest
import torch

torch.set_num_threads(1)


@pytest.fixture(scope="session", autouse=True)
def _data_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("torchrl_leq_data")
    previous = os.environ.get("TORCHRL_LEQ_DATA")
    os.environ["TORCHRL_LEQ_DATA"] = str(path)
    yield path
    if previous is None:
        os.environ.pop("TORCHRL_LEQ_DATA", None)
    else:
        os.environ["TORCHRL_LEQ_DATA"] = previous
