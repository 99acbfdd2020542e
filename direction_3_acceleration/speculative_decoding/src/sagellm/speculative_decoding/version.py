"""Single source of the sagellm-speculative-decoding version (read by hatchling)."""

__version__ = "0.2.1"
