"""Import gymnasium-robotics once, registered with gymnasium, without its import-time notice.

gymnasium-robotics 1.2.1-1.4.2 print a notice about the Adroit hand envs' rewards to stderr on
import; it does not concern the maze envs we use and would precede every error line.
"""

from __future__ import annotations

import contextlib
import io

import gymnasium as gym

with contextlib.redirect_stderr(io.StringIO()):
    import gymnasium_robotics

gym.register_envs(gymnasium_robotics)

__all__ = ["gymnasium_robotics"]
