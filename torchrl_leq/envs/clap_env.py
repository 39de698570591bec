"""C-LAP's imagination: the latent action state-space model as a TorchRL model env, and the
filtering policy that acts in the real env.

:class:`CLAPModelEnv` follows the contract of :class:`~torchrl_leq.envs.LEQModelEnv` (batch-
unlocked ``reset(td with "observation")``, differentiable fixed-length rollouts with an
``alive`` mask) over latent features ``cat(h, s)``. Its action is the *latent* action ``u``
(for a model with latent actions): a step decodes ``a ~ p(a | s, u)`` (Beta, reparameterised),
runs ``h' = f(h, s, a)``, draws ``s' ~ p(s' | h')`` and predicts the reward and termination
at ``s'``. Every state carries the latent action prior ``prior_loc``/``prior_scale``
(``p(u | s)``), which the constrained policy reads (Eq. 12); ``decoded_action`` is the env action.
For a model without latent actions (the "no latent action" ablation) the action is the env
action itself.

:class:`CLAPPolicy` filters real observations with the latent state posterior and acts with a
:class:`~torchrl_leq.modules.clap_policy.CLAPActor`, decoding its latent action to an env
action (the mean of the Beta decoder); it reads ``"is_first"`` where the evaluator provides it
and otherwise resets on :meth:`CLAPPolicy.reset` or a batch-size change.

Example:
    >>> import torch
    >>> from tensordict import TensorDict
    >>> from torchrl_leq.modules.latent_action_model import LatentActionModel
    >>> from torchrl_leq.modules.clap_policy import CLAPActor
    >>> model = LatentActionModel(4, 2, stoch_dim=3, deter_dim=5, units=8, embed_dim=3,
    ...                           latent_action_dim=2)
    >>> env = CLAPModelEnv(model)
    >>> actor = CLAPActor(model.feature_dim, 2, epsilon=1.0, units=8, layers=1)
    >>> start = env.reset(TensorDict({"observation": torch.zeros(6, 8)}, [6]))
    >>> traj = env.rollout(3, actor, auto_reset=False, tensordict=start,
    ...                    break_when_any_done=False)
    >>> traj["next", "decoded_action"].shape, bool(traj["next", "decoded_action"].abs().max() <= 1)
    (torch.Size([6, 3, 2]), True)
"""

from __future__ import annotations

import torch
from tensordict import TensorDict, TensorDictBase
from tensordict.nn import TensorDictModuleBase
from torchrl.data import Bounded, Categorical, Composite, Unbounded

from torchrl_leq.envs.model_env import FixedLengthModelEnv
from torchrl_leq.modules.clap_policy import CLAPActor
from torchrl_leq.modules.latent_action_model import LatentActionModel

__all__ = ["CLAPModelEnv", "CLAPPolicy"]


