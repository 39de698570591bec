"""Pixel point-maze: the generated point-maze datasets rendered by MuJoCo at 64×64, top-down.

:class:`PointMazeRenderer` draws the maze, the goal marker (red, at the task's fixed goal)
and the ball (green, drawn larger than it is) from a fixed top-down camera that fits the
maze's free cells, with MuJoCo's own
offscreen renderer on an EGL context (headless; it works whichever ``MUJOCO_GL`` MuJoCo was
imported with). About 8 ms a frame on this CPU.

:func:`render_pointmaze_dataset` renders a generated dataset (:mod:`torchrl_leq.data.generate`)
once and caches it as a V-D4RL-format folder (:mod:`torchrl_leq.data.vd4rl`, one ``*.npz``
per episode, plus the simulator ``state`` ``[T+1, 4]`` of every frame), so pixel training reads
the rendered maze and V-D4RL through the same loader. :func:`make_rendered_pointmaze_env` is
the evaluation env: the task's env whose observations are the rendered frames.

Example:
    >>> r = PointMazeRenderer("pointmaze-umaze")
    >>> frame = r.render([1.0, -1.0])
    >>> frame.shape, frame.dtype
    ((64, 64, 3), dtype('uint8'))
    >>> [round(float(v)) for v in r.xy_to_pixel([1.0, -1.0])]  # row, col of the ball
    [49, 49]
    >>> r.close()
"""

from __future__ import annotations

import math
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from tensordict import TensorDict
from tensordict.nn import TensorDictModuleBase
from torchrl.envs.utils import ExplorationType, set_exploration_type
from tqdm.auto import tqdm

from torchrl_leq.data.generate import DEFAULT_EPISODE_LENGTH, data_root, read_pointmaze_dataset
from torchrl_leq.data.vd4rl import write_vd4rl_episode
from torchrl_leq.envs.pointmaze import make_pointmaze_env
from torchrl_leq.tasks import PointMazeTask, resolve_task

__all__ = [
    "PointMazeRenderer",
    "rendered_dataset_path",
    "render_pointmaze_dataset",
    "RenderedPointMaze",
    "make_rendered_pointmaze_env",
    "act_on_frame",
    "evaluate_rendered",
]


BALL_RADIUS = 0.3
"""Drawn radius of the ball (maze units). The simulator's ball has radius 0.1 and its marker
0.2, ~4 px across in a 64 px frame of the whole umaze: an RSSM trained on such frames models
the static maze and barely the ball (linear probe R² of x, y 0.66 / 0.43, docs/pixels.md). The
physics is untouched: only the renderer's own copy of the model draws the larger marker."""

VIEWS = ("interior", "maze")
"""Camera framings: ``"interior"`` the free cells inside the outer wall ring (plus a margin
for the ball), ``"maze"`` the whole maze with its outer walls."""


