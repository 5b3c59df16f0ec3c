"""wish: weakly supervised in-hand object segmentation from narrations."""
__version__ = "0.1.0"
