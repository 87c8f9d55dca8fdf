"""Which rows each step trains on, in one process and on the ranks of data-parallel training."""

import pytest

from clnet.train import batches


def test_one_process_batches_cover_the_samples_in_order():
    assert batches.one_process(23, 10).steps == [(0, 10, 10), (10, 10, 10), (20, 3, 3)]


@pytest.mark.parametrize("samples, batch, size", [(61, 16, 2), (61, 16, 4), (5, 8, 4), (100, 7, 3), (3, 3, 5)])
def test_split_cuts_each_batch_into_contiguous_parts(samples, batch, size):
    plans = [batches.split(samples, batch, rank, size) for rank in range(size)]
    whole = batches.one_process(samples, batch)
    for step, (first, rows, _) in enumerate(whole.steps):
        parts = [plan.steps[step] for plan in plans]
        assert all(g == rows for _, _, g in parts)
        covered = [i for f, n, _ in parts for i in range(f, f + n)]
        assert covered == list(range(first, first + rows))  # every row once, in rank order


@pytest.mark.parametrize("shards, batch", [([31, 30], 16), ([10, 50, 3], 8), ([7], 4), ([0, 9], 4)])
def test_sharded_steps_take_every_row_of_every_shard_once(shards, batch):
    plans = [batches.sharded(shards, batch, rank) for rank in range(len(shards))]
    assert len({len(plan.steps) for plan in plans}) == 1 and all(plan.total == sum(shards) for plan in plans)
    for rank, plan in enumerate(plans):
        rows = [i for f, n, _ in plan.steps for i in range(f, f + n)]
        assert rows == list(range(shards[rank]))
    for step in range(len(plans[0].steps)):
        assert {plan.steps[step][2] for plan in plans} == {sum(plan.steps[step][1] for plan in plans)}
