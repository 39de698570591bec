"""Wall geometry of a point-maze task and a model-exploitation diagnostic for imagined rollouts.

The walls of a gymnasium-robotics PointMaze are exactly the ``1`` cells of the task's
``maze_map``: axis-aligned unit squares (maze scaling 1, map centred on the origin). The ball has
radius :data:`BALL_RADIUS`, so a *real* ball centre never comes closer than 0.1 to a wall: a
model state whose ``(x, y)`` lies inside a wall cell, or a model step whose segment
``(x_t, y_t) → (x_{t+1}, y_{t+1})`` crosses one, is physically impossible — the world model let
the imagined trajectory through the wall. Everything outside the map counts as wall.

:func:`wall_diagnostic` rolls a policy in the world model (and, for the same start states, in the
real MuJoCo maze) and reports how often imagined transitions end in / cross walls, the ensemble's
disagreement there, and the λ-return the critic assigns to the imagined rollouts against the
λ-return of the real ones. :func:`make_wall_diagnostic` wraps it as a periodic training hook.
:func:`value_calibration` compares the critic's value of the policy with the policy's true
discounted return in the real maze (is a failing critic too pessimistic, or right?).

Example:
    >>> import torch
    >>> from torchrl_leq.tasks import get_pointmaze_task
    >>> walls = MazeWalls(get_pointmaze_task("pointmaze-umaze"))
    >>> walls.in_wall(torch.tensor([[-1.0, -1.0], [-1.0, 0.0]])).tolist()  # start cell, wall
    [False, True]
    >>> walls.crosses_wall(torch.tensor([-1.0, -1.0]), torch.tensor([-1.0, 1.0])).item()
    True
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from tensordict.nn import TensorDictModuleBase

from torchrl_leq.objectives.value import normalized_lambda_return
from torchrl_leq.tasks import POINTMAZE_SUCCESS_RADIUS, PointMazeTask

__all__ = [
    "BALL_RADIUS",
    "MazeWalls",
    "wall_contact_fraction",
    "real_rollout",
    "wall_diagnostic",
    "make_wall_diagnostic",
    "discounted_return",
    "value_calibration",
]

BALL_RADIUS = 0.1
"""Radius of PointMaze's ball (``particle_geom`` in gymnasium-robotics' ``point.xml``)."""


class MazeWalls:
    """Exact, vectorised wall tests for a point-maze task (see module docstring).

    Args:
        task: the maze (any :class:`~torchrl_leq.tasks.PointMazeTask`, named or custom).
        margin: inflate every wall square by this much (``BALL_RADIUS`` tests where the ball
            *touches* a wall; 0 where its centre enters one, the physically impossible event).
    """

    def __init__(self, task: PointMazeTask, margin: float = 0.0) -> None:
        maze = np.asarray(task.maze_map)
        n_rows, n_cols = maze.shape
        boxes = []
        for r, c in zip(*np.nonzero(maze == 1)):
            x, y = task.cell_to_xy((int(r), int(c)))
            boxes.append((x - 0.5 - margin, x + 0.5 + margin, y - 0.5 - margin, y + 0.5 + margin))
        self.boxes = torch.tensor(boxes, dtype=torch.float64).reshape(-1, 4)
        self.bounds = (-n_cols / 2.0, n_cols / 2.0, -n_rows / 2.0, n_rows / 2.0)
        self.margin = margin

    def _outside(self, xy: torch.Tensor) -> torch.Tensor:
        x0, x1, y0, y1 = self.bounds
        x, y = xy[..., 0], xy[..., 1]
        return (x < x0) | (x > x1) | (y < y0) | (y > y1)

    def in_wall(self, xy: torch.Tensor) -> torch.Tensor:
        """``bool [...]``: the point ``xy [..., 2]`` lies in a (closed, inflated) wall square or
        outside the map.

        Example:
            >>> from torchrl_leq.tasks import get_pointmaze_task
            >>> walls = MazeWalls(get_pointmaze_task("pointmaze-umaze"), margin=BALL_RADIUS)
            >>> walls.in_wall(torch.tensor([-1.0, -0.55])).item()  # 0.05 below the wall face
            True
        """
        b = self.boxes.to(xy.device, xy.dtype)
        p = xy[..., None, :]
        inside = (
            (p[..., 0] >= b[:, 0])
            & (p[..., 0] <= b[:, 1])
            & (p[..., 1] >= b[:, 2])
            & (p[..., 1] <= b[:, 3])
        )
        return inside.any(-1) | self._outside(xy)

    def crosses_wall(self, xy0: torch.Tensor, xy1: torch.Tensor) -> torch.Tensor:
        """``bool [...]``: the segment ``xy0 → xy1`` (``[..., 2]`` each) meets a wall square
        (slab test per square, exact) or leaves the map.

        Example:
            >>> from torchrl_leq.tasks import get_pointmaze_task
            >>> walls = MazeWalls(get_pointmaze_task("pointmaze-umaze"))
            >>> walls.crosses_wall(torch.tensor([-1.0, -1.0]), torch.tensor([1.0, -1.0])).item()
            False
        """
        b = self.boxes.to(xy0.device, xy0.dtype)
        p0, d = xy0[..., None, :], (xy1 - xy0)[..., None, :]
        t_lo = torch.zeros((*xy0.shape[:-1], b.shape[0]), dtype=xy0.dtype, device=xy0.device)
        t_hi = torch.ones_like(t_lo)
        hit = torch.ones_like(t_lo, dtype=torch.bool)
        for axis in range(2):
            lo, hi = b[:, 2 * axis], b[:, 2 * axis + 1]
            p, v = p0[..., axis], d[..., axis]
            flat = v == 0
            hit &= ~flat | ((p >= lo) & (p <= hi))  # parallel to this slab: must lie within
            safe_v = torch.where(flat, torch.ones_like(v), v)
            ta, tb = (lo - p) / safe_v, (hi - p) / safe_v
            t_enter = torch.where(flat, torch.zeros_like(ta), torch.minimum(ta, tb))
            t_exit = torch.where(flat, torch.ones_like(ta), torch.maximum(ta, tb))
            t_lo, t_hi = torch.maximum(t_lo, t_enter), torch.minimum(t_hi, t_exit)
        hit &= t_lo <= t_hi
        return hit.any(-1) | self._outside(xy0) | self._outside(xy1)


def wall_contact_fraction(
    task: PointMazeTask, observation: torch.Tensor, tolerance: float = 0.02
) -> float:
    """Fraction of states whose ball touches a wall (centre within ``BALL_RADIUS + tolerance``
    of a wall square): how much wall contact a dataset shows its world model.

    Example:
        >>> from torchrl_leq.tasks import get_pointmaze_task
        >>> task = get_pointmaze_task("pointmaze-umaze")
        >>> wall_contact_fraction(task, torch.tensor([[-1.0, -1.0, 0, 0], [-1.0, -0.59, 0, 0]]))
        0.5
    """
    walls = MazeWalls(task, margin=BALL_RADIUS + tolerance)
    return float(walls.in_wall(observation[..., :2]).double().mean())


def real_rollout(
    task: PointMazeTask,
    actor: Callable[[torch.Tensor], torch.Tensor],
    start_obs: torch.Tensor,
    horizon: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Roll ``actor`` (``observation [N, 4] -> action [N, 2]``) ``horizon`` steps in the real
    MuJoCo maze from the states ``start_obs [N, 4]`` (``[x, y, vx, vy]``, set exactly).

    Returns the observations ``[N, horizon + 1, 4]`` and ``terminated [N, horizon, 1]`` (the
    next position lies within 0.45 of the goal); states after a termination repeat the last one.

    Example:
        >>> from torchrl_leq.tasks import get_pointmaze_task
        >>> task = get_pointmaze_task("pointmaze-umaze")
        >>> obs, term = real_rollout(task, lambda o: torch.tensor([[0.0, 1.0]]),
        ...                          torch.tensor([[-1.0, -1.0, 0.0, 0.0]]), 50)
        >>> round(float(obs[0, -1, 1]), 2)  # pushed up into the wall: stopped at its face
        -0.6
    """
    from torchrl_leq.envs.pointmaze import make_pointmaze_env

    env = make_pointmaze_env(task)
    env.reset(seed=0)
    point = env.unwrapped.point_env
    goal = np.asarray(task.goal_xy)
    n = start_obs.shape[0]
    state = start_obs.detach().double().cpu().numpy().copy()
    observations = [state.copy()]
    terminated = np.zeros((n, horizon, 1), dtype=bool)
    done = np.zeros(n, dtype=bool)
    for t in range(horizon):
        obs_t = torch.as_tensor(state, dtype=start_obs.dtype)
        action = actor(obs_t).detach().double().cpu().numpy()
        for i in np.flatnonzero(~done):
            point.set_state(state[i, :2], state[i, 2:])
            state[i] = point.step(action[i])[0]
        reached = np.linalg.norm(state[:, :2] - goal, axis=-1) <= POINTMAZE_SUCCESS_RADIUS
        terminated[:, t, 0] = reached & ~done
        done |= reached
        observations.append(state.copy())
    env.close()
    return (
        torch.as_tensor(np.stack(observations, 1), dtype=start_obs.dtype),
        torch.as_tensor(terminated),
    )


