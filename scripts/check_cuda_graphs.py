"""GPU-only check: an update captured by ``compile.cudagraphs=true`` equals the eager update.

Run on a machine with CUDA (the test suite is CPU-only and checks that CPU runs refuse
``compile.cudagraphs``)::

    python scripts/check_cuda_graphs.py     # prints "cudagraph update == eager: ok", exit 0
"""

from __future__ import annotations

import sys

import torch

from torchrl_leq.training.compile import wrap_update


def make_update(seed: int = 0):
    """A tiny network, its Adam and one update step (wrap_update makes Adam capturable)."""
    torch.manual_seed(seed)
    net = torch.nn.Sequential(torch.nn.Linear(3, 8), torch.nn.ReLU(), torch.nn.Linear(8, 1)).cuda()
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)

    def update(x: torch.Tensor) -> torch.Tensor:
        loss = net(x).pow(2).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return loss.detach()

    return net, opt, update


def main() -> int:
    if not torch.cuda.is_available():
        print("error: no CUDA device — run this on a GPU machine", file=sys.stderr)
        return 2
    x = torch.randn(16, 3, device="cuda")
    net_e, _, eager = make_update()
    net_g, opt_g, update = make_update()
    graphed = wrap_update(update, {"cudagraphs": True}, optimizers=[opt_g], device="cuda")
    for _ in range(8):
        torch.testing.assert_close(graphed(x), eager(x))
    for a, b in zip(net_e.parameters(), net_g.parameters()):
        torch.testing.assert_close(a, b)
    print("cudagraph update == eager: ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
