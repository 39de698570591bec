"""Content-keyed caches: fingerprints of dataset files / directories / transitions, and cache
entries that are detected as corrupt, moved aside (kept) and rebuilt."""

import hashlib
import os
import warnings

import h5py
import numpy as np
import pytest
import torch
from tensordict import TensorDict

from torchrl_leq.data.fingerprint import dataset_fingerprint, transitions_fingerprint
from torchrl_leq.modules import ProbabilisticEnsemble
from torchrl_leq.training.cache import cache_key, cached, ensure_built
from torchrl_leq.training.world_model import load_world_model, save_world_model


# ------------------------------------------------------------------ fingerprints
def test_dataset_fingerprint_of_a_file_matches_a_hand_computed_sha256(tmp_path):
    p = tmp_path / "d.bin"
    p.write_bytes(b"abc")
    expected = hashlib.sha256(b"torchrl_leq.dataset.v1\0full\0size=3\0abc").hexdigest()
    assert dataset_fingerprint(p) == expected


def test_full_fingerprint_sees_a_same_size_rewrite_even_with_the_old_mtime(tmp_path):
    p = tmp_path / "d.hdf5"
    p.write_bytes(b"a" * 5000)
    stat = p.stat()
    full, quick = dataset_fingerprint(p), dataset_fingerprint(p, mode="quick")
    p.write_bytes(b"a" * 4000 + b"b" * 1000)
    os.utime(p, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert dataset_fingerprint(p) != full
    assert dataset_fingerprint(p, mode="quick") != quick  # the change is within the first MiB


def test_quick_fingerprint_trusts_size_and_mtime_beyond_its_edges(tmp_path):
    p = tmp_path / "big.bin"
    data = bytearray(3 << 20)
    p.write_bytes(bytes(data))
    stat = p.stat()
    quick, full = dataset_fingerprint(p, mode="quick"), dataset_fingerprint(p)
    data[(3 << 20) // 2] = 1  # the middle MiB: quick mode does not read it
    p.write_bytes(bytes(data))
    os.utime(p, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert dataset_fingerprint(p, mode="quick") == quick  # the documented blind spot
    assert dataset_fingerprint(p) != full
    os.utime(p, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1))
    assert dataset_fingerprint(p, mode="quick") != quick  # a rewrite moves the mtime


def test_directory_fingerprint_covers_names_and_contents_but_not_hidden_tmp_files(tmp_path):
    d = tmp_path / "minari_ds"
    (d / "data").mkdir(parents=True)
    (d / "data/main_data.hdf5").write_bytes(b"x" * 10)
    (d / "data/metadata.json").write_text("{}")
    base = dataset_fingerprint(d)
    (d / "data/.tmp-write").write_bytes(b"junk")
    assert dataset_fingerprint(d) == base
    (d / "data/metadata.json").rename(d / "data/other.json")
    assert dataset_fingerprint(d) != base


def test_fingerprint_input_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="No dataset at .*missing"):
        dataset_fingerprint(tmp_path / "missing")
    with pytest.raises(ValueError, match="mode must be one of"):
        dataset_fingerprint(tmp_path, mode="fast")


def test_transitions_fingerprint_is_content_not_layout():
    x = torch.arange(12.0).view(3, 4)
    a = TensorDict({"observation": x, "next": {"reward": torch.ones(3, 1)}}, [3])
    b = TensorDict(
        {"next": {"reward": torch.ones(3, 1)}, "observation": x.t().contiguous().t()}, [3]
    )
    assert not b["observation"].is_contiguous()
    assert transitions_fingerprint(a) == transitions_fingerprint(b)


@pytest.mark.parametrize(
    "change",
    ["value", "dtype", "shape", "key", "reward_transform", "extra_key", "bool_flag"],
)
def test_transitions_fingerprint_changes_with_everything_that_shapes_the_data(change):
    obs = torch.arange(12.0).view(3, 4)
    td = TensorDict(
        {
            "observation": obs,
            "next": {"reward": torch.ones(3, 1), "done": torch.zeros(3, 1, dtype=torch.bool)},
        },
        [3],
    )
    base = transitions_fingerprint(td)
    other = td.clone()
    if change == "value":
        other["observation"][2, 3] = -1.0
    elif change == "dtype":
        other["observation"] = obs.double()
    elif change == "shape":
        other["observation"] = obs.view(3, 2, 2)
    elif change == "key":  # e.g. another observation_key
        other = other.rename_key_("observation", "achieved_goal")
    elif change == "reward_transform":
        other["next", "reward"] = other["next", "reward"] - 1
    elif change == "extra_key":
        other["action"] = torch.zeros(3, 2)
    else:
        other["next", "done"][0] = True
    assert transitions_fingerprint(other) != base


# ------------------------------------------------------------------ cached()
def int_entry(tmp_path):
    calls = {"build": 0}

    def build():
        calls["build"] += 1
        return 7

    def save(path, value):
        path.write_text(str(value))

    def load(path):
        return int(path.read_text())

    return tmp_path / f"{cache_key({'n': 7})}.txt", build, load, save, calls


def test_cache_key_depends_on_every_value_not_on_order():
    assert cache_key({"a": 1, "b": {"c": [1, 2]}}) == cache_key({"b": {"c": [1, 2]}, "a": 1})
    assert cache_key({"a": 1, "b": {"c": [1, 2]}}) != cache_key({"a": 1, "b": {"c": [2, 1]}})
    assert cache_key({"x": 1}, length=8) == hashlib.sha256(b'{"x": 1}').hexdigest()[:8]


def test_cached_builds_once_then_loads(tmp_path):
    path, build, load, save, calls = int_entry(tmp_path)
    assert cached(path, build, load=load, save=save) == 7
    assert cached(path, build, load=load, save=save) == 7
    assert calls["build"] == 1 and path.read_text() == "7"


def test_cached_corrupt_entry_is_reported_kept_aside_and_rebuilt(tmp_path):
    path, build, load, save, calls = int_entry(tmp_path)
    path.write_text("not a number")
    with pytest.warns(
        RuntimeWarning,
        match=f"world model at {path} is unusable .*ValueError.*moved to .*corrupt-.*rebuilding",
    ):
        assert cached(path, build, load=load, save=save, what="world model") == 7
    aside = list(tmp_path.glob("*.corrupt-*"))
    assert [p.read_text() for p in aside] == ["not a number"] and calls["build"] == 1


def test_cached_entry_that_does_not_fit_is_rebuilt(tmp_path):
    path, build, load, save, calls = int_entry(tmp_path)
    path.write_text("5")

    def check(value):
        if value != 7:
            raise ValueError(f"width {value}, expected 7")

    with pytest.warns(RuntimeWarning, match="width 5, expected 7"):
        assert cached(path, build, load=load, save=save, check=check) == 7
    assert path.read_text() == "7"


def test_cached_permission_error_is_not_treated_as_corruption(tmp_path):
    path, build, _, save, calls = int_entry(tmp_path)
    path.write_text("7")

    def load(p):
        raise PermissionError(f"denied: {p}")

    with pytest.raises(PermissionError, match="denied"):
        cached(path, build, load=load, save=save)
    assert path.read_text() == "7" and not list(tmp_path.glob("*.corrupt-*"))


def test_cached_unwritable_cache_warns_and_returns_the_built_object(tmp_path):
    path, build, load, _, calls = int_entry(tmp_path)

    def save(p, value):
        raise OSError(28, "No space left on device")

    with pytest.warns(RuntimeWarning, match="could not write .*No space left.*continuing"):
        assert cached(path, build, load=load, save=save) == 7
    assert not path.exists()


def test_cached_disabled_always_builds_and_writes_nothing(tmp_path):
    path, build, load, save, calls = int_entry(tmp_path)
    cached(path, build, load=load, save=save, enabled=False)
    cached(path, build, load=load, save=save, enabled=False)
    assert calls["build"] == 2 and not path.exists()


def tiny_model(seed=0, obs_dim=3):
    torch.manual_seed(seed)
    return ProbabilisticEnsemble(
        obs_dim, 2, num_members=3, num_elites=2, hidden_dims=(8,), weight_decays=(0.0, 0.0)
    )


def same_weights(a, b):
    return all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))


