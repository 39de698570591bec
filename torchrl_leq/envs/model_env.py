"""LEQ's imagined environment: the probabilistic ensemble + a true termination function.

Example:
    >>> import torch
    >>> from tensordict import TensorDict
    >>> from tensordict.nn import TensorDictModule
    >>> from torchrl_leq.modules import ProbabilisticEnsemble
    >>> from torchrl_leq.envs import LEQModelEnv
    >>> model = ProbabilisticEnsemble(4, 2, hidden_dims=(16,), weight_decays=(0.0, 0.0))
    >>> env = LEQModelEnv(model, "pointmaze-umaze")
    >>> actor = TensorDictModule(torch.nn.Linear(4, 2), ["observation"], ["action"])
    >>> start = env.reset(TensorDict({"observation": torch.randn(8, 4)}, batch_size=[8]))
    >>> traj = env.rollout(5, actor, auto_reset=False, tensordict=start,
    ...                    break_when_any_done=False)
    >>> traj.shape, traj["next", "alive"].shape
    (torch.Size([8, 5]), torch.Size([8, 5, 1]))
"""

from __future__ import annotations

import os
from collections.abc import Callable

import torch
from tensordict import TensorDict, TensorDictBase
from torchrl.data import Bounded, Categorical, Composite, Unbounded
from torchrl.envs.model_based import ModelBasedEnvBase

from torchrl_leq.envs.termination import TerminationFn, get_termination_fn
from torchrl_leq.modules.ensemble import ProbabilisticEnsemble


class FixedLengthModelEnv(ModelBasedEnvBase):
    """What LEQ's imagination envs share: fixed-length rollouts with an ``alive`` mask (no done
    flag ever stops a rollout, no partial resets), a seeded generator, and the layout of their
    start states and transitions. Subclasses implement ``_reset`` and ``_step`` with
    :meth:`_start_states` and :meth:`_transition`."""

    def _set_seed(self, seed: int | None) -> None:
        self.generator = torch.Generator(device=self.device)
        if seed is None:
            self.generator.seed()
        else:
            self.generator.manual_seed(int(seed))

    def _falses(self, batch_size: torch.Size) -> torch.Tensor:
        return torch.zeros(*batch_size, 1, dtype=torch.bool, device=self.device)

    def _start_states(self, obs: torch.Tensor, batch_size: torch.Size) -> TensorDict:
        """``obs`` as start states: all alive, none done."""
        done = self._falses(batch_size)
        return TensorDict(
            {
                "observation": obs,
                "alive": torch.ones(*batch_size, 1, dtype=obs.dtype, device=obs.device),
                "done": done,
                "terminated": done.clone(),
            },
            batch_size=batch_size,
            device=self.device,
        )

    @staticmethod
    def _alive(tensordict: TensorDictBase, obs: torch.Tensor) -> torch.Tensor:
        alive = tensordict.get("alive", None)
        if alive is None:
            alive = torch.ones(*obs.shape[:-1], 1, dtype=obs.dtype, device=obs.device)
        return alive

    def _transition(
        self,
        tensordict: TensorDictBase,
        next_obs: torch.Tensor,
        reward: torch.Tensor,
        terminated: torch.Tensor,
        alive: torch.Tensor,
    ) -> TensorDict:
        """The step's output; ``alive`` drops to 0 from a termination on."""
        return TensorDict(
            {
                "observation": next_obs,
                "reward": reward,
                "terminated": terminated,
                "done": terminated.clone(),
                "alive": alive * (~terminated).to(alive.dtype),
            },
            batch_size=tensordict.batch_size,
            device=self.device,
        )

    def any_done(self, tensordict: TensorDictBase) -> bool:
        """Never reports done: rollouts are fixed-length (the ``alive`` mask tracks ends)."""
        return False

    def maybe_reset(self, tensordict: TensorDictBase) -> TensorDictBase:
        """No partial resets; fills missing ``alive``/``done``/``terminated`` of start states."""
        if "alive" not in tensordict.keys():
            obs = tensordict.get("observation")
            bs = tensordict.batch_size
            tensordict.set("alive", torch.ones(*bs, 1, dtype=obs.dtype, device=obs.device))
            tensordict.set("done", self._falses(bs))
            tensordict.set("terminated", self._falses(bs))
        return tensordict


