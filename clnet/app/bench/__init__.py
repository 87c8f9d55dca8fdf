"""`clnet bench`: one suite on every OpenCL device beside numpy and PyTorch (suite), what those
references run (references), timing and the machine's record (timing), and the table, chart and
JSON of the results (report)."""

from .report import chart, format_table, save
from .suite import Suite, fastest_column, run

__all__ = ["Suite", "chart", "fastest_column", "format_table", "run", "save"]
