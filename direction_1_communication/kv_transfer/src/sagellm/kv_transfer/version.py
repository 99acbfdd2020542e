"""Single source of the sagellm-kv-transfer version (read by hatchling)."""

__version__ = "0.3.3"
