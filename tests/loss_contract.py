"""One loss-contract harness for every LossModule here (like TorchRL's ``LossModuleTestBase``).

A subclass named ``Test...`` supplies the loss and its data through the hooks below; the
``test_*`` methods then check what every loss here promises: output keys, ``set_keys``
remapping, gradients reaching only their own parameters (targets/EMA none), reductions,
a ``state_dict`` round trip, ``torch.compile`` parity and, for losses with a discount, that
``make_value_estimator(gamma=g)`` equals a fresh loss built with ``gamma=g``.

Losses that sample (COMBO) are compared under the same ``torch.manual_seed``.
"""

from __future__ import annotations

import torch
from tensordict import TensorDict, TensorDictBase
from torchrl.objectives import LossModule

SEED = 123


def random_transitions(
    b: int,
    gen: torch.Generator,
    obs_key: str = "observation",
    action_key: str = "action",
    reward_key: str = "reward",
    term_key: str = "terminated",
    obs_dim: int = 3,
    action_dim: int = 2,
) -> TensorDict:
    """``b`` float64 transitions in TorchRL's layout: random observations and rewards, actions in
    ``[-1, 1]``, every third one terminal."""

    def randn(*shape):
        return torch.randn(*shape, generator=gen, dtype=torch.float64)

    return TensorDict(
        {
            obs_key: randn(b, obs_dim),
            action_key: torch.rand(b, action_dim, generator=gen, dtype=torch.float64) * 2 - 1,
            "next": {
                obs_key: randn(b, obs_dim),
                reward_key: randn(b, 1),
                term_key: torch.arange(b).view(-1, 1) % 3 == 0,
            },
        },
        [b],
    )


def _as_tuple(key) -> tuple:
    return key if isinstance(key, tuple) else (key,)


