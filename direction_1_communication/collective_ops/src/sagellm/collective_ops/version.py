"""Single source of the sagellm-collective-ops version (read by hatchling)."""

__version__ = "0.2.0"
