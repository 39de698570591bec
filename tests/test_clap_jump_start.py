"""C-LAP's jump start (Sec. 4.1): before any policy training, the actions decoded from the latent
action prior of a briefly trained model already reach the goal of the real maze, unlike a random
policy — and why the action decoder's Beta needs concentrations below 1 for that.

Budget: ~60-90 s on one CPU thread (a 30 000-step dataset, a 64-unit model trained for 600
updates, 3 × 10 episodes in the maze). ``benchmarks/clap_jump_start.py`` is the same check at
Table 2's sizes.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch
from torchrl.envs.utils import ExplorationType

from torchrl_leq.data import read_pointmaze_dataset
from torchrl_leq.data.sequences import transitions_to_sequences
from torchrl_leq.envs.clap_env import CLAPPolicy
from torchrl_leq.modules.clap_policy import make_clap_actor
from torchrl_leq.modules.latent_action_model import BetaAction, LatentActionModel
from torchrl_leq.training.clap import train_clap_model
from torchrl_leq.training.evaluation import RandomActor

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from clap_jump_start import rollouts  # noqa: E402

TASK = "pointmaze-umaze"


def test_untrained_constrained_policy_beats_random_in_the_maze():
    torch.manual_seed(0)
    seq = transitions_to_sequences(read_pointmaze_dataset(TASK, 30_000, seed=0))
    model = LatentActionModel(4, 2, units=64, deter_dim=64)
    train_clap_model(model, seq, epochs=3, steps_per_epoch=200, loss_kwargs={"free_nats": 1.0},
                     seed=0, progress=False)
    actor = make_clap_actor(model.feature_dim, model.latent_action_dim, 2, "clap", epsilon=1.0)
    policy = CLAPPolicy(model, actor)  # untrained: u = μ of the prior (or û within μ ± ε̃σ)

    prior_mean = rollouts(policy, TASK, 10, ExplorationType.DETERMINISTIC)
    prior_sampled = rollouts(policy, TASK, 10, ExplorationType.RANDOM)
    random = rollouts(RandomActor(2, seed=0), TASK, 10, ExplorationType.RANDOM)
    # measured: 10/10, 9-10/10 and 0/10; closest distance to the goal 0.42, 0.42, 1.72
    for decoded in (prior_mean, prior_sampled):
        assert decoded["success_rate"] >= random["success_rate"] + 0.5, (decoded, random)
        assert decoded["min_goal_distance"] < 0.5 * random["min_goal_distance"], (decoded, random)


def _fit_beta(actions: torch.Tensor, min_concentration: float) -> tuple[BetaAction, float]:
    """Maximum likelihood of one :class:`BetaAction` (two raw parameters) on ``actions``."""
    raw = torch.zeros(2, requires_grad=True)
    opt = torch.optim.Adam([raw], lr=0.05)
    for _ in range(1000):
        nll = -BetaAction(raw[:1], raw[1:], min_concentration=min_concentration).log_prob(
            actions).mean()
        opt.zero_grad()
        nll.backward()
        opt.step()
    dist = BetaAction(raw[:1].detach(), raw[1:].detach(), min_concentration=min_concentration)
    return dist, float(-dist.log_prob(actions).mean())


def test_beta_with_unit_concentration_floor_collapses_on_saturated_actions():
    # 20 % of the actions at -1, 20 % at +1, the rest near 0.5: like the point-maze data, where
    # ~40 % of the actions are clipped at a bound, on either side from similar states
    g = torch.Generator().manual_seed(0)
    u = torch.rand(4000, generator=g)
    inner = (0.5 + 0.1 * torch.randn(4000, generator=g)).clamp(-1, 1)
    actions = torch.where(u < 0.2, -1.0, torch.where(u < 0.4, 1.0, inner))[:, None]

    floor1, nll1 = _fit_beta(actions, 1.0)
    floor01, nll01 = _fit_beta(actions, 0.1)
    # c = 1: the best it can do is the uniform density (α = β = 1: decoded mean 0, whatever u)
    assert abs(float(floor1.alpha) - 1) < 0.01 and abs(float(floor1.beta) - 1) < 0.01
    assert abs(float(floor1.mean)) < 0.01
    # c = 0.1: mass at both bounds (α, β < 1) and a far better fit
    assert float(floor01.alpha) < 1 and float(floor01.beta) < 1
    assert nll01 < nll1 - 1.0, (nll01, nll1)