class LossContract:
    """Base of the contract tests; see the module docstring."""

    #: ``loss_*`` key -> the parameter groups (names in :meth:`param_groups`) it must reach.
    grads_of: dict[str, set[str]] = {}
    #: whether the loss has a discount γ held by its value estimator.
    has_gamma: bool = True
    #: keyword arguments of :meth:`make_loss` for the compile-parity test (``None``: skip).
    compile_kwargs: dict | None = {}

    # ------------------------------------------------------------------ hooks
    def make_loss(self, seed: int = 0, **kwargs) -> LossModule:
        raise NotImplementedError

    def make_batch(self) -> TensorDictBase:
        raise NotImplementedError

    def param_groups(self, loss: LossModule) -> dict[str, list[torch.Tensor]]:
        """Trainable parameters by group (``"actor"``, ``"critic"``, ...)."""
        raise NotImplementedError

    def frozen_params(self, loss: LossModule) -> list[torch.Tensor]:
        """Parameters that must get no gradient at all (target / EMA copies)."""
        return [p for p in loss.target_qvalue_network_params.values(True, True)]

    def remapped(self) -> tuple[LossModule, dict, TensorDictBase]:
        """A loss (seed 0) after ``set_keys(**mapping)``, the mapping, the renamed batch."""
        raise NotImplementedError

    # ------------------------------------------------------------------ helpers
    def run(self, loss: LossModule, batch: TensorDictBase) -> TensorDictBase:
        torch.manual_seed(SEED)
        return loss(batch)

    def assert_same_outputs(self, a: TensorDictBase, b: TensorDictBase) -> None:
        assert set(a.keys()) == set(b.keys())
        for key in a.keys():
            torch.testing.assert_close(a[key], b[key], msg=key)

    def trainable(self, loss: LossModule) -> list[torch.Tensor]:
        return [p for group in self.param_groups(loss).values() for p in group]

    # ------------------------------------------------------------------ the contract
    def test_output_keys(self):
        loss = self.make_loss()
        out = self.run(loss, self.make_batch())
        assert set(out.keys()) == set(loss.out_keys)
        assert set(self.grads_of) == {k for k in out.keys() if k.startswith("loss")}
        for key, value in out.items():
            assert value.shape == (), key
            if not key.startswith("loss"):
                assert not value.requires_grad, f"diagnostic {key} carries a graph"

    def test_set_keys_remaps(self):
        want = self.run(self.make_loss(), self.make_batch())
        loss, mapping, renamed = self.remapped()
        got = self.run(loss, renamed)
        for key in self.grads_of:
            torch.testing.assert_close(got[key], want[key], msg=key)
        for name, value in mapping.items():
            assert getattr(loss.tensor_keys, name) == value
        present = {_as_tuple(k) for k in renamed.keys(True, True)}
        assert all(_as_tuple(k) in present for k in getattr(loss, "in_keys", []))
        try:
            self.run(loss, self.make_batch())
        except KeyError:
            pass
        else:
            raise AssertionError("the original keys should no longer be found")

    def test_grads_reach_only_their_parameters(self):
        loss = self.make_loss()
        groups = self.param_groups(loss)
        batch = self.make_batch()
        for loss_key, reached in self.grads_of.items():
            loss.zero_grad(set_to_none=True)
            for p in self.frozen_params(loss):
                p.grad = None
            self.run(loss, batch)[loss_key].backward()
            for name, params in groups.items():
                grads = [p.grad for p in params]
                if name in reached:
                    total = sum(g.abs().sum() for g in grads if g is not None)
                    assert total > 0, f"{loss_key} does not reach {name}"
                else:
                    assert all(g is None or g.abs().sum() == 0 for g in grads), (loss_key, name)
            assert all(p.grad is None for p in self.frozen_params(loss)), loss_key

    def test_reductions_are_consistent(self):
        batch = self.make_batch()
        outs = {red: self.run(self.make_loss(reduction=red), batch) for red in ("none", "mean")}
        outs["sum"] = self.run(self.make_loss(reduction="sum"), batch)
        for key in self.grads_of:
            per_sample = outs["none"][key]
            assert per_sample.ndim == 1, key
            torch.testing.assert_close(per_sample.mean(), outs["mean"][key], msg=key)
            torch.testing.assert_close(per_sample.sum(), outs["sum"][key], msg=key)

    def test_state_dict_round_trip(self):
        batch = self.make_batch()
        loss, other = self.make_loss(seed=0), self.make_loss(seed=3)
        for p in self.frozen_params(loss):  # the target must travel too
            p.data.add_(0.01)
        key = next(iter(self.grads_of))
        assert not torch.allclose(self.run(loss, batch)[key], self.run(other, batch)[key])
        other.load_state_dict(loss.state_dict())
        self.assert_same_outputs(self.run(other, batch), self.run(loss, batch))

    def test_compile_parity(self):
        if self.compile_kwargs is None:
            return
        loss = self.make_loss(**self.compile_kwargs)
        batch = self.make_batch()
        eager = self.run(loss, batch)
        # LEQ's per-step sweep backpropagates through compiled graphs with retain_graph=True,
        # which donated buffers forbid (they are on or off depending on what compiled before).
        with torch._functorch.config.patch(donated_buffer=False):
            compiled = self.run(torch.compile(loss, backend="aot_eager"), batch)
        self.assert_same_outputs(compiled, eager)

    def test_make_value_estimator_gamma_equals_a_fresh_loss(self):
        if not self.has_gamma:
            return
        batch = self.make_batch()
        fresh = self.make_loss(gamma=0.8)
        changed = self.make_loss().make_value_estimator(gamma=0.8)
        assert changed.gamma == fresh.gamma
        a, b = self.run(fresh, batch), self.run(changed, batch)
        self.assert_same_outputs(a, b)
        for key in self.grads_of:
            ga = torch.autograd.grad(a[key], self.trainable(fresh), allow_unused=True)
            gb = torch.autograd.grad(b[key], self.trainable(changed), allow_unused=True)
            for x, y in zip(ga, gb):
                assert (x is None) == (y is None)
                if x is not None:
                    torch.testing.assert_close(x, y, msg=key)
        assert not torch.allclose(
            a["loss_qvalue"], self.run(self.make_loss(), batch)["loss_qvalue"]
        )
