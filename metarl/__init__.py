"""metarl: meta-reinforcement learning on Gymnasium/MuJoCo with a functional meta-learning core."""

from __future__ import annotations

__version__ = "0.1.0"
