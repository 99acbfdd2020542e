"""sagellm-sparsity: weight pruning (magnitude, Wanda, SparseGPT) behind core's Sparsifier protocol.

``MagnitudeSparsifier``, ``WandaSparsifier`` and ``SparseGPTSparsifier``
(registry names ``magnitude``, ``wanda``, ``sparsegpt``) prune a linear's
weight to an ``unstructured`` share or an ``N:M`` pattern and return a
:class:`SparseWeight`; 2:4 weights also run through the packed 2:4 kernels
for decode-sized inputs where they are built. The mask functions are pure
and usable on their own.
"""

from sagellm.sparsity.input_statistics import InputStatistics, InputStats
from sagellm.sparsity.kernel_dispatch import MAX_PACKED_ROWS, packed_kind, sparse_linear
from sagellm.sparsity.magnitude import magnitude_mask
from sagellm.sparsity.options import KERNELS, SparsifierOptions, parse_options
from sagellm.sparsity.owl import outlier_ratio, owl_sparsities
from sagellm.sparsity.pattern import SparsityPattern, parse_pattern
from sagellm.sparsity.sparse_weight import SparseWeight
from sagellm.sparsity.sparsegpt import sparsegpt_prune
from sagellm.sparsity.sparsifier_base import PruningSparsifier
from sagellm.sparsity.sparsifiers import MagnitudeSparsifier, SparseGPTSparsifier, WandaSparsifier
from sagellm.sparsity.version import __version__
from sagellm.sparsity.wanda import wanda_mask, wanda_scores

__all__ = [
    "KERNELS",
    "MAX_PACKED_ROWS",
    "InputStatistics",
    "InputStats",
    "MagnitudeSparsifier",
    "PruningSparsifier",
    "SparseGPTSparsifier",
    "SparseWeight",
    "SparsifierOptions",
    "SparsityPattern",
    "WandaSparsifier",
    "__version__",
    "magnitude_mask",
    "outlier_ratio",
    "owl_sparsities",
    "packed_kind",
    "parse_options",
    "parse_pattern",
    "sparse_linear",
    "sparsegpt_prune",
    "wanda_mask",
    "wanda_scores",
]
