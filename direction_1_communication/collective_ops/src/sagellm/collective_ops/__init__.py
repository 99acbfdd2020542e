"""sagellm-collective-ops: all_reduce, all_gather, reduce_scatter, broadcast, send/recv and barrier.

Backends (entry-point group ``sagellm.comm_backend``, config section
``collective_ops``): ``mock`` (a group of one), ``gloo`` and ``nccl``
(torch.distributed process groups) and ``shm`` (POSIX shared memory
between the ranks of one host, AVX-512 reduction, spin-then-futex waits).
"""

from sagellm.collective_ops.mock import MockBackend
from sagellm.collective_ops.rendezvous import CollectiveError, RendezvousError
from sagellm.collective_ops.shm_backend import ShmBackend
from sagellm.collective_ops.torch_dist import GlooBackend, NcclBackend
from sagellm.collective_ops.version import __version__

__all__ = [
    "CollectiveError",
    "GlooBackend",
    "MockBackend",
    "NcclBackend",
    "RendezvousError",
    "ShmBackend",
    "__version__",
]
