"""clnet's logger. A library leaves output to the application: the logger has a NullHandler,
and `clnet` (the command, clnet.app.cli) shows its notes on stderr."""

import logging

logger = logging.getLogger("clnet")
logger.addHandler(logging.NullHandler())
