"""C-LAP's jump start (Sec. 4.1): before any policy training, the actions decoded from the latent
action prior of a briefly trained model already behave like the dataset's, unlike a random policy.

Budget: ~25 s on one CPU thread. At this size the decoded prior does not *solve* the maze
(neither does a random policy: both score 0 in 300 steps; with random goals per episode the
point-maze data are not aimed at the evaluation goal either), so the test asserts what is
measurable here, on held-out dataset states: (1) the decoded prior-mean actions (the untrained
constrained policy's ``u = μ``) are much closer to the dataset's actions than uniform random
actions are; (2) the dataset's actions are likelier under the decoder at the prior's latent
action than under a random policy's uniform density. The real-maze comparison (success, return,
distance to goal against a random policy) is ``benchmarks/clap_jump_start.py``.
"""

from __future__ import annotations

import numpy as np
import torch

from torchrl_leq.data import read_pointmaze_dataset
from torchrl_leq.data.sequences import transitions_to_sequences
from torchrl_leq.modules.latent_action_model import LatentActionModel
from torchrl_leq.training.clap import posterior_features, train_clap_model
from torchrl_leq.training.rssm import split_episodes

TASK = "pointmaze-umaze"


def test_decoded_prior_actions_behave_like_the_data():
    torch.manual_seed(0)
    seq = transitions_to_sequences(read_pointmaze_dataset(TASK, 10_000, seed=0))
    model = LatentActionModel(4, 2, stoch_dim=8, deter_dim=32, units=32, embed_dim=16,
                              latent_action_dim=4)
    train_clap_model(model, seq, epochs=2, steps_per_epoch=300, batch_size=16, seq_len=32,
                     lr=1e-3, loss_kwargs={"free_nats": 1.0}, progress=False)

    # (1) held-out states: prior-mean latent action, decoded (the untrained policy's action)
    _, hold = split_episodes(seq, 0.1)
    with torch.no_grad():
        feats = posterior_features(model, hold)
        has_next = ~hold["is_first"][1:] & ~hold["is_last"][:-1]
        f, a = feats[:-1][has_next], hold["action"][1:][has_next]
        decoded = model.action_decoder(f, model.action_prior(f)[0]).mean
    prior_mae = float((decoded - a).abs().mean())
    random_mae = float((torch.rand(a.shape, generator=torch.Generator().manual_seed(0)) * 2 - 1
                        - a).abs().mean())
    assert prior_mae < 0.75 * random_mae, (prior_mae, random_mae)

    # (2) the dataset's actions are likelier under the decoder at prior latent actions than
    # under the uniform density of a random policy (1/2 per dimension on [-1, 1])
    with torch.no_grad():
        u = model.action_prior(f)[0]
        log_lik = float(model.action_decoder(f, u).log_prob(a).mean())
    assert log_lik > 2 * np.log(0.5) + 0.3, log_lik
