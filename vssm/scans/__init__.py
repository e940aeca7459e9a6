"""2-D scan strategies: ``get_scan(name, **options)``, ``list_scans()``, ``register_scan(name)``."""
from .base import ScanParams, ScanPlan, ScanStrategy, merge_tokens, param_dtype, scan_tokens, step_directions
from .registry import get_scan, list_scans, register_scan

# Importing a strategy module registers it.
from . import atrous, bidirectional, cross, hilbert, multihead, multiscale, spatial_fusion, window, zigzag  # noqa: E402,F401

__all__ = [
    "ScanParams", "ScanPlan", "ScanStrategy", "get_scan", "list_scans", "merge_tokens", "param_dtype", "register_scan",
    "scan_tokens", "step_directions",
]