class PointMazeRenderer:
    """Offscreen top-down renderer of a point-maze task at ``size × size`` pixels.

    ``render(xy)`` places the ball at ``xy`` (velocity is not visible) and returns an RGB
    ``uint8 [size, size, 3]`` frame, x to the right and y up. ``xy_to_pixel`` is the camera's
    projection of a maze point to (row, col) pixel coordinates. ``ball_radius`` (drawn only,
    :data:`BALL_RADIUS`) and ``view`` (:data:`VIEWS`) set what the frames show.
    """

    def __init__(
        self,
        task: PointMazeTask | str,
        size: int = 64,
        ball_radius: float = BALL_RADIUS,
        view: str = "interior",
    ) -> None:
        import mujoco
        from mujoco.egl import GLContext

        if view not in VIEWS:
            raise ValueError(f"view={view!r}: use one of {VIEWS}")
        if not ball_radius > 0:
            raise ValueError(f"ball_radius={ball_radius!r}: the drawn radius must be > 0")
        self.task = resolve_task(task)
        self.size, self.ball_radius, self.view = size, float(ball_radius), view
        self._env = make_pointmaze_env(self.task)
        self._env.reset(seed=0)  # puts the goal marker on the task's goal
        self.model, self.data = self._env.unwrapped.model, self._env.unwrapped.data
        # render-only: this env is never stepped, so the ball's visual site can be enlarged
        ball = mujoco.mj_name2id(self.model, mujoco.mjtObj.mjOBJ_SITE, "particle_site")
        self.model.site_size[ball, 0] = self.ball_radius
        self.model.site_rgba[ball] = (0.3, 1.0, 0.3, 1.0)  # brighter than the default green
        self._ctx = GLContext(size, size)
        self._ctx.make_current()
        self._scene = mujoco.MjvScene(self.model, maxgeom=1000)
        self._option, self._perturb = mujoco.MjvOption(), mujoco.MjvPerturb()
        self._con = mujoco.MjrContext(self.model, mujoco.mjtFontScale.mjFONTSCALE_150)
        mujoco.mjr_setBuffer(mujoco.mjtFramebuffer.mjFB_OFFSCREEN, self._con)
        rows, cols = len(self.task.maze_map), len(self.task.maze_map[0])
        # the maze (scaling 1) is centred at 0; "interior" leaves out the outer wall ring
        # except a margin that keeps the whole (enlarged) ball in view
        self.half_extent = (max(rows, cols) / 2.0 if view == "maze"
                            else max(rows, cols) / 2.0 - 1.0 + self.ball_radius + 0.05)
        fovy = math.radians(float(self.model.vis.global_.fovy))
        self._cam = mujoco.MjvCamera()
        self._cam.type = mujoco.mjtCamera.mjCAMERA_FREE
        self._cam.lookat[:] = 0.0
        self._cam.distance = self.half_extent / math.tan(fovy / 2.0)
        self._cam.elevation, self._cam.azimuth = -90.0, 90.0
        self._rect = mujoco.MjrRect(0, 0, size, size)
        self._buf = np.empty((size, size, 3), np.uint8)
        self._mujoco = mujoco

    def render(self, xy: Any) -> np.ndarray:
        """Frame with the ball at ``xy`` (2 numbers)."""
        mj = self._mujoco
        self._ctx.make_current()
        self.data.qpos[:2] = np.asarray(xy, dtype=np.float64)[:2]
        self.data.qvel[:] = 0.0
        mj.mj_forward(self.model, self.data)
        mj.mjv_updateScene(self.model, self.data, self._option, self._perturb, self._cam,
                           mj.mjtCatBit.mjCAT_ALL, self._scene)
        mj.mjr_render(self._rect, self._scene, self._con)
        mj.mjr_readPixels(self._buf, None, self._rect, self._con)
        return np.flipud(self._buf).copy()

    def render_many(self, xy: Any) -> np.ndarray:
        """Frames ``[N, size, size, 3]`` for ball positions ``xy [N, ≥2]``."""
        xy = np.asarray(xy)
        return np.stack([self.render(p) for p in xy]) if len(xy) else np.zeros(
            (0, self.size, self.size, 3), np.uint8)

    def xy_to_pixel(self, xy: Any) -> np.ndarray:
        """(row, col) pixel coordinates (pixel centres at integers) of maze point(s) ``xy``."""
        xy = np.asarray(xy, dtype=np.float64)
        col = (xy[..., 0] / self.half_extent + 1.0) / 2.0 * self.size - 0.5
        row = (1.0 - xy[..., 1] / self.half_extent) / 2.0 * self.size - 0.5
        return np.stack([row, col], -1)

    def close(self) -> None:
        """Free the GL context and the env."""
        self._con.free()
        self._ctx.free()
        self._env.close()


def rendered_dataset_path(
    task: PointMazeTask | str,
    steps: int,
    seed: int = 0,
    root: str | os.PathLike | None = None,
    episode_length: int = DEFAULT_EPISODE_LENGTH,
    size: int = 64,
    ball_radius: float = BALL_RADIUS,
    view: str = "interior",
) -> Path:
    """Cache folder of a rendered dataset: ``data_root(root)/pixels/<task>/s<seed>-n<steps>-
    T<episode_length>-<size>px-ball<ball_radius>-<view>``.

    Example:
        >>> rendered_dataset_path("pointmaze-umaze", 1000, root="/tmp/d").as_posix()
        '/tmp/d/pixels/pointmaze-umaze/s0-n1000-T1000-64px-ball0.3-interior'
    """
    name = f"s{seed}-n{steps}-T{episode_length}-{size}px-ball{float(ball_radius):g}-{view}"
    return data_root(root) / "pixels" / resolve_task(task).name / name