def _actor_fn(actor: TensorDictModuleBase) -> Callable[[torch.Tensor], torch.Tensor]:
    from tensordict import TensorDict
    from torchrl.envs.utils import ExplorationType, set_exploration_type

    def act(obs: torch.Tensor) -> torch.Tensor:
        with set_exploration_type(ExplorationType.DETERMINISTIC):
            td = TensorDict({"observation": obs}, batch_size=obs.shape[:-1])
            return actor(td)["action"].clamp(-1.0, 1.0)

    return act


def _masked_mean(x: torch.Tensor, mask: torch.Tensor) -> float:
    return float(x[mask].mean()) if bool(mask.any()) else float("nan")


@torch.no_grad()
def wall_diagnostic(
    task: PointMazeTask,
    model_env: Any,
    actor: TensorDictModuleBase,
    start_obs: torch.Tensor,
    *,
    horizon: int = 10,
    critic: TensorDictModuleBase | None = None,
    gamma: float = 0.99,
    lmbda: float = 0.95,
    reward_shift: float = -1.0,
    real: bool = True,
    generator: torch.Generator | None = None,
) -> dict[str, float]:
    """Model-exploitation statistics of ``actor``'s imagined rollouts from ``start_obs [N, 4]``.

    The actor (deterministic) is rolled ``horizon`` steps in ``model_env``'s ensemble (a random
    elite per sample and step, sampled noise, drawn from ``generator`` so training's RNG stream is
    untouched) with the env's termination function. Returned (floats; NaN where a subset is
    empty), over alive imagined transitions:

    - ``wall_end_frac``: fraction whose next position lies in a wall cell (or off the map);
    - ``wall_cross_frac``: fraction whose step segment crosses a wall cell (includes the above);
    - ``rollout_cross_frac``: fraction of rollouts with at least one crossing;
    - ``disagreement_cross`` / ``disagreement_clean``: the ensemble's disagreement (std over
      elites of the predicted mean next ``(x, y)``, Euclidean norm) on crossing / other
      transitions;
    - ``imagined_success_frac`` and, with ``real``, ``real_success_frac``: rollouts that reach
      the goal in the model / in the real maze (same start states, same actor);
    - with ``critic`` (``(observation, action) -> state_action_value``): ``lambda_return_model``
      and ``lambda_return_real`` = mean normalized λ-return at t = 0 (0-step term included, as
      LEQ's default; real rewards are ``1(goal) + reward_shift``, the ``maze`` transform), and
      ``lambda_gap_cross`` / ``lambda_gap_clean`` = mean (model − real) over rollouts with /
      without a crossing: how much the model's returns through walls overestimate the truth.

    Example:
        >>> from torchrl_leq.tasks import get_pointmaze_task
        >>> from torchrl_leq.envs import LEQModelEnv
        >>> from torchrl_leq.modules import ProbabilisticEnsemble
        >>> from tensordict.nn import TensorDictModule
        >>> model = ProbabilisticEnsemble(4, 2, num_members=3, num_elites=2, hidden_dims=(8,), weight_decays=(0.0, 0.0))
        >>> env = LEQModelEnv(model, "pointmaze-umaze")
        >>> actor = TensorDictModule(torch.nn.Linear(4, 2), ["observation"], ["action"])
        >>> out = wall_diagnostic(get_pointmaze_task("pointmaze-umaze"), env, actor,
        ...                       torch.tensor([[-1.0, -1.0, 0.0, 0.0]]), horizon=2, real=False)
        >>> sorted(out)[:3]
        ['disagreement_clean', 'disagreement_cross', 'imagined_success_frac']
    """
    walls = MazeWalls(task)
    ensemble = model_env.ensemble
    act = _actor_fn(actor)
    obs = start_obs.to(ensemble.max_logvar.dtype)
    n = obs.shape[0]
    alive = torch.ones(n, dtype=torch.bool)
    observations, actions, rewards, terms, alives, disagreement = [obs], [], [], [], [], []
    for _ in range(horizon):
        action = act(obs)
        mean, _ = ensemble(obs, action)  # [M, N, obs + 1]
        disagreement.append(mean[ensemble.elites, :, :2].std(0).norm(dim=-1))
        sample = ensemble.sample(obs, action, generator=generator)
        term = model_env.termination_fn(obs, action, sample.next_obs).reshape(n).bool()
        actions.append(action)
        rewards.append(sample.reward.reshape(n))
        terms.append(term)
        alives.append(alive.clone())
        alive = alive & ~term
        obs = sample.next_obs
        observations.append(obs)
    xy = torch.stack(observations, 1)[..., :2]  # [N, H+1, 2]
    alive_t = torch.stack(alives, 1)  # [N, H]
    ends = walls.in_wall(xy[:, 1:]) & alive_t
    cross = walls.crosses_wall(xy[:, :-1], xy[:, 1:]) & alive_t
    disagree = torch.stack(disagreement, 1)
    n_alive = alive_t.sum().clamp_min(1)
    rollout_cross = cross.any(1)
    out = {
        "wall_end_frac": float(ends.sum() / n_alive),
        "wall_cross_frac": float(cross.sum() / n_alive),
        "rollout_cross_frac": float(rollout_cross.double().mean()),
        "disagreement_cross": _masked_mean(disagree, cross),
        "disagreement_clean": _masked_mean(disagree, alive_t & ~cross),
        "imagined_success_frac": float(torch.stack(terms, 1).any(1).double().mean()),
    }
    if real:
        real_obs, real_term = real_rollout(task, act, start_obs, horizon)
        out["real_success_frac"] = float(real_term.any(1).double().mean())
    if critic is not None:
        model_obs = torch.stack(observations, 1)
        model_ret = _lambda_return_t0(
            critic, act, model_obs, torch.stack(rewards, 1), torch.stack(terms, 1), gamma, lmbda
        )
        out["lambda_return_model"] = float(model_ret.mean())
        if real:
            real_obs = real_obs.to(model_obs.dtype)
            real_rew = real_term.squeeze(-1).to(model_obs.dtype) + reward_shift
            real_ret = _lambda_return_t0(
                critic, act, real_obs, real_rew, real_term.squeeze(-1), gamma, lmbda
            )
            gap = model_ret - real_ret
            out["lambda_return_real"] = float(real_ret.mean())
            out["lambda_gap_cross"] = _masked_mean(gap, rollout_cross)
            out["lambda_gap_clean"] = _masked_mean(gap, ~rollout_cross)
    return out


