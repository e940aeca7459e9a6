"""2-D scan strategies: ``get_scan(name, **options)``, ``list_scans()``, ``register_scan(name)``."""
from .base import ScanParams, ScanStrategy, step_directions
from .registry import get_scan, list_scans, register_scan

# Importing a strategy module registers it.
from . import bidirectional, cross, zigzag  # noqa: E402,F401

__all__ = ["ScanParams", "ScanStrategy", "get_scan", "list_scans", "register_scan", "step_directions"]