def render_pointmaze_dataset(
    task: PointMazeTask | str,
    steps: int,
    seed: int = 0,
    root: str | os.PathLike | None = None,
    episode_length: int = DEFAULT_EPISODE_LENGTH,
    size: int = 64,
    progress: bool = False,
    ball_radius: float = BALL_RADIUS,
    view: str = "interior",
) -> Path:
    """Render the generated dataset (generating it first if needed) into a cached V-D4RL folder.

    Every episode becomes one ``*.npz`` with ``image`` (frames of x_0..x_T), ``action``
    (previous actions, zeros at row 0), ``reward``, ``is_terminal`` (goal reached),
    ``is_first``/``is_last``/``discount`` and ``state`` (the simulator's ``[x, y, vx, vy]`` of
    each frame). Written to a temporary folder and renamed: a half-rendered cache is never
    reused. Returns the folder; the render time is in its ``render_seconds.txt``.

    Example:
        >>> path = render_pointmaze_dataset("pointmaze-umaze", 2_000)  # doctest: +SKIP
    """
    task = resolve_task(task)
    final = rendered_dataset_path(task, steps, seed, root, episode_length, size, ball_radius, view)
    if (final / "render_seconds.txt").is_file():
        return final
    td = read_pointmaze_dataset(task, steps, seed, root, episode_length)
    episode = td["episode"].numpy()
    bounds = np.flatnonzero(np.diff(episode)) + 1
    starts, ends = np.r_[0, bounds], np.r_[bounds, len(episode)]
    renderer = PointMazeRenderer(task, size, ball_radius, view)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".tmp-render-", dir=final.parent))
    bar = tqdm(total=len(episode), desc=f"render {task.name}", unit="frame", disable=not progress)
    began = time.perf_counter()
    try:
        for i, (s, e) in enumerate(zip(starts, ends)):
            obs = td["observation"][s:e].numpy()
            state = np.concatenate([obs, td["next", "observation"][e - 1 : e].numpy()])
            n = len(state)
            action = np.zeros((n, td["action"].shape[-1]), np.float32)
            action[1:] = td["action"][s:e].numpy()
            reward = np.zeros(n, np.float32)
            reward[1:] = td["next", "reward"][s:e, 0].numpy()
            terminal = np.zeros(n, bool)
            terminal[1:] = td["next", "terminated"][s:e, 0].numpy()
            ep = {"image": renderer.render_many(state), "action": action, "reward": reward,
                  "is_terminal": terminal, "discount": (~terminal).astype(np.float32),
                  "state": state.astype(np.float32)}
            write_vd4rl_episode(tmp, ep, index=i)
            bar.update(e - s)
        seconds = time.perf_counter() - began
        (tmp / "render_seconds.txt").write_text(
            f"{seconds:.3f} s for {len(episode) + len(starts)} frames "
            f"({1000 * seconds / (len(episode) + len(starts)):.2f} ms/frame)\n"
        )
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
    finally:
        bar.close()
        renderer.close()
        shutil.rmtree(tmp, ignore_errors=True)
    return final


class RenderedPointMaze(gym.Wrapper):
    """The point-maze evaluation env with rendered frames ``uint8 [size, size, 3]`` as
    observations; ``info["state"]`` keeps ``[x, y, vx, vy]``."""

    def __init__(self, env: gym.Env, renderer: PointMazeRenderer) -> None:
        super().__init__(env)
        self.renderer = renderer
        size = renderer.size
        self.observation_space = gym.spaces.Box(0, 255, (size, size, 3), np.uint8)

    def reset(self, **kwargs: Any) -> tuple[np.ndarray, dict[str, Any]]:
        state, info = self.env.reset(**kwargs)
        info["state"] = state
        return self.renderer.render(state[:2]), info

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        state, reward, terminated, truncated, info = self.env.step(action)
        info["state"] = state
        return self.renderer.render(state[:2]), reward, terminated, truncated, info

    def close(self) -> None:
        self.renderer.close()
        super().close()


