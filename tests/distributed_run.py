"""Run by tests/test_distributed.py under mpiexec: one data-parallel training, whose history and
weights rank 0 writes to argv[1]. argv[2]: the optimizer ("sgd" or "adam"); argv[3]: "whole",
"sharded", "whole-dropout", "sharded-dropout" (the network with dropout layers), "mismatch",
"raise" or "kill" (the last three: faults on rank 1)."""

import json
import os
import signal
import sys

import numpy as np

import clnet

out, which, mode = sys.argv[1], sys.argv[2], sys.argv[3]
world = clnet.distributed.World()
rng = np.random.default_rng(7)
x, labels = rng.normal(size=(61, 5)), rng.integers(0, 3, 61)


class Faulty(clnet.SGD):
    def step(self, params, grads, keep=None):
        super().step(params, grads, keep)
        if world.rank == 1 and self.steps == 5:
            if mode == "raise":
                raise RuntimeError("a fault planted on rank 1")
            os.kill(os.getpid(), signal.SIGKILL)


with world.context(os.environ.get("CLNET_TEST_DEVICE", "pocl")) as ctx:
    hidden = 7 if mode == "mismatch" and world.rank == 1 else 6
    dropout = mode.endswith("dropout")
    mode = mode.removesuffix("-dropout")
    layers = ([clnet.FullyConnected(hidden, "tanh", dropout=0.3), clnet.Dropout(0.2)] if dropout
              else [clnet.FullyConnected(hidden, "tanh")])
    net = clnet.InferenceNetwork(ctx, 5, layers + [clnet.FullyConnected(3, "softmax")],
                                 dtype=np.float64, seed=1 + world.rank)  # rank 0's weights are broadcast
    optimizer = {"sgd": lambda: clnet.SGD(0.2, momentum=0.9), "adam": lambda: clnet.Adam(0.01)}[which]()
    if mode in ("raise", "kill"):
        optimizer = Faulty(0.1)
    if mode == "sharded":  # rank r holds rows r, r + size, ...: no process ever sees all of them
        mine = slice(world.rank, None, world.size)
        history = net.fit(x[mine], labels[mine], "cross_entropy", epochs=4, batch_size=16, optimizer=optimizer,
                          shuffle=False, seed=3, progress=False, world=world, sharded=True)
    else:
        history = net.fit(x, labels, "cross_entropy", epochs=4, batch_size=16, optimizer=optimizer, seed=3,
                          progress=False, world=world)
    if world.rank == 0:
        np.savez(out, *[p.get() for p in net.parameters()], history=np.array(history))
        print(json.dumps({"size": world.size, "history": history}))
