"""The operations on device arrays: memory, activations, bias, costs, optimizer updates, GEMM
(CLBlast or clnet's tiled kernel) and Philox random numbers. Each module queues kernels and
returns without waiting; none knows about layers or networks."""