def make_rendered_pointmaze_env(
    task: PointMazeTask | str,
    seed: int | None = None,
    size: int = 64,
    ball_radius: float = BALL_RADIUS,
    view: str = "interior",
) -> RenderedPointMaze:
    """Evaluation env of a point-maze task (:func:`make_pointmaze_env`) observed through
    :class:`PointMazeRenderer`.

    Example:
        >>> env = make_rendered_pointmaze_env("pointmaze-umaze", seed=0)
        >>> frame, info = env.reset(seed=0)
        >>> frame.shape, info["state"].shape
        ((64, 64, 3), (4,))
        >>> env.close()
    """
    task = resolve_task(task)
    return RenderedPointMaze(make_pointmaze_env(task, seed),
                             PointMazeRenderer(task, size, ball_radius, view))


def act_on_frame(policy: TensorDictModuleBase, frame: np.ndarray, first: bool) -> np.ndarray:
    """The action in ``[-1, 1]`` of a filtering pixel policy for one uint8 ``[H, W, 3]`` frame
    (given as ``"pixels"`` ``[1, H, W, 3]`` and ``"is_first"`` ``[1]``).

    Example:
        >>> from torchrl_leq.training.evaluation import RandomActor
        >>> actor = RandomActor(2, seed=0)
        >>> actor.in_keys = ["pixels"]
        >>> act_on_frame(actor, np.zeros((64, 64, 3), np.uint8), True).shape
        (2,)
    """
    # (contiguous: renderers may return flipped views, which torch cannot wrap)
    td = TensorDict({"pixels": torch.from_numpy(np.ascontiguousarray(frame)).unsqueeze(0),
                     "is_first": torch.tensor([first])}, [1])
    return policy(td).get("action")[0].clamp(-1.0, 1.0).cpu().numpy()


@torch.no_grad()
def evaluate_rendered(
    policy: TensorDictModuleBase,
    task: PointMazeTask | str,
    episodes: int = 10,
    seed: int = 0,
    *,
    size: int = 64,
    max_steps: int | None = None,
    ball_radius: float = BALL_RADIUS,
    view: str = "interior",
) -> dict[str, Any]:
    """Run ``episodes`` deterministic episodes of a pixel policy in the rendered env.

    ``policy`` reads ``"pixels"`` (uint8 ``[1, size, size, 3]``) and ``"is_first"`` and writes
    ``"action"`` (e.g. :class:`~torchrl_leq.envs.latent_env.LatentPolicy`; its ``reset()`` is
    called before each episode when it has one). Episode ``i`` is seeded ``seed + i``.
    Returns ``returns``, ``lengths``, ``success`` (lists) and ``success_rate``.

    Example:
        >>> from torchrl_leq.training.evaluation import RandomActor
        >>> actor = RandomActor(2, seed=0)
        >>> actor.in_keys = ["pixels"]
        >>> evaluate_rendered(actor, "pointmaze-umaze", episodes=1, max_steps=5)["lengths"]
        [5]
    """
    env = make_rendered_pointmaze_env(task, size=size, ball_radius=ball_radius, view=view)
    limit = max_steps if max_steps is not None else env.spec.max_episode_steps
    returns, lengths, success = [], [], []
    with set_exploration_type(ExplorationType.DETERMINISTIC):
        for i in range(episodes):
            if hasattr(policy, "reset"):
                policy.reset()
            frame, info = env.reset(seed=seed + i)
            total, steps, reached, first = 0.0, 0, False, True
            while steps < limit:
                action = act_on_frame(policy, frame, first)
                frame, reward, terminated, truncated, info = env.step(action)
                total, steps, first = total + float(reward), steps + 1, False
                reached = reached or bool(info.get("success", False))
                if terminated or truncated:
                    break
            returns.append(total)
            lengths.append(steps)
            success.append(reached)
    env.close()
    return {"returns": returns, "lengths": lengths, "success": success,
            "success_rate": float(np.mean(success))}
