"""Where a supervised run's tasks come from: the training meta-batches (one checkpointed
``torch.Generator``) and the held-out tasks (their own seed, never drawn by training)."""

from __future__ import annotations

import torch

from metarl.supervised.config import SupervisedConfig
from metarl.supervised.episodes import EpisodeSampler
from metarl.supervised.fewshot_data import episode_sampler
from metarl.supervised.tasks import Batch, LinearTaskPool, sample_linear, sample_sinusoid

POOL_SEED_OFFSET = 1_000_003  # the linear task pool has its own stream, apart from the batches


def to_device(batch: Batch, device: torch.device) -> Batch:
    """Every tensor of ``batch`` on ``device``."""
    return {k: v.to(device) for k, v in batch.items()}


class TrainSampler:
    """Training meta-batches drawn from one ``torch.Generator`` (its state is checkpointed)."""

    def __init__(self, cfg: SupervisedConfig) -> None:
        self.cfg = cfg
        self.generator = torch.Generator().manual_seed(cfg.seed)
        self.pool: LinearTaskPool | None = None
        self.episodes: EpisodeSampler | None = None
        if cfg.is_classification:
            self.episodes = classification_sampler(cfg, "train")
        if cfg.task == "linear":
            pool_gen = torch.Generator().manual_seed(cfg.seed + POOL_SEED_OFFSET)
            self.pool = LinearTaskPool(cfg.linear_spec, cfg.m, cfg.n_t, cfg.n_v, pool_gen)

    def sample(self, device: torch.device) -> tuple[Batch, Batch]:
        """One meta-batch of support and query sets on ``device``."""
        if self.episodes is not None:
            support, query = self.episodes.sample(self.cfg.meta_batch, self.generator)
        elif self.pool is not None:
            support, query = self.pool.sample(self.cfg.meta_batch, self.generator)
        else:
            support, query = sample_sinusoid(self.cfg.meta_batch, self.cfg.shots,
                                             self.cfg.query, self.generator)
        return to_device(support, device), to_device(query, device)


def heldout_tasks(cfg: SupervisedConfig, tasks: int, seed: int) -> tuple[Batch, Batch]:
    """Fresh held-out tasks, never drawn by training (own seed; linear: not from the pool)."""
    generator = torch.Generator().manual_seed(seed)
    if cfg.task == "linear":
        return sample_linear(tasks, cfg.linear_spec, cfg.n_t, cfg.n_v, generator)
    return sample_sinusoid(tasks, cfg.shots, cfg.eval_query_size, generator)


def classification_sampler(cfg: SupervisedConfig, part: str) -> EpisodeSampler:
    """The N-way K-shot episode sampler of split ``part`` (``train`` or ``test``) of ``cfg``."""
    return episode_sampler(cfg.task, cfg.data_root, part, split_seed=cfg.split_seed,
                           test_rotations=cfg.test_rotations, ways=cfg.ways, shots=cfg.shots,
                           queries=cfg.queries_per_class)
