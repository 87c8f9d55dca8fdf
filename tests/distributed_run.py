"""Run by tests/test_distributed.py under mpiexec: one data-parallel training, whose history and
weights rank 0 writes to argv[1]. argv[2]: the optimizer ("sgd" or "adam"); argv[3]: "whole",
"sharded", "whole-dropout", "sharded-dropout" (the network with dropout layers), "gpt" (a GPT with dropout,
AdamW, on token ids: `gpt_data`), or a fault:
"mismatch", "raise", "kill", "exit0", "exit3", "os_exit", "os_exit0",
"os_exit-before" (before fit), "sigint", "sigint-caught" (on rank 1)
or "sigint-all" (every rank, at different steps); outside fit, on rank 1 while rank 0 goes on to
a collective: "exit0-before", "exit1-before" (sys.exit before fit), "exit0-after", "exit1-after",
"os_exit0-after" (after fit); "memmap": x an np.memmap, the rows each rank reads counted."""

import json
import os
import signal
import sys

import numpy as np
from gpt_case import gpt_data, gpt_net  # beside this script

import clnet

out, which, mode = sys.argv[1], sys.argv[2], sys.argv[3]
world = clnet.distributed.World()
rng = np.random.default_rng(7)
x, labels = rng.normal(size=(61, 5)), rng.integers(0, 3, 61)


class Faulty(clnet.SGD):
    """A fault on rank 1 at its fifth step (`sigint-all`: Ctrl-C on every rank, at steps 5 and 6)."""

    def step(self, params, grads, keep=None):
        super().step(params, grads, keep)
        if mode == "sigint-all" and self.steps == 5 + world.rank:
            os.kill(os.getpid(), signal.SIGINT)
        if world.rank != 1 or self.steps != 5:
            return
        if mode == "raise":
            raise RuntimeError("a fault planted on rank 1")
        if mode.startswith("exit"):
            sys.exit(int(mode[4:]))
        if mode.startswith("os_exit"):
            os._exit(int(mode[7:] or 3))
        if mode in ("sigint", "sigint-caught"):
            os.kill(os.getpid(), signal.SIGINT)
        if mode == "kill":
            os.kill(os.getpid(), signal.SIGKILL)


with world.context(os.environ.get("CLNET_TEST_DEVICE", "pocl")) as ctx:
    if mode == "os_exit-before" and world.rank == 1:  # outside fit: it aborts the job too
        os._exit(3)
    if mode in ("exit0-before", "exit1-before") and world.rank == 1:  # rank 0 waits in fit's first check
        sys.exit(int(mode[4]))
    hidden = 7 if mode == "mismatch" and world.rank == 1 else 6
    dropout = mode.endswith("dropout")
    mode = mode.removesuffix("-dropout")
    layers = ([clnet.FullyConnected(hidden, "tanh", dropout=0.3), clnet.Dropout(0.2)] if dropout
              else [clnet.FullyConnected(hidden, "tanh")])
    net = clnet.InferenceNetwork(ctx, 5, layers + [clnet.FullyConnected(3, "softmax")],
                                 dtype=np.float64, seed=1 + world.rank)  # rank 0's weights are broadcast
    optimizer = {"sgd": lambda: clnet.SGD(0.2, momentum=0.9), "adam": lambda: clnet.Adam(0.01)}[which]()
    faults = ("raise", "kill", "exit0", "exit3", "os_exit", "os_exit0", "sigint", "sigint-caught", "sigint-all")
    if mode in faults:
        optimizer = Faulty(0.1)
    if mode == "gpt":
        net = gpt_net(ctx, 1 + world.rank)
        history = net.fit(*gpt_data(), epochs=3, batch_size=8, optimizer=clnet.AdamW(0.01), seed=3, progress=False,
                          world=world)
    elif mode == "sharded":  # rank r holds rows r, r + size, ...: no process ever sees all of them
        mine = slice(world.rank, None, world.size)
        history = net.fit(x[mine], labels[mine], "cross_entropy", epochs=4, batch_size=16, optimizer=optimizer,
                          shuffle=False, seed=3, progress=False, world=world, sharded=True)
    elif mode in ("sigint-caught", "sigint-all"):  # each rank catches the Ctrl-C, and the job goes on
        try:
            net.fit(x, labels, "cross_entropy", epochs=4, batch_size=16, optimizer=optimizer, seed=3, progress=False,
                    world=world)
        except KeyboardInterrupt as stop:
            print(f"rank {world.rank} caught: {stop}", flush=True)
        history = [world.sum(float(net.parameter_buffer.flat.get().sum()))]  # a collective after it: no hang
    elif mode == "memmap":  # x an np.memmap of a file of each rank's: the rows each rank reads are counted
        path = f"{out}.x{world.rank}.dat"
        file = np.memmap(path, np.float64, "w+", shape=x.shape)
        file[:] = x
        file.flush()
        read, reading = [], clnet.train.sources.FileRows._read
        clnet.train.sources.FileRows._read = lambda self, step: read.append(step[1]) or reading(self, step)
        history = net.fit(np.memmap(path, np.float64, "r", shape=x.shape), labels, "cross_entropy", epochs=4,
                          batch_size=16, optimizer=optimizer, seed=3, progress=False, world=world)
        rows_read = world.gather_all(sum(read))
    else:
        history = net.fit(x, labels, "cross_entropy", epochs=4, batch_size=16, optimizer=optimizer, seed=3,
                          progress=False, world=world)
    if mode.endswith("-after"):  # rank 1 ends; rank 0 waits in a collective that rank 1 never joins
        if world.rank == 1:
            os._exit(0) if mode.startswith("os_exit") else sys.exit(int(mode[4]))
        world.sum(1.0)
    if world.rank == 0:
        found = {"rows_read": np.array(rows_read)} if mode == "memmap" else {}
        np.savez(out, *[p.get() for p in net.parameters()], history=np.array(history), **found)
        print(json.dumps({"size": world.size, "history": history}))
