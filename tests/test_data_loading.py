"""D4RL HDF5 and Minari loaders: exact values, episode boundaries, errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from data_helpers import write_d4rl_file, write_minari_dataset
from torchrl.data import TensorDictReplayBuffer

from torchrl_leq.data import load_d4rl_hdf5, load_minari, read_d4rl_hdf5, read_minari
from torchrl_leq.data.d4rl import world_model_rows, world_model_transitions

# 7 steps: episode A = rows 0-2 ends by timeout, episode B = rows 3-4 ends by terminal,
# episode C = rows 5-6 runs to the end of the file (no flag).
OBS = np.arange(7 * 3, dtype=np.float32).reshape(7, 3) + 1.0
ACT = -np.arange(7 * 2, dtype=np.float32).reshape(7, 2) - 0.5
REW = np.array([0.5, 1.5, 2.5, 3.5, 4.5, 5.5, 6.5], dtype=np.float32)
TERM = np.array([0, 0, 0, 0, 1, 0, 0], dtype=bool)
TIMEOUT = np.array([0, 0, 1, 0, 0, 0, 0], dtype=bool)
NEXT_OBS = OBS + 100.0


def _d4rl(**extra):
    data = {"observations": OBS, "actions": ACT, "rewards": REW, "terminals": TERM}
    data["timeouts"] = TIMEOUT
    data.update(extra)
    return data


def test_d4rl_with_next_observations_keeps_every_transition(tmp_path):
    path = write_d4rl_file(tmp_path / "d.hdf5", _d4rl(next_observations=NEXT_OBS))
    td = read_d4rl_hdf5(path)
    assert td.batch_size == torch.Size([7])
    torch.testing.assert_close(td["observation"], torch.from_numpy(OBS))
    torch.testing.assert_close(td["action"], torch.from_numpy(ACT))
    torch.testing.assert_close(td["next", "observation"], torch.from_numpy(NEXT_OBS))
    torch.testing.assert_close(td["next", "reward"], torch.from_numpy(REW)[:, None])
    assert td["next", "reward"].dtype == torch.float32
    assert td["next", "terminated"].flatten().tolist() == TERM.tolist()
    # timeout at row 2 and the end-of-file cut at row 6 are truncations, not terminations
    assert td["next", "truncated"].flatten().tolist() == [0, 0, 1, 0, 0, 0, 1]
    assert td["next", "done"].flatten().tolist() == [0, 0, 1, 0, 1, 0, 1]
    assert td["episode"].tolist() == [0, 0, 0, 1, 1, 2, 2]
    for key in ("terminated", "truncated", "done"):
        assert td["next", key].shape == (7, 1) and td["next", key].dtype == torch.bool


def test_d4rl_without_next_observations_reconstructs_and_drops(tmp_path):
    td = read_d4rl_hdf5(write_d4rl_file(tmp_path / "d.hdf5", _d4rl()))
    # rows 2 (timeout) and 6 (end of file) have no recorded next state: dropped
    kept = [0, 1, 3, 4, 5]
    assert td.batch_size == torch.Size([5])
    torch.testing.assert_close(td["observation"], torch.from_numpy(OBS[kept]))
    torch.testing.assert_close(td["next", "reward"], torch.from_numpy(REW[kept])[:, None])
    expected_next = OBS[[1, 2, 4, 4, 6]]  # obs[i+1] inside episodes; terminal row 4 → its own obs
    torch.testing.assert_close(td["next", "observation"], torch.from_numpy(expected_next))
    # never zero-filled, never the next episode's first observation
    assert (td["next", "observation"].abs().sum(-1) > 0).all()
    assert not torch.equal(td["next", "observation"][1], torch.from_numpy(OBS[3]))
    assert td["next", "terminated"].flatten().tolist() == [0, 0, 0, 1, 0]
    assert not td["next", "truncated"].any()
    assert td["episode"].tolist() == [0, 0, 1, 1, 2]


def test_d4rl_terminal_rows_without_next_state_reach_critic_not_world_model(tmp_path):
    path = write_d4rl_file(tmp_path / "d.hdf5", _d4rl())
    critic_rows = load_d4rl_hdf5(path, batch_size=4)[:]
    assert critic_rows["next", "terminated"].flatten().tolist() == [0, 0, 0, 1, 0]
    torch.testing.assert_close(critic_rows["observation"][3], torch.from_numpy(OBS[4]))
    td = read_d4rl_hdf5(path)
    assert world_model_rows(td).tolist() == [True, True, True, False, True]
    model_rows = world_model_transitions(td)
    assert len(model_rows) == 4 and not model_rows["next", "terminated"].any()
    assert not any(torch.equal(o, torch.from_numpy(OBS[4])) for o in model_rows["observation"])
    # with recorded next states every row is a true transition: the world model keeps all
    full = read_d4rl_hdf5(write_d4rl_file(tmp_path / "n.hdf5", _d4rl(next_observations=NEXT_OBS)))
    assert world_model_rows(full).all() and len(world_model_transitions(full)) == 7


def test_d4rl_replay_buffer(tmp_path):
    rb = load_d4rl_hdf5(write_d4rl_file(tmp_path / "d.hdf5", _d4rl()), batch_size=4)
    assert isinstance(rb, TensorDictReplayBuffer)
    batch = rb.sample()
    assert batch.batch_size == torch.Size([4])
    assert batch["next", "reward"].shape == (4, 1)
    assert len(rb) == 5


def test_d4rl_missing_file_says_where_and_how(tmp_path):
    missing = tmp_path / "nope.hdf5"
    with pytest.raises(FileNotFoundError, match="nope.hdf5") as err:
        read_d4rl_hdf5(missing)
    assert "d4rl" in str(err.value) and "torchrl_leq.data.generate" in str(err.value)


def test_d4rl_corrupt_file(tmp_path):
    path = tmp_path / "bad.hdf5"
    path.write_bytes(b"this is not an hdf5 file" * 10)
    with pytest.raises(OSError, match="corrupt or not HDF5"):
        read_d4rl_hdf5(path)


def test_d4rl_missing_keys(tmp_path):
    path = write_d4rl_file(tmp_path / "d.hdf5", {"observations": OBS, "actions": ACT})
    with pytest.raises(KeyError, match="rewards.*terminals"):
        read_d4rl_hdf5(path)


def test_d4rl_length_mismatch(tmp_path):
    path = write_d4rl_file(tmp_path / "d.hdf5", _d4rl(rewards=REW[:5]))
    with pytest.raises(ValueError, match="different lengths"):
        read_d4rl_hdf5(path)


def _episode(rng, t, terminated):
    return {
        "observations": rng.normal(size=(t + 1, 3)).astype(np.float32) + 5.0,
        "actions": rng.uniform(-1, 1, size=(t, 2)).astype(np.float32),
        "rewards": rng.normal(size=t) + 2.0,
        "terminations": np.array([False] * (t - 1) + [terminated]),
        "truncations": np.array([False] * (t - 1) + [not terminated]),
    }


def test_minari_round_trip_exact_values(tmp_path):
    rng = np.random.default_rng(0)
    episodes = [_episode(rng, 4, True), _episode(rng, 3, False)]
    write_minari_dataset(tmp_path, "test/round-trip-v0", episodes)
    td = read_minari("test/round-trip-v0", root=tmp_path)
    assert td.batch_size == torch.Size([7])
    assert td["observation"].abs().sum() > 0  # TorchRL's Minari loader returns zeros here
    obs = np.concatenate([e["observations"][:-1] for e in episodes])
    nxt = np.concatenate([e["observations"][1:] for e in episodes])
    torch.testing.assert_close(td["observation"], torch.from_numpy(obs))
    torch.testing.assert_close(td["next", "observation"], torch.from_numpy(nxt))
    act = np.concatenate([e["actions"] for e in episodes])
    torch.testing.assert_close(td["action"], torch.from_numpy(act))
    rew = np.concatenate([e["rewards"] for e in episodes]).astype(np.float32)
    torch.testing.assert_close(td["next", "reward"], torch.from_numpy(rew)[:, None])
    assert td["next", "terminated"].flatten().tolist() == [0, 0, 0, 1, 0, 0, 0]
    assert td["next", "truncated"].flatten().tolist() == [0, 0, 0, 0, 0, 0, 1]
    assert td["episode"].tolist() == [0, 0, 0, 0, 1, 1, 1]
    rb = load_minari("test/round-trip-v0", root=tmp_path, batch_size=3)
    assert rb.sample().batch_size == torch.Size([3])


def test_minari_dict_observations(tmp_path):
    rng = np.random.default_rng(1)
    ep = _episode(rng, 3, True)
    goal = rng.normal(size=(4, 2)).astype(np.float32)
    ep["observations"] = {"observation": ep["observations"], "desired_goal": goal}
    write_minari_dataset(tmp_path, "test/dict-obs-v0", [ep])
    by_key = read_minari("test/dict-obs-v0", root=tmp_path, observation_key="observation")
    torch.testing.assert_close(
        by_key["observation"], torch.from_numpy(ep["observations"]["observation"][:-1])
    )
    flat = read_minari("test/dict-obs-v0", root=tmp_path)  # sorted keys: desired_goal, observation
    expected = np.concatenate([goal, ep["observations"]["observation"]], axis=-1)
    torch.testing.assert_close(flat["next", "observation"], torch.from_numpy(expected[1:]))
    with pytest.raises(KeyError, match="achieved_goal"):
        read_minari("test/dict-obs-v0", root=tmp_path, observation_key="achieved_goal")
    ordered = read_minari(
        "test/dict-obs-v0", root=tmp_path, observation_keys=("observation", "desired_goal")
    )
    expected = np.concatenate([ep["observations"]["observation"], goal], axis=-1)
    torch.testing.assert_close(ordered["observation"], torch.from_numpy(expected[:-1]))
    torch.testing.assert_close(ordered["next", "observation"], torch.from_numpy(expected[1:]))


def test_minari_unknown_dataset_says_where(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope/missing-v0") as err:
        read_minari("nope/missing-v0", root=tmp_path)
    assert str(tmp_path) in str(err.value) and "minari download" in str(err.value)


def test_minari_corrupt_dataset(tmp_path):
    data = tmp_path / "test" / "broken-v0" / "data"
    data.mkdir(parents=True)
    (data / "metadata.json").write_text("{not json")
    with pytest.raises(OSError, match="corrupt"):
        read_minari("test/broken-v0", root=tmp_path)
