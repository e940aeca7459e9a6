"""The one selective-scan operator shared by every scan strategy and model."""
from .op import BACKENDS, Backend, register_backend, selective_scan
from .reference import selective_scan_reference
from .routes import Routes, as_routes

__all__ = ["BACKENDS", "Backend", "Routes", "as_routes", "register_backend", "selective_scan", "selective_scan_reference"]
