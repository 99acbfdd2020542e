"""sagellm-engines: sageLLM's modules assembled into a working inference engine."""

from sagellm.engines.engine.builder import build_engine
from sagellm.engines.engine.llm import LLM, GenerationResult
from sagellm.engines.engine.llm_engine import LLMEngine
from sagellm.engines.engine.reasoning_options import ReasoningOptions
from sagellm.engines.version import __version__

__all__ = ["LLM", "GenerationResult", "LLMEngine", "ReasoningOptions", "__version__", "build_engine"]
