"""clnet's logger: one line on stderr for the things a user should know about (slow builds).

The level comes from $CLNET_LOG_LEVEL (default INFO); set it to WARNING to silence the notes.
"""

import logging
import os

logger = logging.getLogger("clnet")

if not logger.handlers:
    _handler = logging.StreamHandler()
    _handler.setFormatter(logging.Formatter("clnet: %(message)s"))
    logger.addHandler(_handler)
    logger.setLevel(os.environ.get("CLNET_LOG_LEVEL", "INFO").upper())
    logger.propagate = False