class CLAPModelEnv(FixedLengthModelEnv):
    """Batch-unlocked, differentiable imagination env of a
    :class:`~torchrl_leq.modules.latent_action_model.LatentActionModel` (module docstring).

    Args:
        world_model: the trained model (a registered submodule: ``hold_out_net(env)`` freezes it).

    Keyword Args:
        termination: ``"model"`` (terminated where the termination head's probability exceeds
            ``termination_threshold``) or ``None`` (never).
        state_mode, action_mode: ``"sample"`` (reparameterised, the paper's dream rollouts) or
            ``"mean"`` for the next latent state and the decoded action.
        termination_threshold: probability above which a state is terminal.
    """

    def __init__(
        self,
        world_model: LatentActionModel,
        *,
        termination: str | None = "model",
        state_mode: str = "sample",
        action_mode: str = "sample",
        termination_threshold: float = 0.5,
        device: torch.device | str | None = None,
    ) -> None:
        if device is None:
            device = next(world_model.parameters()).device
        super().__init__(world_model, device=device, allow_done_after_reset=True)
        if termination not in ("model", None):
            raise ValueError(f"termination must be 'model' or None, got {termination!r}")
        for name, mode in (("state_mode", state_mode), ("action_mode", action_mode)):
            if mode not in ("sample", "mean"):
                raise ValueError(f"{name} must be 'sample' or 'mean', got {mode!r}")
        self.termination = termination
        self.state_mode, self.action_mode = state_mode, action_mode
        self.termination_threshold = float(termination_threshold)
        m = world_model
        f, a = m.feature_dim, m.action_dim
        obs = dict(
            observation=Unbounded((f,), device=self.device),
            alive=Bounded(0.0, 1.0, (1,), device=self.device),
        )
        if m.latent_action:
            u = m.latent_action_dim
            obs.update(
                prior_loc=Unbounded((u,), device=self.device),
                prior_scale=Unbounded((u,), device=self.device),
                decoded_action=Bounded(-1.0, 1.0, (a,), device=self.device),
            )
            self.action_spec = Unbounded((u,), device=self.device)
        else:
            self.action_spec = Bounded(-1.0, 1.0, (a,), device=self.device)
        self.observation_spec = Composite(**obs, device=self.device)
        self.reward_spec = Unbounded((1,), device=self.device)
        self.done_spec = Composite(
            done=Categorical(2, (1,), dtype=torch.bool, device=self.device),
            terminated=Categorical(2, (1,), dtype=torch.bool, device=self.device),
            device=self.device,
        )

    @property
    def model(self) -> LatentActionModel:
        return self.world_model

    def _with_prior(self, td: TensorDictBase, features: torch.Tensor) -> TensorDictBase:
        if self.model.latent_action:
            loc, scale = self.model.action_prior(features)
            td.set("prior_loc", loc)
            td.set("prior_scale", scale)
        return td

    def _reset(self, tensordict: TensorDictBase | None = None, **kwargs) -> TensorDictBase:
        if tensordict is None or "observation" not in tensordict.keys():
            raise ValueError(
                "CLAPModelEnv.reset needs a tensordict with posterior features under "
                "'observation' (see torchrl_leq.training.clap.posterior_features)"
            )
        obs = tensordict.get("observation")
        self.model.split(obs)  # checks the feature size
        td = self._start_states(obs, tensordict.batch_size)
        if self.model.latent_action:
            td.set("decoded_action", obs.new_zeros(*obs.shape[:-1], self.model.action_dim))
        return self._with_prior(td, obs)

    def decode_action(self, features: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        """The env action of ``action``: ``a ~ p(a | s, u)`` with latent actions, else
        ``action`` clipped to ``[-1, 1]``."""
        if not self.model.latent_action:
            return action.clamp(-1.0, 1.0)
        dist = self.model.action_decoder(features, action)
        return dist.rsample() if self.action_mode == "sample" else dist.mean

    def _step(self, tensordict: TensorDictBase) -> TensorDictBase:
        obs = tensordict.get("observation")
        alive = self._alive(tensordict, obs)
        lead = obs.shape[:-1]
        flat_obs = obs.reshape(-1, obs.shape[-1])
        flat_act = tensordict.get("action").reshape(flat_obs.shape[0], -1)
        env_action = self.decode_action(flat_obs, flat_act)
        nxt = self.model.imagine_step(flat_obs, env_action, mode=self.state_mode)
        reward = self.model.reward(nxt)
        if self.termination == "model":
            p_term = torch.sigmoid(self.model.termination_logit(nxt))
            terminated = p_term > self.termination_threshold
        else:
            terminated = torch.zeros_like(reward, dtype=torch.bool)
        out = self._transition(
            tensordict, nxt.reshape(*lead, -1), reward.reshape(*lead, 1),
            terminated.reshape(*lead, 1), alive,
        )
        if self.model.latent_action:
            out.set("decoded_action", env_action.reshape(*lead, -1))
        return self._with_prior(out, out.get("observation"))


class CLAPPolicy(TensorDictModuleBase):
    """Acts in a real env: latent state posterior filtering + :class:`CLAPActor` + action decoder.

    ``forward(td)`` reads ``observation_key`` (vectors ``[B, obs_dim]``, or frames
    ``[B, H, W, 3]``/``[B, 3, H, W]`` for a pixel model) and, if present, ``"is_first"`` ``[B]``
    (True at an episode's first step); keeps ``(h, s)`` and the previous env action between
    calls; writes ``"action"`` (env action, the mean of the Beta decoder at the actor's latent
    action), ``"latent_action"`` and ``"features"``. Filtering uses the posterior mean. Call
    :meth:`reset` before a new batch of episodes when the caller gives no ``is_first``.

    Example:
        >>> from torchrl_leq.modules.latent_action_model import LatentActionModel
        >>> m = LatentActionModel(4, 2, stoch_dim=3, deter_dim=5, units=8, embed_dim=3,
        ...                       latent_action_dim=2)
        >>> policy = CLAPPolicy(m, CLAPActor(m.feature_dim, 2, epsilon=1.0, units=8, layers=1))
        >>> td = TensorDict({"observation": torch.zeros(3, 4)}, [3])
        >>> policy(td)["action"].shape
        torch.Size([3, 2])
    """

    def __init__(
        self,
        world_model: LatentActionModel,
        actor: CLAPActor,
        observation_key: str = "observation",
    ) -> None:
        super().__init__()
        self.world_model, self.actor = world_model, actor
        self.observation_key = observation_key
        self.in_keys = [observation_key]
        self.out_keys = ["action", "latent_action", "features"]
        self._state: tuple[torch.Tensor, torch.Tensor] | None = None
        self._prev_action: torch.Tensor | None = None

    def reset(self) -> None:
        """Forget the recurrent state."""
        self._state = self._prev_action = None

    @torch.no_grad()
    def forward(self, tensordict: TensorDictBase) -> TensorDictBase:
        model = self.world_model
        obs = tensordict.get(self.observation_key)
        if model.pixels and obs.shape[-1] == 3 and obs.shape[-3] != 3:
            obs = obs.movedim(-1, -3)
        if not model.pixels:
            obs = obs.float()
        bs = tensordict.batch_size
        first = tensordict.get("is_first", None)
        first = (torch.zeros(bs, dtype=torch.bool, device=obs.device) if first is None
                 else first.reshape(bs).bool().to(obs.device))
        prev = self._prev_action
        if prev is None or prev.shape[0] != bs[0]:
            prev, self._state = obs.new_zeros(*bs, model.action_dim).float(), None
            first = torch.ones_like(first)
        out = model.observe(obs.unsqueeze(1), prev.unsqueeze(1), first.unsqueeze(1),
                            state=self._state, mode="mean")
        self._state = out["state"]
        features = out["features"][:, 0]
        td = TensorDict({"observation": features}, bs)
        if model.latent_action:
            loc, scale = model.action_prior(features)
            td.set("prior_loc", loc)
            td.set("prior_scale", scale)
        latent = self.actor(td).get("action")
        if model.latent_action:
            action = model.action_decoder(features, latent).mean
        else:
            action = latent.clamp(-1.0, 1.0)
        self._prev_action = action
        tensordict.set("features", features)
        tensordict.set("latent_action", latent)
        return tensordict.set("action", action)
