"""benchmarks/pixels_probe.py's linear probe: R² of 1 for a linear target, about 0 for noise."""

import torch
from script_loader import load_benchmark


def test_linear_probe_r2():
    probe = load_benchmark("pixels_probe")
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2000, 6, generator=g)
    linear = x @ torch.randn(6, 2, generator=g) + 3.0
    noise = torch.randn(2000, 1, generator=g)
    assert min(probe.linear_probe_r2(x, linear)) > 1 - 1e-9
    assert abs(probe.linear_probe_r2(x, noise)[0]) < 0.02
    half = torch.cat([x[:, :1], torch.randn(2000, 1, generator=g)], 1).sum(1, keepdim=True)
    assert 0.4 < probe.linear_probe_r2(x, half)[0] < 0.6  # half the variance is explainable
