"""Single source of the sagellm-sparsity version (read by hatchling)."""

__version__ = "0.1.1"
