"""The one selective-scan operator shared by every scan strategy and model."""
from .config import KernelConfig, kernel_config
from .op import BACKENDS, Backend, register_backend, selective_scan
from .reference import selective_scan_reference
from .routes import Routes, as_routes

try:  # the GPU backend needs triton; without it the CPU backends still work (CUDA users are warned once)
    from . import triton_scan
except ImportError:  # pragma: no cover - depends on the installation
    triton_scan = None
else:
    register_backend("triton", Backend(triton_scan.forward, triton_scan.backward, triton_scan.saved_shapes,
                                       triton_scan.supports, triton_scan.plan))

__all__ = ["BACKENDS", "Backend", "KernelConfig", "Routes", "as_routes", "kernel_config", "register_backend",
           "selective_scan", "selective_scan_reference"]
