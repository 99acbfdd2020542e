"""sagellm-core: the contracts every sageLLM package shares.

Types, Protocols, configuration, the registry that assembles implementations
by entry point, metrics, errors and port allocation. Torch-free by design so
that a pure-Python module (prefix cache, eviction policy) installs light.
"""

from sagellm.core.config import SageLLMConfig, load_config
from sagellm.core.errors import SageLLMError
from sagellm.core.version import __version__

__all__ = ["SageLLMConfig", "SageLLMError", "__version__", "load_config"]
