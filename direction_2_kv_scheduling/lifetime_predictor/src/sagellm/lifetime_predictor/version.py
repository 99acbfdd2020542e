"""Single source of the sagellm-lifetime-predictor version (read by hatchling)."""

__version__ = "0.2.2"
