"""V-D4RL 64px episode files: exact values read back from files written in the released format."""

from __future__ import annotations

import io
import re

import numpy as np
import pytest
import torch

from torchrl_leq.data.vd4rl import (
    read_vd4rl,
    read_vd4rl_episodes,
    vd4rl_transitions,
    write_vd4rl_episode,
)


def released_style_episode(rng, n: int, terminal_at: int | None = None) -> dict:
    """An episode exactly as V-D4RL's hdf5_to_npz / Offline DV2 write it."""
    is_terminal = np.zeros(n, bool)
    if terminal_at is not None:
        is_terminal[terminal_at] = True
    return {
        "image": rng.integers(0, 256, (n, 64, 64, 3), dtype=np.uint8),
        "action": np.concatenate([np.zeros((1, 6)), rng.uniform(-1, 1, (n - 1, 6))]).astype(
            np.float32),
        "reward": np.concatenate([[0.0], rng.uniform(0, 1, n - 1)]).astype(np.float32),
        "discount": (~is_terminal).astype(np.float32),
        "is_last": np.arange(n) == n - 1,
        "is_first": np.arange(n) == 0,
        "is_terminal": is_terminal,
    }


def save_like_vd4rl(directory, name: str, episode: dict) -> None:
    with io.BytesIO() as f1:
        np.savez_compressed(f1, **episode)
        (directory / name).write_bytes(f1.getvalue())


@pytest.fixture
def folder(tmp_path):
    rng = np.random.default_rng(0)
    a, b = released_style_episode(rng, 5), released_style_episode(rng, 4, terminal_at=3)
    # file names sort by timestamp: b was written first
    save_like_vd4rl(tmp_path, "20220101T000001-" + "f" * 32 + "-5.npz", a)
    save_like_vd4rl(tmp_path, "20220101T000000-" + "0" * 32 + "-4.npz", b)
    return tmp_path, [b, a]


def test_read_vd4rl_exact_values(folder):
    path, (first, second) = folder
    td = read_vd4rl(path)
    assert td.shape == (9,)
    np.testing.assert_array_equal(td["pixels"][:4].numpy(), first["image"].transpose(0, 3, 1, 2))
    np.testing.assert_array_equal(td["pixels"][4:].numpy(), second["image"].transpose(0, 3, 1, 2))
    assert td["pixels"].dtype == torch.uint8
    np.testing.assert_array_equal(td["action"].numpy(),
                                  np.concatenate([first["action"], second["action"]]))
    np.testing.assert_array_equal(td["reward"].numpy(),
                                  np.concatenate([first["reward"], second["reward"]]))
    assert td["is_first"].tolist() == [True, False, False, False, True, False, False, False, False]
    assert td["is_terminal"].tolist() == [False] * 3 + [True] + [False] * 5
    assert td["is_last"].tolist() == [False] * 3 + [True] + [False] * 4 + [True]
    assert td["episode"].tolist() == [0] * 4 + [1] * 5
    assert td["discount"].tolist() == [1.0] * 3 + [0.0] + [1.0] * 5


def test_transitions_pair_frames_with_the_next_rows_action_and_reward(folder):
    path, (first, second) = folder
    tr = vd4rl_transitions(read_vd4rl(path))
    assert tr.shape == (3 + 4,)
    # transition 1 of episode 0: x_1 --a (row 2's action)--> x_2, reward of row 2
    np.testing.assert_array_equal(tr["pixels"][1].numpy(), first["image"][1].transpose(2, 0, 1))
    np.testing.assert_array_equal(tr["next", "pixels"][1].numpy(),
                                  first["image"][2].transpose(2, 0, 1))
    np.testing.assert_array_equal(tr["action"][1].numpy(), first["action"][2])
    assert float(tr["next", "reward"][1]) == pytest.approx(float(first["reward"][2]))
    assert tr["next", "terminated"].squeeze(-1).tolist() == [False, False, True] + [False] * 4
    assert tr["next", "truncated"].squeeze(-1).tolist() == [False] * 6 + [True]
    np.testing.assert_array_equal(tr["action"][3:].numpy(), second["action"][1:])


def test_old_files_without_is_terminal_use_the_discount(tmp_path):
    ep = released_style_episode(np.random.default_rng(1), 3, terminal_at=2)
    del ep["is_terminal"]
    save_like_vd4rl(tmp_path, "20220101T000000-" + "a" * 32 + "-3.npz", ep)
    assert read_vd4rl_episodes(tmp_path)[0]["is_terminal"].tolist() == [False, False, True]


def test_writer_uses_the_released_name_and_keys(tmp_path):
    ep = released_style_episode(np.random.default_rng(2), 3)
    minimal = {k: ep[k] for k in ("image", "action", "reward")}
    path = write_vd4rl_episode(tmp_path, minimal, index=7)
    assert re.fullmatch(r"\d{8}T\d{6}-[0-9a-f]{32}-3\.npz", path.name)
    assert path.name.split("-")[1] == f"{7:032x}"
    with np.load(path) as data:
        assert set(data.files) == {"image", "action", "reward", "discount", "is_first",
                                   "is_last", "is_terminal"}
        for key in ep:
            np.testing.assert_array_equal(data[key], ep[key])


def test_errors_say_what_to_fix(tmp_path):
    with pytest.raises(FileNotFoundError, match="64px folder"):
        read_vd4rl(tmp_path / "missing")
    with pytest.raises(FileNotFoundError, match="no \\*.npz"):
        read_vd4rl(tmp_path)
    save_like_vd4rl(tmp_path, "x-" + "0" * 32 + "-1.npz", {"image": np.zeros((1, 64, 64, 3))})
    with pytest.raises(ValueError, match="lacks"):
        read_vd4rl(tmp_path)
    with pytest.raises(ValueError, match="missing 'reward'"):
        write_vd4rl_episode(tmp_path, {"image": np.zeros((1, 64, 64, 3)), "action": np.zeros(1)})
