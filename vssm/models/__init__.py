"""Model families, registered with timm on import."""
from . import vmamba  # noqa: F401
from . import plainmamba, vim  # noqa: F401
