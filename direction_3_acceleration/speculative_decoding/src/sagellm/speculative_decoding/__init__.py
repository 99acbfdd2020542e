"""sageLLM speculative decoding: drafts checked by the target model, exactly.

``NgramDecoder`` (registry name ``ngram``) drafts by prompt lookup over the
request's own tokens and, failing that, from a suffix table of earlier
outputs shared across requests; ``rejection_sample`` keeps drafts at
temperature > 0 without changing the output distribution.
"""

from sagellm.speculative_decoding.acceptance import greedy_accepted, rejection_sample
from sagellm.speculative_decoding.ngram_decoder import NgramDecoder
from sagellm.speculative_decoding.prompt_lookup import PromptLookupIndex
from sagellm.speculative_decoding.suffix_table import SharedSuffixTable
from sagellm.speculative_decoding.version import __version__

__all__ = [
    "NgramDecoder",
    "PromptLookupIndex",
    "SharedSuffixTable",
    "__version__",
    "greedy_accepted",
    "rejection_sample",
]
