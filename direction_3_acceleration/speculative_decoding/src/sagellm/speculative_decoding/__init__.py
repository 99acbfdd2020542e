"""sageLLM speculative decoding: drafts checked by the target model, exactly.

``NgramDecoder`` (registry name ``ngram``) drafts by prompt lookup over the
request's own tokens and, failing that, from a suffix table of earlier
outputs shared across requests; ``rejection_sample`` keeps drafts at
temperature > 0 without changing the output distribution. ``SelfSpeculativeDecoder`` (``self``)
drafts with the target's own layers, a calibrated subset; ``DraftModelDecoder`` (``draft``) with a
smaller model file. The engine runs both models (core's ``DraftModelSource``).
"""

from sagellm.speculative_decoding.acceptance import greedy_accepted, rejection_sample
from sagellm.speculative_decoding.draft_model_decoder import DraftModelDecoder
from sagellm.speculative_decoding.layer_calibration import LayerChoice, choose_layers, predicted_speedup
from sagellm.speculative_decoding.model_decoder import ModelDraftDecoder
from sagellm.speculative_decoding.ngram_decoder import NgramDecoder
from sagellm.speculative_decoding.prompt_lookup import PromptLookupIndex
from sagellm.speculative_decoding.self_speculation import SelfSpeculativeDecoder
from sagellm.speculative_decoding.suffix_table import SharedSuffixTable
from sagellm.speculative_decoding.version import __version__

__all__ = [
    "DraftModelDecoder",
    "LayerChoice",
    "ModelDraftDecoder",
    "NgramDecoder",
    "PromptLookupIndex",
    "SelfSpeculativeDecoder",
    "SharedSuffixTable",
    "__version__",
    "choose_layers",
    "greedy_accepted",
    "predicted_speedup",
    "rejection_sample",
]
