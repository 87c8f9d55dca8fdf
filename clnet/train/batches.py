"""Which rows each step of an epoch trains on: the whole mini-batch in one process, or this
rank's part of it in data-parallel training.

A step is (first, rows, global_rows): this process trains on rows first .. first + rows of the
epoch's order of its samples (rows may be 0), and the step's whole batch has global_rows rows.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Plan:
    steps: list[tuple[int, int, int]]
    total: int  # samples of the whole data set, over every rank
    offsets: list[int] | None = None  # per step: this rank's first row within the step's global batch

    def offset(self, step: int) -> int:
        """Where this rank's rows start in step `step`'s global batch (0 in one process): what
        dropout masks are drawn by, so that the ranks draw one process's masks."""
        return 0 if self.offsets is None else self.offsets[step]


def one_process(samples: int, batch_size: int) -> Plan:
    """Batches of batch_size rows in order, and a last, smaller one with the rest."""
    starts = range(0, samples, batch_size)
    return Plan([(start, min(batch_size, samples - start), min(batch_size, samples - start)) for start in starts],
                samples)


def split(samples: int, batch_size: int, rank: int, size: int) -> Plan:
    """Every rank holds all the samples: each global batch is cut into `size` nearly equal,
    contiguous parts, and this rank takes part `rank`."""
    steps, offsets = [], []
    for first, rows, _ in one_process(samples, batch_size).steps:
        start, end = rows * rank // size, rows * (rank + 1) // size
        steps.append((first + start, end - start, rows))
        offsets.append(start)
    return Plan(steps, samples, offsets)


def sharded(shard_sizes: list[int], batch_size: int, rank: int) -> Plan:
    """Each rank holds its own shard: a global batch takes from each shard in proportion to its
    size (at least one row), and the epoch has as many steps as the slowest shard needs."""
    total = sum(shard_sizes)
    takes = [max(1, round(batch_size * n / total)) if n else 0 for n in shard_sizes]
    count = max(-(-n // take) for n, take in zip(shard_sizes, takes) if take)
    steps, offsets = [], []
    for step in range(count):
        rows = [max(0, min(take, n - step * take)) for n, take in zip(shard_sizes, takes)]
        steps.append((step * takes[rank], rows[rank], sum(rows)))
        offsets.append(sum(rows[:rank]))  # a global batch is the shards' parts in rank order
    return Plan(steps, total, offsets)