@pytest.mark.parametrize("damage", ["truncate", "flip_byte", "zero_length", "garbage"])
def test_cached_world_model_heals_from_damage(tmp_path, damage):
    path = tmp_path / "wm.pt"
    save_world_model(path, tiny_model(0))
    data = bytearray(path.read_bytes())
    if damage == "truncate":
        data = data[: len(data) // 2]
    elif damage == "flip_byte":
        data[len(data) - 100] ^= 0xFF
    elif damage == "zero_length":
        data = b""
    else:
        data = b"\x00garbage" * 10
    path.write_bytes(bytes(data))
    with pytest.warns(RuntimeWarning, match="cached world model at .*wm.pt is unusable"):
        model = cached(
            path,
            lambda: tiny_model(1),
            load=load_world_model,
            save=save_world_model,
            what="cached world model",
        )
    assert same_weights(model, tiny_model(1)) and same_weights(load_world_model(path), model)
    assert len(list(tmp_path.glob("wm.pt.corrupt-*"))) == 1


def test_cached_world_model_of_the_wrong_width_is_rebuilt(tmp_path):
    path = tmp_path / "wm.pt"
    save_world_model(path, tiny_model(0, obs_dim=5))

    def check(model):
        if model.config["obs_dim"] != 3:
            raise ValueError(f"observation width {model.config['obs_dim']}, data has 3")

    with pytest.warns(RuntimeWarning, match="observation width 5, data has 3"):
        model = cached(
            path, lambda: tiny_model(0), load=load_world_model, save=save_world_model, check=check
        )
    assert model.config["obs_dim"] == 3


# ------------------------------------------------------------------ ensure_built()
def write_d4rl(path, n=20, obs_dim=3):
    with h5py.File(path, "w") as f:
        f["observations"] = np.zeros((n, obs_dim), np.float32)
        f["actions"] = np.zeros((n, 2), np.float32)


def check_d4rl(path):
    with h5py.File(path, "r") as f:
        if f["observations"].shape[1] != 3:
            raise ValueError("wrong observation width")


def test_ensure_built_builds_a_missing_entry_once(tmp_path):
    calls = []
    path = tmp_path / "smoke.hdf5"
    for _ in range(2):
        ensure_built(path, lambda p: calls.append(write_d4rl(p)), check=check_d4rl)
    assert len(calls) == 1


@pytest.mark.parametrize("damage", ["truncated_hdf5", "text", "wrong_width"])
def test_ensure_built_replaces_a_bad_generated_dataset(tmp_path, damage):
    path = tmp_path / "smoke.hdf5"
    write_d4rl(path, obs_dim=5 if damage == "wrong_width" else 3)
    if damage == "truncated_hdf5":
        path.write_bytes(path.read_bytes()[:500])
    elif damage == "text":
        path.write_text("oops")
    with pytest.warns(RuntimeWarning, match="smoke dataset at .*smoke.hdf5 is unusable"):
        ensure_built(path, write_d4rl, check=check_d4rl, what="smoke dataset")
    check_d4rl(path)
    assert len(list(tmp_path.glob("smoke.hdf5.corrupt-*"))) == 1


def test_ensure_built_directory_entry_with_a_missing_file_is_set_aside(tmp_path):
    d = tmp_path / "dataset-v0"

    def build(path):
        (path / "data").mkdir(parents=True)
        write_d4rl(path / "data" / "main_data.hdf5")

    def check(path):
        check_d4rl(path / "data" / "main_data.hdf5")

    build(d)
    (d / "data/main_data.hdf5").unlink()  # an interrupted copy
    with pytest.warns(RuntimeWarning, match="unusable .*FileNotFoundError"):
        ensure_built(d, build, check=check)
    check(d)
    aside = list(tmp_path.glob("dataset-v0.corrupt-*"))
    assert len(aside) == 1 and (aside[0] / "data").is_dir()


def test_ensure_built_that_cannot_build_a_good_entry_says_so(tmp_path):
    path = tmp_path / "x.hdf5"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(RuntimeError, match="rebuilt at .*x.hdf5 still fails its check"):
            ensure_built(path, lambda p: write_d4rl(p, obs_dim=4), check=check_d4rl)
