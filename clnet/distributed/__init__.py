"""Data-parallel training on MPI: `World` wraps a communicator (mpi4py), chooses each rank's
device, and provides what `fit(..., world=world)` needs: the agreement check, broadcasts, and the
averaging of gradients, one Allreduce of the flat gradient buffer per step."""

from .world import World

__all__ = ["World"]
