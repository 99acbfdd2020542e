"""sagellm-quantization: low-bit weights and activations for sageLLM's linears.

``SmoothQuantW8A8`` (registry name ``w8a8``) implements
:class:`sagellm.core.protocols.Quantizer`: int8 weights per output channel,
smoothed by calibration activation ranges; :func:`int8_linear` runs them with
int8 activations quantized per token at run time.
"""

from sagellm.quantization.activation_range import ActivationRange
from sagellm.quantization.cpu_kernels import kernels
from sagellm.quantization.int8_weight import Int8Weight, quantize_per_channel
from sagellm.quantization.smoothquant import DEFAULT_ALPHA, SmoothQuantW8A8, smoothing_factors
from sagellm.quantization.version import __version__
from sagellm.quantization.w8a8_linear import int8_linear, quantize_activations, rescale

__all__ = [
    "DEFAULT_ALPHA",
    "ActivationRange",
    "Int8Weight",
    "SmoothQuantW8A8",
    "__version__",
    "int8_linear",
    "kernels",
    "quantize_activations",
    "quantize_per_channel",
    "rescale",
    "smoothing_factors",
]
