"""stable-baselines3 ``VecEnv`` view of a :class:`~metarl.envs.interface.BatchedTaskEnv`.

SB3 (Raffin et al., 2021, "Stable-Baselines3: Reliable Reinforcement Learning
Implementations", JMLR) steps a ``VecEnv``: ``step_wait`` returns ``(obs, rewards, dones,
infos)`` with one info dict per env, the last observation of a finished episode in
``infos[i]["terminal_observation"]`` and ``infos[i]["TimeLimit.truncated"]``. This adapter gives
SB3 the batched engine's speed. SB3 is imported only when :func:`to_sb3` is called (it imports
torch, which nothing else under ``envs/`` may).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from .interface import BatchedTaskEnv

_ADAPTER: type | None = None


def to_sb3(vec: BatchedTaskEnv) -> Any:
    """Wrap ``vec`` as a ``stable_baselines3.common.vec_env.VecEnv``.

    ``VecEnv.seed(s)`` then ``reset()`` seeds env ``i`` with ``s + i``, the batched engine's
    own convention. Attribute calls (``get_attr``, ``env_method``) reach the batched env itself
    for every index, since its environments are rows of arrays, not objects.
    """
    global _ADAPTER
    if not isinstance(vec, BatchedTaskEnv):
        raise ValueError(f"'vec' must be a BatchedTaskEnv, got {type(vec).__name__}")
    if _ADAPTER is None:
        _ADAPTER = _adapter_class()
    return _ADAPTER(vec)


def _adapter_class() -> type:
    from stable_baselines3.common.vec_env import VecEnv

    class SB3BatchedVecEnv(VecEnv):
        """SB3 ``VecEnv`` over a batched engine (see :func:`to_sb3`)."""

        def __init__(self, vec: BatchedTaskEnv) -> None:
            self.vec = vec
            self._actions: np.ndarray | None = None
            super().__init__(vec.num_envs, vec.single_observation_space,
                             vec.single_action_space)

        def reset(self) -> np.ndarray:
            seeds = None if all(s is None for s in self._seeds) else list(self._seeds)
            options = self._options[0] or None
            obs, _ = self.vec.reset(seed=seeds, options=options)
            self._reset_seeds()
            self._reset_options()
            return obs.astype(self.observation_space.dtype, copy=False)  # type: ignore[arg-type]

        def step_async(self, actions: np.ndarray) -> None:
            self._actions = np.asarray(actions)

        def step_wait(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[dict[str, Any]]]:
            assert self._actions is not None, "step_async must come before step_wait"
            obs, rewards, terminated, truncated, info = self.vec.step(self._actions)
            dones = terminated | truncated
            infos = per_env_infos(info, terminated, truncated)
            dtype: Any = self.observation_space.dtype
            return obs.astype(dtype, copy=False), rewards.astype(np.float32), dones, infos

        def close(self) -> None:
            self.vec.close()

        def get_attr(self, attr_name: str, indices: Any = None) -> list[Any]:
            return [getattr(self.vec, attr_name) for _ in self._get_indices(indices)]

        def set_attr(self, attr_name: str, value: Any, indices: Any = None) -> None:
            setattr(self.vec, attr_name, value)

        def env_method(self, method_name: str, *method_args: Any, indices: Any = None,
                       **method_kwargs: Any) -> list[Any]:
            method = getattr(self.vec, method_name)
            return [method(*method_args, **method_kwargs) for _ in self._get_indices(indices)]

        def env_is_wrapped(self, wrapper_class: type, indices: Any = None) -> list[bool]:
            return [False for _ in self._get_indices(indices)]

        def get_images(self) -> Sequence[np.ndarray | None]:
            return [None] * self.num_envs

    return SB3BatchedVecEnv


def per_env_infos(info: dict[str, Any], terminated: np.ndarray,
                  truncated: np.ndarray) -> list[dict[str, Any]]:
    """SB3's list of info dicts from a vector info dict (``_key`` masks select the envs)."""
    n = len(terminated)
    infos: list[dict[str, Any]] = [{} for _ in range(n)]
    for key, value in info.items():
        if key.startswith("_") or key == "final_obs":
            continue
        mask = info.get(f"_{key}", np.ones(n, dtype=bool))
        for i in np.flatnonzero(mask):
            infos[i][key] = value[i]
    final = info.get("_final_obs", np.zeros(n, dtype=bool))
    for j, env_info in enumerate(infos):
        env_info["TimeLimit.truncated"] = bool(truncated[j] and not terminated[j])
        if final[j]:
            env_info["terminal_observation"] = info["final_obs"][j]
    return infos
