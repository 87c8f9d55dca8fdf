"""The application on top of the library: the `clnet` command (cli), the demo, and the benchmark
suite (bench)."""
