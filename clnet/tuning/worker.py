"""`python -m clnet.tuning.worker`: measures CLBlast candidates for clnet.tuning.search.tune in a
process of its own (CLBlast keeps parameter overrides for the rest of a process)."""

import json
import sys

from .search import worker

if __name__ == "__main__":
    worker(json.loads(sys.stdin.read()))
