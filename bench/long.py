"""``python -m bench.long TURNS WORKDIR``: W7 in a process of its own; prints its measurements as JSON."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from bench.stepwise_side import long_loop

if __name__ == "__main__":
    print(json.dumps(long_loop(int(sys.argv[1]), Path(sys.argv[2]))))