def _lambda_return_t0(
    critic: TensorDictModuleBase,
    act: Callable[[torch.Tensor], torch.Tensor],
    obs: torch.Tensor,
    reward: torch.Tensor,
    terminated: torch.Tensor,
    gamma: float,
    lmbda: float,
) -> torch.Tensor:
    """Normalized λ-return at t = 0 (0-step term included) of ``obs [N, H+1, d]``."""
    from tensordict import TensorDict

    n, h1 = obs.shape[:2]
    flat = obs.reshape(n * h1, -1)
    td = TensorDict({"observation": flat, "action": act(flat)}, batch_size=[n * h1])
    q = critic(td)["state_action_value"].reshape(n, h1, 1)
    ret = normalized_lambda_return(
        reward[..., None],
        q[:, 1:],
        gamma=gamma,
        lmbda=lmbda,
        terminated=terminated[..., None],
        value=q[:, :-1],
    )
    return ret[:, 0, 0]


def make_wall_diagnostic(
    task: PointMazeTask,
    model_env: Any,
    actor: TensorDictModuleBase,
    start_buffer: Any,
    *,
    critic: TensorDictModuleBase | None = None,
    num_starts: int = 256,
    horizon: int = 10,
    gamma: float = 0.99,
    lmbda: float = 0.95,
    reward_shift: float = -1.0,
    real: bool = True,
    seed: int = 0,
) -> Callable[[int], dict[str, float]]:
    """A periodic training hook ``step -> dict[str, float]`` of :func:`wall_diagnostic`
    (keys prefixed ``wall/``) on a FIXED set of ``num_starts`` start states drawn once from
    ``start_buffer`` (a replay buffer or TensorDict with ``"observation"``, e.g. D_env) with a
    private generator seeded by ``seed``; each call re-seeds its own generator, so the numbers
    of two calls differ only through the policy/critic, and training's RNG stream is untouched.

    Example:
        >>> from tensordict import TensorDict
        >>> from tensordict.nn import TensorDictModule
        >>> from torchrl_leq.tasks import get_pointmaze_task
        >>> from torchrl_leq.envs import LEQModelEnv
        >>> from torchrl_leq.modules import ProbabilisticEnsemble
        >>> model = ProbabilisticEnsemble(4, 2, num_members=3, num_elites=2, hidden_dims=(8,), weight_decays=(0.0, 0.0))
        >>> env = LEQModelEnv(model, "pointmaze-umaze")
        >>> actor = TensorDictModule(torch.nn.Linear(4, 2), ["observation"], ["action"])
        >>> starts = TensorDict({"observation": torch.zeros(10, 4) - 1.0}, [10])
        >>> hook = make_wall_diagnostic(get_pointmaze_task("pointmaze-umaze"), env, actor,
        ...                             starts, num_starts=4, horizon=2, real=False)
        >>> "wall/wall_cross_frac" in hook(0)
        True
    """
    data = start_buffer[:] if not hasattr(start_buffer, "keys") else start_buffer
    all_obs = data["observation"]
    gen = torch.Generator().manual_seed(seed)
    idx = torch.randperm(all_obs.shape[0], generator=gen)[:num_starts]
    start_obs = all_obs[idx].clone()

    def hook(step: int) -> dict[str, float]:
        stats = wall_diagnostic(
            task,
            model_env,
            actor,
            start_obs,
            horizon=horizon,
            critic=critic,
            gamma=gamma,
            lmbda=lmbda,
            reward_shift=reward_shift,
            real=real,
            generator=torch.Generator().manual_seed(seed + 1),
        )
        return {f"wall/{k}": v for k, v in stats.items()}

    return hook


