"""Data bigger than memory: a CNN trained on a 2 GiB np.memmap of images, the process's own
memory (RssAnon: not the file's pages, which the kernel caches) sampled every 20 ms, and the
same CNN on 16384 images (256 MiB) of the file as an np.memmap and as an array in memory, in the
same run: a fit of one epoch (the array's includes its copy to the device) and each epoch more
(fits of 4 and 1 epochs: what reading each step's rows from the file costs).

    .venv/bin/python bench/bench_memmap.py [--device SPEC] [--gib 2] [--rounds 3]

The file is written once under the temporary folder (or --file) and removed at the end.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402

import clnet  # noqa: E402

SHAPE = (1, 64, 64)  # 16 KiB images
BATCH = 128


def anonymous() -> int:
    with open("/proc/self/status") as status:
        return int(next(line for line in status if line.startswith("RssAnon")).split()[1]) * 1024


class Peak:
    """The largest RssAnon while the block runs, sampled every 20 ms by a thread."""

    def __enter__(self):
        self.peak, self.done = anonymous(), threading.Event()
        self.thread = threading.Thread(target=self._sample, daemon=True)
        self.thread.start()
        return self

    def _sample(self):
        while not self.done.wait(0.02):
            self.peak = max(self.peak, anonymous())

    def __exit__(self, *exc):
        self.done.set()
        self.thread.join()


def network(ctx):
    return clnet.InferenceNetwork(ctx, SHAPE, [clnet.Conv2d(4, 4, stride=4, activation="relu"),
                                               clnet.Conv2d(8, 3, stride=2, activation="relu"),
                                               clnet.GlobalAvgPool2d(), clnet.Flatten(),
                                               clnet.FullyConnected(2, "softmax")], seed=1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="pocl")
    parser.add_argument("--gib", type=float, default=2.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--file", default=None)
    args = parser.parse_args()
    rows = int(args.gib * 2**30) // (4 * int(np.prod(SHAPE)))
    path = Path(args.file or tempfile.mkstemp(suffix=".dat")[1])
    try:
        file = np.memmap(path, np.float32, "w+", shape=(rows, *SHAPE))
        pattern = np.random.default_rng(0).normal(size=(1024, *SHAPE)).astype(np.float32)
        for start in range(0, rows, 1024):  # written in blocks: the process never holds the whole
            file[start:start + 1024] = pattern[:min(1024, rows - start)]
        file.flush()
        del file
        x = np.memmap(path, np.float32, "r", shape=(rows, *SHAPE))
        labels = (np.arange(rows) % 2).astype(np.int64)
        with clnet.Context(args.device) as ctx:
            net = network(ctx)
            net.fit(x[:256], labels[:256], epochs=1, batch_size=BATCH, progress=False)  # kernels built
            before = anonymous()
            with Peak() as peak:
                started = time.perf_counter()
                net.fit(x, labels, epochs=1, batch_size=BATCH, progress=False)
                whole = time.perf_counter() - started
            part = min(rows, 16384)  # 256 MiB: as an array too
            in_memory = np.array(x[:part])
            times = {(name, epochs): [] for name in ("memmap", "array") for epochs in (1, 4)}
            for _ in range(args.rounds):  # alternating, the same seeds
                for (name, epochs), found in times.items():
                    data = x[:part] if name == "memmap" else in_memory
                    started = time.perf_counter()
                    network(ctx).fit(data, labels[:part], epochs=epochs, batch_size=BATCH, seed=2, progress=False)
                    found.append(time.perf_counter() - started)
            median = {key: statistics.median(found) for key, found in times.items()}
            record = {"machine": common.machine(ctx), "rows": rows, "bytes": rows * 4 * int(np.prod(SHAPE)),
                      "batch": BATCH, "whole_epoch_s": whole, "rss_anon_before": before,
                      "rss_anon_peak": peak.peak, "part_rows": part,
                      "part_memmap_s": median["memmap", 1], "part_array_s": median["array", 1],
                      # an epoch more, the setup (the array's copy to the device) left out
                      "part_memmap_epoch_s": (median["memmap", 4] - median["memmap", 1]) / 3,
                      "part_array_epoch_s": (median["array", 4] - median["array", 1]) / 3}
    finally:
        os.unlink(path)
    grown = record["rss_anon_peak"] - record["rss_anon_before"]
    print(f"{rows} images ({record['bytes'] / 2**30:.2f} GiB) in {whole:.1f} s "
          f"({rows / whole:,.0f} images/s); RssAnon peak {record['rss_anon_peak'] / 2**20:.0f} MiB, "
          f"{grown / 2**20:.1f} MiB above the start ({grown / record['bytes']:.2%} of the data)")
    print(common.table(["data", "fit of 1 epoch (s)", "ratio", "each epoch more (s)", "ratio"],
                       [["np.memmap", record["part_memmap_s"], record["part_memmap_s"] / record["part_array_s"],
                         record["part_memmap_epoch_s"], record["part_memmap_epoch_s"] / record["part_array_epoch_s"]],
                        ["array", record["part_array_s"], 1.0, record["part_array_epoch_s"], 1.0]]))
    print(common.write_json("memmap", record))


if __name__ == "__main__":
    main()
