"""Latent imagination env: an :class:`~torchrl_leq.modules.rssm.RSSM` as a TorchRL model env.

The same contract as :class:`~torchrl_leq.envs.LEQModelEnv` (batch-unlocked
``reset(td with "observation")``, ``step`` writing ``("next", observation/reward/terminated/
alive)``, differentiable, fixed-length rollouts), with the latent features
``cat(h, z)`` as the ``"observation"``: they are the whole model state, so :class:`LEQLoss`
runs on this env unchanged, its actor and critic on latent features.

:func:`encode_sequences` turns pixel sequences into posterior features (D_env and D_model start
states) and :func:`latent_transitions` into TorchRL transitions over features;
:class:`LatentPolicy` filters real frames with the posterior and acts with a feature-space actor
(evaluation in the rendered env).

Example:
    >>> import torch
    >>> from tensordict import TensorDict
    >>> from tensordict.nn import TensorDictModule
    >>> from torchrl_leq.modules.rssm import RSSM
    >>> model = RSSM(2, channels=2, deter_dim=8, hidden_dim=8, groups=2, classes=3)
    >>> env = LatentModelEnv(model)
    >>> actor = TensorDictModule(torch.nn.Linear(model.feature_dim, 2), ["observation"],
    ...                          ["action"])
    >>> start = env.reset(TensorDict({"observation": torch.zeros(4, model.feature_dim)}, [4]))
    >>> traj = env.rollout(3, actor, auto_reset=False, tensordict=start,
    ...                    break_when_any_done=False)
    >>> traj.shape, traj["next", "observation"].shape
    (torch.Size([4, 3]), torch.Size([4, 3, 14]))
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from tensordict import TensorDict, TensorDictBase
from tensordict.nn import TensorDictModuleBase
from torchrl.data import Bounded, Categorical, Composite, Unbounded

from torchrl_leq.data.vd4rl import transition_indices
from torchrl_leq.envs.model_env import FixedLengthModelEnv
from torchrl_leq.modules.rssm import RSSM, pixels_to_float

__all__ = ["LatentModelEnv", "encode_sequences", "latent_transitions", "LatentPolicy"]

LatentTermination = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


class LatentModelEnv(FixedLengthModelEnv):
    """Batch-unlocked, differentiable imagination env over RSSM latent features.

    ``step``: ``h' = GRU(h, z, a)``, ``z'`` from a random prior member (straight-through
    one-hot sample; ``mode="probs"`` uses the expected one-hot, a smooth deterministic map
    for gradient checks), reward ``symexp(reward_head(h', z'))``. Termination:
    ``"continue_head"`` (terminated where the continuation probability is below
    ``continue_threshold``), ``None`` (never: DMC) or a callable
    ``(features, action, next_features) -> bool [B, 1]`` (a true termination).
    ``alive`` (root and next) is the product of ``1 - terminated`` along the rollout.

    Args:
        world_model: the trained RSSM (a registered submodule: ``hold_out_net(env)`` freezes it).
        termination: see above; default ``"continue_head"``.
        mode: ``"sample"`` or ``"probs"`` (or ``"argmax"``, not differentiable in ``z``).
        continue_threshold: probability below which the continuation head ends an episode.
        generator: RNG of the member choice and the latent samples.
    """

    def __init__(
        self,
        world_model: RSSM,
        termination: str | LatentTermination | None = "continue_head",
        *,
        mode: str = "sample",
        continue_threshold: float = 0.5,
        generator: torch.Generator | None = None,
        device: torch.device | str | None = None,
    ) -> None:
        if device is None:
            device = next(world_model.parameters()).device
        super().__init__(world_model, device=device, allow_done_after_reset=True)
        if isinstance(termination, str) and termination != "continue_head":
            raise ValueError(
                f"termination must be 'continue_head', None or a callable, got {termination!r}"
            )
        if mode not in ("sample", "probs", "argmax"):
            raise ValueError(f"mode must be 'sample', 'probs' or 'argmax', got {mode!r}")
        self.termination = termination
        self.mode = mode
        self.continue_threshold = float(continue_threshold)
        self.generator = generator
        f, a = world_model.feature_dim, world_model.action_dim
        self.observation_spec = Composite(
            observation=Unbounded((f,), device=self.device),
            alive=Bounded(0.0, 1.0, (1,), device=self.device),
            device=self.device,
        )
        self.action_spec = Bounded(-1.0, 1.0, (a,), device=self.device)
        self.reward_spec = Unbounded((1,), device=self.device)
        self.done_spec = Composite(
            done=Categorical(2, (1,), dtype=torch.bool, device=self.device),
            terminated=Categorical(2, (1,), dtype=torch.bool, device=self.device),
            device=self.device,
        )

    @property
    def rssm(self) -> RSSM:
        return self.world_model

    def _reset(self, tensordict: TensorDictBase | None = None, **kwargs) -> TensorDictBase:
        if tensordict is None or "observation" not in tensordict.keys():
            raise ValueError(
                "LatentModelEnv.reset needs a tensordict with posterior features under "
                "'observation' (see encode_sequences)"
            )
        obs = tensordict.get("observation")
        self.rssm.split(obs)  # checks the feature size
        return self._start_states(obs, tensordict.batch_size)

    def _step(self, tensordict: TensorDictBase) -> TensorDictBase:
        obs = tensordict.get("observation")
        action = tensordict.get("action").clamp(-1.0, 1.0)
        alive = self._alive(tensordict, obs)
        lead = obs.shape[:-1]
        flat_obs, flat_act = obs.reshape(-1, obs.shape[-1]), action.reshape(-1, action.shape[-1])
        nxt = self.rssm.imagine_step(flat_obs, flat_act, mode=self.mode, generator=self.generator)
        reward = self.rssm.reward(nxt)
        if self.termination == "continue_head":
            p_cont = torch.sigmoid(self.rssm.continue_logit(nxt))
            terminated = p_cont < self.continue_threshold
        elif self.termination is None:
            terminated = torch.zeros_like(reward, dtype=torch.bool)
        else:
            terminated = self.termination(flat_obs, flat_act, nxt).reshape(-1, 1).bool()
        terminated = terminated.reshape(*lead, 1)
        return self._transition(
            tensordict, nxt.reshape(*lead, -1), reward.reshape(*lead, 1), terminated, alive
        )



@torch.no_grad()
def encode_sequences(
    model: RSSM,
    sequences: TensorDictBase,
    *,
    streams: int = 64,
    mode: str = "argmax",
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Posterior features ``[N, F]`` of every row of a sequence TensorDict ``[N]``
    (``pixels``, ``action``, ``is_first``; :func:`torchrl_leq.data.vd4rl.read_vd4rl` layout).

    The rows are cut into ``streams`` contiguous segments filtered in parallel (each segment
    starts a fresh state, like a training window); ``mode="argmax"`` (default) takes the most
    likely latent of each group, ``"sample"`` samples.

    Example:
        >>> from tensordict import TensorDict
        >>> m = RSSM(2, channels=2, deter_dim=4, hidden_dim=4, groups=1, classes=2)
        >>> seq = TensorDict({"pixels": torch.zeros(7, 3, 64, 64, dtype=torch.uint8),
        ...                   "action": torch.zeros(7, 2),
        ...                   "is_first": torch.zeros(7, dtype=torch.bool)}, [7])
        >>> encode_sequences(m, seq, streams=3).shape
        torch.Size([7, 6])
    """
    n = sequences.shape[0]
    streams = max(1, min(streams, n))
    length = -(-n // streams)
    pad = streams * length - n
    pixels, action = sequences.get("pixels"), sequences.get("action").float()
    first = sequences.get("is_first").reshape(n).bool().clone()
    if pad:
        pixels = torch.cat([pixels, pixels[-1:].expand(pad, *pixels.shape[1:])])
        action = torch.cat([action, action[-1:].expand(pad, *action.shape[1:])])
        first = torch.cat([first, first.new_ones(pad)])
    first = first.reshape(streams, length)
    first[:, 0] = True
    pixels = pixels.reshape(streams, length, *pixels.shape[1:])
    action = action.reshape(streams, length, -1)
    state, out = None, []
    step = 16  # frames filtered per call (bounds the float copy of the frames)
    for t in range(0, length, step):
        px = pixels[:, t : t + step]
        px = pixels_to_float(px) if px.dtype == torch.uint8 else px.float()
        res = model.observe(px, action[:, t : t + step], first[:, t : t + step], state=state,
                            mode=mode, generator=generator)
        state = res["state"]
        out.append(res["features"])
    return torch.cat(out, 1).reshape(streams * length, -1)[:n]


def latent_transitions(features: torch.Tensor, sequences: TensorDictBase) -> TensorDict:
    """TorchRL transitions over latent features (LEQLoss's D_env batch layout).

    ``observation`` = features of row t, ``action`` = a_t, ``("next", "observation")`` =
    features of row t+1, ``("next", "reward")``, ``("next", "terminated")`` (``is_terminal``),
    ``("next", "truncated")``, ``("next", "done")``, ``episode``.

    Example:
        >>> from tensordict import TensorDict
        >>> seq = TensorDict({"action": torch.tensor([[0.0], [1.0], [2.0]]),
        ...                   "reward": torch.tensor([0.0, 1.0, 2.0]),
        ...                   "is_first": torch.tensor([True, False, False]),
        ...                   "is_last": torch.tensor([False, False, True]),
        ...                   "is_terminal": torch.tensor([False, False, True]),
        ...                   "episode": torch.zeros(3, dtype=torch.long)}, [3])
        >>> td = latent_transitions(torch.arange(3.0).unsqueeze(-1), seq)
        >>> td["action"].tolist(), td["next", "observation"].tolist()
        ([[1.0], [2.0]], [[1.0], [2.0]])
        >>> td["next", "terminated"].tolist(), td["next", "truncated"].tolist()
        ([[False], [True]], [[False], [False]])
    """
    src, nxt = transition_indices(sequences)
    terminated = sequences["is_terminal"][nxt].reshape(-1, 1).bool()
    truncated = sequences["is_last"][nxt].reshape(-1, 1).bool() & ~terminated
    return TensorDict(
        {
            "observation": features[src],
            "action": sequences["action"][nxt].float(),
            "episode": sequences["episode"][src],
            "next": {
                "observation": features[nxt],
                "reward": sequences["reward"][nxt].reshape(-1, 1).float(),
                "terminated": terminated,
                "truncated": truncated,
                "done": terminated | truncated,
            },
        },
        batch_size=[len(src)],
    )


class LatentPolicy(TensorDictModuleBase):
    """Acts in a pixel env: filters frames with the RSSM posterior, then a feature-space actor.

    ``forward(td)`` reads ``"pixels"`` (uint8 ``[B, H, W, 3]`` as gym returns them, or
    ``[B, 3, H, W]``) and ``"is_first"`` (``[B]``, True at an episode's first frame), keeps
    ``(h, z)`` and the previous action between calls, and writes ``"action"`` and
    ``"observation"`` (the features). Call :meth:`reset` before a new batch of episodes.

    Example:
        >>> from tensordict import TensorDict
        >>> from tensordict.nn import TensorDictModule
        >>> m = RSSM(2, channels=2, deter_dim=4, hidden_dim=4, groups=1, classes=2)
        >>> actor = TensorDictModule(torch.nn.Linear(6, 2), ["observation"], ["action"])
        >>> policy = LatentPolicy(m, actor)
        >>> td = TensorDict({"pixels": torch.zeros(3, 64, 64, 3, dtype=torch.uint8),
        ...                  "is_first": torch.ones(3, dtype=torch.bool)}, [3])
        >>> policy(td)["action"].shape
        torch.Size([3, 2])
    """

    in_keys = ["pixels", "is_first"]
    out_keys = ["action", "observation"]

    def __init__(self, world_model: RSSM, actor: TensorDictModuleBase, mode: str = "argmax"):
        super().__init__()
        self.world_model, self.actor, self.mode = world_model, actor, mode
        self._state: tuple[torch.Tensor, torch.Tensor] | None = None
        self._prev_action: torch.Tensor | None = None

    def reset(self) -> None:
        """Forget the recurrent state."""
        self._state = self._prev_action = None

    @torch.no_grad()
    def forward(self, tensordict: TensorDictBase) -> TensorDictBase:
        pixels = tensordict.get("pixels")
        if pixels.shape[-1] == 3 and pixels.shape[-3] != 3:
            pixels = pixels.movedim(-1, -3)
        pixels = pixels_to_float(pixels) if pixels.dtype == torch.uint8 else pixels
        bs = tensordict.batch_size
        first = tensordict.get("is_first").reshape(*bs).bool()
        a_dim = self.world_model.action_dim
        prev = self._prev_action
        if prev is None or prev.shape[0] != bs[0]:
            prev, self._state = pixels.new_zeros(*bs, a_dim), None
            first = torch.ones_like(first)
        out = self.world_model.observe(
            pixels.unsqueeze(1), prev.unsqueeze(1), first.unsqueeze(1), state=self._state,
            mode=self.mode,
        )
        self._state = out["state"]
        features = out["features"][:, 0]
        action = self.actor(TensorDict({"observation": features}, bs)).get("action")
        self._prev_action = action.clamp(-1.0, 1.0)
        tensordict.set("observation", features)
        return tensordict.set("action", action)

