"""vssm: vision state-space backbones with pluggable 2-D scans and one shared selective-scan kernel."""
__version__ = "0.1.0"

from . import kernels, models, scans  # noqa: E402

__all__ = ["kernels", "models", "scans", "__version__"]