def discounted_return(
    terminated: torch.Tensor, gamma: float, reward_shift: float = -1.0
) -> torch.Tensor:
    """Discounted return ``Σ_t γ^t r_t`` of rollouts ``terminated [N, H, 1]`` under the ``maze``
    reward ``r_t = 1(goal reached at t) + reward_shift``, stopping after the first termination
    (a rollout that never terminates is cut at ``H`` with no bootstrap).

    Example:
        >>> term = torch.tensor([[[False], [False], [True], [False]]])  # goal at the 3rd step
        >>> discounted_return(term, gamma=0.5).tolist()  # -1 - 0.5 + 0.25 * 0
        [-1.5]
    """
    term = terminated.squeeze(-1).to(torch.float64)
    alive = torch.cumprod(1.0 - term, dim=-1)
    alive = torch.cat([torch.ones_like(alive[:, :1]), alive[:, :-1]], dim=-1)  # alive at t
    discount = gamma ** torch.arange(term.shape[-1], dtype=torch.float64)
    return ((term + reward_shift) * alive * discount).sum(-1)


@torch.no_grad()
def value_calibration(
    task: PointMazeTask,
    actor: TensorDictModuleBase,
    critic: TensorDictModuleBase,
    start_obs: torch.Tensor,
    *,
    gamma: float = 0.99,
    reward_shift: float = -1.0,
    horizon: int | None = None,
) -> dict[str, float]:
    """The critic's ``Q(s, π(s))`` against the policy's true discounted return from ``s``.

    The deterministic actor is rolled ``horizon`` (default: the task's time limit) steps in the
    real MuJoCo maze from each of ``start_obs [N, 4]``. Returned (floats; NaN where a subset is
    empty): ``q_mean``, ``real_return_mean``, ``real_success_frac`` (starts from which the policy
    reaches the goal), ``q_minus_real`` (mean ``Q − G``: > 0 optimistic, < 0 pessimistic) and
    ``q_minus_real_success`` / ``q_minus_real_failure`` over starts the policy does / does not
    solve, and ``q_real_corr`` (Pearson correlation of ``Q`` and ``G`` over the starts: does the
    critic at least rank the states right?). At ``γ^horizon`` ≪ 1 the cut-off return is the true value within ``γ^horizon / (1−γ)``.

    Example:
        >>> from tensordict.nn import TensorDictModule
        >>> from torchrl_leq.tasks import get_pointmaze_task
        >>> still = TensorDictModule(lambda o: torch.zeros(o.shape[0], 2), ["observation"], ["action"])
        >>> flat = TensorDictModule(lambda o, a: torch.full((o.shape[0], 1), -5.0),
        ...                         ["observation", "action"], ["state_action_value"])
        >>> out = value_calibration(get_pointmaze_task("pointmaze-umaze"), still, flat,
        ...                         torch.tensor([[-1.0, -1.0, 0.0, 0.0]]), gamma=0.5, horizon=20)
        >>> out["q_mean"], round(out["real_return_mean"], 4), out["real_success_frac"]
        (-5.0, -2.0, 0.0)
    """
    from tensordict import TensorDict

    act = _actor_fn(actor)
    steps = task.max_episode_steps if horizon is None else horizon
    td = TensorDict({"observation": start_obs, "action": act(start_obs)}, [start_obs.shape[0]])
    q = critic(td)["state_action_value"].reshape(-1).to(torch.float64)
    _, terminated = real_rollout(task, act, start_obs, steps)
    real = discounted_return(terminated, gamma, reward_shift)
    solved = terminated.squeeze(-1).any(-1)
    gap = q - real
    return {
        "q_mean": float(q.mean()),
        "real_return_mean": float(real.mean()),
        "real_success_frac": float(solved.double().mean()),
        "q_minus_real": float(gap.mean()),
        "q_minus_real_success": _masked_mean(gap, solved),
        "q_minus_real_failure": _masked_mean(gap, ~solved),
        "q_real_corr": float(torch.corrcoef(torch.stack([q, real]))[0, 1]),
    }