class LEQModelEnv(FixedLengthModelEnv):
    """Batch-unlocked TorchRL env that steps a :class:`ProbabilisticEnsemble`.

    Why ``ModelBasedEnvBase``: it is TorchRL's base for learned-model envs; it is batch-unlocked
    (the env adopts the batch size of each incoming tensordict, so start-state batches of any
    size work without rebuilding the env), registers the model as a submodule (so
    ``hold_out_net(env)`` freezes it for actor updates) and leaves reset/step to us. We override
    ``_step`` (the base one calls a TensorDictModule world model, ours is a plain module with a
    sampling API), ``_reset`` (start states come from the caller) and
    ``any_done``/``maybe_reset`` (LEQ rollouts are fixed-length: no partial resets, stepping
    continues after termination and the ``"alive"`` mask records it).

    Keys: root ``"observation"`` ``[B, obs_dim]``, ``"action"`` ``[B, act_dim]`` (clipped to
    ``[-1, 1]`` before the model), ``"alive"`` ``[B, 1]`` float (1 at reset); under ``"next"``:
    ``"observation"``, ``"reward"`` ``[B, 1]``, ``"terminated"``/``"done"`` ``[B, 1]`` bool
    and ``"alive" = alive · (1 − terminated)``. Everything is differentiable w.r.t. the action
    and the observation (reparameterised sampling, no detaching).

    Args:
        ensemble: the trained world model.
        termination: a task name for :func:`get_termination_fn` or a callable
            ``(obs, action, next_obs) -> bool [..., 1]``.
        sampling: ``"stratified"`` or ``"gather"``; defaults to the ensemble's default.
        deterministic: use the chosen elite's mean instead of a sample (tests, analysis).
        generator: RNG for elite choice and noise; ``None`` uses the global RNG.
            :meth:`set_seed` installs a seeded generator.
        device: defaults to the ensemble's device.
    """

    def __init__(
        self,
        ensemble: ProbabilisticEnsemble,
        termination: str | TerminationFn,
        *,
        sampling: str | None = None,
        deterministic: bool = False,
        generator: torch.Generator | None = None,
        device: torch.device | str | None = None,
    ) -> None:
        if device is None:
            device = ensemble.max_logvar.device
        super().__init__(ensemble, device=device, allow_done_after_reset=True)
        self.termination_fn: Callable = (
            get_termination_fn(termination) if isinstance(termination, str) else termination
        )
        self.sampling = sampling
        self.deterministic = deterministic
        self.generator = generator
        dtype = ensemble.max_logvar.dtype
        self.observation_spec = Composite(
            observation=Unbounded((ensemble.obs_dim,), dtype=dtype, device=self.device),
            alive=Bounded(0.0, 1.0, (1,), dtype=dtype, device=self.device),
            device=self.device,
        )
        self.action_spec = Bounded(-1.0, 1.0, (ensemble.action_dim,), dtype=dtype, device=device)
        self.reward_spec = Unbounded((1,), dtype=dtype, device=self.device)
        self.done_spec = Composite(
            done=Categorical(2, (1,), dtype=torch.bool, device=self.device),
            terminated=Categorical(2, (1,), dtype=torch.bool, device=self.device),
            device=self.device,
        )

    @classmethod
    def from_checkpoint(
        cls, path: str | os.PathLike, termination: str | TerminationFn, **kwargs
    ) -> LEQModelEnv:
        """Build the env from a file written by ``save_world_model``."""
        from torchrl_leq.training.world_model import load_world_model

        return cls(load_world_model(path), termination, **kwargs)

    @property
    def ensemble(self) -> ProbabilisticEnsemble:
        return self.world_model

    def _reset(self, tensordict: TensorDictBase | None = None, **kwargs) -> TensorDictBase:
        if tensordict is None or "observation" not in tensordict.keys():
            raise ValueError(
                "LEQModelEnv.reset needs a tensordict with start states under 'observation'"
            )
        obs = tensordict.get("observation")
        if obs.shape[-1] != self.ensemble.obs_dim:
            raise ValueError(
                f"observation has last dim {obs.shape[-1]}, expected {self.ensemble.obs_dim}"
            )
        return self._start_states(obs, tensordict.batch_size)

    def _step(self, tensordict: TensorDictBase) -> TensorDictBase:
        obs = tensordict.get("observation")
        action = tensordict.get("action").clamp(-1.0, 1.0)
        alive = self._alive(tensordict, obs)
        out = self.ensemble.sample(
            obs,
            action,
            sampling=self.sampling,
            deterministic=self.deterministic,
            generator=self.generator,
        )
        terminated = self.termination_fn(obs, action, out.next_obs)
        return self._transition(tensordict, out.next_obs, out.reward, terminated, alive)



