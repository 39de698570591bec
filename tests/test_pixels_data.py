"""Rendered point-maze: frames agree with the simulator state; the cached V-D4RL-format dataset."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from torchrl_leq.data.generate import read_pointmaze_dataset
from torchrl_leq.data.pixels import (
    PointMazeRenderer,
    evaluate_rendered,
    make_rendered_pointmaze_env,
    render_pointmaze_dataset,
)
from torchrl_leq.data.vd4rl import read_vd4rl, read_vd4rl_episodes
from torchrl_leq.tasks import free_cells, get_pointmaze_task


def ball_centroid(frame: np.ndarray) -> np.ndarray:
    """(row, col) centre of the green ball's pixels."""
    f = frame.astype(int)
    mask = (f[..., 1] > f[..., 0] + 60) & (f[..., 1] > f[..., 2] + 60)
    rows, cols = np.nonzero(mask)
    assert len(rows) > 0, "no ball pixels in the frame"
    return np.array([rows.mean(), cols.mean()])


@pytest.fixture(scope="module")
def renderer():
    r = PointMazeRenderer("pointmaze-umaze")
    yield r
    r.close()


def test_ball_pixel_position_follows_x_y(renderer):
    task = get_pointmaze_task("pointmaze-umaze")
    rng = np.random.default_rng(0)
    goal = np.array(task.goal_xy)
    xy = [np.array(task.cell_to_xy(c)) + rng.uniform(-0.2, 0.2, 2) for c in free_cells(task)]
    xy = [p for p in xy if np.linalg.norm(p - goal) > 0.4]  # the goal marker may cover the ball
    centres = np.stack([ball_centroid(renderer.render(p)) for p in xy])
    predicted = renderer.xy_to_pixel(np.stack(xy))
    assert np.abs(centres - predicted).max() < 1.0  # within a pixel
    # x moves the ball right (col up), y moves it up (row down): the interior view frames the
    # 3 free cells plus a margin of ball radius + 0.05 on each side (3.7 maze units in 64 px)
    px = 64 / (3 + 2 * (0.3 + 0.05))
    # (away from walls: their tops, above the ball, hide part of a ball that touches them)
    a, b = renderer.render([0.1, -1.0]), renderer.render([1.1, -1.0])
    assert ball_centroid(b)[1] - ball_centroid(a)[1] == pytest.approx(px, abs=1.0)
    a, b = renderer.render([1.0, -1.1]), renderer.render([1.0, 0.9])
    assert ball_centroid(a)[0] - ball_centroid(b)[0] == pytest.approx(2 * px, abs=1.0)


def test_frames_show_only_the_ball_moving(renderer):
    a, b = renderer.render([1.0, -1.0]), renderer.render([1.0, 1.0])
    changed = np.any(a != b, axis=-1)
    rows, cols = np.nonzero(changed)
    # only pixels within the drawn ball (radius 0.3 maze units) of its two positions differ:
    # the background and the goal marker are fixed
    radius_px = 0.3 * 64 / (2 * renderer.half_extent)
    dist = np.min([np.hypot(rows - r, cols - c) for r, c in renderer.xy_to_pixel(
        np.array([[1.0, -1.0], [1.0, 1.0]]))], axis=0)
    assert dist.max() < radius_px + 1.5
    assert changed.sum() > 2 * np.pi * (radius_px - 1) ** 2  # both discs, not just an edge


def test_ball_is_drawn_at_its_radius_and_the_physics_is_untouched():
    areas = []
    for radius in (0.1, 0.3):
        r = PointMazeRenderer("pointmaze-umaze", ball_radius=radius)
        f = r.render([1.0, -1.0]).astype(int)
        areas.append(((f[..., 1] > f[..., 0] + 60) & (f[..., 1] > f[..., 2] + 60)).sum()
                     / (64 / (2 * r.half_extent)) ** 2)  # maze units²
        r.close()
    np.testing.assert_allclose(areas, np.pi * np.array([0.1, 0.3]) ** 2, rtol=0.35)
    env = make_rendered_pointmaze_env("pointmaze-umaze", ball_radius=0.5)
    model = env.unwrapped.model  # the simulated env's model, not the renderer's
    import mujoco

    geom = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_GEOM, "particle_geom")
    assert model.geom_size[geom, 0] == 0.1 and env.renderer.ball_radius == 0.5
    env.close()
    with pytest.raises(ValueError, match="view="):
        PointMazeRenderer("pointmaze-umaze", view="top")
    with pytest.raises(ValueError, match="ball_radius=0"):
        PointMazeRenderer("pointmaze-umaze", ball_radius=0)


def test_rendered_dataset_matches_the_generated_data(tmp_path):
    steps = 300
    path = render_pointmaze_dataset("pointmaze-umaze", steps, seed=3, root=tmp_path)
    td = read_pointmaze_dataset("pointmaze-umaze", steps, seed=3, root=tmp_path)
    seq = read_vd4rl(path)
    episodes = read_vd4rl_episodes(path)
    n_eps = len(torch.unique(td["episode"]))
    assert len(episodes) == n_eps and seq.shape == (steps + n_eps,)
    first = td["episode"] == 0
    ep = episodes[0]
    n = int(first.sum())
    np.testing.assert_allclose(ep["state"][:n], td["observation"][first].numpy())
    np.testing.assert_allclose(ep["state"][n], td["next", "observation"][first][-1].numpy())
    np.testing.assert_allclose(ep["action"][1:], td["action"][first].numpy())
    assert not ep["action"][0].any()
    np.testing.assert_allclose(ep["reward"][1:], td["next", "reward"][first, 0].numpy())
    r = PointMazeRenderer("pointmaze-umaze")
    for t in (0, n // 2, n):  # frames agree with the simulator state
        np.testing.assert_array_equal(ep["image"][t], r.render(ep["state"][t, :2]))
        predicted = r.xy_to_pixel(ep["state"][t, :2])
        assert np.abs(ball_centroid(ep["image"][t]) - predicted).max() < 1.5
    r.close()
    mtime = (path / "render_seconds.txt").stat().st_mtime
    assert render_pointmaze_dataset("pointmaze-umaze", steps, seed=3, root=tmp_path) == path
    assert (path / "render_seconds.txt").stat().st_mtime == mtime  # cached, not re-rendered


def test_rendered_env_and_evaluation():
    env = make_rendered_pointmaze_env("pointmaze-umaze")
    frame, info = env.reset(seed=0)
    np.testing.assert_array_equal(frame, env.renderer.render(info["state"][:2]))
    frame, _, _, _, info = env.step(np.array([1.0, 0.0], np.float32))
    np.testing.assert_array_equal(frame, env.renderer.render(info["state"][:2]))
    env.close()

    class GoRight(torch.nn.Module):
        in_keys, out_keys = ["pixels"], ["action"]

        def forward(self, td):
            return td.set("action", torch.tensor([[1.0, 0.0]]))

    res = evaluate_rendered(GoRight(), "pointmaze-umaze", episodes=2, max_steps=20)
    assert res["lengths"] == [20, 20] and res["success_rate"] == 0.0
