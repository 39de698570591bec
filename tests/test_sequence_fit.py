"""train_and_holdout: the split and checks both sequence-model trainers (RSSM, C-LAP) use."""

import pytest
import torch
from tensordict import TensorDict

from torchrl_leq.training.sequence_fit import train_and_holdout


def episodes(lengths: list[int]) -> TensorDict:
    episode = torch.cat([torch.full((n,), i) for i, n in enumerate(lengths)])
    n = len(episode)
    return TensorDict({"x": torch.arange(n), "is_first": torch.zeros(n, dtype=torch.bool),
                       "extra": torch.ones(n), "episode": episode}, [n])


def test_split_selects_keys_and_cuts_fixed_holdout_windows():
    data = episodes([10, 10, 10, 9])  # the last of 4 episodes (rows 30-38) is held out
    train, hold = train_and_holdout(data, ("x", "is_first"), holdout_fraction=0.25, seq_len=4,
                                    max_windows=5, caller="f")
    assert train["x"].tolist() == list(range(30)) and set(train.keys()) == {"x", "is_first"}
    assert hold.shape == (2, 4)  # 9 held-out rows: windows at 30 and 34
    assert hold["x"].tolist() == [[30, 31, 32, 33], [34, 35, 36, 37]]
    assert hold["is_first"][:, 0].all() and not hold["is_first"][:, 1:].any()
    _, one = train_and_holdout(data, ("x", "is_first"), holdout_fraction=0.25, seq_len=4,
                               max_windows=1, caller="f")
    assert one["x"].tolist() == [[30, 31, 32, 33]]


def test_one_line_errors_name_the_caller_and_the_short_part():
    data = episodes([10, 10, 10, 3])
    with pytest.raises(ValueError, match=r"train_me data lacks keys \['pixels'\]"):
        train_and_holdout(data, ("x", "pixels"), holdout_fraction=0.25, seq_len=4,
                          max_windows=1, caller="train_me")
    with pytest.raises(ValueError, match="holdout data has 3 rows, fewer than seq_len=4"):
        train_and_holdout(data, ("x", "is_first"), holdout_fraction=0.25, seq_len=4,
                          max_windows=1, caller="f")
    with pytest.raises(ValueError, match="training data has 30 rows, fewer than seq_len=40"):
        train_and_holdout(episodes([10, 10, 10, 40]), ("x", "is_first"), holdout_fraction=0.25,
                          seq_len=40, max_windows=1, caller="f")