class SeedSplitModelEnv(LEQModelEnv):
    """K seeds' model envs behind one env: a seed-major ``[K*B]`` batch, seed k's rows stepped
    by seed k's env (its own world model, or a shared one) with seed k's generator.

    Each seed's step is the single-seed env's step on its own rows with the same random draws
    (``generators[k]`` is seed k's RNG stream,
    :class:`~torchrl_leq.training.multi_seed.SeedStreams`), so a stacked LEQ update imagines
    exactly the rollouts of K single-seed runs. Every seed's world model is a submodule
    (``hold_out_net`` freezes them all).

    Example:
        >>> import torch
        >>> from torchrl_leq.modules import ProbabilisticEnsemble
        >>> model = ProbabilisticEnsemble(4, 2, hidden_dims=(16,))
        >>> envs = [LEQModelEnv(model, "pointmaze-umaze") for _ in range(2)]
        >>> gens = [torch.Generator().manual_seed(s) for s in (0, 1)]
        >>> env = SeedSplitModelEnv(envs, gens)
        >>> td = env.reset(TensorDict({"observation": torch.randn(6, 4)}, [6]))
        >>> td["action"] = torch.zeros(6, 2)
        >>> env.step(td)["next", "observation"].shape
        torch.Size([6, 4])
    """

    def __init__(self, envs: list[LEQModelEnv], generators: list[torch.Generator]) -> None:
        if len(envs) != len(generators) or not envs:
            raise ValueError("SeedSplitModelEnv needs one generator per seed env (K >= 1).")
        first = envs[0]
        super().__init__(
            first.ensemble,
            first.termination_fn,
            sampling=first.sampling,
            deterministic=first.deterministic,
            device=first.device,
        )
        self.seed_envs = torch.nn.ModuleList(envs)
        self.generators = list(generators)

    @property
    def num_seeds(self) -> int:
        return len(self.generators)

    def _step(self, tensordict: TensorDictBase) -> TensorDictBase:
        obs = tensordict.get("observation")
        action = tensordict.get("action").clamp(-1.0, 1.0)
        alive = self._alive(tensordict, obs)
        next_obs, reward = [], []
        for env, gen, o, a in zip(
            self.seed_envs,
            self.generators,
            obs.chunk(self.num_seeds, 0),
            action.chunk(self.num_seeds, 0),
        ):
            out = env.ensemble.sample(
                o, a, sampling=env.sampling, deterministic=env.deterministic, generator=gen
            )
            next_obs.append(out.next_obs)
            reward.append(out.reward)
        next_obs, reward = torch.cat(next_obs, 0), torch.cat(reward, 0)
        terminated = self.termination_fn(obs, action, next_obs)
        return self._transition(tensordict, next_obs, reward, terminated, alive)
