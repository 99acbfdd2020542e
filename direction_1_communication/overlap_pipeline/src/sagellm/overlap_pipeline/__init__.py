"""sagellm-overlap-pipeline: runs communication beside computation.

``ThreadOverlapManager`` (registry name ``threads``) implements
:class:`sagellm.core.protocols.OverlapManager` on long-lived worker threads,
with comm on a CUDA side stream where CUDA is present;
``SerialOverlapManager`` (``serial``) is the no-overlap reference. Both
record :class:`OverlapStats` (T_comp, T_comm, T_both, efficiency, idle
share) per call kind. ``sagellm.overlap_pipeline.scenarios`` holds the three
measured workloads (disk-to-host KV prefetch, layer-wise KV shipping,
asynchronous all-reduce); it needs torch, the managers do not.
"""

from sagellm.overlap_pipeline.cuda_streams import CudaSideStream, cuda_available
from sagellm.overlap_pipeline.errors import ManagerClosedError
from sagellm.overlap_pipeline.pending import PendingWork
from sagellm.overlap_pipeline.serial_manager import SerialOverlapManager
from sagellm.overlap_pipeline.stats import KindStats, OverlapStats, idle_share, overlap_efficiency
from sagellm.overlap_pipeline.thread_manager import ThreadOverlapManager
from sagellm.overlap_pipeline.version import __version__
from sagellm.overlap_pipeline.worker_pool import WorkerPool

__all__ = [
    "CudaSideStream",
    "KindStats",
    "ManagerClosedError",
    "OverlapStats",
    "PendingWork",
    "SerialOverlapManager",
    "ThreadOverlapManager",
    "WorkerPool",
    "__version__",
    "cuda_available",
    "idle_share",
    "overlap_efficiency",
]
