"""``python -m`` entry of a tensor-parallel worker (see tensor_parallel_worker.py).

A module of its own because nothing imports it: running the worker module
itself with ``-m`` would execute it a second time after the package's
imports had loaded it.
"""

import sys

from sagellm.engines.engine.tensor_parallel_worker import main

if __name__ == "__main__":
    sys.exit(main())
