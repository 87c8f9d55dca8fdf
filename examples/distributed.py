"""Data-parallel training over MPI: the digits network of examples/digits.py on every rank.

    mpiexec -n 2 python examples/distributed.py           # 2 processes on this machine
    python examples/distributed.py                        # 1 process: the same training

Every rank loads the whole data set and trains on its part of each global batch of 32; the
gradients are averaged over the ranks each step, so the result is the one-process result, up
to the order of floating-point sums. Each rank takes GPU number local_rank when the machine has
GPUs (else the CPU; on one CPU give each rank one PoCL thread: POCL_MAX_PTHREAD_COUNT=1).
"""

import argparse
import sys
import time
from pathlib import Path

import clnet

sys.path.insert(0, str(Path(__file__).resolve().parent))
from digits import load_data  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default=None, help="device spec for every rank (default: per rank, see above)")
    parser.add_argument("--epochs", type=int, default=30)
    args = parser.parse_args()
    world = clnet.distributed.World()
    x_train, y_train, x_test, y_test = load_data(seed=0)
    with world.context(args.device) as ctx:
        net = clnet.InferenceNetwork(ctx, 64, [clnet.FullyConnected(128, "relu"),
                                               clnet.FullyConnected(10, "softmax")], seed=0)
        started = time.perf_counter()
        history = net.fit(x_train, y_train, "cross_entropy", epochs=args.epochs, batch_size=32,
                          optimizer=clnet.Adam(learning_rate=2e-3), seed=0, world=world,
                          progress=world.rank == 0)
        seconds = time.perf_counter() - started
        accuracy = net.accuracy(x_test, y_test)
        if world.rank == 0:
            print(f"digits on {world.size} rank(s), rank 0 on {ctx.info.name}: test accuracy {accuracy:.3f}, "
                  f"cost {history[-1]:.4f} after {args.epochs} epochs in {seconds:.1f} s "
                  f"({world.allreduce_seconds + world.copy_seconds:.2f} s averaging gradients)")


if __name__ == "__main__":
    main()
