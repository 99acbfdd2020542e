"""sageLLM lifetime predictor: when (or whether) a cached KV block will be reused, learned online.

The learned eviction policy ranks blocks by ``predict(meta, now)``; this
package supplies the predictor through core's registry (entry point group
``sagellm.lifetime_predictor``, name ``online``), so policy and predictor
are swapped independently.
"""

from sagellm.lifetime_predictor.features import FEATURES, encode
from sagellm.lifetime_predictor.horizon_model import HorizonModel, default_horizons
from sagellm.lifetime_predictor.online import OnlineLifetimePredictor
from sagellm.lifetime_predictor.version import __version__

__all__ = [
    "FEATURES",
    "HorizonModel",
    "OnlineLifetimePredictor",
    "__version__",
    "default_horizons",
    "encode",
]
