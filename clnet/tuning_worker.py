"""`python -m clnet.tuning_worker`: measures CLBlast candidates for clnet.tuning.tune in a process
of its own (CLBlast keeps parameter overrides for the rest of a process)."""

import json
import sys

from .tuning import worker

worker(json.loads(sys.stdin.read()))
